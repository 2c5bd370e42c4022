//! One test per class of signature on which a batch and `verify_strict` could disagree, the
//! published edge-case vectors, and the independence of a verdict from its batch mates.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use ed25519_dalek::{Signer, SigningKey};

use super::*;
use crate::forge::sign_with_r_bytes;

fn signer(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn strong(key: &SigningKey) -> StrongKey {
    StrongKey::check(&key.verifying_key()).expect("a generated key is strong")
}

/// A signature by `key` on `message` whose R is `[r]B + torsion`, S made to fit the R given:
/// what only the key holder can make. With `torsion` the identity, an honest signature.
fn sign_with_r(key: &SigningKey, message: &[u8], r: Scalar, torsion: EdwardsPoint) -> Signature {
    let big_r = (ED25519_BASEPOINT_POINT * r + torsion).compress();
    sign_with_r_bytes(key, message, r, big_r.to_bytes())
}

fn strict(key: &SigningKey, message: &[u8], signature: &Signature) -> bool {
    key.verifying_key()
        .verify_strict(message, signature)
        .is_ok()
}

fn ours_alone(key: &StrongKey, message: &[u8], signature: &Signature) -> bool {
    let item = Item {
        key,
        message,
        signature,
    };
    let each = verify_each(&[item]);
    assert_eq!(
        each[0],
        verify_all(&[item]),
        "verify_each and verify_all agree"
    );
    each[0]
}

#[test]
fn honest_signatures_pass_and_a_bad_one_is_named() {
    let keys: Vec<SigningKey> = (1..=20).map(signer).collect();
    let strong_keys: Vec<StrongKey> = keys.iter().map(strong).collect();
    let messages: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    let mut signatures: Vec<Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let items = |signatures: &[Signature]| -> Vec<bool> {
        let items: Vec<Item<'_>> = (0..20)
            .map(|i| Item {
                key: &strong_keys[i],
                message: &messages[i],
                signature: &signatures[i],
            })
            .collect();
        let each = verify_each(&items);
        assert_eq!(verify_all(&items), each.iter().all(|&v| v));
        each
    };
    assert_eq!(items(&signatures), vec![true; 20]);
    signatures[7] = keys[7].sign(b"another message");
    let mut expected = vec![true; 20];
    expected[7] = false;
    assert_eq!(items(&signatures), expected);
    assert!(verify_each(&[]).is_empty());
    assert!(verify_all(&[]));
}

/// The class `verify_batch` gets wrong: R shifted by a point of order 2, 4 or 8. The key holder
/// makes it (S fits the shifted R); `verify_strict` refuses it; dalek's batch accepts it
/// whenever its coefficient is a multiple of the point's order, and its coefficients come from
/// the signature, so a few messages find one. Ours refuses every one.
#[test]
fn a_torsion_shifted_r_is_refused_where_verify_batch_accepts_it() {
    let key = signer(3);
    let strong_key = strong(&key);
    for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let mut batch_accepted = false;
        for attempt in 0..200u32 {
            let message = format!("torsion {t} attempt {attempt}").into_bytes();
            let r = Scalar::from(1000 + attempt as u64);
            let signature = sign_with_r(&key, &message, r, *torsion);
            assert!(!strict(&key, &message, &signature));
            assert!(
                !ours_alone(&strong_key, &message, &signature),
                "torsion {t}"
            );
            let dalek = ed25519_dalek::verify_batch(
                &[message.as_slice()],
                &[signature],
                &[key.verifying_key()],
            );
            batch_accepted |= dalek.is_ok();
            if batch_accepted && attempt >= 16 {
                break;
            }
        }
        assert!(batch_accepted, "verify_batch never accepted torsion {t}");
    }
}

/// Two signatures each shifted by the point of order 2 cancel in any batch whose coefficients
/// are both odd: a verdict that depended on batch mates. Each is refused whatever shares its
/// batch, and an honest one beside them still passes.
#[test]
fn a_verdict_does_not_depend_on_its_batch_mates() {
    let key = signer(4);
    let strong_key = strong(&key);
    let order_two = EIGHT_TORSION[4];
    let messages: Vec<Vec<u8>> = (0..6).map(|i| format!("mate {i}").into_bytes()).collect();
    let mut signatures: Vec<Signature> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| sign_with_r(&key, m, Scalar::from(77 + i as u64), order_two))
        .collect();
    signatures[5] = key.sign(&messages[5]);
    for n in 1..=6 {
        let items: Vec<Item<'_>> = (0..n)
            .map(|i| Item {
                key: &strong_key,
                message: &messages[i],
                signature: &signatures[i],
            })
            .collect();
        for _ in 0..20 {
            let each = verify_each(&items);
            let expected: Vec<bool> = (0..n).map(|i| i == 5).collect();
            assert_eq!(each, expected, "batch of {n}");
            assert!(!verify_all(&items) || n == 0);
        }
    }
}

