//! Replaying log entries into a registry database: the chain check, the rules, the writes.
//!
//! Used by the mirror for every page it syncs, and by the benchmarks. With `batch`, the
//! signatures and new keys of a whole page are checked on every core, each signature with
//! `verify_strict` as the registry checks it, while the rest of the rules and the writes run
//! (inside a savepoint); if any check fails, the savepoint is undone and the page goes through
//! the rules one entry at a time, which finds the bad entry and names it.

use std::collections::{HashMap, HashSet};

use crate::store::LocalConn;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::name::Name;
use crate::registry::log::{entry_hash, LogEntry};
use crate::registry::op::{Operation, SignedOp};
use crate::registry::rules::{self, Params};
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
    conn: &LocalConn,
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
    let next_seq = seq + decoded.len() as u64;
    if batch {
        if let Some(signers) = signing_keys(conn, &decoded)? {
            if let Some(touched) = apply_while_checking(conn, &decoded, &signers, params)? {
                return Ok(Replayed {
                    head: prev,
                    next_seq,
                    touched,
                });
            }
        }
    }
    let touched = apply(conn, &decoded, params)?;
    Ok(Replayed {
        head: prev,
        next_seq,
        touched,
    })
}

/// The rules for every entry of the page, in order, and the writes; the names touched.
fn apply(conn: &LocalConn, page: &[Decoded], params: Params) -> Result<HashSet<Name>, ReplayError> {
    let mut touched = HashSet::new();
    for d in page {
        let name = d.op.op.name().clone();
        let current = store::registry::record(conn, &name)?;
        let holder = store::registry::look_alike_at(conn, &name, d.entry.time)?;
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
    Ok(touched)
}

/// The page applied with the signature and key checks taken out of the rules and run on other
/// threads at the same time (the rules and the writes are serial, the checks are not), inside a
/// savepoint. `None` when anything failed: the savepoint is then undone, and the caller goes
/// through the rules one entry at a time, which finds the first bad entry and names it.
fn apply_while_checking(
    conn: &LocalConn,
    page: &[Decoded],
    signers: &[VerifyingKey],
    params: Params,
) -> Result<Option<HashSet<Name>>, ReplayError> {
    let unchecked = Params {
        check_signature: false,
        check_keys: false,
        ..params
    };
    store::registry::begin_tentative(conn)?;
    let (applied, checked) = std::thread::scope(|scope| {
        let checks = scope.spawn(|| checks_pass(page, signers));
        let applied = apply(conn, page, unchecked);
        (applied, checks.join().unwrap_or(false))
    });
    match applied {
        Ok(touched) if checked => {
            store::registry::keep_tentative(conn)?;
            Ok(Some(touched))
        }
        _ => {
            store::registry::undo_tentative(conn)?;
            Ok(None)
        }
    }
}

/// Whether every signature of the page verifies and every new key is strong, checked on every
/// core.
///
/// Signatures are checked one by one with `verify_strict`, the registry's own check, not with a
/// batch equation. `ed25519_dalek::verify_batch` (used here until 2026-11-26) is not the same
/// predicate: it accepted an entry signed with a small-order R that the registry refuses
/// (`a_signature_only_a_batch_would_accept_is_refused_batched_or_not`). A batch that answers
/// exactly as `verify_strict` (the `strict-batch` crate) costs more per signature than
/// `verify_strict` itself, because it must first test every R for a small-order component; the
/// README's Performance section has the figures.
fn checks_pass(page: &[Decoded], signers: &[VerifyingKey]) -> bool {
    let new_keys = new_keys(page);
    let keys_strong = on_every_core(&new_keys, 16, |keys| {
        keys.iter().all(|k| rules::check_key(k).is_ok())
    });
    if !keys_strong.into_iter().all(|ok| ok) {
        return false;
    }
    let messages: Vec<Vec<u8>> = page.iter().map(|d| d.op.signed_message()).collect();
    let checks: Vec<(&VerifyingKey, &Vec<u8>, &Signature)> = signers
        .iter()
        .zip(&messages)
        .zip(page)
        .map(|((key, message), d)| (key, message, &d.op.signature))
        .collect();
    on_every_core(&checks, 64, |chunk| {
        chunk
            .iter()
            .all(|(key, message, signature)| key.verify_strict(message, signature).is_ok())
    })
    .into_iter()
    .all(|ok| ok)
}

/// The keys a page introduces (both keys of a registration, the new keys of an update), each
/// once.
fn new_keys(page: &[Decoded]) -> Vec<VerifyingKey> {
    let mut seen = HashSet::new();
    page.iter()
        .flat_map(|d| match &d.op.op {
            Operation::Register(r) => vec![r.updating_key, r.signing_key],
            Operation::Update(u) => u
                .new_signing_key
                .map(|(k, _)| k)
                .into_iter()
                .chain(u.new_updating_key)
                .collect(),
        })
        .filter(|k| seen.insert(k.to_bytes()))
        .collect()
}

/// The key each entry must be signed by (the name's updating key as of that entry), or `None`
/// when an update's name is neither in the page nor in the database (the rules will say why).
fn signing_keys(
    conn: &LocalConn,
    page: &[Decoded],
) -> Result<Option<Vec<VerifyingKey>>, StoreError> {
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
                        None => return Ok(None),
                    },
                };
                if let Some(next) = u.new_updating_key {
                    updating.insert(name.clone(), next);
                }
                current
            }
        };
        keys.push(key);
    }
    Ok(Some(keys))
}

