//! A benchmark tool, never a registry mode: writes a signed registry of N names straight into
//! a data directory that `registry-stub --data-dir DIR` then serves.
//!
//! - `gen_registry DIR N`: generate;
//! - `gen_registry --prove DIR N K`: make K map proofs of names drawn from the N, on one
//!   thread, through the store as the registry does (a read transaction each), and print
//!   the rate;
//! - `gen_registry --verify-rate`: this machine's single-core `verify_strict` rate, the
//!   baseline a whole-log sync is compared with.
//!
//! Every entry is real: a `register` operation signed by the name's own key (derived from the
//! name's number, so two runs write the same log but for times), chained to the entry before it,
//! its record made by the registry's own rules, its tree hashes and full tiles stored as the
//! registry stores them; at the end the name map is computed from its leaves and a checkpoint
//! signed with `DIR/registry.key`. A mirror syncing from it checks every signature and rule as
//! it would for a registry that took years to fill. What is skipped is what only a live
//! registry needs: proof of work (difficulty 0 is recorded in each entry, and the rules check
//! the recorded difficulty), a checkpoint per entry, and `synchronous = FULL` while writing.
//!
//! Signing runs on every core but one; the writes run in order on one thread.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use grant_node::keyfile;
use grant_node::name::Name;
use grant_node::registry::log::{entry_hash, LogEntry, GENESIS};
use grant_node::registry::note::{self, Checkpoint};
use grant_node::registry::op::{Operation, Register, SignedOp};
use grant_node::registry::rules::{self, Params};
use grant_node::registry::{map, NameRecord};
use grant_node::store::{self, Local};

/// A chunk of signed operations with their records, or why signing failed.
type Made = anyhow::Result<Vec<(Vec<u8>, NameRecord)>>;

/// Entries per write transaction.
const CHUNK: u64 = 10_000;

/// The key of generated name `i`.
fn key_of(i: u64) -> SigningKey {
    let mut seed = blake3::Hasher::new();
    seed.update(b"gen_registry name key");
    seed.update(&i.to_le_bytes());
    SigningKey::from_bytes(seed.finalize().as_bytes())
}

/// The name numbered `i`.
pub fn name_of(i: u64) -> String {
    format!("n{i}")
}

/// Operation `i`, signed, with the record the rules make of it.
fn make(i: u64, time: u64) -> anyhow::Result<(Vec<u8>, NameRecord)> {
    let key = key_of(i);
    let op = Operation::Register(Register {
        name: Name::parse(&name_of(i)).context("a generated name")?,
        updating_key: key.verifying_key(),
        signing_key: key.verifying_key(),
        valid_from: time - 60,
        node_uri: format!("https://node{}.example/", i % 1000),
        redirect_uris: vec![format!("https://app{i}.example/callback")],
        pow_nonce: [0; 8],
    })
    .sign(&key);
    let signed = SignedOp::decode(&op)?;
    // Signed here a moment ago; the mirror that syncs this log checks every signature.
    let unchecked = Params {
        check_signature: false,
        check_keys: false,
        ..Params::default()
    };
    let record = rules::apply(&signed, time, 0, None, None, unchecked)?;
    Ok((op, record))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--prove", dir, n, k] => prove(Path::new(dir), n.parse()?, k.parse()?),
        ["--verify-rate"] => verify_rate(),
        [dir, n] => generate(Path::new(dir), n.parse().context("N: a number of names")?),
        _ => bail!("usage: gen_registry DIR N | --prove DIR N K | --verify-rate"),
    }
}

fn prove(dir: &Path, n: u64, k: u64) -> anyhow::Result<()> {
    let db = Local::open(&dir.join("registry.sqlite3"))?;
    let mut reader = db.reader();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..k {
        // xorshift: names spread over the whole map, as real look-ups are.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tx = reader.transaction()?;
        let proof = store::name_map::prove(&tx, &map::key_of(&name_of(x % n)))?;
        bytes += proof.encode().len();
        tx.commit()?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"proofs_per_second\": {:.0}, \"mean_proof_bytes\": {}}}",
        k as f64 / secs,
        bytes as u64 / k.max(1)
    );
    Ok(())
}

fn verify_rate() -> anyhow::Result<()> {
    let key = key_of(1);
    let message = b"a registry operation of about this length, signed once and checked many times";
    let signature = ed25519_dalek::Signer::sign(&key, message);
    let public = key.verifying_key();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < 2.0 {
        for _ in 0..100 {
            public.verify_strict(message, &signature)?;
        }
        n += 100;
    }
    println!(
        "{{\"verify_strict_per_second\": {:.0}}}",
        n as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn generate(dir: &Path, n: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("registry.sqlite3");
    if path.exists() {
        bail!(
            "{} exists: generate into an empty directory",
            path.display()
        );
    }
    let key = keyfile::load_or_create(&dir.join("registry.key"))?;
    let db = Local::open(&path)?;
    let time = grant_node::clock::Clock::system().now();
    let started = Instant::now();

    let signers = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .saturating_sub(1)
        .max(1) as u64;
    let chunks = n.div_ceil(CHUNK);
    let mut conn = db.lock();
    conn.pragma_update(None, "synchronous", "OFF")?;
    let written = std::thread::scope(|scope| -> anyhow::Result<u64> {
        // Signer t makes chunks t, t + signers, …; the writer takes them back in order.
        let receivers: Vec<mpsc::Receiver<Made>> = (0..signers)
            .map(|t| {
                let (tx, rx) = mpsc::sync_channel(2);
                scope.spawn(move || {
                    let mut c = t;
                    while c < chunks {
                        let made = (c * CHUNK..((c + 1) * CHUNK).min(n))
                            .map(|i| make(i, time))
                            .collect::<anyhow::Result<Vec<_>>>();
                        if tx.send(made).is_err() {
                            return;
                        }
                        c += signers;
                    }
                });
                rx
            })
            .collect();
        let mut seq = 0u64;
        let mut prev = GENESIS;
        for c in 0..chunks {
            let chunk = receivers[(c % signers) as usize]
                .recv()
                .context("a signer stopped")??;
            let tx = conn.transaction()?;
            for (op, record) in chunk {
                let entry = LogEntry {
                    seq,
                    time,
                    prev_hash: prev,
                    difficulty: 0,
                    op,
                }
                .encode();
                let hash = entry_hash(&entry);
                store::registry::append_entry(&tx, seq, &entry, &hash)?;
                store::registry::put_record(&tx, &record)?;
                prev = hash;
                seq += 1;
            }
            tx.commit()?;
            if (c + 1) % 50 == 0 {
                eprintln!("gen_registry: {seq} entries in {:.0?}", started.elapsed());
            }
        }
        Ok(seq)
    })?;
    let entries_done = started.elapsed();
    let tx = conn.transaction()?;
    let map_root = store::name_map::rebuild(&tx)?;
    let checkpoint = Checkpoint {
        origin: note::origin_for(&key.verifying_key()),
        size: written,
        root: store::registry::tree_root(&tx, written)?,
        map_root,
        time,
    };
    store::registry::put_checkpoint(&tx, written, &checkpoint.sign(&key))?;
    tx.commit()?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    drop(conn);
    drop(db);
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "{{\"names\": {written}, \"entries_seconds\": {:.1}, \"total_seconds\": {:.1}, \"db_bytes\": {bytes}}}",
        entries_done.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
