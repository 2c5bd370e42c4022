//! The security regression suite: one named test per attack that peers have shipped bugs for.
//! Each asserts the exact refusal and that nothing was redirected or changed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{grant_url, page_code, tempdir, text, Browser, Identity, Node};
use ed25519_dalek::SigningKey;
use grant_node::outbound::HttpClient;
use hyper::Method;

const REGISTERED: &str = "https://app.example/cb";
const LOOPBACK: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: u64 = 0x80000;

async fn setup() -> (tempfile::TempDir, Node, Browser, Identity) {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REGISTERED, LOOPBACK]).await;
    (dir, node, browser, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_uri_bypasses_are_refused_with_an_error_page() {
    let (_dir, node, mut browser, app) = setup().await;
    let attacks = [
        "https://app.example/cb.evil.example",
        "https://app.example/cbx",
        "https://app.example/cb/../../evil",
        "https://app.example/cb/..;/evil",
        "https://app.example/cb?x=1",
        "https://app.example@evil.example/cb",
        "https://evil.example@app.example/cb",
        "HTTPS://APP.EXAMPLE/cb",
        "https://App.example/cb",
        "https://app.example./cb",
        "https://app.example:443/cb",
        "https://app.example:8443/cb",
        "http://app.example/cb",
        "https://app.example/cb#fragment",
        "https://app.example/%63b",
        "https://app.example/cb%2F..%2Fevil",
        "https://app.example.evil.example/cb",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "http://localhost:4000/cb",
        "http://127.0.0.2:4000/cb",
        "http://[::1]:4000/cb",
        "http://127.0.0.1:4000/cb/",
        "http://127.0.0.1:4000/other",
        "https://127.0.0.1:4000/cb",
        "//evil.example/cb",
    ];
    for target in attacks {
        // The carte binds the hostile URI too, so only the registration check can stop it.
        let carte = app.grant_carte(VIEW_PROFILE, target, "s");
        let url = grant_url(
            &node.url(),
            "app",
            &carte,
            "view-profile",
            target,
            "s",
            None,
        );
        let r = browser.get(&url).await;
        assert_eq!(r.status, 400, "{target}: {}", text(&r));
        assert!(
            r.headers.get("location").is_none(),
            "{target} was redirected"
        );
        assert_eq!(
            page_code(&r),
            "grant.redirect-uri-not-registered",
            "{target}"
        );
    }
    // The registered ones, and the loopback one on another port, are accepted.
    for ok in [REGISTERED, LOOPBACK, "http://127.0.0.1:61000/cb"] {
        let carte = app.grant_carte(VIEW_PROFILE, ok, "s");
        let r = browser
            .get(&grant_url(
                &node.url(),
                "app",
                &carte,
                "view-profile",
                ok,
                "s",
                None,
            ))
            .await;
        assert_eq!(r.status, 200, "{ok}: {}", text(&r));
    }
}

async fn verify(node: &Node, carte: &str) -> (u16, String) {
    node.verify(carte).await
}

#[tokio::test(flavor = "multi_thread")]
async fn carte_misuse_is_refused_with_its_code() {
    let (_dir, node, _browser, app) = setup().await;
    // Begins before the rotation below, so its key is the one that will be rotated out.
    let good = app.carte("alice", VIEW_PROFILE, -30);
    assert_eq!(
        verify(&node, &good.sign(&app.signing)).await,
        (200, "app".into())
    );

    let mut other_node = good.clone();
    other_node.audience = Some("mallory".parse().unwrap());
    assert_eq!(
        verify(&node, &other_node.sign(&app.signing)).await,
        (401, "carte.wrong-node".into())
    );

    let mut expired = good.clone();
    expired.beginning -= 2000;
    expired.deadline = expired.beginning + 600;
    assert_eq!(
        verify(&node, &expired.sign(&app.signing)).await,
        (401, "carte.expired".into())
    );

    let mut early = good.clone();
    early.beginning += 3000;
    early.deadline = early.beginning + 600;
    assert_eq!(
        verify(&node, &early.sign(&app.signing)).await,
        (401, "carte.not-begun".into())
    );

    let wire = good.sign(&app.signing);
    assert_eq!(
        verify(&node, &wire[..wire.len() - 10]).await.1,
        "carte.malformed"
    );
    assert_eq!(
        verify(&node, &"A".repeat(5000)).await,
        (401, "carte.malformed".into())
    );
    let thief = SigningKey::from_bytes(&[66; 32]);
    assert_eq!(
        verify(&node, &good.sign(&thief)).await,
        (401, "carte.bad-signature".into())
    );

    // Non-canonical CBOR: the same payload with a non-shortest integer, properly signed.
    let payload = grant_node::carte::codec::encode_payload(&good);
    let mut longer = vec![payload[0], 0x18, 0x01];
    longer.extend_from_slice(&payload[2..]);
    assert_eq!(
        payload[1], 0x01,
        "version 1 comes right after the array header"
    );
    let sig = ed25519_dalek::Signer::sign(
        &app.signing,
        &grant_node::carte::codec::signed_message(&longer),
    );
    let forged = grant_node::carte::codec::wire(&longer, &sig);
    assert_eq!(
        verify(&node, &forged).await,
        (401, "carte.malformed".into())
    );

    // Rotation and compromise, through the node's embedded registry.
    let record: serde_json::Value = node.get("/registry/names/app").await.json().unwrap();
    let new_key = SigningKey::from_bytes(&[77; 32]);
    let rotate_at = common::now();
    let op = grant_node::registry::op::Operation::Update(grant_node::registry::op::Update {
        name: app.name.clone(),
        previous_digest: hex::decode(record["digest"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        new_signing_key: Some((new_key.verifying_key(), rotate_at)),
        node_uri: None,
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: None,
        compromised_since: None,
    })
    .sign(&app.updating);
    assert_eq!(common::post_op(&node.url(), op).await.status, 201);
    // Superseded key, beginning after the rotation.
    let mut late = app.carte("alice", VIEW_PROFILE, 5);
    late.beginning = rotate_at + 1;
    assert_eq!(
        verify(&node, &late.sign(&app.signing)).await,
        (401, "carte.bad-signature".into())
    );
    // Compromised key: everything it signed stops at once.
    let record: serde_json::Value = node.get("/registry/names/app").await.json().unwrap();
    let op = grant_node::registry::op::Operation::Update(grant_node::registry::op::Update {
        name: app.name.clone(),
        previous_digest: hex::decode(record["digest"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        new_signing_key: None,
        node_uri: None,
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: Some(app.signing.verifying_key()),
        compromised_since: None,
    })
    .sign(&app.updating);
    assert_eq!(common::post_op(&node.url(), op).await.status, 201);
    assert_eq!(
        verify(&node, &wire).await,
        (401, "carte.key-not-valid".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn html_injection_through_every_input_comes_out_inert() {
    let (_dir, node, mut browser, app) = setup().await;
    let hostile = "<script>alert(1)</script>";
    // Through an unknown scope name (shown in the error message).
    let carte = app.grant_carte(VIEW_PROFILE, REGISTERED, "s");
    let r = browser
        .get(&grant_url(
            &node.url(),
            "app",
            &carte,
            hostile,
            REGISTERED,
            "s",
            None,
        ))
        .await;
    assert_eq!(page_code(&r), "scope.unknown");
    assert!(!text(&r).contains("<script>"), "{}", text(&r));
    // Through the login form's name.
    let r = browser
        .get(&format!(
            "{}/login?name=%3Cscript%3Ealert(1)%3C/script%3E&next=%22%3E%3Cscript%3E",
            node.url()
        ))
        .await;
    assert!(!text(&r).contains("<script>"), "{}", text(&r));
    // Through the state (hidden in the name prompt for a visitor).
    let carte = app.grant_carte(VIEW_PROFILE, REGISTERED, hostile);
    let r = Browser::new(&node.url())
        .get(&grant_url(
            &node.url(),
            "app",
            &carte,
            "view-profile",
            REGISTERED,
            hostile,
            None,
        ))
        .await;
    assert!(!text(&r).contains("<script>"), "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_input_gets_a_clear_4xx_and_the_node_stays_up() {
    let (_dir, node, _browser, app) = setup().await;
    let http = HttpClient::new();
    // A huge header.
    let big = "x".repeat(100 * 1024);
    let r = http
        .send(
            Method::GET,
            &format!("{}/healthz", node.url()),
            &[("x-big", &big)],
            Default::default(),
        )
        .await;
    assert!(
        matches!(&r, Ok(r) if r.status == 431) || r.is_err(),
        "{:?}",
        r.as_ref().map(|r| r.status)
    );
    // A huge body.
    let r = http
        .send(
            Method::POST,
            &format!("{}/api/cartes/verify", node.url()),
            &[("content-type", "application/json")],
            vec![b'x'; 1 << 20].into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (413, "request.too-large".into())
    );
    let r = common::post_op(&node.url(), vec![0; 100_000]).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (413, "op.too-large".into())
    );
    // A huge query string on /grant.
    let carte = app.grant_carte(VIEW_PROFILE, REGISTERED, "s");
    let url = grant_url(
        &node.url(),
        "app",
        &carte,
        "view-profile",
        REGISTERED,
        &"s".repeat(20_000),
        None,
    );
    let r = http.get(&url).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (414, "request.too-large".into())
    );
    // Still serving.
    assert_eq!(node.get("/healthz").await.status, 200);
}
