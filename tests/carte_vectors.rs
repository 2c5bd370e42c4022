//! Golden vectors: `data/vectors/cartes.json` pins the carte wire format.
//!
//! `vectors_file_is_what_the_code_generates` regenerates every vector from fixed seeds and
//! compares the result with the committed file byte for byte; `scripts/gen-vectors.sh` rewrites
//! the file (it sets `GRANT_NODE_BLESS=1`). `every_vector_verifies_as_recorded` then reads the
//! file alone, as an independent implementation would, and checks each expected result.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use grant_node::carte::codec::{encode_payload, signed_message, wire};
use grant_node::carte::{
    verify, Carte, Expectations, GrantRequest, KeyEntry, KeyTable, SIGNATURE_PREFIX,
};
use grant_node::name::Name;
use grant_node::scope::Scope;
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/vectors/cartes.json");
const NOW: u64 = 1_800_000_000;
const ROTATION: u64 = NOW - 1000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = n.wrapping_mul(31).wrapping_add(i as u8);
    }
    s
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

struct Keys {
    app_old: SigningKey,
    app_new: SigningKey,
    burnt: SigningKey,
    late: SigningKey,
    stranger: SigningKey,
}

fn keys() -> Keys {
    Keys {
        app_old: SigningKey::from_bytes(&seed(1)),
        app_new: SigningKey::from_bytes(&seed(2)),
        burnt: SigningKey::from_bytes(&seed(3)),
        late: SigningKey::from_bytes(&seed(4)),
        stranger: SigningKey::from_bytes(&seed(5)),
    }
}

/// A carte from `owner`, addressed to alice with view-profile, valid around NOW.
fn base(owner: &str, nonce: u8) -> Carte {
    let mut c = Carte::new(name(owner), NOW - 30, NOW + 570, [nonce; 16]);
    c.audience = Some(name("alice"));
    c.admin_scope = Scope::from_bits(0x80000);
    c
}

fn vector(desc: &str, wire_form: String, expect: Value) -> Value {
    let payload = URL_SAFE_NO_PAD
        .decode(&wire_form)
        .ok()
        .and_then(|b| ciborium::de::from_reader::<ciborium::Value, _>(b.as_slice()).ok())
        .and_then(|v| match v {
            ciborium::Value::Array(items) => match items.first() {
                Some(ciborium::Value::Bytes(p)) => Some(hex(p)),
                _ => None,
            },
            _ => None,
        });
    json!({ "description": desc, "carte": wire_form, "payload_hex": payload, "expect": expect })
}

fn ok(principal: &str) -> Value {
    json!({ "principal": principal })
}

fn err(code: &str) -> Value {
    json!({ "error": code })
}

/// Re-signs a hand-altered payload so that only the encoding, not the signature, is at fault.
fn resign(payload: Vec<u8>, key: &SigningKey) -> String {
    wire(&payload, &key.sign(&signed_message(&payload)))
}