/// R of small order: the identity (canonical and every non-canonical encoding) with
/// S = k·a, which makes `[s]B − [k]A` the identity. `verify_strict` refuses it as small-order;
/// dalek's batch accepts it always.
#[test]
fn a_small_order_r_is_refused() {
    let key = signer(5);
    let strong_key = strong(&key);
    let identity = EIGHT_TORSION[0].compress().to_bytes();
    let mut one_negative = identity;
    one_negative[31] |= 0x80;
    let mut p_plus_one = [0xffu8; 32];
    p_plus_one[0] = 0xee;
    p_plus_one[31] = 0x7f;
    let mut p_plus_one_negative = p_plus_one;
    p_plus_one_negative[31] |= 0x80;
    for r_bytes in [identity, one_negative, p_plus_one, p_plus_one_negative] {
        let message = b"small order R";
        let signature = sign_with_r_bytes(&key, message, Scalar::ZERO, r_bytes);
        assert!(!strict(&key, message, &signature));
        assert!(!ours_alone(&strong_key, message, &signature));
        if r_bytes == identity {
            assert!(ed25519_dalek::verify_batch(
                &[message.as_slice()],
                &[signature],
                &[key.verifying_key()]
            )
            .is_ok());
        }
    }
    // Every other small-order R, each with a fitting S.
    for torsion in EIGHT_TORSION.iter().skip(1) {
        let message = b"small order R";
        let signature = sign_with_r(&key, message, Scalar::ZERO, *torsion);
        assert!(!strict(&key, message, &signature));
        assert!(!ours_alone(&strong_key, message, &signature));
    }
}

/// S not reduced (S + ℓ): the same equation, a second encoding. Refused by both.
#[test]
fn a_non_canonical_s_is_refused() {
    let key = signer(6);
    let strong_key = strong(&key);
    let message = b"malleable";
    let good = key.sign(message);
    // ℓ, little-endian.
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s_plus_ell = [0u8; 32];
    let mut carry = 0u16;
    for (i, out) in s_plus_ell.iter_mut().enumerate() {
        let sum = good.s_bytes()[i] as u16 + ell[i] as u16 + carry;
        *out = sum as u8;
        carry = sum >> 8;
    }
    let mut bytes = good.to_bytes();
    bytes[32..].copy_from_slice(&s_plus_ell);
    let malleated = Signature::from_bytes(&bytes);
    assert!(strict(&key, message, &good));
    assert!(!strict(&key, message, &malleated));
    assert!(ours_alone(&strong_key, message, &good));
    assert!(!ours_alone(&strong_key, message, &malleated));
}

/// Keys that may not join a batch: small order, a small-order component, a non-canonical
/// encoding.
#[test]
fn weak_and_mixed_order_keys_are_not_strong() {
    for torsion in EIGHT_TORSION.iter() {
        let small = VerifyingKey::from_bytes(&torsion.compress().to_bytes()).expect("decodes");
        assert!(StrongKey::check(&small).is_none());
    }
    let honest = signer(7).verifying_key();
    assert!(StrongKey::check(&honest).is_some());
    for torsion in EIGHT_TORSION.iter().skip(1) {
        let mixed = (honest.to_edwards() + torsion).compress().to_bytes();
        let mixed = VerifyingKey::from_bytes(&mixed).expect("decodes");
        assert!(StrongKey::check(&mixed).is_none());
    }
    // y = p + 1 decodes to the identity; y = p to a point of order 4.
    let mut p_plus_one = [0xffu8; 32];
    p_plus_one[0] = 0xee;
    p_plus_one[31] = 0x7f;
    if let Ok(k) = VerifyingKey::from_bytes(&p_plus_one) {
        assert!(StrongKey::check(&k).is_none());
    }
}

