//! Moving an owner from one node to another with `grant-node owner export` and `owner import`
//! (the real binary, on the nodes' real databases, while both nodes serve): an application's
//! grant keeps working at the new node without asking the owner again, the old node refuses
//! at once, and no change acknowledged by the old node is lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{location, tempdir, text, Browser, Identity, Node, Stub};
use grant_node::client::{App, ClientError};
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::scope::Scope;
use hyper::Method;
use serde_json::json;

const REDIRECT: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: Scope = Scope::from_bits(0x80000);
const PASSWORD: &str = "correct horse battery";

struct World {
    dir: tempfile::TempDir,
    stub: Stub,
    a: Node,
    b: Node,
    app: App,
    alice: Browser,
}

async fn world() -> World {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let key = stub.public_key_hex();
    let a = Node::start_remote(&dir.path().join("a"), &stub.url(), &key, "alice").await;
    let b = Node::start_remote(&dir.path().join("b"), &stub.url(), &key, "bob").await;
    let alice = a.set_password("alice", PASSWORD).await;
    let id = Identity::new("photo-app", 1);
    stub.client()
        .submit(id.register_op("https://app.example/", &[REDIRECT], 0))
        .await
        .unwrap();
    let app = stub.open_app(&id, dir.path()).await;
    std::fs::write(dir.path().join("passphrase"), "move me carefully\n").unwrap();
    World {
        dir,
        stub,
        a,
        b,
        app,
        alice,
    }
}

/// Runs the `grant-node` binary on `node`'s data (its database and key, on PostgreSQL), with
/// the registry flags `serve` got.
fn cli(w: &World, node: &Node, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(common::pg::node_bin());
    command
        .args(args)
        .arg("--data-dir")
        .arg(&node.dir)
        .args(["--registry", &w.stub.url()])
        .args(["--registry-key", &w.stub.public_key_hex()])
        .env_remove("GRANT_NODE_DATABASE")
        .env_remove("GRANT_NODE_CONFIG");
    for (k, v) in node.cli_env() {
        command.env(k, v);
    }
    if node.database.is_some() {
        command.env("GRANT_NODE_DATABASE_KEY", node.dir.join("database.key"));
    }
    command.output().unwrap()
}

fn export(w: &World, file: &Path) -> std::process::Output {
    cli(
        w,
        &w.a,
        &[
            "owner",
            "export",
            "alice",
            "--to",
            file.to_str().unwrap(),
            "--new-node",
            &w.b.url(),
            "--passphrase-file",
            w.dir.path().join("passphrase").to_str().unwrap(),
        ],
    )
}

fn import(w: &World, file: &Path) -> std::process::Output {
    cli(
        w,
        &w.b,
        &[
            "owner",
            "import",
            file.to_str().unwrap(),
            "--passphrase-file",
            w.dir.path().join("passphrase").to_str().unwrap(),
            "--public-url",
            &w.b.url(),
        ],
    )
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the command failed: {err}");
    err
}

/// A raw call to `node` for alice with the application's carte: (status, body).
async fn call(node: &Node, app: &Identity) -> (u16, serde_json::Value) {
    let carte = app
        .carte("alice", VIEW_PROFILE.bits(), 0)
        .sign(&app.signing);
    let r = HttpClient::new()
        .send(
            Method::GET,
            &format!("{}/api/profile", node.url()),
            &[("authorization", &format!("Carte {carte}"))],
            Default::default(),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.json().unwrap_or_default())
}

