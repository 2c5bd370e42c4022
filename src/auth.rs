//! Owner authentication: password hashing with its admission gate, random tokens, and the
//! login rate limiter.
//!
//! Passwords are hashed with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), each
//! with its own salt. Session and set-up tokens are 32 random bytes sent to the browser in
//! base64url and stored only as blake3 hashes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::name::Name;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 has no limit; a megabyte password is a DoS).
pub const MAX_PASSWORD_BYTES: usize = 1024;

thread_local! {
    /// argon2's working memory (19 MiB with the defaults), kept per thread and reused: see
    /// [`HashGate`] for why a fresh allocation per check is not good enough.
    static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest argon2 memory a stored hash may ask for (64 MiB): a hash is ours, but a
/// corrupted row must not make one check take gigabytes.
const MAX_BLOCKS: usize = 64 * 1024;

/// Runs argon2id with `params` into `out`, in this thread's reused memory.
fn argon2_into(
    params: argon2::Params,
    version: argon2::Version,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return Err(argon2::Error::MemoryTooMuch);
    }
    let hasher = Argon2::new(argon2::Algorithm::Argon2id, version, params);
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        hasher.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

/// Hashes a password into a PHC string (argon2id with the crate's default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
    let params = argon2::Params::default();
    let mut out = [0u8; 32];
    argon2_into(
        params.clone(),
        argon2::Version::V0x13,
        password.as_bytes(),
        &salt,
        &mut out,
    )
    .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string. A malformed hash, or one that is not argon2id,
/// never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
        return false;
    }
    let (Ok(params), Some(expected), Some(salt)) =
        (argon2::Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if argon2_into(params, version, password.as_bytes(), salt, &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|got| got == expected)
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
        let wait =
            |start: u64, count: u32| (count >= MAX_FAILURES).then(|| start + FAILURE_WINDOW - now);
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

type HashJob = Box<dyn FnOnce() + Send>;

/// Admission control for argon2: memory is per-check cost × concurrency, so password work runs
/// on a fixed set of threads (about one per core), a short queue waits, and past that callers
/// are told the node is busy instead of piling up.
///
/// Why threads of its own rather than the runtime's blocking pool: each argon2 call allocates
/// 19 MiB, and glibc keeps a freed block of that size in the arena of the thread that used it.
/// Spread over the blocking pool's many threads, a burst of logins left hundreds of MiB
/// resident even with the concurrency bounded; on a few fixed threads it stays a few blocks.
pub struct HashGate {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
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
    /// `slots` worker threads, and room for `queue` checks waiting for one. The threads end
    /// when the gate is dropped.
    pub fn new(slots: usize, queue: usize) -> HashGate {
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<HashJob>(queue);
        let inbox = std::sync::Arc::new(Mutex::new(inbox));
        for i in 0..slots.max(1) {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || loop {
                    let job = match inbox.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    // A panicking job must not take the worker with it; its caller sees the
                    // reply channel close.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password worker");
            }
        }
        HashGate { jobs }
    }

    /// Runs `work` (a password hash or check) on a password worker, or says the node is busy
    /// when every worker is taken and the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.try_send(job).map_err(|_| Busy)?;
        answer.await.map_err(|_| {
            tracing::error!("a password check failed without an answer");
            Busy
        })
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
    fn hashes_made_by_the_argon2_crate_itself_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse", &theirs));
        assert!(!verify_password("correct horsE", &theirs));
        // And ours is what theirs would be for the same salt.
        let ours = hash_password("correct horse").unwrap();
        assert_eq!(ours.split('$').nth(3), theirs.split('$').nth(3));
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
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
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
