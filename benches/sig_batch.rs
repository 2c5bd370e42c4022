//! `sig_batch`: what checking signatures in batches costs per signature, against one
//! `verify_strict` in the same run.
//!
//! - `verify_strict`: one signature, the baseline.
//! - `dalek_verify_batch/N`: `ed25519_dalek::verify_batch` over N signatures (not the same
//!   predicate as `verify_strict`: see `src/strict_batch.rs`), the gain batching promises.
//! - `strict_batch/N`: `strict_batch::verify_each` over N signatures, whose answers are exactly
//!   `verify_strict`'s.
//! - `prime_order_test`: the part of `strict_batch` that `verify_batch` does not do, the test
//!   that R has no small-order component (a multiplication by ℓ), measured on a key.
//! - `decompress`: decoding a point, which both batches do for every R.
//!
//! Throughput is per signature, so the ratios read directly.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use strict_batch::{verify_each, Item, StrongKey};

fn bench(c: &mut Criterion) {
    let n_max = 64;
    let signers: Vec<SigningKey> = (0..n_max)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    // A carte's signed message is about 120 bytes.
    let messages: Vec<Vec<u8>> = (0..n_max)
        .map(|i| format!("grant-node carte v1 {i:0>100}").into_bytes())
        .collect();
    let signatures: Vec<Signature> = signers
        .iter()
        .zip(&messages)
        .map(|(k, m)| k.sign(m))
        .collect();
    let keys: Vec<VerifyingKey> = signers.iter().map(SigningKey::verifying_key).collect();
    let strong: Vec<StrongKey> = keys
        .iter()
        .map(|k| StrongKey::check(k).expect("strong"))
        .collect();

    let mut group = c.benchmark_group("sig_batch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            keys[0]
                .verify_strict(black_box(&messages[0]), black_box(&signatures[0]))
                .expect("verifies")
        })
    });
    group.bench_function("prime_order_test", |b| {
        b.iter(|| StrongKey::check(black_box(&keys[1])).expect("strong"))
    });
    group.bench_function("decompress", |b| {
        let r = CompressedEdwardsY(*signatures[2].r_bytes());
        b.iter(|| black_box(r).decompress().expect("decodes"))
    });
    let sizes: &[usize] = if common::full() { &[1, 8, 64] } else { &[8] };
    for &n in sizes {
        group.throughput(Throughput::Elements(n as u64));
        let refs: Vec<&[u8]> = messages[..n].iter().map(Vec::as_slice).collect();
        group.bench_function(format!("dalek_verify_batch/{n}"), |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(black_box(&refs), &signatures[..n], &keys[..n])
                    .expect("verifies")
            })
        });
        let items: Vec<Item<'_>> = (0..n)
            .map(|i| Item {
                key: &strong[i],
                message: &messages[i],
                signature: &signatures[i],
            })
            .collect();
        group.bench_function(format!("strict_batch/{n}"), |b| {
            b.iter(|| assert!(verify_each(black_box(&items)).iter().all(|&v| v)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