async fn history(browser: &mut Browser, node: &Node) -> Vec<serde_json::Value> {
    let r = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/photo-app/history", node.url()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    r.json::<serde_json::Value>().unwrap()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_owner_keeps_its_grants_at_the_new_node_and_the_old_node_refuses_at_once() {
    let mut w = world().await;
    let alice = Name::parse("alice").unwrap();
    let start = w
        .app
        .start_grant(&alice, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    let page = w.alice.get(&start.url).await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let r = w
        .alice
        .allow(&w.a.url(), &text(&page), "view-profile")
        .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    w.app.finish_grant(&location(&r)).await.unwrap();
    let profile = w.app.get(&alice, "/api/profile", VIEW_PROFILE).await;
    assert_eq!(profile.unwrap()["owner"], "alice");
    let before = history(&mut w.alice, &w.a).await;
    assert_eq!(before.len(), 1);

    let file = w.dir.path().join("alice.export");
    let said = ok(&export(&w, &file));
    assert!(
        said.contains("exported alice (1 grants, 1 history entries)"),
        "{said}"
    );

    // At once, before the new node has it: the old node refuses, naming the new one.
    let id = Identity::new("photo-app", 1);
    let (status, body) = call(&w.a, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("owner.moved")),
        "{body}"
    );
    assert_eq!(body["node_uri"], w.b.url());
    // Alice's session there is gone, and so is her login.
    let r = w
        .alice
        .json(Method::GET, &format!("{}/api/grants", w.a.url()), None)
        .await;
    assert_eq!(r.status, 401, "{}", text(&r));
    let mut other = Browser::new(&w.a.url());
    let r = other.log_in(&w.a.url(), "alice", PASSWORD, "/").await;
    assert_ne!(r.status, 303, "alice can no longer log in at the old node");
    // The registry still names the old node: the library says so rather than guess.
    match w.app.get(&alice, "/api/profile", VIEW_PROFILE).await {
        Err(ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (410, "owner.moved"))
        }
        other => panic!("expected owner.moved, got {other:?}"),
    }
    // The export is the only copy now; a second export finds nothing.
    let again = export(&w, &w.dir.path().join("again.export"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already moved to"));

    let said = ok(&import(&w, &file));
    assert!(
        said.contains("imported alice (1 grants, 1 history entries)"),
        "{said}"
    );
    let record = w.stub.client().record(&alice).await.unwrap().unwrap();
    assert_eq!(record.node_uri, format!("{}/", w.b.url()));

    // The application follows by itself, with the grant it had: nobody asked alice again.
    let profile = w.app.get(&alice, "/api/profile", VIEW_PROFILE).await;
    assert_eq!(profile.unwrap()["owner"], "alice");
    let book = w.app.grants().await.unwrap();
    assert_eq!(book[0].node_url, w.b.url());
    let (status, _) = call(&w.b, &id).await;
    assert_eq!(status, 200);
    let (status, body) = call(&w.a, &id).await;
    assert_eq!((status, body["error"].as_str()), (410, Some("owner.moved")));

    // A browser sent to the old node's /grant page for alice goes on to the new node.
    let start = w
        .app
        .start_grant(&alice, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    assert!(
        start.url.starts_with(&format!("{}/grant?", w.b.url())),
        "{}",
        start.url
    );
    let at_a = start.url.replacen(&w.b.url(), &w.a.url(), 1);
    let r = Browser::new(&w.a.url()).get(&at_a).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(location(&r), start.url);

    // Alice logs in at the new node with the same password; her history came along.
    let mut there = Browser::new(&w.b.url());
    let r = there.log_in(&w.b.url(), "alice", PASSWORD, "/").await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(history(&mut there, &w.b).await, before);

    // The old node, restarted, does not make alice again (it names her new node).
    let dir = w.a.dir.clone();
    let config = Node::remote_config(&dir, &w.stub.url(), &w.stub.public_key_hex(), "alice");
    w.a.stop().await;
    let a = Node::start(config).await;
    let (status, body) = call(&a, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("owner.moved")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_the_old_node_acknowledged_arrives_at_the_new_node() {
    let mut w = world().await;
    let r = w
        .alice
        .json(
            Method::PUT,
            &format!("{}/api/grants/photo-app", w.a.url()),
            Some(json!({ "add": ["view-profile"] })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let key = w.a.owner_key("alice").await;
    let owner = Arc::new(Identity {
        name: "alice".parse().unwrap(),
        updating: key.clone(),
        signing: key,
    });
    // Eight writers change the grant as fast as they can while alice is exported; each stops
    // at its first refusal.
    let url = format!("{}/api/grants/photo-app", w.a.url());
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (owner, url) = (owner.clone(), url.clone());
            tokio::spawn(async move {
                let http = HttpClient::new();
                let mut acknowledged = 0u32;
                loop {
                    let carte = owner.carte("alice", Scope::GRANT.bits(), 0).sign(&owner.signing);
                    let body = if i % 2 == 0 {
                        json!({ "add": ["view-profile"] })
                    } else {
                        json!({ "expires": grant_node::clock::Clock::system().now() + 86_400 + acknowledged as u64 })
                    };
                    let r = http
                        .send(
                            Method::PUT,
                            &url,
                            &[
                                ("authorization", &format!("Carte {carte}")),
                                ("content-type", "application/json"),
                            ],
                            body.to_string().into(),
                        )
                        .await
                        .unwrap();
                    match r.status.as_u16() {
                        200 => acknowledged += 1,
                        410 => {
                            let v: serde_json::Value = r.json().unwrap();
                            assert_eq!(v["error"], "owner.moved");
                            return acknowledged;
                        }
                        other => panic!("unexpected {other}: {}", text(&r)),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let file = w.dir.path().join("alice.export");
    ok(&export(&w, &file));
    let mut acknowledged = 0;
    for t in writers {
        acknowledged += t.await.unwrap();
    }
    assert!(acknowledged > 0, "the writers ran before the export");
    ok(&import(&w, &file));
    let mut there = Browser::new(&w.b.url());
    let r = there.log_in(&w.b.url(), "alice", PASSWORD, "/").await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let entries = history(&mut there, &w.b).await;
    assert_eq!(
        entries.len() as u32,
        acknowledged + 1,
        "every acknowledged change, and nothing else, is in the history at the new node"
    );
}
