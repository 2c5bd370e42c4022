//! What an operation may do: the pure state transition of one name's record.
//!
//! [`apply`] takes the operation, the registry time of the entry that carries it, the
//! difficulty in force, the name's current record and the name (if any) already holding the
//! operation's confusable skeleton, and returns the new record or the refusal. The authority
//! calls it before appending; a mirror calls it when replaying, with the entry's own time, so
//! both arrive at the same records.
//!
//! Check order: cheap, state-free checks first (proof of work, limits, URIs), then the
//! signature, then the checks that read state. A refused operation changes nothing.

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;

use super::log::next_digest;
use super::op::{pow_bits, Operation, SignedOp, MAX_REDIRECT_URIS};
use super::{NameRecord, RegistryError};
use crate::carte::KeyEntry;
use crate::name::{Name, SkeletonRules};
use crate::uri::CheckedUri;

/// The registry time from which skeletons fold case and the look-alike pairs
/// ([`SkeletonRules::V2`]; 2026-11-24T13:36:00Z, when that rule was adopted). Entries before it
/// are judged by the rules of their time, so logs that registered `google` and `g00gle` then
/// still replay; a name registered from it on may not look like any name, old or new.
pub const SKELETON_V2_FROM: u64 = 1_795_620_960;

/// The skeleton rules in force at registry `time`.
pub fn skeleton_rules_at(time: u64) -> SkeletonRules {
    if time < SKELETON_V2_FROM {
        SkeletonRules::V1
    } else {
        SkeletonRules::V2
    }
}

/// Registry parameters that affect acceptance.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Allowed clock skew when checking `valid_from` against registry time, seconds.
    pub skew: u64,
    /// Whether to check the signature here. Replay turns this off only after checking the
    /// signatures of a whole batch at once (see the mirror).
    pub check_signature: bool,
    /// Whether to check new keys here ([`check_key`]). Replay turns this off only after
    /// checking every key of a page at once, on every core.
    pub check_keys: bool,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            skew: 300,
            check_signature: true,
            check_keys: true,
        }
    }
}

/// The key an operation must be signed with, given the current record.
pub fn signer_of(op: &Operation, current: Option<&NameRecord>) -> Option<VerifyingKey> {
    match op {
        Operation::Register(r) => Some(r.updating_key),
        Operation::Update(_) => current.map(|c| c.updating_key),
    }
}

