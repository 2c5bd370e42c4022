//! Replaying log entries into a registry database: the chain check, the rules, the writes.
//!
//! Used by the mirror for every page it syncs, and by the benchmarks. With `batch`, the
//! signatures of a whole page are checked with `ed25519_dalek::verify_batch`, one batch per
//! core; if a batch fails, the page is checked one signature at a time, which finds the bad
//! entry and names it. Keys that are weak (small order) are never
//! batched, since the batch equation does not reject them as `verify_strict` does.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::{Signature, VerifyingKey};
use rusqlite::Connection;

use super::log::{entry_hash, LogEntry};
use super::op::{Operation, SignedOp};
use super::rules::{self, Params};
use crate::name::Name;
use crate::store::{self, StoreError};

/// Where a replay ended.
#[derive(Debug)]
pub struct Replayed {
    /// Hash of the last entry applied.
    pub head: [u8; 32],
    /// Sequence number of the next entry.
    pub next_seq: u64,
    /// Names whose records changed.
    pub touched: HashSet<Name>,
}

/// Why a replay stopped.
#[derive(Debug)]
pub enum ReplayError {
    /// An entry breaks the chain or a rule: (reason, the entry's bytes).
    Forged(String, Vec<u8>),
    Store(StoreError),
}

impl From<StoreError> for ReplayError {
    fn from(e: StoreError) -> ReplayError {
        ReplayError::Store(e)
    }
}

struct Decoded {
    entry: LogEntry,
    op: SignedOp,
    bytes: Vec<u8>,
    hash: [u8; 32],
}

/// Applies `entries` (which must start at `seq` and chain from `head`) inside the caller's
/// transaction.
pub fn replay(
    conn: &Connection,
    seq: u64,
    head: [u8; 32],
    entries: Vec<Vec<u8>>,
    params: Params,
    batch: bool,
) -> Result<Replayed, ReplayError> {
    let mut decoded = Vec::with_capacity(entries.len());
    let mut prev = head;
    for (i, bytes) in entries.into_iter().enumerate() {
        let at = seq + i as u64;
        let forged =
            |why: String| ReplayError::Forged(format!("forged entry {at}: {why}"), bytes.clone());
        let entry = LogEntry::decode(&bytes).map_err(|e| forged(e.to_string()))?;
        if entry.seq != at || entry.prev_hash != prev {
            return Err(forged("it does not chain to the verified log".into()));
        }
        let op = SignedOp::decode(&entry.op).map_err(|e| forged(e.to_string()))?;
        let hash = entry_hash(&bytes);
        prev = hash;
        decoded.push(Decoded {
            entry,
            op,
            bytes,
            hash,
        });
    }
    let checked = batch && batch_verifies(conn, &decoded)?;
    let keys_checked = batch && keys_are_strong(&decoded);
    let params = Params {
        check_signature: !checked,
        check_keys: !keys_checked,
        ..params
    };
    let mut touched = HashSet::new();
    for d in &decoded {
        let name = d.op.op.name().clone();
        let current = store::registry::record(conn, &name)?;
        let holder = store::registry::skeleton_holder(conn, &name.skeleton())?;
        let record = rules::apply(
            &d.op,
            d.entry.time,
            d.entry.difficulty,
            current.as_ref(),
            holder.as_ref(),
            params,
        )
        .map_err(|e| {
            ReplayError::Forged(
                format!("forged entry {}: {e}", d.entry.seq),
                d.bytes.clone(),
            )
        })?;
        store::registry::append_entry(conn, d.entry.seq, &d.bytes, &d.hash)?;
        store::registry::put_record(conn, &record)?;
        touched.insert(name);
    }
    Ok(Replayed {
        head: prev,
        next_seq: seq + decoded.len() as u64,
        touched,
    })
}

