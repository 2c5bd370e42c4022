//! The transparent registry: C2SP checkpoints, tiles and proofs checked by implementations we
//! did not write, witnesses and quorums, a split view caught, and light look-ups.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{listener, tempdir, Identity, Node, Stub};
use ed25519_dalek::SigningKey;
use grant_node::ledger::cosigning::{self, WitnessEndpoint};
use grant_node::ledger::mirror::WitnessPolicy;
use grant_node::outbound::{HttpClient, Reply};
use grant_node::registry::note::{self, Witness};
use hyper::body::Bytes;
use hyper::Method;

async fn get(url: &str) -> Reply {
    HttpClient::new().get(url).await.unwrap()
}

async fn get_note(registry: &str) -> Vec<u8> {
    let r = HttpClient::new()
        .send(
            Method::GET,
            &format!("{registry}/registry/checkpoint"),
            &[("accept", "text/plain")],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.body.to_vec()
}

/// Registers `n` applications named `app0000`… directly with the authority.
fn register_many(stub: &Stub, from: usize, n: usize) {
    for i in from..from + n {
        let id = Identity::new(&format!("app{i:04}"), (i % 200) as u8 + 1);
        stub.authority
            .submit_blocking(&id.register_op("https://node.example/", &[], 0))
            .unwrap();
    }
}

/// Reads tiles over HTTP for `tlog_tiles`' tile-verifying hash reader.
struct HttpTiles {
    base: String,
}

impl tlog_tiles::TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                // tlog_tiles names Go's sumdb paths (tile/8/L/N); C2SP drops the height.
                let path = t.path().replacen("tile/8/", "tile/", 1);
                let url = format!("{}/registry/{path}", self.base);
                let reply = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(get(&url))
                });
                assert_eq!(reply.status, 200, "{url}");
                Ok(reply.body.to_vec())
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
}