/// Applies `signed` at registry `time`, returning the name's new record.
pub fn apply(
    signed: &SignedOp,
    time: u64,
    difficulty: u32,
    current: Option<&NameRecord>,
    skeleton_holder: Option<&Name>,
    params: Params,
) -> Result<NameRecord, RegistryError> {
    match &signed.op {
        Operation::Register(r) => {
            let got = pow_bits(&signed.payload);
            if got < difficulty {
                return Err(RegistryError::PowInsufficient {
                    need: difficulty,
                    got,
                });
            }
            CheckedUri::parse_node(&r.node_uri).map_err(RegistryError::BadUri)?;
            check_redirects(&r.redirect_uris)?;
            if params.check_keys {
                check_key(&r.updating_key)?;
            }
            if params.check_keys {
                check_key(&r.signing_key)?;
            }
            if params.check_signature {
                signed.verify_signature(&r.updating_key)?;
            }
            if current.is_some() {
                return Err(RegistryError::NameTaken);
            }
            if let Some(holder) = skeleton_holder {
                if holder != &r.name {
                    return Err(RegistryError::NameConfusable(holder.to_string()));
                }
            }
            if r.valid_from.saturating_add(params.skew) < time {
                return Err(RegistryError::ValidFromInPast);
            }
            Ok(NameRecord {
                name: r.name.clone(),
                keys: vec![KeyEntry {
                    key: r.signing_key,
                    valid_from: r.valid_from,
                    compromised: None,
                }],
                updating_key: r.updating_key,
                node_uri: r.node_uri.clone(),
                redirect_uris: r.redirect_uris.clone(),
                created: time,
                updated: time,
                digest: next_digest(&[0; 32], &signed.bytes),
            })
        }
        Operation::Update(u) => {
            if let Some(uri) = &u.node_uri {
                CheckedUri::parse_node(uri).map_err(RegistryError::BadUri)?;
            }
            if let Some(uris) = &u.redirect_uris {
                check_redirects(uris)?;
            }
            if let Some((key, _)) = u.new_signing_key.as_ref().filter(|_| params.check_keys) {
                check_key(key)?;
            }
            if let Some(key) = u.new_updating_key.as_ref().filter(|_| params.check_keys) {
                check_key(key)?;
            }
            let current = current.ok_or(RegistryError::NameUnknown)?;
            if params.check_signature {
                signed.verify_signature(&current.updating_key)?;
            }
            if u.previous_digest != current.digest {
                return Err(RegistryError::StaleDigest);
            }
            let mut next = current.clone();
            if let Some(compromised) = u.compromised_key {
                let entry = next.keys.iter_mut().find(|e| e.key == compromised).ok_or(
                    RegistryError::Malformed(
                        "the key to mark compromised is not a key of this name",
                    ),
                )?;
                // From `compromised_since` (never later than now: the updating key cannot
                // keep a stolen key signing), or from its first day; an earlier mark stands.
                let since = match u.compromised_since {
                    Some(t) if t > time.saturating_add(params.skew) => {
                        return Err(RegistryError::Malformed(
                            "compromised_since is in the future",
                        ))
                    }
                    Some(t) => t.max(entry.valid_from),
                    None => entry.valid_from,
                };
                entry.compromised = Some(entry.compromised.map_or(since, |t| t.min(since)));
            }
            if let Some((key, valid_from)) = u.new_signing_key {
                if valid_from.saturating_add(params.skew) < time {
                    return Err(RegistryError::ValidFromInPast);
                }
                if next.keys.iter().any(|e| e.key == key) {
                    return Err(RegistryError::Malformed(
                        "the new signing key was already used by this name",
                    ));
                }
                if next.keys.iter().any(|e| e.valid_from >= valid_from) {
                    return Err(RegistryError::Malformed(
                        "a new signing key must become valid after every earlier key",
                    ));
                }
                next.keys.push(KeyEntry {
                    key,
                    valid_from,
                    compromised: None,
                });
            }
            if let Some(uri) = &u.node_uri {
                next.node_uri = uri.clone();
            }
            if let Some(uris) = &u.redirect_uris {
                next.redirect_uris = uris.clone();
            }
            if let Some(key) = u.new_updating_key {
                next.updating_key = key;
            }
            next.updated = time;
            next.digest = next_digest(&current.digest, &signed.bytes);
            Ok(next)
        }
    }
}

/// Refuses a key that strict Ed25519 verification could never trust: a small-order point
/// (verify_strict refuses every signature under it), a non-canonical encoding (two byte
/// strings for one key), or a point with a torsion component (a "mixed-order" key, under which
/// a signature can verify for some messages and not others, see the strictness vectors).
pub fn check_key(key: &VerifyingKey) -> Result<(), RegistryError> {
    if key.is_weak() {
        return Err(RegistryError::WeakKey("a small-order point"));
    }
    let point = key.to_edwards();
    if !super::points::canonical_point(key.as_bytes()) {
        return Err(RegistryError::WeakKey("a non-canonical encoding"));
    }
    if !super::points::has_prime_order_or_identity(&point) {
        return Err(RegistryError::WeakKey(
            "a point with a small-order component",
        ));
    }
    Ok(())
}

