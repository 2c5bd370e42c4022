//! The registry over real HTTP: registry stub on 127.0.0.1:0, SQLite in a temporary folder.

#![allow(clippy::unwrap_used)]

mod common;

use common::{now, post_op, tempdir, Identity, Node, Stub};
use ed25519_dalek::SigningKey;
use grant_node::outbound::HttpClient;
use grant_node::registry::op::{Operation, Update};

fn digest(hex_digest: &str) -> [u8; 32] {
    hex::decode(hex_digest).unwrap().try_into().unwrap()
}

fn update(app: &Identity, digest_hex: &str, f: impl FnOnce(&mut Update)) -> Vec<u8> {
    let mut u = Update {
        name: app.name.clone(),
        previous_digest: digest(digest_hex),
        new_signing_key: None,
        node_uri: None,
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: None,
        compromised_since: None,
    };
    f(&mut u);
    Operation::Update(u).sign(&app.updating)
}

#[tokio::test(flavor = "multi_thread")]
async fn register_then_look_up_by_any_spelling() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 8).await;
    let app = Identity::new("photo-app", 1);
    let record = app.register(&stub.client(), 8).await;
    assert_eq!(record.name, "photo-app");
    assert_eq!(record.redirect_uris, vec!["https://app.example/cb"]);

    let http = HttpClient::new();
    let r = http
        .get(&format!("{}/registry/names/Photo-App", stub.url()))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let looked_up: grant_node::registry::RecordJson = r.json().unwrap();
    assert_eq!(looked_up, record);

    let r = http
        .get(&format!(
            "{}/registry/names/photo-app/key?at={}",
            stub.url(),
            now()
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(
        v["key"],
        hex::encode(app.signing.verifying_key().as_bytes())
    );

    let r = http
        .get(&format!("{}/registry/names/nobody", stub.url()))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "name.unknown".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn taken_and_confusable_names_are_refused() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    Identity::new("ape", 1).register(&stub.client(), 0).await;
    let again = post_op(
        &stub.url(),
        Identity::new("APE", 2).register_op("https://n.example/", &[], 0),
    )
    .await;
    assert_eq!(
        (again.status.as_u16(), again.error_code().unwrap()),
        (409, "name.taken".into())
    );
    // All-Cyrillic "аре" looks exactly like Latin "ape".
    let lookalike = post_op(
        &stub.url(),
        Identity::new("аре", 3).register_op("https://n.example/", &[], 0),
    )
    .await;
    assert_eq!(
        (lookalike.status.as_u16(), lookalike.error_code().unwrap()),
        (409, "name.confusable".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_proof_of_work_is_refused() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 16).await;
    // Solved for 0 bits: almost surely fewer than 16 leading zero bits.
    let mut op = None;
    for seed in 1..50u8 {
        let candidate = Identity::new("cheap", seed).register_op("https://n.example/", &[], 0);
        let payload = grant_node::registry::op::SignedOp::decode(&candidate)
            .unwrap()
            .payload;
        if grant_node::registry::op::pow_bits(&payload) < 16 {
            op = Some(candidate);
            break;
        }
    }
    let r = post_op(&stub.url(), op.unwrap()).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "op.pow-insufficient".into())
    );
    let r = post_op(
        &stub.url(),
        Identity::new("cheap", 1).register_op("https://n.example/", &[], 16),
    )
    .await;
    assert_eq!(r.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_operations_are_refused() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    let r = post_op(&stub.url(), b"not cbor at all".to_vec()).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "op.malformed".into())
    );
    let mut trailing = Identity::new("app", 1).register_op("https://n.example/", &[], 0);
    trailing.push(0);
    let r = post_op(&stub.url(), trailing).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "op.malformed".into())
    );
    let r = post_op(&stub.url(), vec![0u8; 9000]).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (413, "op.too-large".into())
    );
    let bad_uri =
        Identity::new("app", 1).register_op("https://n.example/", &["javascript:alert(1)"], 0);
    let r = post_op(&stub.url(), bad_uri).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "op.malformed".into())
    );
    // Nothing was registered by any of these.
    assert!(stub
        .client()
        .record(&"app".parse().unwrap())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_digest_and_foreign_signature_are_refused() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    let app = Identity::new("app", 1);
    let first = app.register(&stub.client(), 0).await;
    let op = update(&app, &first.digest, |u| {
        u.node_uri = Some("https://a.example/".into())
    });
    assert_eq!(post_op(&stub.url(), op.clone()).await.status, 201);
    // Replaying the same update, or another one made against the old digest, is stale.
    let r = post_op(&stub.url(), op).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (409, "op.stale-digest".into())
    );
    // Signed by someone else's key.
    let current = stub.client().record(&app.name).await.unwrap().unwrap();
    let mut thief = Identity::new("app", 1);
    thief.updating = SigningKey::from_bytes(&[77; 32]);
    let op = update(&thief, &current.digest, |u| {
        u.node_uri = Some("https://evil.example/".into())
    });
    let r = post_op(&stub.url(), op).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "op.bad-signature".into())
    );
    let after = stub.client().record(&app.name).await.unwrap().unwrap();
    assert_eq!(after.node_uri, "https://a.example/");
}