fn hashes(json: &serde_json::Value) -> Vec<tlog_tiles::Hash> {
    json["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| tlog_tiles::Hash::parse_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_implementations_verify_our_checkpoint_tiles_and_proofs() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    register_many(&stub, 0, 100);
    let vkey = note::registry_vkey(&stub.authority.public_key());

    // The checkpoint note, verified by signed_note and parsed by tlog_tiles.
    let check = |bytes: &[u8]| -> tlog_tiles::Checkpoint {
        let verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let parsed = signed_note::Note::from_bytes(bytes).unwrap();
        let (verified, _) = parsed.verify(&list).unwrap();
        assert_eq!(verified.len(), 1);
        tlog_tiles::Checkpoint::from_bytes(parsed.text()).unwrap()
    };
    let old = check(&get_note(&stub.url()).await);
    assert_eq!(old.size(), 100);
    assert_eq!(old.origin(), note::origin_for(&stub.authority.public_key()));
    register_many(&stub, 100, 200);
    let new = check(&get_note(&stub.url()).await);
    assert_eq!(new.size(), 300);

    // Consistency between the two sizes, checked by tlog_tiles.
    let proof = hashes(
        &get(&format!(
            "{}/registry/proof/consistency?from=100&to=300",
            stub.url()
        ))
        .await
        .json()
        .unwrap(),
    );
    tlog_tiles::check_tree(&proof, 300, *new.hash(), 100, *old.hash()).unwrap();
    let mut forged = proof.clone();
    forged[0].0[0] ^= 1;
    assert!(tlog_tiles::check_tree(&forged, 300, *new.hash(), 100, *old.hash()).is_err());

    // Entries from the entry bundles; inclusion proofs from the endpoint and from tiles.
    let full = get(&format!("{}/registry/tile/entries/000", stub.url())).await;
    assert_eq!(full.status, 200);
    let partial = get(&format!("{}/registry/tile/entries/001.p/44", stub.url())).await;
    assert_eq!(partial.status, 200);
    let mut entries = Vec::new();
    for bundle in [&full.body, &partial.body] {
        let mut at = 0;
        while at < bundle.len() {
            let len = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
            entries.push(bundle[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
    }
    assert_eq!(entries.len(), 300);
    let tiles = HttpTiles { base: stub.url() };
    let reader = tlog_tiles::TileHashReader::new(300, *new.hash(), &tiles);
    for i in [0u64, 1, 99, 255, 256, 299] {
        let leaf = tlog_tiles::record_hash(&entries[i as usize]);
        let served = hashes(
            &get(&format!(
                "{}/registry/proof/inclusion?index={i}&size=300",
                stub.url()
            ))
            .await
            .json()
            .unwrap(),
        );
        tlog_tiles::check_record(&served, 300, *new.hash(), i, leaf).unwrap();
        let from_tiles = tlog_tiles::prove_record(300, i, &reader).unwrap();
        assert_eq!(from_tiles, served);
        let other = tlog_tiles::record_hash(b"not the entry");
        assert!(tlog_tiles::check_record(&served, 300, *new.hash(), i, other).is_err());
    }

    // Outside the tree: 404 for tiles, 400 for proofs; nothing past the log is invented.
    for path in [
        "tile/entries/001",
        "tile/entries/001.p/45",
        "tile/0/002",
        "tile/1/000.p/2",
        "tile/0/x001/000",
        "tile/entries/000.p/0",
    ] {
        let r = get(&format!("{}/registry/{path}", stub.url())).await;
        assert_eq!(r.status, 404, "{path}");
    }
    for q in [
        "inclusion?index=300&size=300",
        "inclusion?index=1&size=301",
        "consistency?from=5&to=301",
        "consistency?from=9&to=8",
    ] {
        let r = get(&format!("{}/registry/proof/{q}", stub.url())).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(
            r.json::<serde_json::Value>().unwrap()["error"],
            "request.bad-parameter"
        );
    }
    let r = get(&format!("{}/registry/proof/inclusion?index=1", stub.url())).await;
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["error"],
        "request.missing-parameter"
    );
}

/// A node that is a witness for its registry, with its witness key made before it starts so
/// the registry can be told about it.
struct WitnessNode {
    witness: Witness,
    listener: tokio::net::TcpListener,
    url: String,
}

async fn witness_node(dir: &Path, name: &str) -> WitnessNode {
    std::fs::create_dir_all(dir).unwrap();
    let key = grant_node::keyfile::load_or_create(&dir.join("witness.key")).unwrap();
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    WitnessNode {
        witness: Witness::new(name, key.verifying_key()),
        listener,
        url,
    }
}

fn gather(stub: &Stub, witnesses: &[&WitnessNode]) {
    let endpoints = witnesses
        .iter()
        .map(|w| WitnessEndpoint {
            url: w.url.clone(),
            witness: w.witness.clone(),
        })
        .collect();
    tokio::spawn(cosigning::run(
        stub.authority.clone(),
        endpoints,
        HttpClient::new(),
        Duration::from_millis(200),
        std::future::pending(),
    ));
}

async fn start_witness(
    w: WitnessNode,
    dir: &Path,
    stub: &Stub,
    owner: &str,
    policy: WitnessPolicy,
) -> Node {
    let mut config = Node::remote_config(dir, &stub.url(), &stub.public_key_hex(), owner);
    config.witness_name = Some(w.witness.name.clone());
    config.witness_policy = policy;
    Node::start_on(config, w.listener).await
}

async fn wait_cosigned(stub: &Stub, count: usize, witnesses: &[Witness]) {
    for _ in 0..400 {
        let cp = stub.authority.checkpoint_blocking().unwrap();
        if cp.cosigned_by(witnesses).len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the checkpoint never got {count} cosignatures");
}

async fn post_witness(url: &str, body: Vec<u8>) -> Reply {
    HttpClient::new()
        .send(
            Method::POST,
            &format!("{url}/witness/add-checkpoint"),
            &[],
            Bytes::from(body),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn witnesses_cosign_and_a_node_requires_its_quorum() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let w1 = witness_node(&dir.path().join("w1"), "w1.test").await;
    let w2 = witness_node(&dir.path().join("w2"), "w2.test").await;
    let witnesses = vec![w1.witness.clone(), w2.witness.clone()];
    // The registry asks only the first witness.
    gather(&stub, &[&w1]);
    let (w1_url, w2_url) = (w1.url.clone(), w2.url.clone());
    let n1 = start_witness(
        w1,
        &dir.path().join("w1"),
        &stub,
        "alice",
        WitnessPolicy::default(),
    )
    .await;
    let _n2 = start_witness(
        w2,
        &dir.path().join("w2"),
        &stub,
        "bob",
        WitnessPolicy::default(),
    )
    .await;
    register_many(&stub, 0, 3);
    wait_cosigned(&stub, 1, &witnesses).await;
    let size = stub
        .authority
        .checkpoint_blocking()
        .unwrap()
        .checkpoint
        .size;
    assert_eq!(size, 5);

    let policy = |quorum| WitnessPolicy {
        witnesses: witnesses.clone(),
        urls: vec![],
        quorum,
    };
    let mut one = Node::remote_config(
        &dir.path().join("q1"),
        &stub.url(),
        &stub.public_key_hex(),
        "carol",
    );
    one.witness_policy = policy(1);
    let one = Node::start(one).await;
    // The mirror only moves with a cosigned checkpoint: wait for the one after carol's name.
    wait_cosigned(&stub, 1, &witnesses).await;
    one.wait_synced_to(&stub).await;
    assert_eq!(one.health().await["registry"]["cosigned_by"], 1);

    let mut two = Node::remote_config(
        &dir.path().join("q2"),
        &stub.url(),
        &stub.public_key_hex(),
        "dave",
    );
    two.witness_policy = policy(2);
    let two = Node::start(two).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = two.health().await;
    assert_eq!(health["registry"]["size"], 0, "{health}");
    assert!(
        health["registry"]["last_error"]
            .as_str()
            .unwrap()
            .contains("cosigned by 1 of the 2 witnesses required"),
        "{health}"
    );
    // The witness protocol's refusals, each with its status.
    let current = stub.authority.checkpoint_blocking().unwrap();
    let held = get(&format!("{w1_url}/witness/latest")).await;
    assert_eq!(held.status, 200);
    let held_size: u64 = std::str::from_utf8(&held.body)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let r = post_witness(&w1_url, b"garbage".to_vec()).await;
    assert_eq!(r.status, 400);
    let stranger = SigningKey::from_bytes(&[42; 32]);
    let forged = note::Checkpoint {
        origin: note::origin_for(&stub.authority.public_key()),
        ..current.checkpoint.clone()
    }
    .sign(&stranger);
    let r = post_witness(
        &w1_url,
        grant_node::registry::witness::request(0, &[], &forged),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post_witness(
        &w1_url,
        grant_node::registry::witness::request(0, &[], &current.note),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.headers.get("content-type").unwrap(), "text/x.tlog.size");
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap().trim(),
        held_size.to_string()
    );
    // The second witness was never asked: it has nothing to show. Asked now (as a registry
    // would), it cosigns from nothing, then wants a valid proof from that size on.
    assert_eq!(get(&format!("{w2_url}/witness/latest")).await.status, 404);
    let small = stub.authority.checkpoint_blocking().unwrap();
    let r = post_witness(
        &w2_url,
        grant_node::registry::witness::request(0, &[], &small.note),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let with = small.with_cosignatures(&r.body).unwrap();
    assert!(with.cosigned_by(&witnesses).contains(&&witnesses[1]));
    register_many(&stub, 3, 2);
    let bigger = stub.authority.checkpoint_blocking().unwrap();
    let (from, to) = (small.checkpoint.size, bigger.checkpoint.size);
    let r = post_witness(
        &w2_url,
        grant_node::registry::witness::request(from, &[[7; 32]], &bigger.note),
    )
    .await;
    assert_eq!(r.status, 422);
    let proof: Vec<[u8; 32]> = hashes(
        &get(&format!(
            "{}/registry/proof/consistency?from={from}&to={to}",
            stub.url()
        ))
        .await
        .json()
        .unwrap(),
    )
    .iter()
    .map(|h| h.0)
    .collect();
    let r = post_witness(
        &w2_url,
        grant_node::registry::witness::request(from, &proof, &bigger.note),
    )
    .await;
    assert_eq!(r.status, 200);
    // It never goes back: the smaller tree again is a conflict.
    let r = post_witness(
        &w2_url,
        grant_node::registry::witness::request(from, &[], &small.note),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(std::str::from_utf8(&r.body).unwrap().trim(), to.to_string());
    drop(n1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_view_is_refused_by_the_witnesses_and_reported_by_both_nodes() {
    let dir = tempdir();
    // One registry key, two histories: the registry shows each node another tree.
    let stub_a = Stub::start(&dir.path().join("registry-a"), 0).await;
    std::fs::create_dir_all(dir.path().join("registry-b")).unwrap();
    std::fs::copy(
        dir.path().join("registry-a/registry.key"),
        dir.path().join("registry-b/registry.key"),
    )
    .unwrap();
    let stub_b = Stub::start(&dir.path().join("registry-b"), 0).await;
    assert_eq!(stub_a.authority.public_key(), stub_b.authority.public_key());

    let w1 = witness_node(&dir.path().join("n1"), "w1.test").await;
    let w2 = witness_node(&dir.path().join("n2"), "w2.test").await;
    let policy = WitnessPolicy {
        witnesses: vec![w1.witness.clone(), w2.witness.clone()],
        urls: vec![w1.url.clone(), w2.url.clone()],
        quorum: 1,
    };
    // Each branch is shown to one witness only.
    gather(&stub_a, &[&w1]);
    gather(&stub_b, &[&w2]);
    let (url1, url2) = (w1.url.clone(), w2.url.clone());
    // Node 1 follows branch A, node 2 branch B; each registers its owner there (size 1 on
    // both branches, with different roots).
    let n1 = start_witness(w1, &dir.path().join("n1"), &stub_a, "alice", policy.clone()).await;
    let n2 = start_witness(w2, &dir.path().join("n2"), &stub_b, "bob", policy.clone()).await;
    let a = stub_a.authority.checkpoint_blocking().unwrap();
    let b = stub_b.authority.checkpoint_blocking().unwrap();
    assert_eq!(a.checkpoint.size, b.checkpoint.size);
    assert_ne!(a.checkpoint.root, b.checkpoint.root);

    // The witnesses refuse the other tree of the same size.
    let list = [policy.witnesses[0].clone(), policy.witnesses[1].clone()];
    wait_cosigned(&stub_a, 1, &list).await;
    wait_cosigned(&stub_b, 1, &list).await;
    let size = a.checkpoint.size;
    // The same size with another root: 422, as C2SP tlog-witness says.
    let r = post_witness(
        &url2,
        grant_node::registry::witness::request(size, &[], &a.note),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = post_witness(
        &url1,
        grant_node::registry::witness::request(size, &[], &b.note),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = post_witness(
        &url1,
        grant_node::registry::witness::request(0, &[], &b.note),
    )
    .await;
    assert_eq!(r.status, 409);

    // Both nodes find the other branch at the other witness and report it, with both
    // registry-signed checkpoints as evidence.
    for (node, ours, theirs) in [(&n1, &a, &b), (&n2, &b, &a)] {
        let health = wait_degraded(node).await;
        let reason = health["registry"]["degraded"].as_str().unwrap();
        assert!(reason.starts_with("split view"), "{health}");
        let evidence = health["registry"]["evidence"].as_str().unwrap();
        let root = |c: &grant_node::registry::note::SignedCheckpoint| {
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                c.checkpoint.root,
            )
        };
        assert!(evidence.contains(&root(ours)), "{evidence}");
        assert!(evidence.contains(&root(theirs)), "{evidence}");
        // Each half of the evidence verifies with the registry's key on its own.
        let key = stub_a.authority.public_key();
        let parts: Vec<&str> = evidence.split("---\n").collect();
        assert_eq!(parts.len(), 2);
        for part in parts {
            grant_node::registry::note::SignedCheckpoint::verify(part.as_bytes(), &key).unwrap();
        }
    }
}

async fn wait_degraded(node: &Node) -> serde_json::Value {
    for _ in 0..400 {
        let h = node.health().await;
        if h["status"] == "degraded" {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node never reported degraded: {}", node.health().await);
}

fn light_app(
    dir: &Path,
    stub: &Stub,
    mode: grant_node::client::LightMode,
) -> grant_node::client::AppConfig {
    let id = Identity::new("app0000", 1);
    grant_node::client::AppConfig {
        name: id.name.clone(),
        key: id.signing.clone(),
        registry_url: stub.url(),
        registry_key: Some(stub.authority.public_key()),
        book: dir.join("grants.book"),
        outbound: Default::default(),
        light: mode,
        directory: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_light_client_trusts_one_name_by_proof_and_refuses_another_tree() {
    use grant_node::client::{App, ClientError, LightMode};
    use grant_node::name::Name;
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let w1 = witness_node(&dir.path().join("w1"), "w1.test").await;
    let witness = w1.witness.clone();
    gather(&stub, &[&w1]);
    let _n1 = start_witness(
        w1,
        &dir.path().join("w1"),
        &stub,
        "alice",
        WitnessPolicy::default(),
    )
    .await;
    register_many(&stub, 0, 50);
    wait_cosigned(&stub, 1, std::slice::from_ref(&witness)).await;

    // With the witness required, a name is proven present, another proven absent, and nothing
    // of the registry is kept but the checkpoint.
    let mode = LightMode {
        witnesses: vec![witness.clone()],
        quorum: 1,
    };
    let app = App::open(light_app(dir.path(), &stub, mode.clone()))
        .await
        .unwrap();
    let alice = app
        .lookup(&Name::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.name.as_str(), "alice");
    assert_eq!(
        app.lookup(&Name::parse("app0049").unwrap())
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "app0049"
    );
    assert!(app
        .lookup(&Name::parse("nobody").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        app.discover(&Name::parse("nobody").unwrap()).await,
        Err(ClientError::UnknownUser(_))
    ));
    let node = app.discover(&Name::parse("alice").unwrap()).await.unwrap();
    assert_eq!(format!("{}/", node.url), alice.node_uri);
    // Of the registry, the book holds the last checkpoint trusted and nothing else.
    let book = std::fs::read_to_string(dir.path().join("grants.book")).unwrap();
    let lines: Vec<&str> = book.lines().collect();
    assert_eq!(lines.len(), 1, "{book}");
    assert!(
        lines[0].starts_with("{\"meta\":[\"light_checkpoint\","),
        "{book}"
    );

    // A quorum the checkpoint does not have: refused.
    let stranger = Witness::new("w9.test", SigningKey::from_bytes(&[9; 32]).verifying_key());
    let strict = LightMode {
        witnesses: vec![witness.clone(), stranger],
        quorum: 2,
    };
    let dir2 = tempdir();
    let app2 = App::open(light_app(dir2.path(), &stub, strict))
        .await
        .unwrap();
    let err = app2
        .lookup(&Name::parse("alice").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cosigned by 1 of the 2"), "{err}");

    // Another tree under the same registry key (a second history, same size or not): the book
    // remembers the checkpoint it trusted, and the other tree cannot prove consistency with it.
    drop(app);
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    std::fs::copy(
        dir.path().join("registry/registry.key"),
        dir.path().join("other/registry.key"),
    )
    .unwrap();
    let other = Stub::start(&dir.path().join("other"), 0).await;
    register_many(&other, 500, 60);
    let w_other = w1_twin(&dir.path().join("w1/witness.key"), "w1.test");
    let cp = other.authority.checkpoint_blocking().unwrap();
    let line = note::cosign("w1.test", &w_other, &cp.text, common::now());
    assert!(other
        .authority
        .add_cosignatures_blocking(cp.checkpoint.size, line.as_bytes())
        .unwrap());
    let mut config = light_app(dir.path(), &stub, mode.clone());
    config.registry_url = other.url();
    let app = App::open(config).await.unwrap();
    let err = app
        .lookup(&Name::parse("app0500").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not consistent with the one trusted before"),
        "{err}"
    );
}

/// The witness's own key (what a compromised or colluding witness would sign with).
fn w1_twin(path: &Path, _name: &str) -> SigningKey {
    grant_node::keyfile::load(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_stub_gathers_cosignatures_from_the_witnesses_on_its_command_line() {
    let dir = tempdir();
    let data = dir.path().join("registry");
    std::fs::create_dir_all(&data).unwrap();
    let key = grant_node::keyfile::load_or_create(&data.join("registry.key")).unwrap();
    let w = witness_node(&dir.path().join("w"), "w.test").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = common::registry_stub_bin();
    let child = std::process::Command::new(bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pow-bits",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--witness")
        .arg(format!("{},{}", w.url, w.witness.vkey()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _stub = common::Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if HttpClient::new()
            .get(&format!("{url}/registry/metadata"))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let witness = w.witness.clone();
    let mut config = Node::remote_config(
        &dir.path().join("w"),
        &url,
        &hex::encode(key.verifying_key().as_bytes()),
        "alice",
    );
    config.witness_name = Some(witness.name.clone());
    let _node = Node::start_on(config, w.listener).await;
    for _ in 0..400 {
        let signed =
            note::SignedCheckpoint::verify(&get_note(&url).await, &key.verifying_key()).unwrap();
        if signed.checkpoint.size == 1
            && signed.cosigned_by(std::slice::from_ref(&witness)).len() == 1
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("registry-stub never served a checkpoint cosigned by its witness");
}

#[test]
fn witness_settings_are_checked_at_start() {
    use clap::Parser;
    use grant_node::cli::{Cli, Command as Sub};
    use grant_node::config::Config;
    let dir = tempdir();
    let w1 = "w1.example+a88ac538+BGa+fjMsekUzMr2dCn99sFX1xe8aBq2mbZizn7aBDEc6";
    let remote = "registry = \"https://registry.example\"\nregistry_key = \"91a28a0b74381593a4d9469579208926afc8ad82c8839b7644359b9eba9a4b3a\"\n";
    let load = |toml: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let cli = Cli::try_parse_from(["grant-node", "serve", "--config", path.to_str().unwrap()])
            .unwrap();
        let Sub::Serve(args) = cli.command else {
            unreachable!()
        };
        Config::build(args)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    let ok = format!("{remote}witnesses = [{{ key = \"{w1}\" }}]\nwitness_quorum = 1\n");
    assert_eq!(load(&ok), Ok(()));
    for (toml, says) in [
        (format!("{remote}witnesses = [{{ key = \"{w1}\" }}]\nwitness_quorum = 2\n"), "more than the 1 witnesses"),
        (format!("witnesses = [{{ key = \"{w1}\" }}]\nwitness_quorum = 1\n"), "the embedded registry gathers no cosignatures"),
        (format!("{remote}witnesses = [{{ key = \"w1.example+00000000+BGa+fjMsekUzMr2dCn99sFX1xe8aBq2mbZizn7aBDEc6\" }}]\n"), "witnesses[0].key"),
        (format!("{remote}witnesses = [{{ key = \"{w1}\", url = \"ftp://w1\" }}]\n"), "witnesses[0].url"),
        (format!("{remote}witness_name = \"has space\"\n"), "witness_name"),
    ] {
        let err = load(&toml).unwrap_err();
        assert!(err.contains(says), "{toml}: {err}");
    }
}