/// `work` on chunks of `items` (at least `min_chunk` each), one thread per core. Catching up is
/// the one time a node has nothing better to do with its other cores.
fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(cores).max(min_chunk);
    let work = &work;
    std::thread::scope(|scope| {
        let jobs: Vec<_> = items
            .chunks(chunk)
            .map(|c| scope.spawn(move || work(c)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("a replay worker does not panic"))
            .collect()
    })
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

    /// A log registering `names` in order, each at its registry time.
    fn log_of(names: &[(&str, u64)]) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        names
            .iter()
            .enumerate()
            .map(|(i, (name, time))| {
                let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                let op = Operation::Register(Register {
                    name: Name::parse(name).unwrap(),
                    updating_key: key.verifying_key(),
                    signing_key: key.verifying_key(),
                    valid_from: *time,
                    node_uri: "https://node.example/".into(),
                    redirect_uris: vec![],
                    pow_nonce: [0; 8],
                })
                .sign(&key);
                let entry = LogEntry {
                    seq: i as u64,
                    time: *time,
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

    #[test]
    fn a_log_accepted_under_the_old_skeleton_rules_replays_and_the_new_rules_hold_after() {
        use crate::registry::rules::SKELETON_V2_FROM;
        let before = SKELETON_V2_FROM - 86_400;
        let after = SKELETON_V2_FROM + 60;
        // `google` and `g00gle` were both accepted before the look-alike folding existed.
        let old = log_of(&[("google", before), ("g00gle", before + 1)]);
        for batch in [true, false] {
            let r = run(old.clone(), batch).unwrap();
            assert_eq!(r.touched.len(), 2);
        }
        // Under the new rules, a third look-alike of either is refused, and so is a look-alike
        // registered after the change…
        let refused = log_of(&[
            ("google", before),
            ("g00gle", before + 1),
            ("go0gle", after),
        ]);
        for batch in [true, false] {
            match run(refused.clone(), batch) {
                Err(ReplayError::Forged(reason, _)) => {
                    assert!(reason.starts_with("forged entry 2:"), "{reason}")
                }
                other => panic!("expected entry 2 refused, got {other:?}"),
            }
        }
        // …while under the old rules a true UTS #39 confusable was refused then too.
        let rn = log_of(&[("modem", before), ("rnodem", before + 1)]);
        assert!(matches!(run(rn, false), Err(ReplayError::Forged(..))));
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

    /// An entry signed with R the identity and S = k·a: `[s]B − [k]A` is then R, so
    /// `ed25519_dalek::verify_batch` accepts it, while `verify_strict` (the registry's own
    /// check) refuses a small-order R. Replay refuses it the same way, batched or not.
    #[test]
    fn a_signature_only_a_batch_would_accept_is_refused_batched_or_not() {
        let mut entries = log(200, None);
        let entry = LogEntry::decode(&entries[150]).unwrap();
        let op = SignedOp::decode(&entry.op).unwrap();
        let key = SigningKey::from_bytes(&[151; 32]);
        let identity = curve25519_dalek::constants::EIGHT_TORSION[0]
            .compress()
            .to_bytes();
        let signature = strict_batch::forge::sign_with_r_bytes(
            &key,
            &op.signed_message(),
            curve25519_dalek::scalar::Scalar::ZERO,
            identity,
        );
        assert!(ed25519_dalek::verify_batch(
            &[op.signed_message().as_slice()],
            &[signature],
            &[key.verifying_key()]
        )
        .is_ok());
        assert!(key
            .verifying_key()
            .verify_strict(&op.signed_message(), &signature)
            .is_err());
        entries[150] = LogEntry {
            op: crate::cbor::envelope(&op.payload, &signature.to_bytes()),
            ..entry
        }
        .encode();
        // Re-chain the entries after it.
        for i in 151..200 {
            let prev = entry_hash(&entries[i - 1]);
            let e = LogEntry::decode(&entries[i]).unwrap();
            entries[i] = LogEntry {
                prev_hash: prev,
                ..e
            }
            .encode();
        }
        for batch in [true, false] {
            match run(entries.clone(), batch) {
                Err(ReplayError::Forged(reason, _)) => {
                    assert!(reason.starts_with("forged entry 150:"), "{reason}")
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
