//! The JSON API and forward authentication over real HTTP: grants, protected resources,
//! `/auth/check`, discovery and metrics, and the login rules.

#![allow(clippy::unwrap_used)]

mod common;

use common::{tempdir, text, Browser, Identity, Node};
use grant_node::outbound::{HttpClient, Reply};
use hyper::Method;
use serde_json::json;

const VIEW_PROFILE: u64 = 0x80000;
const UPDATE_PROFILE: u64 = 0x100000;
const GRANT: u64 = 0x8000000;

async fn with_carte(
    node: &Node,
    method: Method,
    path: &str,
    auth: &str,
    body: Option<serde_json::Value>,
) -> Reply {
    HttpClient::new()
        .send(
            method,
            &format!("{}{}", node.url(), path),
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string().into()).unwrap_or_default(),
        )
        .await
        .unwrap()
}

async fn setup() -> (tempfile::TempDir, Node, Browser, Identity) {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    (dir, node, browser, app)
}

async fn grant(node: &Node, browser: &mut Browser, body: serde_json::Value) -> Reply {
    browser
        .json(
            Method::PUT,
            &format!("{}/api/grants/app", node.url()),
            Some(body),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_check_answers_for_nginx_and_friends() {
    let (_dir, node, mut browser, app) = setup().await;
    assert_eq!(
        grant(&node, &mut browser, json!({"add": ["view-profile"]}))
            .await
            .status,
        200
    );
    let carte = app
        .carte("alice", VIEW_PROFILE | UPDATE_PROFILE, 0)
        .sign(&app.signing);

    let r = with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=view-profile",
        &format!("Carte {carte}"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-grant-client"], "app");
    assert_eq!(r.headers["x-grant-owner"], "alice");
    assert_eq!(r.headers["x-grant-scope"], "view-profile");

    // Moera-style clients send it as a bearer token; the scope may come as a header.
    let r = HttpClient::new()
        .send(
            Method::GET,
            &format!("{}/auth/check", node.url()),
            &[
                ("authorization", &format!("Bearer carte:{carte}")),
                ("x-required-scope", "update-profile"),
            ],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["missing"],
        json!(["update-profile"])
    );

    let r = with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=view-profile",
        "Carte garbage",
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["www-authenticate"],
        "Carte error=\"carte.malformed\""
    );
    let r = HttpClient::new()
        .get(&format!("{}/auth/check?scope=view-profile", node.url()))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (401, "carte.missing".into())
    );
    let r = with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=fly",
        &format!("Carte {carte}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "scope.unknown".into())
    );

    // A carte addressed to someone this node does not host.
    let elsewhere = app.carte("bob", VIEW_PROFILE, 0).sign(&app.signing);
    let r = with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=view-profile",
        &format!("Carte {elsewhere}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (401, "carte.wrong-node".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_api_adds_removes_expires_and_revokes() {
    let (_dir, node, mut browser, app) = setup().await;
    let url = format!("{}/api/grants", node.url());
    let r = grant(
        &node,
        &mut browser,
        json!({"add": ["view-profile", "update-profile", "react"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let r = grant(&node, &mut browser, json!({"remove": ["react"]})).await;
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["scope"], json!(["view-profile", "update-profile"]));

    // The application may now update the profile.
    let carte = app.carte("alice", UPDATE_PROFILE, 0).sign(&app.signing);
    let r = with_carte(
        &node,
        Method::PUT,
        "/api/profile",
        &format!("Carte {carte}"),
        Some(json!({"display": "Alice"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    let r = with_carte(
        &node,
        Method::GET,
        "/api/profile",
        &format!("Carte {carte}"),
        None,
    )
    .await;
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["document"]["display"],
        "Alice"
    );

    // Refusals change nothing.
    let r = grant(&node, &mut browser, json!({"add": ["grant"]})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "grant.scope-not-grantable".into())
    );
    let r = grant(&node, &mut browser, json!({"add": ["fly"]})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "scope.unknown".into())
    );
    let r = grant(&node, &mut browser, json!({"expires": 1})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "grant.bad-expiry".into())
    );
    let r = browser
        .json(
            Method::PUT,
            &format!("{url}/nobody"),
            Some(json!({"add": ["react"]})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "name.unknown".into())
    );
    let r = browser.json(Method::DELETE, &url, None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "grant.all-required".into())
    );
    let v: serde_json::Value = browser
        .json(Method::GET, &format!("{url}/app"), None)
        .await
        .json()
        .unwrap();
    assert_eq!(v["scope"], json!(["view-profile", "update-profile"]));

    // An expiry in the near future; then replace the scope outright.
    let soon = common::now() + 3600;
    let v: serde_json::Value = grant(
        &node,
        &mut browser,
        json!({"scope": ["view-profile"], "expires": soon}),
    )
    .await
    .json()
    .unwrap();
    assert_eq!(
        (v["scope"].clone(), v["expires"].as_u64()),
        (json!(["view-profile"]), Some(soon))
    );

    // Revoke all, explicitly.
    let r = browser
        .json(Method::DELETE, &format!("{url}?all=true"), None)
        .await;
    assert_eq!(r.json::<serde_json::Value>().unwrap()["revoked"], 1);
    let r = browser.json(Method::GET, &format!("{url}/app"), None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "grant.not-found".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_manages_grants() {
    let (_dir, node, mut browser, app) = setup().await;
    // The owner's own carte with the grant scope works.
    let owner_key = node.owner_key("alice").await;
    let owner = Identity {
        name: "alice".parse().unwrap(),
        updating: owner_key.clone(),
        signing: owner_key,
    };
    let mine = owner.carte("alice", GRANT, 0).sign(&owner.signing);
    let r = with_carte(
        &node,
        Method::PUT,
        "/api/grants/app",
        &format!("Carte {mine}"),
        Some(json!({"add": ["view-profile"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let history: serde_json::Value = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/app/history", node.url()),
            None,
        )
        .await
        .json()
        .unwrap();
    assert_eq!(history["entries"][0]["actor"], "owner-carte");
    // An application's carte asking for the grant scope is refused.
    let theirs = app.carte("alice", GRANT, 0).sign(&app.signing);
    let r = with_carte(
        &node,
        Method::GET,
        "/api/grants",
        &format!("Carte {theirs}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "grant.missing-scope".into())
    );
    // Cookie writes from another origin are refused.
    browser.origin = Some("https://evil.example".into());
    let r = grant(&node, &mut browser, json!({"add": ["react"]})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "csrf.bad-origin".into())
    );
    // Without any credentials.
    let r = HttpClient::new()
        .get(&format!("{}/api/grants", node.url()))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_is_rate_limited_fresh_and_ends_at_logout() {
    let (_dir, node, mut browser, _app) = setup().await;
    let u = node.url();
    // Logging in replaces any session id the browser already had (no fixation).
    let before = browser.cookies["gn_session"].clone();
    let r = browser
        .log_in(&u, "alice", "correct horse battery", "//evil.example/")
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        common::location(&r),
        "/",
        "next may only point into this node"
    );
    let after = browser.cookies["gn_session"].clone();
    assert_ne!(before, after);
    let mut old = Browser::new(&u);
    old.cookies.insert("gn_session".into(), before);
    let r = old
        .json(Method::GET, &format!("{u}/api/grants"), None)
        .await;
    assert_eq!(r.status, 401, "the replaced session is gone");

    // Logout needs the form's token (another site cannot log the owner out), and ends the
    // session.
    let r = browser.post_form(&format!("{u}/logout"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), common::page_code(&r)),
        (403, "csrf.bad-token".into())
    );
    let home = text(&browser.get(&format!("{u}/")).await);
    let token = common::hidden(&home, "csrf");
    let r = browser
        .post_form(&format!("{u}/logout"), &[("csrf", &token)])
        .await;
    assert_eq!(r.status, 303);
    let mut stale = Browser::new(&u);
    stale.cookies.insert("gn_session".into(), after);
    let r = stale
        .json(Method::GET, &format!("{u}/api/grants"), None)
        .await;
    assert_eq!(r.status, 401);

    // A login form without its cookie token is refused.
    let r = Browser::new(&u)
        .post_form(
            &format!("{u}/login"),
            &[("name", "alice"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), common::page_code(&r)),
        (403, "csrf.bad-token".into())
    );

    // Five wrong passwords, then even the right one is refused for a while.
    let mut attacker = Browser::new(&u);
    for _ in 0..5 {
        let r = attacker.log_in(&u, "alice", "guess guess", "/").await;
        assert_eq!(r.status, 401);
    }
    let r = attacker
        .log_in(&u, "alice", "correct horse battery", "/")
        .await;
    assert_eq!(
        (r.status.as_u16(), common::page_code(&r)),
        (429, "login.rate-limited".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_health_and_metrics() {
    let (_dir, node, _browser, app) = setup().await;
    let d: serde_json::Value = node.get("/.well-known/grant-node").await.json().unwrap();
    assert_eq!(d["protocol_version"], 1);
    assert_eq!(d["node_name"], "alice");
    assert!(d["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "view-profile"));
    assert_eq!(d["endpoints"]["grant"], "/grant");
    let h: serde_json::Value = node.get("/healthz").await.json().unwrap();
    assert_eq!(h["status"], "ok");
    let carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    let auth = format!("Carte {carte}");
    // No grant yet: both are refused for the scope, after the carte verified once.
    with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=view-profile",
        &auth,
        None,
    )
    .await;
    with_carte(
        &node,
        Method::GET,
        "/auth/check?scope=view-profile",
        &auth,
        None,
    )
    .await;
    let m = text(&node.get("/metrics").await);
    assert!(
        m.contains("grant_node_requests_total{route=\"auth:check\",status=\"403\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("grant_node_carte_verifications_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("grant_node_carte_cache_hits_total 1"), "{m}");
    assert!(m.contains("grant_node_registry_sync_lag_entries 0"), "{m}");
    let r = HttpClient::new()
        .get(&format!("{}/nowhere", node.url()))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "not-found".into())
    );
    let r = HttpClient::new()
        .send(
            Method::DELETE,
            &format!("{}/healthz", node.url()),
            &[],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_in_json_are_an_array_or_one_string_of_names() {
    let (_dir, node, mut browser, _app) = setup().await;
    let r = grant(
        &node,
        &mut browser,
        json!({"add": "view-profile,update-profile"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let g: serde_json::Value = r.json().unwrap();
    assert_eq!(g["scope"], json!(["view-profile", "update-profile"]));
    let r = grant(&node, &mut browser, json!({"remove": "update-profile"})).await;
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["scope"],
        json!(["view-profile"])
    );
    let r = grant(
        &node,
        &mut browser,
        json!({"scope": "view-settings view-profile"}),
    )
    .await;
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["scope"],
        json!(["view-profile", "view-settings"])
    );
    let r = grant(&node, &mut browser, json!({"add": "view-profile,fly"})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "scope.unknown".into())
    );
    let r = grant(&node, &mut browser, json!({"add": 7})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (400, "request.malformed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_question_the_registry_cannot_answer_has_a_registry_code() {
    let (_dir, node, _browser, app) = setup().await;
    let r = node.get("/registry/names/app/key?at=1").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "registry.no-key-at".into())
    );
    let now = common::now();
    let r = node.get(&format!("/registry/names/app/key?at={now}")).await;
    let k: serde_json::Value = r.json().unwrap();
    assert_eq!(
        k["key"],
        hex::encode(app.signing.verifying_key().as_bytes())
    );
}

/// Scopes the lost-update tests add and remove, each by a request of its own.
const ADDED: [&str; 12] = [
    "other",
    "view-content",
    "add-post",
    "update-post",
    "add-comment",
    "update-comment",
    "react",
    "delete-own-content",
    "block",
    "friend",
    "remote-identify",
    "drafts",
];
const REMOVED: [&str; 4] = [
    "view-feeds",
    "update-feeds",
    "view-profile",
    "update-profile",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_and_removes_of_distinct_scopes_all_take_effect() {
    let (_dir, node, mut browser, _app) = setup().await;
    let r = grant(&node, &mut browser, json!({ "add": REMOVED })).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let key = node.owner_key("alice").await;
    let owner = Identity {
        name: "alice".parse().unwrap(),
        updating: key.clone(),
        signing: key,
    };
    for round in 0..3 {
        // 16 changes at once, each to a different scope: every one must survive, as if
        // they had run one after another (12 adds, 4 removes).
        let bodies: Vec<serde_json::Value> = ADDED
            .iter()
            .map(|s| json!({ "add": [s] }))
            .chain(REMOVED.iter().map(|s| json!({ "remove": [s] })))
            .collect();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(bodies.len()));
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let carte = owner.carte("alice", GRANT, 0).sign(&owner.signing);
                let url = format!("{}/api/grants/app", node.url());
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let http = HttpClient::new();
                    barrier.wait().await;
                    http.send(
                        Method::PUT,
                        &url,
                        &[
                            ("authorization", &format!("Carte {carte}")),
                            ("content-type", "application/json"),
                        ],
                        body.to_string().into(),
                    )
                    .await
                    .unwrap()
                    .status
                    .as_u16()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "round {round}");
        }
        let now: serde_json::Value = browser
            .json(Method::GET, &format!("{}/api/grants/app", node.url()), None)
            .await
            .json()
            .unwrap();
        let mut held: Vec<String> = now["scope"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        held.sort();
        let mut want: Vec<String> = ADDED.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(held, want, "round {round}: a change was lost");
        // Put the removed ones back, take the added ones away, for the next round.
        let r = grant(&node, &mut browser, json!({ "scope": REMOVED })).await;
        assert_eq!(r.status, 200);
    }
    // Each change wrote its own history entry, and each entry's "before" is the previous
    // entry's "after": the changes ran one after another.
    let history: serde_json::Value = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/app/history", node.url()),
            None,
        )
        .await
        .json()
        .unwrap();
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1 + 3 * 17, "{history}");
    let set = |v: &serde_json::Value| {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        s.sort();
        s
    };
    // Oldest first or newest first: the chain holds in one of the two orders.
    let chained = |e: &[serde_json::Value]| {
        e.windows(2)
            .all(|w| set(&w[0]["new_scope"]) == set(&w[1]["old_scope"]))
    };
    let mut reversed = entries.clone();
    reversed.reverse();
    assert!(
        chained(entries) || chained(&reversed),
        "history is not one serial chain: {history}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_grant_that_is_not_there_is_404_and_writes_nothing() {
    let (_dir, node, mut browser, _app) = setup().await;
    let r = browser
        .json(
            Method::DELETE,
            &format!("{}/api/grants/app", node.url()),
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (404, "grant.not-found".into())
    );
    let history: serde_json::Value = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/app/history", node.url()),
            None,
        )
        .await
        .json()
        .unwrap();
    assert_eq!(history["entries"].as_array().unwrap().len(), 0);
}