fn generate() -> String {
    let k = keys();
    let key_entry = |name: &str, key: &SigningKey, valid_from: u64, compromised: bool| {
        json!({ "name": name, "public_key": hex(key.verifying_key().as_bytes()),
                "valid_from": valid_from, "compromised": compromised, "seed": hex(&key.to_bytes()) })
    };
    let mut registry = vec![
        key_entry("app", &k.app_old, NOW - 100_000, false),
        key_entry("app", &k.app_new, ROTATION, false),
        key_entry("burnt", &k.burnt, NOW - 100_000, true),
        key_entry("late", &k.late, NOW + 10_000, false),
    ];
    // Keys no registry accepts (`op.weak-key`), listed so that the strictness vectors can
    // show what a verifier does if one reaches it anyway. No seed: nobody holds their secret.
    for (name, key) in weak_keys() {
        registry.push(json!({ "name": name, "public_key": hex(&key),
            "valid_from": NOW - 100_000, "compromised": false }));
    }

    let mut v = Vec::new();

    let mut minimal = Carte::new(name("app"), NOW - 30, NOW + 570, [1; 16]);
    minimal.client_scope = Scope::from_bits(0x8000000);
    v.push(vector(
        "minimal: no audience, client scope only",
        minimal.sign(&k.app_new),
        ok("app"),
    ));

    let mut full = base("app", 2);
    full.subject = Some(name("bob"));
    full.client_scope = Scope::from_bits(0x8000000);
    full.admin_scope = Scope::from_bits(0x80000 | (1 << 40));
    full.addresses = Some(vec![
        "127.0.0.1".parse::<IpAddr>().unwrap(),
        "::1".parse::<IpAddr>().unwrap(),
    ]);
    full.request = Some(GrantRequest {
        scope: Scope::from_bits(0x80000 | 0x100000),
        redirect_uri: "https://app.example/callback?x=1".into(),
        state: "st\u{e4}te-42".into(),
    });
    v.push(vector(
        "every optional field set",
        full.sign(&k.app_new),
        ok("app"),
    ));

    let mut old = base("app", 3);
    old.beginning = ROTATION - 10;
    old.deadline = ROTATION + 1000;
    v.push(vector(
        "signed by the previous key, beginning before the rotation",
        old.sign(&k.app_old),
        ok("app"),
    ));

    let good = base("app", 4).sign(&k.app_new);
    let mut bytes = URL_SAFE_NO_PAD.decode(&good).unwrap();
    bytes.push(0x00);
    v.push(vector(
        "a trailing byte after the envelope",
        URL_SAFE_NO_PAD.encode(&bytes),
        err("carte.malformed"),
    ));

    // beginning = NOW - 30 = 1799999970 is 0x1a 6b49d1e2; as an 8-byte integer it is not shortest.
    let payload = encode_payload(&base("app", 5));
    let short = {
        let mut s = vec![0x1a];
        s.extend_from_slice(&((NOW - 30) as u32).to_be_bytes());
        s
    };
    let at = payload.windows(5).position(|w| w == short).unwrap();
    let mut long_payload = payload[..at].to_vec();
    long_payload.push(0x1b);
    long_payload.extend_from_slice(&(NOW - 30).to_be_bytes());
    long_payload.extend_from_slice(&payload[at + 5..]);
    v.push(vector(
        "beginning encoded as an 8-byte integer (not shortest form), correctly signed",
        resign(long_payload, &k.app_new),
        err("carte.malformed"),
    ));

    v.push(vector(
        "not base64url",
        "not a carte!".into(),
        err("carte.malformed"),
    ));

    let mut v2 = encode_payload(&base("app", 6));
    // The payload opens with 0x8c (array of 12) then 0x01 (version 1).
    assert_eq!(&v2[..2], &[0x8c, 0x01]);
    v2[1] = 0x02;
    v.push(vector(
        "version 2",
        resign(v2, &k.app_new),
        err("carte.unsupported-version"),
    ));

    let mut early = base("app", 7);
    early.beginning = NOW + 61;
    early.deadline = NOW + 661;
    v.push(vector(
        "beginning more than the skew ahead",
        early.sign(&k.app_new),
        err("carte.not-begun"),
    ));

    let mut late = base("app", 8);
    late.beginning = NOW - 700;
    late.deadline = NOW - 61;
    v.push(vector(
        "deadline more than the skew behind",
        late.sign(&k.app_new),
        err("carte.expired"),
    ));

    let mut long = base("app", 9);
    long.deadline = long.beginning + 3601;
    v.push(vector(
        "lifetime one second over an hour",
        long.sign(&k.app_new),
        err("carte.lifetime-too-long"),
    ));

    let mut other = base("app", 10);
    other.audience = Some(name("mallory"));
    v.push(vector(
        "addressed to another node",
        other.sign(&k.app_new),
        err("carte.wrong-node"),
    ));

    let mut nowhere = base("app", 11);
    nowhere.audience = None;
    v.push(vector(
        "admin scope without an audience",
        nowhere.sign(&k.app_new),
        err("carte.wrong-node"),
    ));

    let mut pinned = base("app", 12);
    pinned.addresses = Some(vec!["192.0.2.7".parse().unwrap()]);
    v.push(vector(
        "pinned to an address that is not the peer",
        pinned.sign(&k.app_new),
        err("carte.address-mismatch"),
    ));

    v.push(vector(
        "signed by an unregistered name",
        base("stranger", 13).sign(&k.stranger),
        err("carte.unknown-signer"),
    ));

    v.push(vector(
        "signed by a key marked compromised",
        base("burnt", 14).sign(&k.burnt),
        err("carte.key-not-valid"),
    ));

    v.push(vector(
        "beginning before the name's first key",
        base("late", 15).sign(&k.late),
        err("carte.key-not-valid"),
    ));

    v.push(vector(
        "signed by a key the name never held",
        base("app", 16).sign(&k.stranger),
        err("carte.bad-signature"),
    ));

    v.push(vector(
        "signed by the superseded key, beginning after the rotation",
        base("app", 17).sign(&k.app_old),
        err("carte.bad-signature"),
    ));

    strictness_vectors(&mut v);

    let doc = json!({
        "format": "grant-node carte vectors, wire format version 1",
        "signature_prefix_hex": hex(SIGNATURE_PREFIX),
        "now": NOW,
        "expectations": {
            "audiences": ["alice"],
            "peer": "127.0.0.1",
            "skew": 60,
            "max_lifetime": 3600,
        },
        "registry": registry,
        "vectors": v,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap();
    text.push('\n');
    text
}

/// The order-8 point of the curve's torsion subgroup used below.
fn torsion8() -> curve25519_dalek::EdwardsPoint {
    curve25519_dalek::constants::EIGHT_TORSION[1]
}

/// The secret scalar behind the "mixed" key's large-order part.
fn mixed_secret() -> curve25519_dalek::Scalar {
    curve25519_dalek::Scalar::from_bytes_mod_order(seed(9))
}

/// Public keys that verify_strict or the registry must not trust: name and encoding.
fn weak_keys() -> Vec<(&'static str, [u8; 32])> {
    use curve25519_dalek::EdwardsPoint;
    let identity = EdwardsPoint::default().compress().to_bytes();
    // y = 1 spelled as p + 1: 2^255 - 19 + 1, little-endian.
    let mut identity_long = [0xffu8; 32];
    identity_long[0] = 0xee;
    identity_long[31] = 0x7f;
    let mixed = (EdwardsPoint::mul_base(&mixed_secret()) + torsion8())
        .compress()
        .to_bytes();
    vec![
        ("small-identity", identity),
        ("small-order8", torsion8().compress().to_bytes()),
        ("small-noncanonical", identity_long),
        ("mixed", mixed),
    ]
}

/// `k = SHA-512(R ‖ A ‖ message) mod ℓ`, as RFC 8032 defines it.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> curve25519_dalek::Scalar {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A carte with a hand-made signature `(r, s)`.
fn with_signature(payload: &[u8], r: [u8; 32], s: [u8; 32]) -> String {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(&s);
    wire(payload, &ed25519_dalek::Signature::from_bytes(&sig))
}

/// The edge cases that tell `verify_strict` from plain RFC 8032 verification. Each signature
/// here is one that some common verifier accepts; a conforming implementation must give the
/// recorded answer. (The golden vectors of "Taming the many EdDSAs" cover the same classes.)
fn strictness_vectors(v: &mut Vec<Value>) {
    use curve25519_dalek::{EdwardsPoint, Scalar};
    let weak: std::collections::HashMap<_, _> = weak_keys().into_iter().collect();
    let app = SigningKey::from_bytes(&seed(2)); // app's current key
    let app_a = app.verifying_key().to_bytes();
    let app_secret = app.to_scalar();

    // A = identity: every k·A vanishes, so (R = s·B, s) satisfies s·B = R + k·A for any message.
    let payload = encode_payload(&base("small-identity", 20));
    let s = Scalar::from_bytes_mod_order(seed(20));
    let r = EdwardsPoint::mul_base(&s).compress().to_bytes();
    v.push(vector(
        "small-order public key (the identity): the cofactorless equation holds for any message; verify_strict refuses weak keys",
        with_signature(&payload, r, s.to_bytes()),
        err("carte.bad-signature"),
    ));

    // A of order 8: pick the nonce until 8 | k, then k·A vanishes and (s·B, s) verifies.
    let a8 = weak["small-order8"];
    let mut n = 21u8;
    let (payload, r, s) = loop {
        let payload = encode_payload(&base("small-order8", n));
        let s = Scalar::from_bytes_mod_order(seed(n));
        let r = EdwardsPoint::mul_base(&s).compress().to_bytes();
        let k = challenge(&r, &a8, &signed_message(&payload));
        if (k * torsion8()) == EdwardsPoint::default() {
            break (payload, r, s);
        }
        n += 1;
    };
    v.push(vector(
        "small-order public key (a point of order 8), with a signature the cofactorless equation accepts",
        with_signature(&payload, r, s.to_bytes()),
        err("carte.bad-signature"),
    ));

    // A = identity spelled non-canonically (y = p + 1).
    let payload = encode_payload(&base("small-noncanonical", 40));
    let s = Scalar::from_bytes_mod_order(seed(40));
    let r = EdwardsPoint::mul_base(&s).compress().to_bytes();
    v.push(vector(
        "non-canonical encoding of the public key (the identity as y = p + 1), with a signature the cofactorless equation accepts",
        with_signature(&payload, r, s.to_bytes()),
        err("carte.bad-signature"),
    ));

    // R = identity: s = k·a satisfies s·B = R + k·A.
    let payload = encode_payload(&base("app", 41));
    let r = EdwardsPoint::default().compress().to_bytes();
    let k = challenge(&r, &app_a, &signed_message(&payload));
    v.push(vector(
        "small-order R (the identity) with s = k·a: the cofactorless equation holds; verify_strict refuses small-order R",
        with_signature(&payload, r, (k * app_secret).to_bytes()),
        err("carte.bad-signature"),
    ));

    // R of order 8 with s = k·a: only a cofactored verifier (8·s·B = 8·R + 8·k·A) accepts.
    let payload = encode_payload(&base("app", 42));
    let r = torsion8().compress().to_bytes();
    let k = challenge(&r, &app_a, &signed_message(&payload));
    v.push(vector(
        "small-order R (order 8) with s = k·a: a cofactored verifier accepts, verify_strict refuses",
        with_signature(&payload, r, (k * app_secret).to_bytes()),
        err("carte.bad-signature"),
    ));

    // A valid signature, then s + ℓ: the same residue, so a verifier that reduces s accepts.
    let payload = encode_payload(&base("app", 43));
    let good = app.sign(&signed_message(&payload)).to_bytes();
    let mut r = [0u8; 32];
    r.copy_from_slice(&good[..32]);
    let s = {
        // s + ℓ, little-endian, with carries; s < ℓ < 2^253, so it fits in 256 bits.
        const ELL: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = good[32 + i] as u16 + ELL[i] as u16 + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        out
    };
    v.push(vector(
        "non-canonical S (s + ℓ) of a valid signature: refused, or signatures would be malleable",
        with_signature(&payload, r, s),
        err("carte.bad-signature"),
    ));

    // Mixed-order R: a valid (R, s) with R moved by a torsion point.
    let payload = encode_payload(&base("app", 44));
    let good = app.sign(&signed_message(&payload)).to_bytes();
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&good[..32]);
    let moved = (curve25519_dalek::edwards::CompressedEdwardsY(r_bytes)
        .decompress()
        .unwrap()
        + torsion8())
    .compress()
    .to_bytes();
    let mut s = [0u8; 32];
    s.copy_from_slice(&good[32..]);
    v.push(vector(
        "mixed-order R (a valid R plus a point of order 8): a cofactored verifier accepts, verify_strict's cofactorless equation refuses",
        with_signature(&payload, moved, s),
        err("carte.bad-signature"),
    ));

    // Mixed-order A = a·B + T8: when 8 | k the torsion part vanishes from k·A and an ordinary
    // signature with `a` verifies, under verify_strict too (it refuses only small-order keys,
    // and testing a key for torsion costs a scalar multiplication per check). Such a key never
    // reaches a verifier: the registry refuses it (`op.weak-key`), at registration and at
    // rotation. The vector records what verify_strict does, so that a verifier that refuses
    // it anyway knows it is being stricter, not wrong.
    let mixed_a = weak["mixed"];
    let mut n = 45u8;
    let (payload, r, s) = loop {
        let payload = encode_payload(&base("mixed", n));
        let nonce = Scalar::from_bytes_mod_order(seed(n.wrapping_add(100)));
        let r = EdwardsPoint::mul_base(&nonce).compress().to_bytes();
        let k = challenge(&r, &mixed_a, &signed_message(&payload));
        if (k * torsion8()) == EdwardsPoint::default() {
            break (payload, r, nonce + k * mixed_secret());
        }
        n += 1;
    };
    v.push(vector(
        "mixed-order public key (a·B plus a point of order 8) when 8 divides k: verify_strict accepts; the registry never accepts such a key (op.weak-key)",
        with_signature(&payload, r, s.to_bytes()),
        ok("mixed"),
    ));
}

#[test]
fn vectors_file_is_what_the_code_generates() {
    let generated = generate();
    if std::env::var_os("GRANT_NODE_BLESS").is_some() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(PATH)
        .expect("data/vectors/cartes.json is missing: run scripts/gen-vectors.sh");
    assert!(
        on_disk == generated,
        "data/vectors/cartes.json differs from what the code generates; if the format change \
         is intended, run scripts/gen-vectors.sh and commit the result"
    );
}

#[test]
fn every_vector_verifies_as_recorded() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let mut table = KeyTable::new();
    for entry in doc["registry"].as_array().unwrap() {
        let public: [u8; 32] = unhex(entry["public_key"].as_str().unwrap())
            .try_into()
            .unwrap();
        table.add(
            name(entry["name"].as_str().unwrap()),
            KeyEntry {
                key: VerifyingKey::from_bytes(&public).unwrap(),
                valid_from: entry["valid_from"].as_u64().unwrap(),
                // The vectors' marks void every signature of the key.
                compromised: entry["compromised"]
                    .as_bool()
                    .unwrap()
                    .then(|| entry["valid_from"].as_u64().unwrap()),
            },
        );
    }
    let e = &doc["expectations"];
    let audiences: Vec<Name> = e["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| name(a.as_str().unwrap()))
        .collect();
    let accepts = move |n: &Name| audiences.contains(n);
    let expect = Expectations {
        accepts_audience: &accepts,
        peer: Some(e["peer"].as_str().unwrap().parse().unwrap()),
        skew: e["skew"].as_u64().unwrap(),
        max_lifetime: e["max_lifetime"].as_u64().unwrap(),
    };
    let now = doc["now"].as_u64().unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    let mut codes_seen = std::collections::BTreeSet::new();
    for v in vectors {
        let got = match verify(v["carte"].as_str().unwrap(), now, &expect, &table) {
            Ok(verified) => ok(verified.principal().as_str()),
            Err(e) => err(e.code()),
        };
        assert_eq!(got, v["expect"], "{}", v["description"]);
        if let Some(code) = v["expect"]["error"].as_str() {
            codes_seen.insert(code.to_owned());
        }
    }
    let every_code = [
        "carte.malformed",
        "carte.unsupported-version",
        "carte.not-begun",
        "carte.expired",
        "carte.lifetime-too-long",
        "carte.wrong-node",
        "carte.address-mismatch",
        "carte.unknown-signer",
        "carte.key-not-valid",
        "carte.bad-signature",
    ];
    for code in every_code {
        assert!(codes_seen.contains(code), "no vector for {code}");
    }
}

/// The strictness vectors are worth having only if a weaker verifier would take them: plain
/// RFC 8032 verification (ed25519-dalek's `verify`, cofactorless, no weak-key checks) accepts
/// the small-order key and small-order R cases that `verify_strict` refuses.
#[test]
fn strictness_vectors_fool_a_plain_verifier() {
    use ed25519_dalek::Verifier;
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let key_of = |owner: &str| -> VerifyingKey {
        let entry = doc["registry"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|e| e["name"] == owner)
            .unwrap();
        VerifyingKey::from_bytes(
            &unhex(entry["public_key"].as_str().unwrap())
                .try_into()
                .unwrap(),
        )
        .unwrap()
    };
    let mut fooled = 0;
    for v in doc["vectors"].as_array().unwrap() {
        let d = v["description"].as_str().unwrap();
        if !(d.starts_with("small-order public key (the identity)")
            || d.starts_with("small-order public key (a point of order 8)")
            || d.starts_with("small-order R (the identity)")
            || d.starts_with("non-canonical encoding of the public key"))
        {
            continue;
        }
        let decoded = grant_node::carte::decode(v["carte"].as_str().unwrap()).unwrap();
        let key = key_of(decoded.carte.owner.as_str());
        let message = signed_message(&decoded.payload);
        assert!(key.verify(&message, &decoded.signature).is_ok(), "{d}");
        assert!(
            key.verify_strict(&message, &decoded.signature).is_err(),
            "{d}"
        );
        fooled += 1;
    }
    assert_eq!(fooled, 4);
}
