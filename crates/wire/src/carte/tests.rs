//! Unit tests of verification: one per error code, in the documented order, plus property
//! tests of the codec and the signature.

use std::net::{IpAddr, Ipv4Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::verify::{DEFAULT_MAX_LIFETIME, DEFAULT_SKEW};
use super::*;

const NOW: u64 = 1_800_000_000;

fn app_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn table() -> KeyTable {
    let mut t = KeyTable::new();
    t.add(
        name("app"),
        KeyEntry {
            key: app_key().verifying_key(),
            valid_from: NOW - 10_000,
            compromised: None,
        },
    );
    t
}

fn accepts_alice(n: &Name) -> bool {
    n.as_str() == "alice"
}

fn expect() -> Expectations<'static> {
    Expectations {
        accepts_audience: &accepts_alice,
        peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        skew: DEFAULT_SKEW,
        max_lifetime: DEFAULT_MAX_LIFETIME,
    }
}

fn good() -> Carte {
    let mut c = Carte::new(name("app"), NOW - 10, NOW + 300, [3; 16]);
    c.audience = Some(name("alice"));
    c.admin_scope = Scope::from_bits(0x80000);
    c
}

fn check(carte: &Carte) -> Result<VerifiedCarte, CarteError> {
    verify(&carte.sign(&app_key()), NOW, &expect(), &table())
}

fn code(carte: &Carte) -> &'static str {
    match check(carte) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn good_carte_names_its_principal() {
    let v = check(&good()).unwrap();
    assert_eq!(v.principal().as_str(), "app");
    assert_eq!(v.carte(), &good());
}

#[test]
fn garbage_is_malformed() {
    let err = verify("%%%", NOW, &expect(), &table()).unwrap_err();
    assert_eq!(err.code(), "carte.malformed");
    let err = verify("", NOW, &expect(), &table()).unwrap_err();
    assert_eq!(err.code(), "carte.malformed");
}

#[test]
fn carte_before_its_beginning_is_not_begun() {
    let mut c = good();
    c.beginning = NOW + DEFAULT_SKEW + 1;
    c.deadline = c.beginning + 60;
    assert_eq!(code(&c), "carte.not-begun");
    c.beginning = NOW + DEFAULT_SKEW;
    assert_eq!(code(&c), "ok", "within the skew it is accepted");
}

#[test]
fn carte_after_its_deadline_is_expired() {
    let mut c = good();
    c.beginning = NOW - 1000;
    c.deadline = NOW - DEFAULT_SKEW - 1;
    assert_eq!(code(&c), "carte.expired");
    c.deadline = NOW - DEFAULT_SKEW;
    assert_eq!(code(&c), "ok", "within the skew it is accepted");
}

#[test]
fn overlong_lifetime_is_refused() {
    let mut c = good();
    c.deadline = c.beginning + DEFAULT_MAX_LIFETIME + 1;
    assert_eq!(code(&c), "carte.lifetime-too-long");
    c.deadline = c.beginning + DEFAULT_MAX_LIFETIME;
    assert_eq!(code(&c), "ok");
}

#[test]
fn carte_for_another_node_is_refused() {
    let mut c = good();
    c.audience = Some(name("bob"));
    assert_eq!(code(&c), "carte.wrong-node");
}

#[test]
fn admin_scope_without_audience_is_refused() {
    let mut c = good();
    c.audience = None;
    assert_eq!(code(&c), "carte.wrong-node");
    c.admin_scope = Scope::NONE;
    c.client_scope = Scope::GRANT;
    assert_eq!(
        code(&c),
        "ok",
        "a client-scope-only carte may omit its audience"
    );
}

#[test]
fn carte_from_an_unlisted_address_is_refused() {
    let mut c = good();
    c.addresses = Some(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]);
    assert_eq!(code(&c), "carte.address-mismatch");
    c.addresses = Some(vec![
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        "::ffff:127.0.0.1".parse().unwrap(),
    ]);
    assert_eq!(
        code(&c),
        "ok",
        "an IPv4-mapped address matches its IPv4 peer"
    );
    let no_peer = Expectations {
        peer: None,
        ..expect()
    };
    let err = verify(&c.sign(&app_key()), NOW, &no_peer, &table()).unwrap_err();
    assert_eq!(
        err,
        CarteError::AddressMismatch,
        "an unknown peer cannot match"
    );
}

#[test]
fn unregistered_signer_is_unknown() {
    let mut c = good();
    c.owner = name("stranger");
    assert_eq!(code(&c), "carte.unknown-signer");
}

