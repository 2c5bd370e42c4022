//! The grant flow end to end over real HTTP: an application, an owner with a browser, a node
//! with its embedded registry on port 0.

#![allow(clippy::unwrap_used)]

mod common;

use common::{grant_url, hidden, location, now, page_code, tempdir, text, Browser, Identity, Node};
use grant_node::grant::statement::Receipt;
use grant_node::outbound::HttpClient;
use hyper::Method;

const REDIRECT: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: u64 = 0x80000;
const VIEW_SETTINGS: u64 = 0x400000;

/// Walks the browser from the application's `/grant` link to the consent page.
async fn to_consent(_node: &Node, browser: &mut Browser, url: &str) -> String {
    let page = browser.get(url).await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let html = text(&page);
    assert!(html.contains("Allow") && html.contains("Deny"), "{html}");
    html
}

async fn api(node: &Node, method: Method, path: &str, carte: &str) -> (u16, serde_json::Value) {
    let r = HttpClient::new()
        .send(
            method,
            &format!("{}{}", node.url(), path),
            &[("authorization", &format!("Carte {carte}"))],
            Default::default(),
        )
        .await
        .unwrap();
    (
        r.status.as_u16(),
        r.json().unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_flow_as_an_application_and_an_owner_see_it() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("photo-app", 1);
    node.register_app(&app, &[REDIRECT]).await;

    // The application sends a fresh browser to the node.
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "st-1");
    let url = grant_url(
        &node.url(),
        "photo-app",
        &carte,
        "view-profile",
        REDIRECT,
        "st-1",
        None,
    );
    let mut browser = Browser::new(&node.url());
    let prompt = browser.get(&url).await;
    assert_eq!(prompt.status, 200);
    assert!(text(&prompt).contains("Your name"));

    // It types its name; the node sends it to log in, then back to the request.
    let with_owner = grant_url(
        &node.url(),
        "photo-app",
        &carte,
        "view-profile",
        REDIRECT,
        "st-1",
        Some("Alice"),
    );
    let to_login = browser.get(&with_owner).await;
    assert_eq!(to_login.status, 303);
    let login_url = format!("{}{}", node.url(), location(&to_login));
    let login = browser.get(&login_url).await;
    assert_eq!(login.status, 200);
    let html = text(&login);
    let logged_in = browser
        .post_form(
            &format!("{}/login", node.url()),
            &[
                ("name", "alice"),
                ("password", "correct horse battery"),
                ("login_csrf", &hidden(&html, "login_csrf")),
                ("next", &hidden(&html, "next").replace("&amp;", "&")),
            ],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", text(&logged_in));
    let back = format!("{}{}", node.url(), location(&logged_in));
    let consent = to_consent(&node, &mut browser, &back).await;
    assert!(consent.contains("photo-app"));
    assert!(consent.contains("view your profile"));
    assert!(
        consent.contains("http://127.0.0.1:4000"),
        "shows where the browser returns"
    );
    assert!(consent.contains("holds no grant from you yet"));

    // Allow.
    let allowed = browser.allow(&node.url(), &consent, "view-profile").await;
    assert_eq!(allowed.status, 303, "{}", text(&allowed));
    let target = location(&allowed);
    assert!(target.starts_with(&format!("{REDIRECT}?")), "{target}");
    let query: Vec<(String, String)> =
        form_urlencoded::parse(target.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("state"), "st-1");
    assert_eq!(get("node"), "alice");
    assert_eq!(get("scope"), "view-profile");

    // The application verifies the receipt against the registry.
    let key: serde_json::Value = HttpClient::new()
        .get(&format!(
            "{}/registry/names/alice/key?at={}",
            node.url(),
            now()
        ))
        .await
        .unwrap()
        .json()
        .unwrap();
    let key = grant_node::config::parse_key(key["key"].as_str().unwrap()).unwrap();
    let receipt = Receipt::verify(&get("receipt"), &key).unwrap();
    assert_eq!(receipt.owner.as_str(), "alice");
    assert_eq!(receipt.application.as_str(), "photo-app");
    assert_eq!(receipt.scope.bits(), VIEW_PROFILE);
    assert_eq!(receipt.state, "st-1");

    // The application calls the node with admin cartes.
    let admin = app
        .carte("alice", VIEW_PROFILE | VIEW_SETTINGS, 0)
        .sign(&app.signing);
    let (status, body) = api(&node, Method::GET, "/api/profile", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "alice");
    let (status, body) = api(&node, Method::GET, "/api/settings", &admin).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "grant.missing-scope");
    assert_eq!(body["missing"], serde_json::json!(["view-settings"]));

    // The owner revokes; the very next call is refused, with the same carte or a new one.
    let revoked = browser
        .json(
            Method::DELETE,
            &format!("{}/api/grants/photo-app", node.url()),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", text(&revoked));
    let (status, body) = api(&node, Method::GET, "/api/profile", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("grant.missing-scope"))
    );
    let fresh = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    let (status, _) = api(&node, Method::GET, "/api/profile", &fresh).await;
    assert_eq!(status, 403);

    // The audit log tells the story.
    let history = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/photo-app/history", node.url()),
            None,
        )
        .await;
    assert_eq!(history.status, 200);
    let h: serde_json::Value = history.json().unwrap();
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "consent");
    assert_eq!(entries[0]["actor"], "owner");
    assert_eq!(entries[0]["new_scope"], serde_json::json!(["view-profile"]));
    assert_eq!(entries[1]["action"], "revoke");
    assert_eq!(entries[1]["new_scope"], serde_json::json!([]));
    assert_eq!(entries[1]["address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_redirects_with_access_denied() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let consent = to_consent(
        &node,
        &mut browser,
        &grant_url(
            &node.url(),
            "app",
            &carte,
            "view-profile",
            REDIRECT,
            "s",
            None,
        ),
    )
    .await;
    let denied = browser
        .post_form(
            &format!("{}/grant", node.url()),
            &[
                ("request_id", &hidden(&consent, "request_id")),
                ("csrf", &hidden(&consent, "csrf")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(denied.status, 303);
    assert_eq!(
        location(&denied),
        format!("{REDIRECT}?error=access_denied&state=s")
    );
    // Nothing was granted.
    let carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    assert_eq!(api(&node, Method::GET, "/api/profile", &carte).await.0, 403);
}

/// Each refusal of point 3: an error page (400) with its code, never a redirect.
#[tokio::test(flavor = "multi_thread")]
async fn bad_grant_requests_get_an_error_page_never_a_redirect() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    let other = Identity::new("other-app", 2);
    node.register_app(&other, &[REDIRECT]).await;
    let u = node.url();

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let c = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    cases.push((
        "unregistered client_id",
        grant_url(&u, "nobody", &c, "view-profile", REDIRECT, "s", None),
        "grant.unknown-client",
    ));
    cases.push((
        "carte signed by another app",
        grant_url(
            &u,
            "app",
            &other.grant_carte(VIEW_PROFILE, REDIRECT, "s"),
            "view-profile",
            REDIRECT,
            "s",
            None,
        ),
        "grant.client-mismatch",
    ));
    let mut plain = app.carte("alice", 0, 0);
    plain.request = Some(grant_node::carte::GrantRequest {
        scope: grant_node::scope::Scope::from_bits(VIEW_PROFILE),
        redirect_uri: REDIRECT.into(),
        state: "s".into(),
    });
    cases.push((
        "carte without the grant client scope",
        grant_url(
            &u,
            "app",
            &plain.sign(&app.signing),
            "view-profile",
            REDIRECT,
            "s",
            None,
        ),
        "grant.not-a-grant-carte",
    ));
    cases.push((
        "scope altered in the URL",
        grant_url(
            &u,
            "app",
            &c,
            "view-profile,update-profile",
            REDIRECT,
            "s",
            None,
        ),
        "grant.request-mismatch",
    ));
    cases.push((
        "state altered in the URL",
        grant_url(&u, "app", &c, "view-profile", REDIRECT, "t", None),
        "grant.request-mismatch",
    ));
    cases.push((
        "redirect_uri altered in the URL",
        grant_url(
            &u,
            "app",
            &c,
            "view-profile",
            "http://127.0.0.1:4000/other",
            "s",
            None,
        ),
        "grant.request-mismatch",
    ));
    let unregistered = "https://evil.example/cb";
    cases.push((
        "redirect_uri not registered",
        grant_url(
            &u,
            "app",
            &app.grant_carte(VIEW_PROFILE, unregistered, "s"),
            "view-profile",
            unregistered,
            "s",
            None,
        ),
        "grant.redirect-uri-not-registered",
    ));
    cases.push((
        "the grant scope requested",
        grant_url(
            &u,
            "app",
            &app.grant_carte(0x8000000, REDIRECT, "s"),
            "grant",
            REDIRECT,
            "s",
            None,
        ),
        "grant.scope-not-grantable",
    ));
    cases.push((
        "a scope name the node does not define",
        grant_url(
            &u,
            "app",
            &app.grant_carte(VIEW_PROFILE, REDIRECT, "s"),
            "view-profile,fly",
            REDIRECT,
            "s",
            None,
        ),
        "scope.unknown",
    ));
    cases.push((
        "a scope bit the node does not define",
        grant_url(
            &u,
            "app",
            &app.grant_carte(1 << 50, REDIRECT, "s"),
            "",
            REDIRECT,
            "s",
            None,
        ),
        "grant.request-mismatch",
    ));
    cases.push((
        "garbage carte",
        grant_url(&u, "app", "garbage", "view-profile", REDIRECT, "s", None),
        "carte.malformed",
    ));
    cases.push((
        "missing state",
        format!(
            "{u}/grant?client_id=app&client_secret={c}&scope=view-profile&redirect_uri={REDIRECT}"
        ),
        "grant.missing-parameter",
    ));
    let mut expired = app.carte("alice", 0, 0);
    expired.client_scope = grant_node::scope::Scope::GRANT;
    expired.beginning = now() - 1000;
    expired.deadline = now() - 500;
    expired.audience = None;
    expired.request = plain.request.clone();
    cases.push((
        "expired carte",
        grant_url(
            &u,
            "app",
            &expired.sign(&app.signing),
            "view-profile",
            REDIRECT,
            "s",
            None,
        ),
        "carte.expired",
    ));
    // A loopback redirect may differ in port only.
    let moved = "http://127.0.0.1:5999/cb";
    let ok_port = app.grant_carte(VIEW_PROFILE, moved, "s");
    let page = browser
        .get(&grant_url(
            &u,
            "app",
            &ok_port,
            "view-profile",
            moved,
            "s",
            None,
        ))
        .await;
    assert_eq!(
        page.status,
        200,
        "another loopback port is allowed: {}",
        text(&page)
    );

    for (what, url, code) in cases {
        let r = browser.get(&url).await;
        assert_eq!(r.status, 400, "{what}: {}", text(&r));
        assert!(r.headers.get("location").is_none(), "{what}: redirected");
        assert_eq!(page_code(&r), code, "{what}");
    }

    // A grant carte is accepted once: another session replaying it is refused.
    let once = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let url = grant_url(&u, "app", &once, "view-profile", REDIRECT, "s", None);
    to_consent(&node, &mut browser, &url).await;
    let mut second = Browser::new(&u);
    let r = second
        .log_in(&u, "alice", "correct horse battery", "/")
        .await;
    assert_eq!(r.status, 303);
    let replay = second.get(&url).await;
    assert_eq!(
        (replay.status.as_u16(), page_code(&replay)),
        (400, "carte.replayed".into())
    );
    // The same session reloading its page sees it again.
    to_consent(&node, &mut browser, &url).await;

    // The same payload under a second valid signature (the app's key, another nonce) is the
    // same carte: the single-use mark is the signed payload's, not the signature's.
    let other = resign(&once, &app.signing);
    assert_ne!(other, once);
    assert_eq!(
        node.verify(&other).await,
        (200, "app".into()),
        "the node takes the signature"
    );
    let url = grant_url(&u, "app", &other, "view-profile", REDIRECT, "s", None);
    let replay = second.get(&url).await;
    assert_eq!(
        (replay.status.as_u16(), page_code(&replay)),
        (400, "carte.replayed".into())
    );
}

/// Signs a carte's payload again with another nonce: a different signature that verifies
/// strictly. (Ed25519: R = [r]B, S = r + H(R, A, M)·a.)
fn resign(wire: &str, key: &ed25519_dalek::SigningKey) -> String {
    use curve25519_dalek::{constants::ED25519_BASEPOINT_TABLE, Scalar};
    use sha2::{Digest, Sha512};
    let decoded = grant_node::carte::decode(wire).unwrap();
    let message = grant_node::carte::codec::signed_message(&decoded.payload);
    let r = Scalar::from_bytes_mod_order([42; 32]);
    let big_r = (&r * ED25519_BASEPOINT_TABLE).compress();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(key.verifying_key().as_bytes())
            .chain_update(&message),
    );
    let s = r + k * key.to_scalar();
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verifying_key()
        .verify_strict(&message, &signature)
        .unwrap();
    grant_node::carte::codec::wire(&decoded.payload, &signature)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_from_another_node_is_sent_home_with_every_parameter() {
    let dir = tempdir();
    let stub = common::Stub::start(&dir.path().join("registry"), 0).await;
    let key = stub.public_key_hex();
    let a = Node::start_remote(&dir.path().join("a"), &stub.url(), &key, "alice").await;
    let b = Node::start_remote(&dir.path().join("b"), &stub.url(), &key, "bob").await;
    let app = Identity::new("app", 1);
    stub.client()
        .submit(app.register_op("https://app.example/", &[REDIRECT], 0))
        .await
        .unwrap();
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "<state>");
    let on_a = grant_url(
        &a.url(),
        "app",
        &carte,
        "view-profile",
        REDIRECT,
        "<state>",
        Some("bob"),
    );
    let mut browser = Browser::new(&a.url());
    let r = browser.get(&on_a).await;
    assert_eq!(r.status, 303);
    let home = location(&r);
    assert_eq!(
        home,
        grant_url(
            &b.url(),
            "app",
            &carte,
            "view-profile",
            REDIRECT,
            "<state>",
            Some("bob")
        )
    );
    // At home, bob finishes it.
    let mut at_home = b.set_password("bob", "correct horse battery").await;
    to_consent(&b, &mut at_home, &home).await;
    // A name that is nobody's is refused on A (with a request that is otherwise valid: the
    // client and its carte are checked first).
    let fresh = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let nobody = grant_url(
        &a.url(),
        "app",
        &fresh,
        "view-profile",
        REDIRECT,
        "s",
        Some("nobody"),
    );
    let r = browser.get(&nobody).await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (400, "grant.unknown-owner".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_send_the_security_headers_and_escape_everything() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    let state = "<script>alert(1)</script>";
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, state);
    let url = grant_url(
        &node.url(),
        "app",
        &carte,
        "view-profile",
        REDIRECT,
        state,
        None,
    );
    let consent = browser.get(&url).await;
    assert_eq!(consent.status, 200);
    for r in [
        &consent,
        &browser.get(&format!("{}/login", node.url())).await,
    ] {
        let h = |k: &str| r.headers.get(k).unwrap().to_str().unwrap().to_owned();
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "no-referrer");
        assert_eq!(h("cache-control"), "no-store");
    }
    // A hostile client_id is not shown at all: no page names an unverified client.
    let mut stranger = Browser::new(&node.url());
    let hostile = grant_url(
        &node.url(),
        "<script>alert(1)</script>",
        &carte,
        "view-profile",
        REDIRECT,
        state,
        None,
    );
    let refused = stranger.get(&hostile).await;
    let html = text(&refused);
    assert_eq!(
        (refused.status.as_u16(), page_code(&refused)),
        (400, "grant.unknown-client".into())
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("alert(1)"), "{html}");
    // The genuine request's state is carried in the name prompt's hidden fields, escaped.
    let fresh = app.grant_carte(VIEW_PROFILE, REDIRECT, state);
    let genuine = grant_url(
        &node.url(),
        "app",
        &fresh,
        "view-profile",
        REDIRECT,
        state,
        None,
    );
    let prompt = stranger.get(&genuine).await;
    let html = text(&prompt);
    assert_eq!(prompt.status, 200, "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_posts_need_the_session_token_and_our_origin() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let consent = to_consent(
        &node,
        &mut browser,
        &grant_url(
            &node.url(),
            "app",
            &carte,
            "view-profile",
            REDIRECT,
            "s",
            None,
        ),
    )
    .await;
    let id = hidden(&consent, "request_id");
    let csrf = hidden(&consent, "csrf");
    let post = format!("{}/grant", node.url());

    let r = browser
        .post_form(
            &post,
            &[
                ("request_id", &id),
                ("decision", "allow"),
                ("scope", "view-profile"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (403, "csrf.bad-token".into())
    );

    // Another session's token (and the other session itself) do not fit this request.
    let mut other = node.set_password("alice", "another long password").await;
    let r = other
        .post_form(
            &post,
            &[
                ("request_id", &id),
                ("csrf", &csrf),
                ("decision", "allow"),
                ("scope", "view-profile"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (403, "csrf.bad-token".into())
    );

    // "null" (sent under Referrer-Policy: no-referrer) counts only when Sec-Fetch-Site vouches.
    browser.origin = Some("null".into());
    let r = browser
        .post_form(
            &post,
            &[
                ("request_id", &id),
                ("csrf", &csrf),
                ("decision", "allow"),
                ("scope", "view-profile"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (403, "csrf.bad-origin".into())
    );

    browser.origin = Some("https://evil.example".into());
    let r = browser
        .post_form(
            &post,
            &[
                ("request_id", &id),
                ("csrf", &csrf),
                ("decision", "allow"),
                ("scope", "view-profile"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (403, "csrf.bad-origin".into())
    );

    // With everything right it works, once.
    browser.origin = Some(node.url());
    let fields = [
        ("request_id", id.as_str()),
        ("csrf", csrf.as_str()),
        ("decision", "allow"),
        ("scope", "view-profile"),
    ];
    assert_eq!(browser.post_form(&post, &fields).await.status, 303);
    let again = browser.post_form(&post, &fields).await;
    assert_eq!(
        (again.status.as_u16(), page_code(&again)),
        (400, "grant.request-expired".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_owners_sessions_and_outbox_survive_a_restart() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    // app.example does not answer, so the notification stays in the outbox.
    let put = browser
        .json(
            Method::PUT,
            &format!("{}/api/grants/app", node.url()),
            Some(serde_json::json!({"add": ["view-profile"]})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", text(&put));
    let url = node.url();
    node.stop().await;

    let mut config = Node::embedded_config(dir.path(), "alice");
    config.listen = url.trim_start_matches("http://").parse().unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let node = Node::start_on(config, listener).await;
    // The session cookie still works.
    let list = browser
        .json(Method::GET, &format!("{}/api/grants", node.url()), None)
        .await;
    assert_eq!(list.status, 200, "{}", text(&list));
    let v: serde_json::Value = list.json().unwrap();
    assert_eq!(v["grants"][0]["application"], "app");
    assert_eq!(v["grants"][0]["scope"], serde_json::json!(["view-profile"]));
    // The grant still works for the application.
    let carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    assert_eq!(api(&node, Method::GET, "/api/profile", &carte).await.0, 200);
    // The notification is still queued.
    let metrics = text(&node.get("/metrics").await);
    assert!(metrics.contains("grant_node_outbox_pending 1"), "{metrics}");
    // And the owner is still the node's.
    let d: serde_json::Value = node.get("/.well-known/grant-node").await.json().unwrap();
    assert_eq!(d["owners"], serde_json::json!(["alice"]));
}
