//! Controlled accounts: a platform designated as controller creates owners, acts for them,
//! logs them in, and brings a fresh browser back into an interrupted grant.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{grant_url, hidden, location, page_code, tempdir, text, Browser, Identity, Node};
use grant_node::name::Name;
use grant_node::outbound::{HttpClient, Reply};
use hyper::Method;
use serde_json::json;

const PLATFORM: &str = "https://platform.example";
const REDIRECT: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: u64 = 0x80000;
const VIEW_SETTINGS: u64 = 0x400000;

async fn start() -> (tempfile::TempDir, Node, Identity) {
    let dir = tempdir();
    let mut config = Node::embedded_config(dir.path(), "alice");
    config.cors_origins = vec![PLATFORM.into()];
    config.login_redirect = Some(format!("{PLATFORM}/login"));
    let node = Node::start(config).await;
    let platform = Identity::new("platform", 7);
    node.register_app(&platform, &[]).await;
    (dir, node, platform)
}

fn designate(node: &Node, name: &str, max: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args(["controller", "add", name, "--max-scope", max, "--data-dir"])
        .arg(&node.dir)
        .envs(node.cli_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A controller carte addressed to the node, optionally on behalf of `subject`.
fn controller_carte(c: &Identity, subject: Option<&str>, admin: u64) -> String {
    let mut carte = c.carte("alice", admin, 0);
    carte.subject = subject.map(|s| Name::parse(s).unwrap());
    carte.sign(&c.signing)
}

async fn call(
    node: &Node,
    method: Method,
    path: &str,
    carte: &str,
    body: Option<serde_json::Value>,
    origin: Option<&str>,
) -> Reply {
    let auth = format!("Carte {carte}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(o) = origin {
        headers.push(("origin", o));
    }
    HttpClient::new()
        .send(
            method,
            &format!("{}{}", node.url(), path),
            &headers,
            body.map(|b| b.to_string().into()).unwrap_or_default(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_drives_its_owners() {
    let (_dir, node, platform) = start().await;
    designate(&node, "platform", "view-profile,update-profile");
    let listed = Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args(["controller", "list", "--data-dir"])
        .arg(&node.dir)
        .envs(node.cli_env())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "platform\tview-profile,update-profile\n"
    );

    // Create two owners.
    let make = controller_carte(&platform, None, 0);
    let r = call(
        &node,
        Method::POST,
        "/api/owners",
        &make,
        Some(json!({"name": "Carol"})),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let carol: serde_json::Value = r.json().unwrap();
    assert_eq!(
        (carol["name"].as_str(), carol["controller"].as_str()),
        (Some("carol"), Some("platform"))
    );
    assert_eq!(carol["password_set"], false);
    let r = call(
        &node,
        Method::POST,
        "/api/owners",
        &make,
        Some(json!({"name": "dave", "email": "dave@platform.example"})),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    // The new names are registered with this node's URL.
    let rec: serde_json::Value = node.get("/registry/names/carol").await.json().unwrap();
    assert_eq!(rec["node_uri"], format!("{}/", node.url()));

    // Read carol's profile on her behalf.
    let read = controller_carte(&platform, Some("carol"), VIEW_PROFILE);
    let r = call(&node, Method::GET, "/api/profile", &read, None, None).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json::<serde_json::Value>().unwrap()["owner"], "carol");

    // Proxy-log carol in; with that cookie she completes a third-party grant.
    let login = controller_carte(&platform, Some("carol"), 0);
    let r = call(&node, Method::POST, "/auth/login", &login, None, None).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let session = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let mut browser = Browser::new(&node.url());
    browser.cookies.insert("gn_session".into(), session);
    let app = Identity::new("photo-app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "s1");
    let consent = browser
        .get(&grant_url(
            &node.url(),
            "photo-app",
            &carte,
            "view-profile",
            REDIRECT,
            "s1",
            None,
        ))
        .await;
    assert_eq!(consent.status, 200, "{}", text(&consent));
    let html = text(&consent);
    assert!(html.contains("act for carol"));
    let allowed = browser.allow(&node.url(), &html, "view-profile").await;
    assert_eq!(allowed.status, 303);
    assert!(location(&allowed).contains("node=carol"));

    // Carol's audit log shows what the platform did on her behalf.
    let history: serde_json::Value = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/platform/history", node.url()),
            None,
        )
        .await
        .json()
        .unwrap();
    let entries = history["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "controller:platform" && e["action"] == "GET /api/profile"),
        "{history}"
    );

    // A fresh browser starting dave's grant is sent to the platform's login, and comes back.
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "s2");
    let start_url = grant_url(
        &node.url(),
        "photo-app",
        &carte,
        "view-profile",
        REDIRECT,
        "s2",
        Some("dave"),
    );
    let mut fresh = Browser::new(&node.url());
    let r = fresh.get(&start_url).await;
    assert_eq!(r.status, 303);
    let to_platform = location(&r);
    assert!(
        to_platform.starts_with(&format!("{PLATFORM}/login?redirect_after_login=")),
        "{to_platform}"
    );
    let resume: String = form_urlencoded::parse(to_platform.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "redirect_after_login")
        .unwrap()
        .1
        .into_owned();
    assert!(resume.starts_with(&format!("{}/grant?", node.url())));
    // The platform logs dave in from its page (CORS, credentials) and sends him back.
    let login = controller_carte(&platform, Some("dave"), 0);
    let r = call(
        &node,
        Method::POST,
        "/auth/login",
        &login,
        Some(json!({"redirect_after_login": resume})),
        Some(PLATFORM),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.headers["access-control-allow-origin"], PLATFORM);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["redirect"], resume);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    fresh.cookies.insert("gn_session".into(), session);
    let consent = fresh.get(&resume).await;
    assert_eq!(consent.status, 200, "{}", text(&consent));
    assert!(text(&consent).contains("act for dave"));

    // The platform removes an owner it created.
    let r = call(&node, Method::DELETE, "/api/owners/dave", &make, None, None).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let d: serde_json::Value = node.get("/.well-known/grant-node").await.json().unwrap();
    assert_eq!(d["owners"], json!(["alice", "carol"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn controllers_are_held_to_their_limits() {
    let (_dir, node, platform) = start().await;
    designate(&node, "platform", "view-profile");
    let other = Identity::new("other-platform", 8);
    node.register_app(&other, &[]).await;
    designate(&node, "other-platform", "view-profile");
    let make = controller_carte(&other, None, 0);
    assert_eq!(
        call(
            &node,
            Method::POST,
            "/api/owners",
            &make,
            Some(json!({"name": "eve"})),
            None
        )
        .await
        .status,
        201
    );
    let make = controller_carte(&platform, None, 0);
    assert_eq!(
        call(
            &node,
            Method::POST,
            "/api/owners",
            &make,
            Some(json!({"name": "carol"})),
            None
        )
        .await
        .status,
        201
    );

    // Acting for an owner it did not create: the node's own owner, or another platform's.
    for owner in ["alice", "eve"] {
        let c = controller_carte(&platform, Some(owner), VIEW_PROFILE);
        let r = call(&node, Method::GET, "/api/profile", &c, None, None).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().unwrap()),
            (403, "controller.not-yours".into()),
            "{owner}"
        );
        let r = call(
            &node,
            Method::POST,
            "/auth/login",
            &controller_carte(&platform, Some(owner), 0),
            None,
            None,
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().unwrap()),
            (403, "controller.not-yours".into())
        );
    }
    let r = call(&node, Method::DELETE, "/api/owners/eve", &make, None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "controller.not-yours".into())
    );

    // Beyond its maximum scope.
    let c = controller_carte(&platform, Some("carol"), VIEW_SETTINGS);
    let r = call(&node, Method::GET, "/api/settings", &c, None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "grant.missing-scope".into())
    );

    // Password login for a controlled owner that has no password.
    let mut browser = Browser::new(&node.url());
    let page = browser.get(&format!("{}/login", node.url())).await;
    let html = text(&page);
    let r = browser
        .post_form(
            &format!("{}/login", node.url()),
            &[
                ("name", "carol"),
                ("password", "anything at all"),
                ("login_csrf", &hidden(&html, "login_csrf")),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (401, "login.no-password".into())
    );

    // Creating owners: only controllers, while public_registration is off.
    let app = Identity::new("some-app", 9);
    node.register_app(&app, &[]).await;
    let not_controller = controller_carte(&app, None, 0);
    let r = call(
        &node,
        Method::POST,
        "/api/owners",
        &not_controller,
        Some(json!({"name": "mallory"})),
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "controller.unknown".into())
    );
    let r = HttpClient::new()
        .send(
            Method::POST,
            &format!("{}/api/owners", node.url()),
            &[("content-type", "application/json")],
            json!({"name": "mallory"}).to_string().into(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (401, "carte.missing".into())
    );
    let r = browser.get(&format!("{}/signup", node.url())).await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (404, "registration.closed".into())
    );
    let r = browser
        .post_form(
            &format!("{}/signup", node.url()),
            &[("name", "mallory"), ("password", "long enough pw")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (404, "registration.closed".into())
    );
    assert!(
        HttpClient::new()
            .get(&format!("{}/registry/names/mallory", node.url()))
            .await
            .unwrap()
            .status
            == 404
    );

    // redirect_after_login must point into this node.
    let login = controller_carte(&platform, Some("carol"), 0);
    for bad in [
        "https://evil.example/grant",
        &format!("{}@evil.example/", node.url()),
        &format!("{}//evil.example/x", node.url()),
    ] {
        let r = call(
            &node,
            Method::POST,
            "/auth/login",
            &login,
            Some(json!({"redirect_after_login": bad})),
            None,
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().unwrap()),
            (400, "login.bad-redirect".into()),
            "{bad}"
        );
    }

    // CORS: a preflight from an unlisted origin is refused; a listed one is answered.
    let preflight = |origin: &'static str| {
        let url = format!("{}/auth/login", node.url());
        async move {
            HttpClient::new()
                .send(
                    Method::OPTIONS,
                    &url,
                    &[
                        ("origin", origin),
                        ("access-control-request-method", "POST"),
                    ],
                    Default::default(),
                )
                .await
                .unwrap()
        }
    };
    let r = preflight("https://evil.example").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "cors.origin-not-allowed".into())
    );
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = preflight(PLATFORM).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], PLATFORM);
    assert_ne!(r.headers["access-control-allow-origin"], "*");
    let r = call(
        &node,
        Method::POST,
        "/auth/login",
        &login,
        None,
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().unwrap()),
        (403, "cors.origin-not-allowed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_registration_opens_a_sign_up_page() {
    let dir = tempdir();
    let mut config = Node::embedded_config(dir.path(), "alice");
    config.public_registration = true;
    let node = Node::start(config).await;
    let mut browser = Browser::new(&node.url());
    let form = browser.get(&format!("{}/signup", node.url())).await;
    assert_eq!(form.status, 200);
    let html = text(&form);
    let r = browser
        .post_form(
            &format!("{}/signup", node.url()),
            &[
                ("name", "Erin"),
                ("password", "correct horse battery"),
                ("login_csrf", &hidden(&html, "login_csrf")),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let home = browser.get(&format!("{}/", node.url())).await;
    assert!(text(&home).contains("Logged in as erin"));
    let d: serde_json::Value = node.get("/.well-known/grant-node").await.json().unwrap();
    assert_eq!(d["owners"], json!(["alice", "erin"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_add_refuses_a_name_that_is_not_registered() {
    let (_dir, node, _platform) = start().await;
    let out = Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args([
            "controller",
            "add",
            "nobody-here",
            "--max-scope",
            "view-profile",
            "--data-dir",
        ])
        .arg(&node.dir)
        .envs(node.cli_env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nobody-here is not a registered name"),
        "{err}"
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args(["controller", "list", "--data-dir"])
        .arg(&node.dir)
        .envs(node.cli_env())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_link_works_once() {
    let (_dir, node, platform) = start().await;
    designate(&node, "platform", "view-profile");
    let make = controller_carte(&platform, None, 0);
    let r = call(
        &node,
        Method::POST,
        "/api/owners",
        &make,
        Some(json!({"name": "carol"})),
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let carte = controller_carte(&platform, Some("carol"), 0);
    let r = call(
        &node,
        Method::POST,
        "/auth/login",
        &carte,
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let link = r.json::<serde_json::Value>().unwrap()["login_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with(&format!("{}/auth/continue?token=", node.url())));
    let first = HttpClient::new().get(&link).await.unwrap();
    assert_eq!(first.status, 303);
    assert_eq!(first.headers["location"], "/");
    assert!(first.headers["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("gn_session="));
    let again = HttpClient::new().get(&link).await.unwrap();
    assert_eq!(
        (again.status.as_u16(), common::page_code(&again)),
        (404, "login.invalid-token".into())
    );
}