#[tokio::test(flavor = "multi_thread")]
async fn back_dated_key_is_refused() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    let app = Identity::new("app", 1);
    let first = app.register(&stub.client(), 0).await;
    let new_key = SigningKey::from_bytes(&[9; 32]).verifying_key();
    let op = update(&app, &first.digest, |u| {
        u.new_signing_key = Some((new_key, now() - 3600))
    });
    let r = post_op(&stub.url(), op).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "op.valid-from-in-past".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_keeps_earlier_cartes_and_compromise_stops_them_at_once() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &stub.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    let mut app = Identity::new("app", 1);
    let first = app.register(&stub.client(), 0).await;

    let before = app.carte("alice", 0x80000, -30).sign(&app.signing);
    assert_eq!(node.verify(&before).await, (200, "app".into()));

    // Rotate: the new key is valid from now.
    let old = app.signing.clone();
    let new = SigningKey::from_bytes(&[42; 32]);
    let rotate_at = now();
    let op = update(&app, &first.digest, |u| {
        u.new_signing_key = Some((new.verifying_key(), rotate_at))
    });
    let rotated: grant_node::registry::RecordJson = post_op(&stub.url(), op).await.json().unwrap();
    node.wait_synced_to(&stub).await;
    app.signing = new.clone();

    // Old key, beginning before the rotation: still valid.
    assert_eq!(node.verify(&before).await, (200, "app".into()));
    // Old key, beginning after the rotation: refused.
    let late_old = app.carte("alice", 0x80000, 5).sign(&old);
    assert_eq!(
        node.verify(&late_old).await,
        (401, "carte.bad-signature".into())
    );
    let late_new = app.carte("alice", 0x80000, 5).sign(&new);
    assert_eq!(node.verify(&late_new).await, (200, "app".into()));

    // Mark the old key compromised: everything it signed is refused at once.
    let op = update(&app, &rotated.digest, |u| {
        u.compromised_key = Some(old.verifying_key())
    });
    assert_eq!(post_op(&stub.url(), op).await.status, 201);
    let key_then: serde_json::Value = HttpClient::new()
        .get(&format!(
            "{}/registry/names/app/key?at={}",
            stub.url(),
            rotate_at - 10
        ))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(key_then["compromised"], true);
    node.wait_synced_to(&stub).await;
    assert_eq!(
        node.verify(&before).await,
        (401, "carte.key-not-valid".into())
    );
    assert_eq!(node.verify(&late_new).await, (200, "app".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_restart_loses_nothing() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    let key = stub.public_key_hex();
    let mut records = Vec::new();
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        records.push(
            Identity::new(name, i as u8 + 1)
                .register(&stub.client(), 0)
                .await,
        );
    }
    let checkpoint: serde_json::Value = HttpClient::new()
        .get(&format!("{}/registry/checkpoint", stub.url()))
        .await
        .unwrap()
        .json()
        .unwrap();
    stub.stop().await;

    let stub = Stub::start(dir.path(), 0).await;
    assert_eq!(
        stub.public_key_hex(),
        key,
        "the registry key survives a restart"
    );
    for record in &records {
        let back = stub
            .client()
            .record(&record.name.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, record);
    }
    let again: serde_json::Value = HttpClient::new()
        .get(&format!("{}/registry/checkpoint", stub.url()))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(again["size"], 3);
    assert_eq!(again["root_hash"], checkpoint["root_hash"]);
    assert_eq!(again["map_root"], checkpoint["map_root"]);
    assert!(again["root_hash"].is_string() && again["map_root"].is_string());
}

/// Keys that strict verification can never trust: small-order points, a non-canonical
/// encoding, a point with a torsion component.
fn weak_keys() -> Vec<(&'static str, ed25519_dalek::VerifyingKey)> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    let from = |b: [u8; 32]| ed25519_dalek::VerifyingKey::from_bytes(&b).unwrap();
    let mut identity_long = [0xffu8; 32];
    identity_long[0] = 0xee;
    identity_long[31] = 0x7f;
    let strong = SigningKey::from_bytes(&[42; 32])
        .verifying_key()
        .to_edwards();
    vec![
        ("identity", from(EIGHT_TORSION[0].compress().to_bytes())),
        ("order 2", from(EIGHT_TORSION[4].compress().to_bytes())),
        ("order 8", from(EIGHT_TORSION[1].compress().to_bytes())),
        ("non-canonical", from(identity_long)),
        (
            "mixed order",
            from((strong + EIGHT_TORSION[1]).compress().to_bytes()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_keys_are_refused_at_registration_and_rotation() {
    let dir = tempdir();
    let stub = Stub::start(dir.path(), 0).await;
    for (what, key) in weak_keys() {
        let app = Identity::new("weakling", 3);
        let mut r = grant_node::registry::op::Register {
            name: app.name.clone(),
            updating_key: app.updating.verifying_key(),
            signing_key: key,
            valid_from: now(),
            node_uri: "https://app.example/".into(),
            redirect_uris: vec![],
            pow_nonce: [0; 8],
        };
        let op = Operation::Register(r.clone()).sign(&app.updating);
        let reply = post_op(&stub.url(), op).await;
        assert_eq!(
            (reply.status.as_u16(), reply.error_code().unwrap()),
            (400, "op.weak-key".into()),
            "signing key: {what}"
        );
        r.signing_key = app.signing.verifying_key();
        r.updating_key = key;
        let reply = post_op(&stub.url(), Operation::Register(r).sign(&app.updating)).await;
        assert_eq!(
            (reply.status.as_u16(), reply.error_code().unwrap()),
            (400, "op.weak-key".into()),
            "updating key: {what}"
        );
    }
    let app = Identity::new("app", 1);
    let first = app.register(&stub.client(), 0).await;
    for (what, key) in weak_keys() {
        let op = update(&app, &first.digest, |u| {
            u.new_signing_key = Some((key, now() + 10))
        });
        let r = post_op(&stub.url(), op).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().unwrap()),
            (400, "op.weak-key".into()),
            "rotation to {what}"
        );
    }
    // Nothing changed: the name keeps its one key.
    let record = stub.client().record(&app.name).await.unwrap().unwrap();
    assert_eq!(record.keys.len(), 1);
}
