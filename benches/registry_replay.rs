//! `registry`: replaying the registry log, and looking names up in a large mirror.
//!
//! - `replay_single` / `replay_batch`: applying N `register` operations to an empty mirror,
//!   through the rules one entry at a time, or each page of 1000 checked ahead on every core
//!   (signatures with `verify_strict`, new keys' strength) (target: batch at least twice as
//!   fast);
//! - `lookup_miss` / `lookup_hit`: the key a name held at a time, from SQLite or from the
//!   key cache, in a mirror of a million names.
//!
//! Also prints resident memory with the million-name mirror loaded.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use grant_node::carte::{KeyEntry, KeyResolver};
use grant_node::ledger::replay::replay;
use grant_node::ledger::resolver::DbKeys;
use grant_node::name::Name;
use grant_node::registry::log::{entry_hash, LogEntry, GENESIS};
use grant_node::registry::op::{Operation, Register};
use grant_node::registry::rules::Params;
use grant_node::registry::NameRecord;
use grant_node::store::Local;

fn log(n: u64) -> Vec<Vec<u8>> {
    let mut prev = GENESIS;
    (0..n)
        .map(|i| {
            let key = SigningKey::from_bytes(blake3::hash(&i.to_le_bytes()).as_bytes());
            let op = Operation::Register(Register {
                name: Name::parse(&format!("n{i}")).expect("a name"),
                updating_key: key.verifying_key(),
                signing_key: key.verifying_key(),
                valid_from: 1_000,
                node_uri: "https://node.example/".into(),
                redirect_uris: vec![],
                pow_nonce: [0; 8],
            })
            .sign(&key);
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

fn replay_all(entries: &[Vec<u8>], batch: bool) {
    let db = Local::in_memory().expect("db");
    let mut conn = db.lock();
    let tx = conn.transaction().expect("tx");
    let mut head = GENESIS;
    let mut seq = 0;
    for page in entries.chunks(1000) {
        let done =
            replay(&tx, seq, head, page.to_vec(), Params::default(), batch).expect("replays");
        head = done.head;
        seq = done.next_seq;
    }
    tx.commit().expect("commit");
}

fn bench(c: &mut Criterion) {
    let full = common::full();
    let ops = if full { 100_000 } else { 2_000 };
    let entries = log(ops);
    let mut group = c.benchmark_group("registry");
    group.sample_size(10);
    group.bench_function(format!("replay_single_{ops}"), |b| {
        b.iter_batched(
            || (),
            |_| replay_all(&entries, false),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(format!("replay_batch_{ops}"), |b| {
        b.iter_batched(
            || (),
            |_| replay_all(&entries, true),
            BatchSize::PerIteration,
        )
    });
    drop(entries);
    group.finish();

    let names: u64 = if full { 1_000_000 } else { 10_000 };
    let dir = tempfile::tempdir().expect("a folder");
    let db = Local::open(&dir.path().join("mirror.sqlite3")).expect("db");
    {
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let mut conn = db.lock();
        let tx = conn.transaction().expect("tx");
        for i in 0..names {
            let record = NameRecord {
                name: Name::parse(&format!("n{i}")).expect("a name"),
                keys: vec![KeyEntry {
                    key,
                    valid_from: 1_000,
                    compromised: None,
                }],
                updating_key: key,
                node_uri: "https://node.example/".into(),
                redirect_uris: vec![],
                created: 1_000,
                updated: 1_000,
                digest: [0; 32],
            };
            grant_node::store::registry::put_record(&tx, &record).expect("put");
        }
        tx.commit().expect("commit");
    }
    eprintln!(
        "registry: mirror of {names} names loaded; resident memory {:.0} MiB",
        common::rss_mib()
    );
    let keys = DbKeys::new(db.clone());
    let probes: Vec<Name> = (0..4096u64)
        .map(|i| Name::parse(&format!("n{}", (i * 7919) % names)).expect("a name"))
        .collect();
    let mut group = c.benchmark_group("name_lookup");
    let mut i = 0usize;
    group.bench_function(format!("lookup_miss_{names}"), |b| {
        b.iter(|| {
            i += 1;
            let n = &probes[i % probes.len()];
            keys.invalidate(std::iter::once(n));
            black_box(keys.key_at(n, 2_000))
        })
    });
    group.bench_function(format!("lookup_hit_{names}"), |b| {
        b.iter(|| black_box(keys.key_at(&probes[0], 2_000)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
