//! The consent flow in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`; scripts/test.sh installs them) driven over WebDriver with fantoccini.
//! The visitor types their name, logs in, reads the consent page, clicks Allow and lands on
//! the application's redirect. Screenshots are kept in `target/test-artifacts/`.
//!
//! Without Chromium the test says so and passes, unless `GRANT_NODE_REQUIRE_CHROMIUM=1` (set
//! by scripts/test.sh), where a missing browser fails it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{grant_url, tempdir, Identity, Node};
use fantoccini::Locator;
use hyper::Response;

#[tokio::test(flavor = "multi_thread")]
async fn consent_flow_in_headless_chromium() {
    if !common::have_chromium(&[]) {
        return;
    }
    let dir = tempdir();
    let node = Node::start_embedded(&dir.path().join("node"), "alice").await;
    node.set_password("alice", "correct horse battery").await;

    // The application: it registers a loopback redirect and shows where the browser landed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/cb", listener.local_addr().unwrap());
    let _app_server =
        common::serve_task(listener, |req: grant_node::http::Request, _| async move {
            let q = req.uri().query().unwrap_or("").to_owned();
            use grant_node::http::pages::html::{html, DOCTYPE};
            let page = html! {
                (DOCTYPE) title { "photo-app" } h1 { "Back at photo-app" } p #query { (q) }
            };
            let mut r = Response::new(http_body_util::Full::new(hyper::body::Bytes::from(
                page.into_string(),
            )));
            r.headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            r
        });
    let app = Identity::new("photo-app", 1);
    node.register_app(&app, &[&redirect]).await;
    let carte = app.grant_carte(0x80000, &redirect, "browser-state");
    let start = grant_url(
        &node.url(),
        "photo-app",
        &carte,
        "view-profile",
        &redirect,
        "browser-state",
        None,
    );

    let (_driver, c) = common::chromium(dir.path(), &[], None).await;

    common::through_prompt_to_consent(&c, &start, "alice", "correct horse battery", "stuck.png")
        .await;
    let consent = c.source().await.unwrap();
    assert!(consent.contains("photo-app"));
    assert!(consent.contains("view your profile"));
    assert!(consent.contains(&redirect.trim_end_matches("/cb").to_string()));
    common::artifact("consent.png", &c.screenshot().await.unwrap());
    common::click(&c, "button[value=allow]").await;
    c.wait().for_element(Locator::Id("query")).await.unwrap();
    let landed = c.current_url().await.unwrap();
    assert!(landed.as_str().starts_with(&redirect), "{landed}");
    let query = c
        .find(Locator::Id("query"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(query.contains("state=browser-state"), "{query}");
    assert!(query.contains("node=alice"));
    assert!(query.contains("receipt="));
    common::artifact("landed.png", &c.screenshot().await.unwrap());
    c.close().await.unwrap();
}