#[test]
fn no_key_at_beginning_is_key_not_valid() {
    let mut c = good();
    c.beginning = NOW - 20_000;
    c.deadline = c.beginning + 60;
    let far = Expectations {
        skew: 30_000,
        ..expect()
    };
    let err = verify(&c.sign(&app_key()), NOW, &far, &table()).unwrap_err();
    assert_eq!(err.code(), "carte.key-not-valid");
}

#[test]
fn compromised_key_is_key_not_valid() {
    let mut t = KeyTable::new();
    t.add(
        name("app"),
        KeyEntry {
            key: app_key().verifying_key(),
            valid_from: 0,
            compromised: Some(0),
        },
    );
    let err = verify(&good().sign(&app_key()), NOW, &expect(), &t).unwrap_err();
    assert_eq!(err.code(), "carte.key-not-valid");
}

#[test]
fn rotation_keeps_old_cartes_and_refuses_old_key_after() {
    let new_key = SigningKey::from_bytes(&[12; 32]);
    let mut t = table();
    t.add(
        name("app"),
        KeyEntry {
            key: new_key.verifying_key(),
            valid_from: NOW - 5,
            compromised: None,
        },
    );
    // Old key, beginning before the rotation: still good.
    assert!(verify(&good().sign(&app_key()), NOW, &expect(), &t).is_ok());
    // Old key, beginning after the rotation: the new key is in force, so the signature fails.
    let mut later = good();
    later.beginning = NOW;
    let err = verify(&later.sign(&app_key()), NOW, &expect(), &t).unwrap_err();
    assert_eq!(err.code(), "carte.bad-signature");
    assert!(verify(&later.sign(&new_key), NOW, &expect(), &t).is_ok());
}

#[test]
fn wrong_key_is_bad_signature() {
    let other = SigningKey::from_bytes(&[99; 32]);
    let err = verify(&good().sign(&other), NOW, &expect(), &table()).unwrap_err();
    assert_eq!(err.code(), "carte.bad-signature");
}

#[test]
fn unreachable_registry_is_reported_as_such() {
    struct Down;
    impl KeyResolver for Down {
        fn key_at(&self, _: &Name, _: u64) -> KeyAt {
            KeyAt::Unavailable
        }
    }
    let err = verify(&good().sign(&app_key()), NOW, &expect(), &Down).unwrap_err();
    assert_eq!(err.code(), "registry.unavailable");
}

#[test]
fn cheap_checks_come_before_the_key_lookup() {
    // An expired carte from an unknown signer reports expiry: no look-up was needed.
    let mut c = good();
    c.owner = name("stranger");
    c.deadline = NOW - 1000;
    c.beginning = NOW - 1100;
    assert_eq!(code(&c), "carte.expired");
}

fn arb_name() -> impl Strategy<Value = Name> {
    "[a-z][a-z0-9]{0,10}".prop_map(|s| Name::parse(&s).unwrap())
}

fn arb_carte() -> impl Strategy<Value = Carte> {
    (
        arb_name(),
        proptest::option::of(arb_name()),
        proptest::option::of(arb_name()),
        any::<u64>(),
        0u64..=7200,
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(proptest::collection::vec(any::<IpAddr>(), 0..3)),
        proptest::option::of((any::<u64>(), ".{0,40}", ".{0,20}")),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(owner, audience, subject, beginning, life, cs, ad, addresses, request, nonce)| {
                let beginning = beginning / 2;
                Carte {
                    owner,
                    audience,
                    subject,
                    beginning,
                    deadline: beginning + life,
                    client_scope: Scope::from_bits(cs),
                    admin_scope: Scope::from_bits(ad),
                    addresses,
                    request: request.map(|(scope, redirect_uri, state)| GrantRequest {
                        scope: Scope::from_bits(scope),
                        redirect_uri,
                        state,
                    }),
                    nonce,
                }
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(carte in arb_carte()) {
        let wire_form = carte.sign(&app_key());
        prop_assert_eq!(decode(&wire_form).unwrap().carte, carte);
    }

    #[test]
    fn flipping_any_bit_breaks_verification(bit in 0usize..100_000) {
        let wire_form = good().sign(&app_key());
        assert!(check(&good()).is_ok());
        let mut bytes = URL_SAFE_NO_PAD.decode(&wire_form).unwrap();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let flipped = URL_SAFE_NO_PAD.encode(&bytes);
        prop_assert!(verify(&flipped, NOW, &expect(), &table()).is_err());
    }
}

#[test]
fn flipping_every_bit_breaks_verification() {
    // The exhaustive form of the property above, for the one carte it is cheap for.
    let wire_form = good().sign(&app_key());
    let bytes = URL_SAFE_NO_PAD.decode(&wire_form).unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let flipped = URL_SAFE_NO_PAD.encode(&b);
        assert!(
            verify(&flipped, NOW, &expect(), &table()).is_err(),
            "bit {bit}"
        );
    }
}
