//! A node's registry mirror: syncing, outages, and a registry that lies.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{now, tempdir, Identity, Node, Running, Stub};
use ed25519_dalek::SigningKey;
use grant_node::http::response::{json_value, param, query_params};
use grant_node::ledger::source::{CheckpointJson, LogPageJson, Source};
use grant_node::registry::log::{entry_hash, LogEntry};
use grant_node::registry::note::{origin_for, Checkpoint};
use grant_node::registry::op::{Operation, Update};

#[tokio::test(flavor = "multi_thread")]
async fn mirrored_names_verify_while_the_registry_is_down() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &stub.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    let app = Identity::new("app", 1);
    app.register(&stub.client(), 0).await;
    node.wait_synced_to(&stub).await;
    stub.stop().await;

    let fresh = app.carte("alice", 0x80000, 0).sign(&app.signing);
    assert_eq!(node.verify(&fresh).await, (200, "app".into()));
    let ghost = Identity::new("ghost", 2);
    let unknown = ghost.carte("alice", 0x80000, 0).sign(&ghost.signing);
    assert_eq!(
        node.verify(&unknown).await,
        (503, "registry.unavailable".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mirror_catches_up_after_a_registry_restart() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let addr = stub.server.addr.to_string();
    let node = Node::start_remote(
        &dir.path().join("node"),
        &stub.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    node.wait_synced_to(&stub).await;
    stub.stop().await;
    // While the registry is down the node reports the failed syncs, and keeps serving.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let h = node.health().await;
    assert_eq!(h["status"], "ok");
    assert!(h["registry"]["last_error"].as_str().is_some(), "{h}");
    // The registry comes back (same data, same port) and takes a new name.
    let stub = Stub::start_at(&dir.path().join("registry"), 0, &addr).await;
    let app = Identity::new("late-app", 4);
    app.register(&stub.client(), 0).await;
    node.wait_synced_to(&stub).await;
    let h = node.health().await;
    assert!(h["registry"]["last_error"].is_null(), "{h}");
    let carte = app.carte("alice", 0x80000, 0).sign(&app.signing);
    assert_eq!(node.verify(&carte).await, (200, "late-app".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_name_is_fetched_at_once() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &stub.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    // Registered after the node's last sync; the first carte makes the node sync.
    let app = Identity::new("newcomer", 1);
    app.register(&stub.client(), 0).await;
    let carte = app.carte("alice", 0x80000, 0).sign(&app.signing);
    assert_eq!(node.verify(&carte).await, (200, "newcomer".into()));
    let stranger = Identity::new("stranger", 2);
    let carte = stranger.carte("alice", 0x80000, 0).sign(&stranger.signing);
    assert_eq!(
        node.verify(&carte).await,
        (401, "carte.unknown-signer".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_sync_from_peers() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let key = stub.public_key_hex();
    let a = Node::start_remote(&dir.path().join("a"), &stub.url(), &key, "alice").await;
    // Node B registers its owner with the registry, then restarts reading the log from A,
    // still trusting only the registry's key.
    let b = Node::start_remote(&dir.path().join("b"), &stub.url(), &key, "bob").await;
    b.stop().await;
    let app = Identity::new("app", 1);
    app.register(&stub.client(), 0).await;
    a.wait_synced_to(&stub).await;
    let b = Node::start_remote(&dir.path().join("b"), &a.url(), &key, "bob").await;
    b.wait_synced_to(&stub).await;
    let carte = app.carte("bob", 0x80000, 0).sign(&app.signing);
    assert_eq!(b.verify(&carte).await, (200, "app".into()));
}

/// A signed checkpoint envelope and the encoded log entries it covers.
type Served = (Vec<u8>, Vec<Vec<u8>>);

/// A registry that serves whatever log and checkpoint the test gives it.
struct Liar {
    state: Arc<Mutex<Served>>,
    server: Running,
}

impl Liar {
    /// Serves `served`; passes operations and metadata through to the real registry, so a
    /// node can register its owner through it.
    async fn start(served: Served, upstream: String) -> Liar {
        let state = Arc::new(Mutex::new(served));
        let shared = state.clone();
        let handler = move |req: grant_node::http::Request, _peer| {
            let shared = shared.clone();
            let upstream = upstream.clone();
            async move {
                let (cp, entries) = shared.lock().unwrap().clone();
                match req.uri().path() {
                    "/registry/ops" => {
                        let body = http_body_util::BodyExt::collect(req.into_body())
                            .await
                            .unwrap()
                            .to_bytes();
                        let r = common::post_op(&upstream, body.to_vec()).await;
                        let mut resp = grant_node::http::response::json(r.status, r.body);
                        *resp.status_mut() = r.status;
                        resp
                    }
                    "/registry/metadata" => {
                        let r = grant_node::outbound::HttpClient::new()
                            .get(&format!("{upstream}/registry/metadata"))
                            .await
                            .unwrap();
                        grant_node::http::response::json(r.status, r.body)
                    }
                    "/registry/checkpoint" => json_value(
                        hyper::StatusCode::OK,
                        &CheckpointJson {
                            size: 0,
                            root_hash: String::new(),
                            map_root: String::new(),
                            time: 0,
                            checkpoint: URL_SAFE_NO_PAD.encode(&cp),
                        },
                    ),
                    _ => {
                        let params = query_params(req.uri().query()).unwrap();
                        let from: usize = param(&params, "from").unwrap().parse().unwrap();
                        let limit: usize = param(&params, "limit").unwrap().parse().unwrap();
                        let page = entries.iter().skip(from).take(limit);
                        json_value(
                            hyper::StatusCode::OK,
                            &LogPageJson {
                                from: from as u64,
                                entries: page.map(|e| URL_SAFE_NO_PAD.encode(e)).collect(),
                            },
                        )
                    }
                }
            }
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = common::serve_task(l, handler);
        Liar { state, server }
    }

    fn set(&self, served: Served) {
        *self.state.lock().unwrap() = served;
    }
}

/// The stub's honest log and checkpoint.
async fn honest(stub: &Stub) -> (Vec<u8>, Vec<Vec<u8>>) {
    let source = Source::remote(&stub.url());
    (
        source.checkpoint().await.unwrap(),
        source.entries(0, 1000).await.unwrap(),
    )
}

/// Appends `op` to `entries` and signs a checkpoint over the result with the registry's key.
fn extend(entries: &[Vec<u8>], op: Vec<u8>, key: &SigningKey) -> (Vec<u8>, Vec<Vec<u8>>) {
    let prev = entry_hash(entries.last().unwrap());
    let entry = LogEntry {
        seq: entries.len() as u64,
        time: now(),
        prev_hash: prev,
        difficulty: 0,
        op,
    }
    .encode();
    let mut all = entries.to_vec();
    all.push(entry.clone());
    let cp = Checkpoint {
        origin: origin_for(&key.verifying_key()),
        size: all.len() as u64,
        root: merkle_root(&all),
        map_root: [0; 32],
        time: now(),
    };
    (cp.sign(key), all)
}

/// RFC 6962's Merkle tree hash, straight from its definition.
fn merkle_root(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => tlog_tiles::EMPTY_HASH.0,
        1 => tlog_tiles::record_hash(&leaves[0]).0,
        n => {
            // The largest power of two smaller than n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            tlog_tiles::node_hash(
                tlog_tiles::Hash(merkle_root(&leaves[..k])),
                tlog_tiles::Hash(merkle_root(&leaves[k..])),
            )
            .0
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_entry_is_refused_and_reported() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let app = Identity::new("app", 1);
    let record = app.register(&stub.client(), 0).await;
    let liar = Liar::start(honest(&stub).await, stub.url()).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &liar.server.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    // The node registered its owner through the liar; from now on the liar serves the log.
    let (cp, entries) = honest(&stub).await;
    liar.set((cp, entries.clone()));
    node.wait_synced_to(&stub).await;

    // The registry appends an update of "app" that app's updating key never signed, and signs
    // a checkpoint over it.
    let thief = SigningKey::from_bytes(&[66; 32]);
    let forged = Operation::Update(Update {
        name: app.name.clone(),
        previous_digest: hex::decode(&record.digest).unwrap().try_into().unwrap(),
        new_signing_key: Some((thief.verifying_key(), now())),
        node_uri: None,
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: None,
        compromised_since: None,
    })
    .sign(&thief);
    liar.set(extend(&entries, forged, &stub.signing_key()));

    let health = wait_degraded(&node).await;
    assert!(
        health["registry"]["degraded"]
            .as_str()
            .unwrap()
            .contains("forged entry"),
        "{health}"
    );
    assert_eq!(
        health["registry"]["size"],
        entries.len() as u64,
        "the verified state is kept"
    );
    // The thief's cartes do not verify; the real key's still do.
    let stolen = app.carte("alice", 0x80000, 5).sign(&thief);
    assert_eq!(
        node.verify(&stolen).await,
        (401, "carte.bad-signature".into())
    );
    let real = app.carte("alice", 0x80000, 5).sign(&app.signing);
    assert_eq!(node.verify(&real).await, (200, "app".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn forked_checkpoint_is_refused_and_reported() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    Identity::new("app", 1).register(&stub.client(), 0).await;
    let liar = Liar::start(honest(&stub).await, stub.url()).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &liar.server.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    let (_, base) = honest(&stub).await;
    let bob = Identity::new("bob", 2);
    bob.register(&stub.client(), 0).await;
    liar.set(honest(&stub).await);
    node.wait_synced_to(&stub).await;

    // A second history of the same length: entry 1 registers "mallory" instead of "bob".
    let mallory = Identity::new("mallory", 3).register_op("https://n.example/", &[], 0);
    liar.set(extend(&base, mallory, &stub.signing_key()));

    let health = wait_degraded(&node).await;
    assert_eq!(health["status"], "degraded");
    assert!(
        health["registry"]["degraded"]
            .as_str()
            .unwrap()
            .contains("fork"),
        "{health}"
    );
    let carte = bob.carte("alice", 0x80000, 0).sign(&bob.signing);
    assert_eq!(node.verify(&carte).await, (200, "bob".into()));
    // The evidence was recorded in the node's database.
    let conn = rusqlite::Connection::open(dir.path().join("node/node.sqlite3")).unwrap();
    let faults: i64 = conn
        .query_row("SELECT COUNT(*) FROM registry_faults", [], |r| r.get(0))
        .unwrap();
    assert!(faults >= 1);
}

async fn wait_degraded(node: &Node) -> serde_json::Value {
    for _ in 0..200 {
        let h = node.health().await;
        if h["status"] == "degraded" {
            return h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the node never reported degraded: {}", node.health().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_whose_name_map_lies_is_refused_and_reported() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let liar = Liar::start(honest(&stub).await, stub.url()).await;
    let node = Node::start_remote(
        &dir.path().join("node"),
        &liar.server.url(),
        &stub.public_key_hex(),
        "alice",
    )
    .await;
    let (cp, entries) = honest(&stub).await;
    liar.set((cp, entries.clone()));
    node.wait_synced_to(&stub).await;

    // A valid registration, a log and tree that match it, but a map root that commits to
    // something else: what a light client would be shown.
    let op = Identity::new("mallory", 3).register_op("https://n.example/", &[], 0);
    liar.set(extend(&entries, op, &stub.signing_key()));
    let health = wait_degraded(&node).await;
    assert_eq!(
        health["registry"]["degraded"], "the checkpoint's name map does not match its log",
        "{health}"
    );
    assert_eq!(health["registry"]["size"], entries.len() as u64);
}