/// Whether every new key in the page passes [`rules::check_key`], checked once each, on every
/// core (the torsion check is a whole scalar multiplication, as costly as a signature check).
/// `false` means "let the rules check them one by one" (and name the bad one).
fn keys_are_strong(page: &[Decoded]) -> bool {
    let mut keys: Vec<VerifyingKey> = Vec::new();
    let mut seen = HashSet::new();
    for d in page {
        let new: Vec<VerifyingKey> = match &d.op.op {
            Operation::Register(r) => vec![r.updating_key, r.signing_key],
            Operation::Update(u) => u
                .new_signing_key
                .map(|(k, _)| k)
                .into_iter()
                .chain(u.new_updating_key)
                .collect(),
        };
        for k in new {
            if seen.insert(k.to_bytes()) {
                keys.push(k);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = keys.len().div_ceil(cores).max(16);
    std::thread::scope(|scope| {
        let jobs: Vec<_> = keys
            .chunks(chunk)
            .map(|c| scope.spawn(move || c.iter().all(|k| rules::check_key(k).is_ok())))
            .collect();
        jobs.into_iter().all(|j| j.join().unwrap_or(false))
    })
}

/// Whether every signature of the page verifies, checked as one batch. `false` means "check
/// one by one" (a bad signature, a weak key, or a signer not known in advance).
fn batch_verifies(conn: &Connection, page: &[Decoded]) -> Result<bool, StoreError> {
    let mut updating: HashMap<Name, VerifyingKey> = HashMap::new();
    let mut keys = Vec::with_capacity(page.len());
    for d in page {
        let name = d.op.op.name();
        let key = match &d.op.op {
            Operation::Register(r) => {
                updating.insert(name.clone(), r.updating_key);
                r.updating_key
            }
            Operation::Update(u) => {
                let current = match updating.get(name) {
                    Some(k) => *k,
                    None => match store::registry::record(conn, name)? {
                        Some(rec) => rec.updating_key,
                        None => return Ok(false),
                    },
                };
                if let Some(next) = u.new_updating_key {
                    updating.insert(name.clone(), next);
                }
                current
            }
        };
        if key.is_weak() {
            return Ok(false);
        }
        keys.push(key);
    }
    let messages: Vec<Vec<u8>> = page.iter().map(|d| d.op.signed_message()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = page.iter().map(|d| d.op.signature).collect();
    // Catching up is the one time a node has nothing better to do with its other cores: the
    // page is split into one batch per core, checked in parallel.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = page.len().div_ceil(cores).max(64);
    Ok(std::thread::scope(|scope| {
        let jobs: Vec<_> = refs
            .chunks(chunk)
            .zip(signatures.chunks(chunk))
            .zip(keys.chunks(chunk))
            .map(|((m, s), k)| scope.spawn(move || ed25519_dalek::verify_batch(m, s, k).is_ok()))
            .collect();
        jobs.into_iter().all(|j| j.join().unwrap_or(false))
    }))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::registry::log::GENESIS;
    use crate::registry::op::Register;
    use crate::store::Local;

    /// Register entries; entry `bad` is signed by a key that is not its updating key.
    fn log(n: u64, bad: Option<u64>) -> Vec<Vec<u8>> {
        log_with(n, bad, None)
    }

    /// … and entry `weak` registers a signing key with a small-order component.
    fn log_with(n: u64, bad: Option<u64>, weak: Option<u64>) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        (0..n)
            .map(|i| {
                let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                let signer = if Some(i) == bad {
                    SigningKey::from_bytes(&[200; 32])
                } else {
                    key.clone()
                };
                let op = Operation::Register(Register {
                    name: Name::parse(&format!("n{i}")).unwrap(),
                    updating_key: key.verifying_key(),
                    signing_key: if Some(i) == weak {
                        let mixed = key.verifying_key().to_edwards()
                            + curve25519_dalek::constants::EIGHT_TORSION[1];
                        VerifyingKey::from_bytes(&mixed.compress().to_bytes()).unwrap()
                    } else {
                        key.verifying_key()
                    },
                    valid_from: 1_000,
                    node_uri: "https://node.example/".into(),
                    redirect_uris: vec![],
                    pow_nonce: [0; 8],
                })
                .sign(&signer);
                let entry = LogEntry {
                    seq: i,
                    time: 1_000,
                    prev_hash: prev,
                    difficulty: 0,
                    op,
                }
                .encode();
                prev = entry_hash(&entry);
                entry
            })
            .collect()
    }

    fn run(entries: Vec<Vec<u8>>, batch: bool) -> Result<Replayed, ReplayError> {
        let db = Local::in_memory().unwrap();
        let mut conn = db.lock();
        let tx = conn.transaction().unwrap();
        replay(&tx, 0, GENESIS, entries, Params::default(), batch)
    }

    #[test]
    fn batch_and_single_agree_on_a_good_log() {
        let a = run(log(200, None), true).unwrap();
        let b = run(log(200, None), false).unwrap();
        assert_eq!((a.head, a.next_seq), (b.head, b.next_seq));
        assert_eq!(a.touched.len(), 200);
    }

    #[test]
    fn a_bad_signature_in_a_batch_is_found_and_named() {
        for batch in [true, false] {
            match run(log(200, Some(137)), batch) {
                Err(ReplayError::Forged(reason, _)) => {
                    assert!(reason.starts_with("forged entry 137:"), "{reason}")
                }
                other => panic!("expected a forged entry, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_weak_key_in_a_batch_is_found_and_named() {
        for batch in [true, false] {
            match run(log_with(250, None, Some(211)), batch) {
                Err(ReplayError::Forged(reason, _)) => {
                    assert!(reason.starts_with("forged entry 211:"), "{reason}");
                    assert!(reason.contains("small-order component"), "{reason}");
                }
                other => panic!("expected a forged entry, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_broken_chain_is_refused() {
        let mut entries = log(3, None);
        entries.swap(1, 2);
        assert!(
            matches!(run(entries, true), Err(ReplayError::Forged(r, _)) if r.starts_with("forged entry 1:"))
        );
    }
}
