//! The client library against real nodes: one application, two nodes sharing one registry,
//! grants through the consent pages, calls to both, a revocation, clock skew, bad receipts,
//! and notifications.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{location, tempdir, text, Browser, Identity, Node, Stub};
use grant_node::client::{App, ClientError};
use grant_node::name::Name;
use grant_node::scope::Scope;
use hyper::Method;

const REDIRECT: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: Scope = Scope::from_bits(0x80000);

struct World {
    _dir: tempfile::TempDir,
    stub: Stub,
    a: Node,
    b: Node,
    app: App,
    alice: Browser,
    bob: Browser,
}

async fn world(app_node_uri: &str) -> World {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let key = stub.public_key_hex();
    let a = Node::start_remote(&dir.path().join("a"), &stub.url(), &key, "alice").await;
    let b = Node::start_remote(&dir.path().join("b"), &stub.url(), &key, "bob").await;
    let alice = a.set_password("alice", "correct horse battery").await;
    let bob = b.set_password("bob", "correct horse battery").await;
    let id = Identity::new("photo-app", 1);
    stub.client()
        .submit(id.register_op(app_node_uri, &[REDIRECT], 0))
        .await
        .unwrap();
    let app = stub.open_app(&id, dir.path()).await;
    World {
        _dir: dir,
        stub,
        a,
        b,
        app,
        alice,
        bob,
    }
}

