//! `carte_verify`: the cost of verifying a carte, against its floor in the same run.
//!
//! - `raw_verify_strict`: a bare `VerifyingKey::verify_strict` over the very bytes a carte
//!   signature covers: the floor.
//! - `cold`: the full pure `carte::verify` (base64, CBOR decode, canonical re-encode, claims,
//!   key look-up, signature). The gap to the floor is what grant-node adds; target ≤ 10%.
//! - `node_cold`: `NodeState::verify_carte` with a never-seen carte (cache miss, key from the
//!   mirror's cache).
//! - `node_warm`: the same carte again: the verified-carte cache skips the signature.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use grant_node::carte::codec::{decode, signed_message};
use grant_node::carte::{verify, Carte, Expectations, KeyEntry, KeyTable};
use grant_node::name::Name;
use grant_node::scope::Scope;

const NOW: u64 = 1_800_000_000;

fn accepts(n: &Name) -> bool {
    n.as_str() == "alice"
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let app = Name::parse("photo-app").expect("a valid name");
    let mut table = KeyTable::new();
    table.add(
        app.clone(),
        KeyEntry {
            key: key.verifying_key(),
            valid_from: 0,
            compromised: None,
        },
    );
    let mut carte = Carte::new(app, NOW - 5, NOW + 600, [9; 16]);
    carte.audience = Some(Name::parse("alice").expect("a valid name"));
    carte.admin_scope = Scope::from_bits(0x80000 | 0x100000);
    let wire = carte.sign(&key);
    let expect = Expectations {
        accepts_audience: &accepts,
        peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        skew: 60,
        max_lifetime: 3600,
    };
    verify(&wire, NOW, &expect, &table).expect("the bench carte verifies");
    let decoded = decode(&wire).expect("the bench carte decodes");
    let message = signed_message(&decoded.payload);
    let vk = key.verifying_key();

    let mut group = c.benchmark_group("carte_verify");
    group.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            vk.verify_strict(black_box(&message), black_box(&decoded.signature))
                .expect("verifies")
        })
    });
    group.bench_function("cold", |b| {
        b.iter(|| verify(black_box(&wire), NOW, &expect, &table).expect("verifies"))
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| decode(black_box(&wire)).expect("decodes"))
    });

    let node = common::node();
    let mut i = 0u64;
    group.bench_function("node_cold", |b| {
        b.iter_batched(
            || {
                i += 1;
                node.carte(i, 0x80000)
            },
            |wire| {
                node.runtime
                    .block_on(node.state.verify_carte(&wire, node.peer))
                    .expect("verifies")
            },
            BatchSize::SmallInput,
        )
    });
    let warm = node.carte(u64::MAX, 0x80000);
    group.bench_function("node_warm", |b| {
        b.iter(|| {
            node.runtime
                .block_on(node.state.verify_carte(black_box(&warm), node.peer))
                .expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
