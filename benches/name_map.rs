//! `name_map`: the verifiable name map at a million names, as a light client meets it.
//!
//! - `prove`: the registry making one name's proof (cached tree);
//! - `verify_present` / `verify_absent`: a light client checking a proof of a registered name
//!   and of an unregistered one against the map root (SHA-256 along the path);
//! - `light_check`: everything a light client does for one name: the checkpoint note's
//!   registry signature, two witness cosignatures (quorum 2), the map proof, and the record's
//!   value (`LightVerifier::check`);
//! - `verify_strict`: one Ed25519 signature check, the baseline, in the same run.
//!
//! Also prints the time to build the map from a million records, and the proof sizes.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use grant_node::carte::KeyEntry;
use grant_node::name::Name;
use grant_node::registry::light::{LightVerifier, NameProof, NameProofJson};
use grant_node::registry::map::{key_of, value_of, MapProof, NameMap};
use grant_node::registry::note::{cosign, origin_for, Checkpoint, SignedCheckpoint, Witness};
use grant_node::registry::NameRecord;
use sha2::{Digest, Sha256};

mod common;

fn bench(c: &mut Criterion) {
    // A million names under `cargo bench`; a small map when `cargo test` runs this once.
    let names: u32 = if common::full() { 1_000_000 } else { 10_000 };
    let started = Instant::now();
    let mut map = NameMap::new();
    for i in 0..names {
        let value: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
        map.set(key_of(&format!("name{i}")), value);
    }
    let root = map.root();
    eprintln!(
        "name_map: {} names, built and hashed in {:.1?}",
        map.len(),
        started.elapsed()
    );
    let present = key_of("name1234");
    let absent = key_of("nobody-at-all");
    let p = map.prove(&present);
    let a = map.prove(&absent);
    let (p_bytes, a_bytes) = (p.encode(), a.encode());
    eprintln!(
        "name_map: proof of a registered name {} bytes ({} levels), of an absent one {} bytes ({} levels)",
        p_bytes.len(),
        p.siblings.len(),
        a_bytes.len(),
        a.siblings.len()
    );
    let mut worst = 0;
    for i in (0..names).step_by(names as usize / 100 + 1) {
        worst = worst.max(map.prove(&key_of(&format!("name{i}"))).encode().len());
    }
    eprintln!("name_map: largest proof among 100 sampled names: {worst} bytes");
    assert!(MapProof::decode(&p_bytes)
        .unwrap()
        .verify(&root, &present)
        .unwrap()
        .is_some());
    assert!(MapProof::decode(&a_bytes)
        .unwrap()
        .verify(&root, &absent)
        .unwrap()
        .is_none());

    // A whole look-up answer for one registered name, as the registry serves it.
    let registry = SigningKey::from_bytes(&[1; 32]);
    let owner = SigningKey::from_bytes(&[2; 32]);
    let record = NameRecord {
        name: Name::parse("name1234").unwrap(),
        keys: vec![KeyEntry {
            key: owner.verifying_key(),
            valid_from: 1,
            compromised: None,
        }],
        updating_key: owner.verifying_key(),
        node_uri: "https://node.example/".into(),
        redirect_uris: vec![],
        created: 1,
        updated: 1,
        digest: [3; 32],
    };
    map.set(present, value_of(&record));
    let checkpoint = Checkpoint {
        origin: origin_for(&registry.verifying_key()),
        size: u64::from(names),
        root: [4; 32],
        map_root: map.root(),
        time: 1,
    };
    let w1 = SigningKey::from_bytes(&[5; 32]);
    let w2 = SigningKey::from_bytes(&[6; 32]);
    let signed =
        SignedCheckpoint::verify(&checkpoint.sign(&registry), &registry.verifying_key()).unwrap();
    let signed = signed
        .with_cosignatures(cosign("w1.example", &w1, &signed.text, 2).as_bytes())
        .unwrap();
    let signed = signed
        .with_cosignatures(cosign("w2.example", &w2, &signed.text, 2).as_bytes())
        .unwrap();
    let answer = NameProofJson::from(&NameProof {
        record: Some(record.clone()),
        proof: map.prove(&present),
        checkpoint: signed,
        consistency: vec![],
    });
    let verifier = LightVerifier {
        registry_key: registry.verifying_key(),
        witnesses: vec![
            Witness::new("w1.example", w1.verifying_key()),
            Witness::new("w2.example", w2.verifying_key()),
        ],
        quorum: 2,
    };
    let wire = serde_json::to_vec(&answer).unwrap();
    eprintln!(
        "name_map: a whole look-up answer (record, proof, note with two cosignatures) is {} bytes of JSON",
        wire.len()
    );
    assert_eq!(
        verifier.check(&record.name, &answer, None).unwrap().0,
        Some(record.clone())
    );

    let mut group = c.benchmark_group("name_map");
    group.bench_function("light_check", |b| {
        b.iter(|| {
            let answer: NameProofJson = serde_json::from_slice(black_box(&wire)).unwrap();
            black_box(verifier.check(&record.name, &answer, None).unwrap())
        })
    });
    group.bench_function("prove", |b| {
        b.iter(|| black_box(map.prove(black_box(&present))))
    });
    group.bench_function("verify_present", |b| {
        b.iter(|| {
            let proof = MapProof::decode(black_box(&p_bytes)).unwrap();
            black_box(proof.verify(&root, &present).unwrap())
        })
    });
    group.bench_function("verify_absent", |b| {
        b.iter(|| {
            let proof = MapProof::decode(black_box(&a_bytes)).unwrap();
            black_box(proof.verify(&root, &absent).unwrap())
        })
    });
    let key = SigningKey::from_bytes(&[7; 32]);
    let msg = b"a checkpoint body of about this size, for the baseline";
    let sig = key.sign(msg);
    let vk = key.verifying_key();
    group.bench_function("verify_strict", |b| {
        b.iter(|| black_box(vk.verify_strict(black_box(msg), &sig).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