/// Drives the consent page as the owner's browser and returns where it was redirected.
async fn consent(browser: &mut Browser, url: &str, node: &Node) -> String {
    let page = browser.get(url).await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let html = text(&page);
    let r = browser.allow(&node.url(), &html, "view-profile").await;
    assert_eq!(r.status, 303, "{}", text(&r));
    location(&r)
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_app_two_nodes_grant_call_and_revoke() {
    let mut w = world("https://app.example/").await;
    let alice = name("alice");
    let bob = name("bob");
    let start_a = w
        .app
        .start_grant(&alice, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    assert!(
        start_a.url.starts_with(&format!("{}/grant?", w.a.url())),
        "found alice's home node"
    );
    let start_b = w
        .app
        .start_grant(&bob, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    assert!(start_b.url.starts_with(&format!("{}/grant?", w.b.url())));
    let back_a = consent(&mut w.alice, &start_a.url, &w.a).await;
    let back_b = consent(&mut w.bob, &start_b.url, &w.b).await;
    let granted = w.app.finish_grant(&back_a).await.unwrap();
    assert_eq!(
        (granted.owner.as_str(), granted.scope),
        ("alice", VIEW_PROFILE)
    );
    w.app.finish_grant(&back_b).await.unwrap();

    // Both nodes answer, concurrently.
    let (pa, pb) = tokio::join!(
        w.app.get(&alice, "/api/profile", VIEW_PROFILE),
        w.app.get(&bob, "/api/profile", VIEW_PROFILE)
    );
    assert_eq!(pa.unwrap()["owner"], "alice");
    assert_eq!(pb.unwrap()["owner"], "bob");
    let book = w.app.grants().await.unwrap();
    assert_eq!(
        book.iter().map(|e| e.owner.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    // Bob revokes: his node answers with the typed error; alice's still answers.
    let r = w
        .bob
        .json(
            Method::DELETE,
            &format!("{}/api/grants/photo-app", w.b.url()),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    match w.app.get(&bob, "/api/profile", VIEW_PROFILE).await {
        Err(ClientError::MissingScope(missing)) => assert_eq!(missing, ["view-profile"]),
        other => panic!("expected MissingScope, got {other:?}"),
    }
    assert_eq!(
        w.app
            .get(&alice, "/api/profile", VIEW_PROFILE)
            .await
            .unwrap()["owner"],
        "alice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_redirects_are_refused() {
    let mut w = world("https://app.example/").await;
    let alice = name("alice");
    let bob = name("bob");
    let start_a = w
        .app
        .start_grant(&alice, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    let back_a = consent(&mut w.alice, &start_a.url, &w.a).await;
    let start_b = w
        .app
        .start_grant(&bob, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    let back_b = consent(&mut w.bob, &start_b.url, &w.b).await;
    let q = |url: &str, key: &str| -> String {
        form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == key)
            .unwrap()
            .1
            .into_owned()
    };

    // A wrong state.
    let wrong = back_a.replace(&format!("state={}", q(&back_a, "state")), "state=forged");
    assert!(matches!(
        w.app.finish_grant(&wrong).await,
        Err(ClientError::WrongState)
    ));

    // A tampered receipt: one character changed.
    let receipt = q(&back_a, "receipt");
    let mut chars: Vec<char> = receipt.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let url = format!(
        "{REDIRECT}?state={}&node=alice&scope=view-profile&receipt={tampered}",
        q(&back_a, "state")
    );
    assert!(
        matches!(
            w.app.finish_grant(&url).await,
            Err(ClientError::BadReceipt(_))
        ),
        "tampered"
    );

    // Bob's (valid) receipt presented to finish alice's request.
    let url = format!(
        "{REDIRECT}?state={}&node=alice&scope=view-profile&receipt={}",
        q(&back_a, "state"),
        q(&back_b, "receipt")
    );
    assert!(
        matches!(
            w.app.finish_grant(&url).await,
            Err(ClientError::BadReceipt(_))
        ),
        "another owner's receipt"
    );

    // Nothing was recorded by the refusals; the genuine redirect still works.
    assert!(w.app.grants().await.unwrap().is_empty());
    w.app.finish_grant(&back_a).await.unwrap();
    // A denial comes back typed.
    let start = w
        .app
        .start_grant(&bob, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    let denied = format!("{REDIRECT}?error=access_denied&state={}", start.state);
    assert!(
        matches!(w.app.finish_grant(&denied).await, Err(ClientError::Denied(e)) if e == "access_denied")
    );
    let _ = &w.stub;
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_skew_is_handled_by_one_retry() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let key = stub.public_key_hex();
    let mut ahead = Node::remote_config(&dir.path().join("ahead"), &stub.url(), &key, "carol");
    ahead.clock = grant_node::clock::Clock::offset(180);
    let ahead = Node::start(ahead).await;
    let mut behind = Node::remote_config(&dir.path().join("behind"), &stub.url(), &key, "dave");
    behind.clock = grant_node::clock::Clock::offset(-180);
    let behind = Node::start(behind).await;
    let id = Identity::new("photo-app", 1);
    stub.client()
        .submit(id.register_op("https://app.example/", &[REDIRECT], 0))
        .await
        .unwrap();
    let app = stub.open_app(&id, dir.path()).await.with_ttl(60);
    // The node 3 minutes ahead sees a 60-second carte as expired; the one behind sees it as
    // not begun. Each time the library learns the node's clock and retries once.
    // Neither owner granted anything, so the answer after the retry is 403 for the scope: the
    // carte itself passed the time checks.
    for owner in ["carol", "dave"] {
        let r = app
            .get(&name(owner), "/auth/check?scope=view-profile", VIEW_PROFILE)
            .await;
        assert!(
            matches!(&r, Err(ClientError::MissingScope(m)) if m == &["view-profile"]),
            "{owner}: {r:?}"
        );
    }
    let m = text(&ahead.get("/metrics").await);
    assert!(
        m.contains("grant_node_carte_verifications_total{result=\"carte.expired\"} 1"),
        "{m}"
    );
    let m = text(&behind.get("/metrics").await);
    assert!(
        m.contains("grant_node_carte_verifications_total{result=\"carte.not-begun\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_keep_the_grant_book_current() {
    // The application's notification receiver, at its registered node URI.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/", listener.local_addr().unwrap());
    let slot: Arc<tokio::sync::OnceCell<Arc<App>>> = Arc::new(tokio::sync::OnceCell::new());
    let s = slot.clone();
    let _server = common::serve_task(listener, move |req, _| {
        let s = s.clone();
        async move {
            let app = s.get().unwrap().clone();
            grant_node::client::notify::handle(&app, req).await
        }
    });
    let mut w = world(&receiver_url).await;
    let alice = name("alice");
    let start = w
        .app
        .start_grant(&alice, VIEW_PROFILE, REDIRECT)
        .await
        .unwrap();
    let back = consent(&mut w.alice, &start.url, &w.a).await;
    let app = Arc::new(w.app);
    slot.set(app.clone()).ok().unwrap();
    app.finish_grant(&back).await.unwrap();
    // The owner widens the grant from the API: the node notifies the application.
    let r = w
        .alice
        .json(
            Method::PUT,
            &format!("{}/api/grants/photo-app", w.a.url()),
            Some(serde_json::json!({"add": ["view-settings"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    let mut seen = 0;
    for _ in 0..200 {
        let book = app.grants().await.unwrap();
        seen = book.first().map(|e| e.scope).unwrap_or(0);
        if seen == 0x80000 | 0x400000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, 0x80000 | 0x400000);
    // A forged notification is refused.
    let forged = grant_node::grant::statement::Notification {
        owner: alice.clone(),
        application: name("photo-app"),
        scope: Scope::NONE,
        expires: None,
        time: common::now() + 10,
    }
    .sign(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    let r = grant_node::outbound::HttpClient::new()
        .send(
            Method::POST,
            &receiver_url,
            &[("content-type", "application/cbor")],
            forged.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(app.grants().await.unwrap()[0].scope, 0x80000 | 0x400000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_speaking_another_protocol_version_is_refused() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    // A "node" from the future: its discovery document says protocol version 2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let future_url = format!("http://{}/", listener.local_addr().unwrap());
    let _future = common::serve_task(listener, |_req, _| async {
        grant_node::http::response::json(hyper::StatusCode::OK, r#"{"protocol_version":2}"#)
    });
    let user = Identity::new("carol", 3);
    stub.client()
        .submit(user.register_op(&future_url, &[], 0))
        .await
        .unwrap();
    let id = Identity::new("photo-app", 1);
    stub.client()
        .submit(id.register_op("https://app.example/", &[REDIRECT], 0))
        .await
        .unwrap();
    let app = stub.open_app(&id, dir.path()).await;
    match app
        .start_grant(&name("carol"), VIEW_PROFILE, REDIRECT)
        .await
    {
        Err(ClientError::UnsupportedNode { version, .. }) => assert_eq!(version, "2"),
        other => panic!("expected UnsupportedNode, got {other:?}"),
    }
    assert!(matches!(
        app.discover(&name("nobody")).await,
        Err(ClientError::UnknownUser(_))
    ));
}