/// The byte test for canonical encodings agrees with decoding and re-encoding, on every value
/// near 0, 1, p − 1 and p, with both signs.
#[test]
fn the_canonical_encoding_test_agrees_with_decode_and_encode() {
    let mut cases = Vec::new();
    for low in 0u8..=40 {
        let mut small = [0u8; 32];
        small[0] = low;
        cases.push(small);
        let mut near_p = [0xffu8; 32];
        near_p[31] = 0x7f;
        near_p[0] = 0xd0 + low % 0x30;
        cases.push(near_p);
        let mut top = [0xffu8; 32];
        top[31] = 0x7f;
        top[0] = 0xff - low;
        cases.push(top);
    }
    for seed in 1..=50u8 {
        cases.push(signer(seed).verifying_key().to_bytes());
    }
    let mut checked = 0;
    for mut bytes in cases {
        for sign in [0u8, 0x80] {
            bytes[31] = (bytes[31] & 0x7f) | sign;
            if let Some(point) = CompressedEdwardsY(bytes).decompress() {
                checked += 1;
                assert_eq!(
                    canonical_point(&bytes),
                    point.compress().to_bytes() == bytes,
                    "{}",
                    hex::encode(bytes)
                );
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

/// "Taming the many EdDSAs" (ed25519-speccheck): twelve signatures covering small-order and
/// mixed-order keys and R, non-canonical encodings and S ≥ ℓ. Every verdict matches
/// `verify_strict`'s, whether the key is strong enough to batch or not.
#[test]
fn the_speccheck_vectors_get_verify_strict_answers() {
    let text = include_str!("../../../data/vectors/ed25519-speccheck.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(text).expect("vectors parse");
    assert_eq!(cases.len(), 12);
    let mut batched = 0;
    for (i, case) in cases.iter().enumerate() {
        let field = |name: &str| hex::decode(case[name].as_str().expect("hex")).expect("hex");
        let message = field("message");
        let key: [u8; 32] = field("pub_key").try_into().expect("32 bytes");
        let signature: [u8; 64] = field("signature").try_into().expect("64 bytes");
        let signature = Signature::from_bytes(&signature);
        let Ok(key) = VerifyingKey::from_bytes(&key) else {
            continue;
        };
        let expected = key.verify_strict(&message, &signature).is_ok();
        if let Some(strong_key) = StrongKey::check(&key) {
            batched += 1;
            assert_eq!(
                ours_alone(&strong_key, &message, &signature),
                expected,
                "case {i}"
            );
        }
    }
    // Ten of the twelve keys are small-order or mixed-order: those never reach a batch.
    assert_eq!(batched, 2);
}

/// The verdicts recorded for other implementations (the JavaScript client reads the same file)
/// are `verify_strict`'s.
#[test]
fn the_recorded_speccheck_verdicts_are_verify_strict_s() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../../data/vectors/ed25519-speccheck.json"))
            .expect("vectors parse");
    let recorded: serde_json::Value = serde_json::from_str(include_str!(
        "../../../data/vectors/ed25519-speccheck-verify-strict.json"
    ))
    .expect("verdicts parse");
    let verdicts: Vec<bool> = cases
        .iter()
        .map(|case| {
            let field = |name: &str| hex::decode(case[name].as_str().expect("hex")).expect("hex");
            let key: [u8; 32] = field("pub_key").try_into().expect("32 bytes");
            let signature: [u8; 64] = field("signature").try_into().expect("64 bytes");
            VerifyingKey::from_bytes(&key).is_ok_and(|k| {
                k.verify_strict(&field("message"), &Signature::from_bytes(&signature))
                    .is_ok()
            })
        })
        .collect();
    let want: Vec<bool> = recorded["verdicts"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_bool().expect("a boolean"))
        .collect();
    assert_eq!(verdicts, want);
}

/// ZIP-215's set: every pair of the fourteen encodings of small-order points (eight canonical,
/// six not) as A and R, with S = 0. No such A is strong; as R under a strong key, every one is
/// refused, as `verify_strict` refuses it.
#[test]
fn the_zip215_small_order_encodings_are_refused() {
    let encodings = small_order_encodings();
    assert_eq!(encodings.len(), 14);
    let key = signer(9);
    let strong_key = strong(&key);
    for a in &encodings {
        if let Ok(k) = VerifyingKey::from_bytes(a) {
            assert!(StrongKey::check(&k).is_none(), "{}", hex::encode(a));
        }
        for r in &encodings {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(r);
            let signature = Signature::from_bytes(&bytes);
            let message = b"Zcash";
            if let Ok(k) = VerifyingKey::from_bytes(a) {
                assert!(k.verify_strict(message, &signature).is_err());
            }
            assert!(!strict(&key, message, &signature));
            assert!(!ours_alone(&strong_key, message, &signature));
        }
    }
}

/// The eight small-order points' encodings, and the six non-canonical ones that decode to small-
/// order points: y = 1 and y = −1 with the sign bit set, y = p (0) and y = p + 1 (1), either sign.
pub(crate) fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| t.compress().to_bytes())
        .collect();
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut p_plus_one = p;
    p_plus_one[0] = 0xee;
    for y in [one, minus_one] {
        let mut negative = y;
        negative[31] |= 0x80;
        out.push(negative);
    }
    for y in [p, p_plus_one] {
        out.push(y);
        let mut negative = y;
        negative[31] |= 0x80;
        out.push(negative);
    }
    out.sort();
    out.dedup();
    out
}
