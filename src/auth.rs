//! Owner authentication: password hashing, random tokens, and the login rate limiter.
//!
//! Passwords are hashed with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), each
//! with its own salt. Session and set-up tokens are 32 random bytes sent to the browser in
//! base64url and stored only as blake3 hashes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::name::Name;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 has no limit; a megabyte password is a DoS).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a password into a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Checks a password against a PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Why a new password is refused.
pub fn check_new_password(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err("the password must be at least 8 characters");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("the password must be at most 1024 bytes");
    }
    Ok(())
}

/// 32 random bytes.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS generator failing is not something a server can continue past safely.
    getrandom::getrandom(&mut b).expect("the operating system's random generator works");
    b
}

/// A new token: what the browser gets (base64url) and what the database keeps (its hash).
pub fn new_token() -> (String, [u8; 32]) {
    let raw = random_bytes();
    (URL_SAFE_NO_PAD.encode(raw), *blake3::hash(&raw).as_bytes())
}

/// The stored hash of a token the browser sent; `None` if it is not a token at all.
pub fn token_hash(token: &str) -> Option<[u8; 32]> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != 32 {
        return None;
    }
    Some(*blake3::hash(&raw).as_bytes())
}

/// A keyed MAC, for CSRF tokens bound to a session.
pub fn mac(key: &[u8; 32], message: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(blake3::keyed_hash(key, message).as_bytes())
}

/// Constant-time comparison of two strings.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Failed logins allowed per name and per address within one window.
pub const MAX_FAILURES: u32 = 5;
/// The window, seconds.
pub const FAILURE_WINDOW: u64 = 15 * 60;

/// Counts failed logins per owner name and per client address. Once either has
/// [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`], further attempts are refused until the
/// window ends, even with the right password, so guessing cannot continue.
#[derive(Default)]
pub struct LoginLimiter {
    by_name: Mutex<HashMap<Name, (u64, u32)>>,
    by_addr: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl LoginLimiter {
    /// Seconds until `name` or `addr` may try again, or `None` if they may try now.
    pub fn blocked(&self, name: &Name, addr: IpAddr, now: u64) -> Option<u64> {
        let check = |entry: Option<&(u64, u32)>| match entry {
            Some(&(start, count)) if count >= MAX_FAILURES && now < start + FAILURE_WINDOW => {
                Some(start + FAILURE_WINDOW - now)
            }
            _ => None,
        };
        let by_name = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let by_addr = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        check(by_name.get(name)).max(check(by_addr.get(&addr)))
    }

    /// Records a failed attempt.
    pub fn failed(&self, name: &Name, addr: IpAddr, now: u64) {
        fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, (u64, u32)>, key: K, now: u64) {
            if map.len() > 100_000 {
                map.retain(|_, (start, _)| now < *start + FAILURE_WINDOW);
            }
            let entry = map.entry(key).or_insert((now, 0));
            if now >= entry.0 + FAILURE_WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        bump(
            &mut self.by_name.lock().unwrap_or_else(|p| p.into_inner()),
            name.clone(),
            now,
        );
        bump(
            &mut self.by_addr.lock().unwrap_or_else(|p| p.into_inner()),
            addr,
            now,
        );
    }

    /// Clears the name's count after a successful login.
    pub fn succeeded(&self, name: &Name) {
        self.by_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn limiter_blocks_after_five_failures() {
        let l = LoginLimiter::default();
        let n = Name::parse("alice").unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(l.blocked(&n, a, 1000), None);
            l.failed(&n, a, 1000);
        }
        assert_eq!(l.blocked(&n, a, 1000), Some(FAILURE_WINDOW));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(
            l.blocked(&n, other, 1000).is_some(),
            "per name, from any address"
        );
        assert_eq!(l.blocked(&n, a, 1000 + FAILURE_WINDOW), None);
    }

    #[test]
    fn tokens_hash_and_compare() {
        let (t, h) = new_token();
        assert_eq!(token_hash(&t), Some(h));
        assert_eq!(token_hash("short"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
