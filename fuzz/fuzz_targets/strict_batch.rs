//! Differential: `strict_batch` against `verify_strict`, one signature at a time, on batches of
//! adversarial signatures. Any disagreement is a crash.
//!
//! Each input builds one to eight signatures, each by one of these recipes: honest; R shifted by
//! a small-order point with S fitted to it (what the key holder can make); R any of the
//! fourteen small-order encodings with S fitted to it; S + ℓ; 64 raw bytes; one bit flipped;
//! R's sign bit flipped with S fitted; a signature on another message. Keys are strong ones, or
//! mixed-order and small-order ones, which must never be admitted to a batch, or those of the
//! published edge-case vectors ("Taming the many EdDSAs"), as they are or with a bit flipped.
#![no_main]

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use strict_batch::{verify_all, verify_each, Item, StrongKey};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = self.byte();
        }
        out
    }
}

/// The eight small-order points' encodings and six non-canonical encodings of small-order
/// points.
fn small_order_encoding(i: u8) -> [u8; 32] {
    let i = i % 14;
    if i < 8 {
        return EIGHT_TORSION[i as usize].compress().to_bytes();
    }
    let mut y = [0u8; 32];
    match i {
        8 | 9 => y[0] = 1,
        10 | 11 => {
            y = [0xff; 32];
            y[0] = 0xed;
            y[31] = 0x7f;
        }
        _ => {
            y = [0xff; 32];
            y[0] = 0xee;
            y[31] = 0x7f;
        }
    }
    if i % 2 == 1 {
        y[31] |= 0x80;
    }
    y
}

type Case = ([u8; 32], Vec<u8>, [u8; 64]);

/// "Taming the many EdDSAs" (ed25519-speccheck), as committed in data/vectors.
fn speccheck() -> &'static [Case] {
    static CASES: std::sync::OnceLock<Vec<Case>> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let text = include_str!("../../data/vectors/ed25519-speccheck.json");
        let value: serde_json::Value = serde_json::from_str(text).expect("vectors parse");
        let hex = |v: &serde_json::Value| hex::decode(v.as_str().expect("hex")).expect("hex");
        value
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| {
                let key = hex(&c["pub_key"]).try_into().expect("32 bytes");
                let signature = hex(&c["signature"]).try_into().expect("64 bytes");
                (key, hex(&c["message"]), signature)
            })
            .collect()
    })
}

const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn signature(input: &mut Input<'_>, key: &SigningKey, message: &[u8]) -> Signature {
    let recipe = input.byte() % 8;
    let r = Scalar::from_bytes_mod_order(input.bytes::<32>());
    match recipe {
        0 => key.sign(message),
        1 => {
            let t = EIGHT_TORSION[(input.byte() % 8) as usize];
            strict_batch::forge::sign_with_r_bytes(
                key,
                message,
                r,
                (ED25519_BASEPOINT_POINT * r + t).compress().to_bytes(),
            )
        }
        2 => strict_batch::forge::sign_with_r_bytes(
            key,
            message,
            Scalar::ZERO,
            small_order_encoding(input.byte()),
        ),
        3 => {
            let mut bytes = key.sign(message).to_bytes();
            let mut carry = 0u16;
            for (i, b) in ELL.iter().enumerate() {
                let sum = bytes[32 + i] as u16 + *b as u16 + carry;
                bytes[32 + i] = sum as u8;
                carry = sum >> 8;
            }
            Signature::from_bytes(&bytes)
        }
        4 => Signature::from_bytes(&input.bytes::<64>()),
        5 => {
            let mut bytes = key.sign(message).to_bytes();
            let bit = input.byte() as usize;
            bytes[bit / 8 % 64] ^= 1 << (bit % 8);
            Signature::from_bytes(&bytes)
        }
        6 => {
            let mut r_bytes = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
            r_bytes[31] ^= 0x80;
            strict_batch::forge::sign_with_r_bytes(key, message, r, r_bytes)
        }
        _ => key.sign(b"another message"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let signers: Vec<SigningKey> = (1..=3u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let n = 1 + input.byte() as usize % 8;
    let mut cases: Vec<(VerifyingKey, Vec<u8>, Signature)> = Vec::with_capacity(n);
    for _ in 0..n {
        let choice = input.byte();
        let len = input.byte() as usize % 24;
        let message: Vec<u8> = (0..len).map(|_| input.byte()).collect();
        let signer = &signers[choice as usize % 3];
        if choice >> 6 == 3 {
            // A published edge case, as it is or with one bit flipped.
            let (key, message, mut bytes) = speccheck()[choice as usize % 12].clone();
            let flip = input.byte();
            if flip & 1 == 1 {
                bytes[(flip as usize >> 1) % 64] ^= 1 << (flip % 8);
            }
            if let Ok(key) = VerifyingKey::from_bytes(&key) {
                cases.push((key, message, Signature::from_bytes(&bytes)));
            }
            continue;
        }
        let signature = signature(&mut input, signer, &message);
        let key = match choice >> 6 {
            // A key with a small-order component, or a small-order key.
            1 => {
                let t = EIGHT_TORSION[1 + (choice as usize % 7)];
                let mixed = (signer.verifying_key().to_edwards() + t)
                    .compress()
                    .to_bytes();
                VerifyingKey::from_bytes(&mixed).expect("a sum of points decodes")
            }
            2 => match VerifyingKey::from_bytes(&small_order_encoding(choice)) {
                Ok(k) => k,
                Err(_) => signer.verifying_key(),
            },
            _ => signer.verifying_key(),
        };
        cases.push((key, message, signature));
    }
    let strong: Vec<Option<StrongKey>> =
        cases.iter().map(|(k, _, _)| StrongKey::check(k)).collect();
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for ((key, message, signature), strong) in cases.iter().zip(&strong) {
        let strict = key.verify_strict(message, signature).is_ok();
        match strong {
            Some(strong) => {
                items.push(Item {
                    key: strong,
                    message,
                    signature,
                });
                expected.push(strict);
            }
            // Only strong keys may batch: a mixed-order or small-order key must be refused.
            None => assert!(
                signers.iter().all(|s| s.verifying_key() != *key),
                "a generated key was refused as weak"
            ),
        }
    }
    assert_eq!(
        verify_each(&items),
        expected,
        "batch and verify_strict disagree"
    );
    assert_eq!(verify_all(&items), expected.iter().all(|&v| v));
});