fn check_redirects(uris: &[String]) -> Result<(), RegistryError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(RegistryError::Malformed("at most 16 redirect URIs"));
    }
    let mut seen = HashSet::new();
    for uri in uris {
        CheckedUri::parse_redirect(uri).map_err(RegistryError::BadUri)?;
        if !seen.insert(uri) {
            return Err(RegistryError::Malformed("a redirect URI is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::registry::op::{solve_pow, Register, Update};

    const T: u64 = 1_800_000_000;

    fn keys() -> (SigningKey, SigningKey) {
        (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        )
    }

    fn register(name: &str, difficulty: u32) -> SignedOp {
        let (upd, sign) = keys();
        let mut r = Register {
            name: Name::parse(name).unwrap(),
            updating_key: upd.verifying_key(),
            signing_key: sign.verifying_key(),
            valid_from: T,
            node_uri: "https://node.example/".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            pow_nonce: [0; 8],
        };
        solve_pow(&mut r, difficulty, |_| {});
        SignedOp::decode(&Operation::Register(r).sign(&upd)).unwrap()
    }

    fn registered() -> NameRecord {
        apply(&register("app", 8), T, 8, None, None, Params::default()).unwrap()
    }

    fn update(record: &NameRecord, f: impl FnOnce(&mut Update)) -> SignedOp {
        let mut u = Update {
            name: record.name.clone(),
            previous_digest: record.digest,
            new_signing_key: None,
            node_uri: None,
            redirect_uris: None,
            new_updating_key: None,
            compromised_key: None,
            compromised_since: None,
        };
        f(&mut u);
        SignedOp::decode(&Operation::Update(u).sign(&keys().0)).unwrap()
    }

    #[test]
    fn register_creates_the_record() {
        let rec = registered();
        assert_eq!(rec.keys.len(), 1);
        assert_eq!(rec.created, T);
        assert_eq!(
            rec.redirect_uris,
            vec!["https://app.example/cb".to_string()]
        );
    }

    #[test]
    fn weak_proof_of_work_is_refused() {
        let op = register("app", 0);
        let err = apply(&op, T, 30, None, None, Params::default()).unwrap_err();
        assert_eq!(err.code(), "op.pow-insufficient");
    }

    #[test]
    fn taken_and_confusable_names_are_refused() {
        let rec = registered();
        let err = apply(
            &register("app", 0),
            T,
            0,
            Some(&rec),
            None,
            Params::default(),
        );
        assert_eq!(err.unwrap_err().code(), "name.taken");
        let holder = Name::parse("ape").unwrap();
        let err = apply(
            &register("аре", 0),
            T,
            0,
            None,
            Some(&holder),
            Params::default(),
        );
        assert_eq!(err.unwrap_err().code(), "name.confusable");
    }

    #[test]
    fn back_dated_key_is_refused() {
        let err = apply(
            &register("app", 0),
            T + 10_000,
            0,
            None,
            None,
            Params::default(),
        );
        assert_eq!(err.unwrap_err().code(), "op.valid-from-in-past");
    }

    #[test]
    fn update_needs_the_current_digest_and_updating_key() {
        let rec = registered();
        let op = update(&rec, |u| u.node_uri = Some("https://other.example/".into()));
        let next = apply(&op, T + 5, 0, Some(&rec), None, Params::default()).unwrap();
        assert_eq!(next.node_uri, "https://other.example/");
        // The same update again quotes a digest that is no longer current.
        let err = apply(&op, T + 6, 0, Some(&next), None, Params::default()).unwrap_err();
        assert_eq!(err.code(), "op.stale-digest");
        // Signed by the wrong key.
        let mut u = match &op.op {
            Operation::Update(u) => u.clone(),
            _ => unreachable!(),
        };
        u.previous_digest = next.digest;
        let forged = SignedOp::decode(&Operation::Update(u).sign(&keys().1)).unwrap();
        let err = apply(&forged, T + 6, 0, Some(&next), None, Params::default()).unwrap_err();
        assert_eq!(err.code(), "op.bad-signature");
    }

    #[test]
    fn rotation_and_compromise() {
        let rec = registered();
        let new_key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let op = update(&rec, |u| u.new_signing_key = Some((new_key, T + 100)));
        let next = apply(&op, T + 50, 0, Some(&rec), None, Params::default()).unwrap();
        assert_eq!(next.keys.len(), 2);
        let old = rec.keys[0].key;
        let op = update(&next, |u| u.compromised_key = Some(old));
        let burnt = apply(&op, T + 60, 0, Some(&next), None, Params::default()).unwrap();
        assert_eq!(burnt.keys[0].compromised, Some(burnt.keys[0].valid_from));
        // A key cannot come back, nor be back-dated.
        let op = update(&burnt, |u| u.new_signing_key = Some((old, T + 500)));
        let err = apply(&op, T + 70, 0, Some(&burnt), None, Params::default());
        assert_eq!(err.unwrap_err().code(), "op.malformed");
        let newer = SigningKey::from_bytes(&[4; 32]).verifying_key();
        let op = update(&burnt, |u| u.new_signing_key = Some((newer, T)));
        let err = apply(&op, T + 10_000, 0, Some(&burnt), None, Params::default());
        assert_eq!(err.unwrap_err().code(), "op.valid-from-in-past");
    }

    #[test]
    fn a_key_compromised_from_a_time_keeps_what_it_signed_before() {
        use crate::carte::{key_in_history, KeyAt};
        let rec = registered();
        let old = rec.keys[0].key;
        let op = update(&rec, |u| {
            u.compromised_key = Some(old);
            u.compromised_since = Some(T + 20);
        });
        assert_eq!(
            crate::cbor::decode_lax(&op.payload).map(|v| match v {
                ciborium::Value::Array(f) => f.len(),
                _ => 0,
            }),
            Ok(10),
            "the tenth field is there only when given"
        );
        let burnt = apply(&op, T + 60, 0, Some(&rec), None, Params::default()).unwrap();
        assert_eq!(burnt.keys[0].compromised, Some(T + 20));
        assert_eq!(key_in_history(&burnt.keys, T + 19), KeyAt::Valid(old));
        assert_eq!(key_in_history(&burnt.keys, T + 20), KeyAt::Compromised);
        // A later mark never moves the time forward; an earlier one moves it back.
        let later = update(&burnt, |u| {
            u.compromised_key = Some(old);
            u.compromised_since = Some(T + 40);
        });
        let still = apply(&later, T + 61, 0, Some(&burnt), None, Params::default()).unwrap();
        assert_eq!(still.keys[0].compromised, Some(T + 20));
        let earlier = update(&still, |u| {
            u.compromised_key = Some(old);
            u.compromised_since = Some(T - 1_000);
        });
        let all = apply(&earlier, T + 62, 0, Some(&still), None, Params::default()).unwrap();
        assert_eq!(
            all.keys[0].compromised,
            Some(T),
            "clamped to the key's first day"
        );
        // Not from the future: the updating key cannot keep a stolen key signing.
        let future = update(&rec, |u| {
            u.compromised_key = Some(old);
            u.compromised_since = Some(T + 60 + Params::default().skew + 1);
        });
        let err = apply(&future, T + 60, 0, Some(&rec), None, Params::default());
        assert_eq!(err.unwrap_err().code(), "op.malformed");
        // A time with no key to mark is malformed.
        let mut u = match &update(&rec, |u| u.node_uri = Some("https://x.example/".into())).op {
            Operation::Update(u) => u.clone(),
            _ => unreachable!(),
        };
        u.compromised_since = Some(T);
        let err = SignedOp::decode(&Operation::Update(u).sign(&keys().0)).unwrap_err();
        assert_eq!(err.code(), "op.malformed");
        // A whole-key mark is stored as it always was: the map value of a record written
        // before partial marks existed does not change.
        let mut legacy = burnt.clone();
        legacy.keys[0].compromised = Some(0);
        let mut whole = burnt.clone();
        whole.keys[0].compromised = Some(whole.keys[0].valid_from);
        assert_eq!(
            crate::registry::map::value_of(&legacy),
            crate::registry::map::value_of(&whole)
        );
        assert_ne!(
            crate::registry::map::value_of(&burnt),
            crate::registry::map::value_of(&whole)
        );
    }

    #[test]
    fn bad_redirect_uris_are_refused() {
        let rec = registered();
        for bad in ["javascript:alert(1)", "http://evil.example/cb"] {
            let op = update(&rec, |u| u.redirect_uris = Some(vec![bad.into()]));
            let err = apply(&op, T, 0, Some(&rec), None, Params::default()).unwrap_err();
            assert_eq!(err.code(), "op.malformed", "{bad}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("https://a.example/{i}")).collect();
        let op = update(&rec, |u| u.redirect_uris = Some(many));
        let err = apply(&op, T, 0, Some(&rec), None, Params::default()).unwrap_err();
        assert_eq!(err.code(), "op.malformed");
    }
}
