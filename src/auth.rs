//! Owner authentication: password hashing with its admission gate, random tokens, and the
//! login rate limiter.
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

/// Password checks allowed per name and per address within one window.
pub const MAX_FAILURES: u32 = 5;
/// The window, seconds.
pub const FAILURE_WINDOW: u64 = 15 * 60;
/// Entries kept per map before expired ones are swept.
const MAX_TRACKED: usize = 100_000;

/// Counts password checks per owner name and per client address, separately: each has its own
/// budget of [`MAX_FAILURES`] checks within [`FAILURE_WINDOW`], and an attempt needs room in
/// both. Once either budget is spent, further attempts are refused until its window ends, even
/// with the right password, so guessing cannot continue.
///
/// An attempt is *reserved* before its password is checked ([`LoginLimiter::reserve`]), so N
/// attempts arriving in the same millisecond cannot all pass a check made before any of them
/// is counted. A successful login gives its reservation back and clears the name's count.
#[derive(Default)]
pub struct LoginLimiter {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    by_name: HashMap<Name, (u64, u32)>,
    by_addr: HashMap<IpAddr, (u64, u32)>,
}

/// A reserved password check; hand it back with [`LoginLimiter::succeeded`] on success.
#[must_use = "a reservation is given back with succeeded(), or kept as a failure"]
pub struct Reservation {
    name: Name,
    addr: IpAddr,
    /// The later of the two windows' starts when it was made.
    window: u64,
}

fn live(entry: Option<&(u64, u32)>, now: u64) -> (u64, u32) {
    match entry {
        Some(&(start, count)) if now < start + FAILURE_WINDOW => (start, count),
        _ => (now, 0),
    }
}

impl LoginLimiter {
    /// Reserves one password check for `name` from `addr`, or says how many seconds until
    /// either may try again.
    pub fn reserve(&self, name: &Name, addr: IpAddr, now: u64) -> Result<Reservation, u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (n_start, n_count) = live(counts.by_name.get(name), now);
        let (a_start, a_count) = live(counts.by_addr.get(&addr), now);
        let wait = |start: u64, count: u32| {
            (count >= MAX_FAILURES).then(|| start + FAILURE_WINDOW - now)
        };
        if let Some(w) = wait(n_start, n_count).max(wait(a_start, a_count)) {
            return Err(w);
        }
        if counts.by_name.len() >= MAX_TRACKED || counts.by_addr.len() >= MAX_TRACKED {
            counts.by_name.retain(|_, (s, _)| now < *s + FAILURE_WINDOW);
            counts.by_addr.retain(|_, (s, _)| now < *s + FAILURE_WINDOW);
        }
        counts.by_name.insert(name.clone(), (n_start, n_count + 1));
        counts.by_addr.insert(addr, (a_start, a_count + 1));
        Ok(Reservation {
            name: name.clone(),
            addr,
            window: n_start.max(a_start),
        })
    }

    /// A reserved check found the right password: its reservation is given back and the
    /// name's count is cleared.
    pub fn succeeded(&self, r: Reservation) {
        let name = r.name.clone();
        self.release(r);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.by_name.remove(&name);
    }

    /// A reserved check that never ran (the node was too busy): the reservation is given back.
    pub fn release(&self, r: Reservation) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let give_back = |entry: Option<&mut (u64, u32)>| {
            if let Some(entry) = entry {
                // Only within the window it was counted in.
                if entry.0 <= r.window {
                    entry.1 = entry.1.saturating_sub(1);
                }
            }
        };
        give_back(counts.by_name.get_mut(&r.name));
        give_back(counts.by_addr.get_mut(&r.addr));
    }
}

/// Password checks running at once, at most; argon2 takes 19 MiB each.
pub fn default_hash_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Password checks allowed to wait for a slot before new ones are turned away.
pub const HASH_QUEUE: usize = 16;

/// How long a password check may wait for a slot.
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Admission control for argon2: memory is per-check cost × concurrency, so the concurrency is
/// bounded (about one check per core), a short queue waits, and past that callers are told
/// the node is busy instead of piling up on the blocking pool.
pub struct HashGate {
    slots: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    queue: usize,
}

/// No slot for a password check: the node is busy; try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Default for HashGate {
    fn default() -> HashGate {
        HashGate::new(default_hash_slots(), HASH_QUEUE)
    }
}

impl HashGate {
    pub fn new(slots: usize, queue: usize) -> HashGate {
        HashGate {
            slots: tokio::sync::Semaphore::new(slots.max(1)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            queue,
        }
    }

    /// Runs `work` (a password hash or check) on the blocking pool once a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        use std::sync::atomic::Ordering;
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let got = tokio::time::timeout(HASH_WAIT, self.slots.acquire()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match got {
                    Ok(Ok(p)) => p,
                    _ => return Err(Busy),
                }
            }
        };
        let result = tokio::task::spawn_blocking(work).await;
        drop(permit);
        match result {
            Ok(v) => Ok(v),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
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
    fn limiter_blocks_after_five_checks() {
        let l = LoginLimiter::default();
        let n = Name::parse("alice").unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(l.reserve(&n, a, 1000).is_ok());
        }
        assert_eq!(l.reserve(&n, a, 1000).err(), Some(FAILURE_WINDOW));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(
            l.reserve(&n, other, 1000).is_err(),
            "per name, from any address"
        );
        let bob = Name::parse("bob").unwrap();
        assert!(
            l.reserve(&bob, a, 1000).is_err(),
            "per address, for any name"
        );
        assert!(l.reserve(&n, a, 1000 + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn a_success_gives_its_reservation_back() {
        let l = LoginLimiter::default();
        let n = Name::parse("alice").unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 * MAX_FAILURES {
            let r = l.reserve(&n, a, 1000).unwrap();
            l.succeeded(r);
        }
    }

    #[test]
    fn limiter_counts_parallel_attempts_before_checking() {
        let l = std::sync::Arc::new(LoginLimiter::default());
        let n = Name::parse("alice").unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..30)
                .map(|_| s.spawn(|| l.reserve(&n, a, 1000).is_ok()))
                .collect();
            handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(admitted, MAX_FAILURES as usize);
    }

    #[tokio::test]
    async fn the_hash_gate_turns_away_past_its_queue() {
        let gate = std::sync::Arc::new(HashGate::new(1, 2));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let mut running = Vec::new();
        for _ in 0..3 {
            let g = gate.clone();
            let rx = rx.clone();
            running.push(tokio::spawn(async move {
                g.run(move || {
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // One runs, two wait: the fourth is turned away at once.
        assert_eq!(gate.run(|| ()).await, Err(Busy));
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        for r in running {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
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
