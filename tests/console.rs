//! The owner's console: every form's CSRF and Origin refusals over HTTP, and a real owner's
//! session in headless Chromium, with axe-core checking every page for accessibility.
//!
//! axe-core comes from the npm registry (scripts/test.sh installs it under target/axe); the
//! browser part says so and passes without Chromium or axe unless `GRANT_NODE_REQUIRE_CHROMIUM`
//! is set.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{grant_url, page_code, tempdir, text, Browser, Identity, Node};
use fantoccini::{Client, Locator};
use grant_node::outbound::HttpClient;
use hyper::{Method, Response};

const VIEW_PROFILE: u64 = 0x80000;
const UPDATE_PROFILE: u64 = 0x100000;

async fn grant(node: &Node, b: &mut Browser, app: &str, scopes: serde_json::Value) {
    let r = b
        .json(
            Method::PUT,
            &format!("{}/api/grants/{app}", node.url()),
            Some(serde_json::json!({ "scope": scopes })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
}

async fn scope_of(node: &Node, b: &mut Browser, app: &str) -> serde_json::Value {
    let r = b
        .json(
            Method::GET,
            &format!("{}/api/grants/{app}", node.url()),
            None,
        )
        .await;
    r.json::<serde_json::Value>()
        .map(|v| v["scope"].clone())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_console_form_refuses_a_missing_or_foreign_token_or_origin() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut b = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[]).await;
    grant(&node, &mut b, "app", serde_json::json!(["view-profile"])).await;
    let base = node.url();
    // Each form: where it posts, the page it comes from, and its fields besides the token.
    type Form<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let forms: [Form; 6] = [
        ("/logout", "/", vec![]),
        (
            "/grants/app",
            "/grants/app",
            vec![("scope", "react"), ("expires", "")],
        ),
        ("/grants/app/revoke", "/grants/app/revoke", vec![]),
        ("/revoke-all", "/revoke-all", vec![]),
        ("/sessions/end-others", "/sessions", vec![]),
        (
            "/password",
            "/password",
            vec![
                ("current", "correct horse battery"),
                ("new", "another good one"),
            ],
        ),
    ];
    // The token of the form posting to `action` on a page (every page also has the logout form).
    fn form_token(html: &str, action: &str) -> String {
        let at = html
            .find(&format!("action=\"{action}\""))
            .unwrap_or_else(|| panic!("no form for {action} in {html}"));
        common::hidden(&html[at..], "csrf")
    }
    let sessions_page = text(&b.get(&format!("{base}/sessions")).await);
    let end_others_token = form_token(&sessions_page, "/sessions/end-others");
    let logout_token = form_token(&sessions_page, "/logout");
    for (action, from, fields) in &forms {
        let html = text(&b.get(&format!("{base}{from}")).await);
        let token = form_token(&html, action);
        let other_token = if *action == "/sessions/end-others" {
            &logout_token
        } else {
            &end_others_token
        };
        let with = |t: &str| {
            let mut f: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
            if !t.is_empty() {
                f.push(("csrf", t.to_owned()));
            }
            f
        };
        let cases = [
            ("no token", with(""), Some(base.clone()), "csrf.bad-token"),
            (
                "another form's token",
                with(other_token),
                Some(base.clone()),
                "csrf.bad-token",
            ),
            (
                "a foreign origin",
                with(&token),
                Some("https://evil.example".to_owned()),
                "csrf.bad-origin",
            ),
        ];
        for (what, fields, origin, code) in cases {
            b.origin = origin;
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = b.post_form(&format!("{base}{action}"), &pairs).await;
            assert_eq!(
                (r.status.as_u16(), page_code(&r)),
                (403, code.to_owned()),
                "{action} with {what}"
            );
        }
        b.origin = Some(base.clone());
        // Without a session at all.
        let mut stranger = Browser::new(&base);
        let pairs: Vec<(&str, String)> = with(&token);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = stranger.post_form(&format!("{base}{action}"), &pairs).await;
        if *action == "/logout" {
            // Nobody to log out: the browser's cookie is cleared, nothing else happens.
            assert_eq!(r.status, 303);
            continue;
        }
        assert_eq!(
            (r.status.as_u16(), page_code(&r)),
            (403, "session.required".to_owned()),
            "{action} without a session"
        );
    }
    // Nothing changed: the grant, the password and this session are as they were.
    assert_eq!(
        scope_of(&node, &mut b, "app").await,
        serde_json::json!(["view-profile"])
    );
    let mut again = Browser::new(&base);
    let r = again
        .log_in(&base, "alice", "correct horse battery", "/")
        .await;
    assert_eq!(r.status, 303, "the password is unchanged");
}

// ---- In the browser ----------------------------------------------------------------------

fn axe_script() -> Option<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/axe/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(path).ok()
}

/// Screenshots the page and runs axe-core on it (WCAG 2.1 A and AA and the best-practice
/// rules); panics on any violation, whatever its impact.
async fn check_page(c: &Client, axe: &str, name: &str, checked: &mut Vec<String>) {
    common::artifact(
        &format!("console-{name}.png"),
        &c.screenshot().await.unwrap(),
    );
    c.execute(axe, vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})\
             .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length}))))\
             .catch(e => done([{id: 'axe-failed', impact: 'critical', help: String(e)}]));",
            vec![],
        )
        .await
        .unwrap();
    let bad: Vec<&serde_json::Value> = result.as_array().unwrap().iter().collect();
    assert!(bad.is_empty(), "axe on {name}: {bad:?}");
    checked.push(name.to_owned());
}

/// Waits (up to 10 s) until the page holds `needle`, and returns it.
async fn wait_for(c: &Client, needle: &str) -> String {
    let mut page = String::new();
    for _ in 0..100 {
        page = c.source().await.unwrap();
        if page.contains(needle) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never saw {needle:?} in {page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_manages_grants_in_chromium() {
    let axe = axe_script();
    if !common::have_chromium(&[]) {
        return;
    }
    assert!(
        axe.is_some() || std::env::var_os("GRANT_NODE_REQUIRE_CHROMIUM").is_none(),
        "axe-core is required here (scripts/test.sh installs it under target/axe)"
    );
    if axe.is_none() {
        eprintln!("axe-core missing; skipping");
        return;
    }
    let axe = axe.unwrap();
    let dir = tempdir();
    let mut config = Node::embedded_config(&dir.path().join("node"), "alice");
    config.usage_flush = Duration::from_secs(1);
    config.public_registration = true;
    let node = Node::start(config).await;
    // A second session of alice's, elsewhere: it will be ended from the sessions page.
    let mut elsewhere = node.set_password("alice", "correct horse battery").await;
    let base = node.url();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/cb", listener.local_addr().unwrap());
    let _landing = common::serve_task(listener, |_req: grant_node::http::Request, _| async move {
        let mut r = Response::new(http_body_util::Full::new(hyper::body::Bytes::from(
            "<!doctype html><html lang=\"en\"><title>back</title><h1 id=\"back\">Back at the application</h1></html>",
        )));
        r.headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        r
    });
    let photo = Identity::new("photo-app", 1);
    let notes = Identity::new("notes-app", 2);
    node.register_app(&photo, &[&redirect]).await;
    node.register_app(&notes, &[&redirect]).await;

    let (_driver, c) = common::chromium(dir.path(), &["--window-size=1000,1100"], None).await;
    let mut checked = Vec::new();

    // The pages a person sees before logging in: set-up, sign-up, an error page, login.
    let (token, hash) = grant_node::auth::new_token();
    grant_node::store::owners::insert_setup_token(
        &node.db().lock().unwrap(),
        &hash,
        &grant_node::name::Name::parse("alice").unwrap(),
        common::now() + 600,
    )
    .unwrap();
    c.goto(&format!("{base}/setup?token={token}"))
        .await
        .unwrap();
    check_page(&c, &axe, "setup", &mut checked).await;
    // Choosing the password shows the recovery words and asks for three of them back.
    common::type_into(&c, "password", "correct horse battery").await;
    common::click(&c, "form[action='/setup'] button[type=submit]").await;
    let words_page = wait_for(&c, "Your recovery words").await;
    check_page(&c, &axe, "recovery-words", &mut checked).await;
    let words: Vec<String> = words_page
        .split("<code>")
        .skip(1)
        .map(|w| w[..w.find("</code>").unwrap()].to_owned())
        .collect();
    assert_eq!(words.len(), 24);
    let positions = common::hidden(&words_page, "positions");
    for (i, p) in positions.split(',').enumerate() {
        let word = &words[p.parse::<usize>().unwrap() - 1];
        common::type_into(&c, &format!("w{i}"), word).await;
    }
    common::click(&c, "form[action='/setup/words'] button[type=submit]").await;
    c.wait().for_element(Locator::Css("nav")).await.unwrap();
    c.goto(&format!("{base}/signup")).await.unwrap();
    check_page(&c, &axe, "signup", &mut checked).await;
    c.goto(&format!("{base}/setup?token=not-a-token"))
        .await
        .unwrap();
    check_page(&c, &axe, "error", &mut checked).await;
    c.goto(&format!("{base}/login")).await.unwrap();
    check_page(&c, &axe, "login", &mut checked).await;
    // Log in, then grant both applications through the consent page.
    common::type_into(&c, "name", "alice").await;
    common::type_into(&c, "password", "correct horse battery").await;
    common::click(&c, "button[type=submit]").await;
    // (Having opened /signup first once made this fail: its cookie clashed with login's.)
    if c.wait().for_element(Locator::Css("nav")).await.is_err() {
        panic!("login failed: {}", c.source().await.unwrap());
    }
    for (app, id) in [("photo-app", &photo), ("notes-app", &notes)] {
        let carte = id.grant_carte(VIEW_PROFILE | UPDATE_PROFILE, &redirect, "s");
        let url = grant_url(
            &base,
            app,
            &carte,
            "view-profile,update-profile",
            &redirect,
            "s",
            None,
        );
        c.goto(&url).await.unwrap();
        c.wait()
            .for_element(Locator::Css("button[value=allow]"))
            .await
            .unwrap();
        if app == "photo-app" {
            check_page(&c, &axe, "consent", &mut checked).await;
        }
        common::click(&c, "button[value=allow]").await;
        c.wait().for_element(Locator::Id("back")).await.unwrap();
    }

    // The grants page lists both in plain words.
    c.goto(&format!("{base}/")).await.unwrap();
    let home = c.source().await.unwrap();
    assert!(
        home.contains("photo-app") && home.contains("notes-app"),
        "{home}"
    );
    assert!(home.contains("view your profile"), "{home}");
    check_page(&c, &axe, "grants", &mut checked).await;

    // Narrow photo-app to view-profile and give it an expiry.
    c.goto(&format!("{base}/grants/photo-app")).await.unwrap();
    check_page(&c, &axe, "application", &mut checked).await;
    common::click(&c, "input[name=scope][value=update-profile]").await;
    c.execute(
        "document.getElementById('expires').value = arguments[0];",
        vec![serde_json::json!("2099-12-31")],
    )
    .await
    .unwrap();
    common::click(&c, "form[action='/grants/photo-app'] button[type=submit]").await;
    let page = wait_for(&c, "value=\"2099-12-31\"").await;
    assert!(!page.contains("value=\"update-profile\" checked"), "{page}");

    // Revoke notes-app through the confirmation step.
    c.goto(&format!("{base}/grants/notes-app")).await.unwrap();
    common::click(&c, "a[href='/grants/notes-app/revoke']").await;
    c.wait()
        .for_element(Locator::Css("form[action='/grants/notes-app/revoke']"))
        .await
        .unwrap();
    check_page(&c, &axe, "revoke-confirmation", &mut checked).await;
    common::click(&c, "form[action='/grants/notes-app/revoke'] button").await;
    wait_for(&c, "<title>Your grants</title>").await;

    // Through the API: photo-app gets only the narrowed scope, notes-app nothing.
    let http = HttpClient::new();
    let check = |id: &Identity, scope: &str| {
        let carte = id
            .carte("alice", VIEW_PROFILE | UPDATE_PROFILE, 0)
            .sign(&id.signing);
        let http = http.clone();
        let url = format!("{base}/auth/check?scope={scope}");
        async move {
            let r = http
                .send(
                    Method::GET,
                    &url,
                    &[("authorization", &format!("Carte {carte}"))],
                    Default::default(),
                )
                .await
                .unwrap();
            (r.status.as_u16(), r.json::<serde_json::Value>().unwrap())
        }
    };
    let (status, body) = check(&photo, "view-profile").await;
    assert_eq!(
        (status, &body["scope"]),
        (200, &serde_json::json!(["view-profile"]))
    );
    assert_eq!(check(&photo, "update-profile").await.0, 403);
    assert_eq!(check(&notes, "view-profile").await.0, 403);

    // The grants page shows when photo-app was last used (written down every second here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.goto(&format!("{base}/")).await.unwrap();
    let home = c.source().await.unwrap();
    let row = &home[home.find(">photo-app<").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("end of 2099-12-31 (UTC)"), "{row}");
    assert!(
        !row.contains("not yet") && row.matches(" UTC<").count() == 2,
        "{row}"
    );
    assert!(
        home.contains("is written down every 1 s; last at"),
        "{home}"
    );

    // The history rows these actions wrote.
    c.goto(&format!("{base}/grants/photo-app")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(
        page.contains("<td>consent</td>") && page.contains("<td>update</td>"),
        "{page}"
    );
    c.goto(&format!("{base}/grants/notes-app")).await.unwrap();
    assert!(c.source().await.unwrap().contains("<td>revoke</td>"));
    // Revoke everything: the confirmation names how many lose access (photo-app only).
    c.goto(&format!("{base}/revoke-all")).await.unwrap();
    assert!(c
        .source()
        .await
        .unwrap()
        .contains("1 application will lose access"));
    check_page(&c, &axe, "revoke-all-confirmation", &mut checked).await;

    // End the other session.
    c.goto(&format!("{base}/sessions")).await.unwrap();
    check_page(&c, &axe, "sessions", &mut checked).await;
    assert_eq!(elsewhere.get(&format!("{base}/")).await.status, 200);
    common::click(&c, "form[action='/sessions/end-others'] button").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for(&c, "(this browser)").await;
    let r = elsewhere.get(&format!("{base}/")).await;
    assert_eq!(r.status, 303, "the other session ended");

    // Change the password.
    c.goto(&format!("{base}/password")).await.unwrap();
    check_page(&c, &axe, "password", &mut checked).await;
    common::type_into(&c, "current", "correct horse battery").await;
    common::type_into(&c, "new", "a new and better one").await;
    common::click(&c, "form[action='/password'] button").await;
    wait_for(&c, "Password changed").await;
    let mut fresh = Browser::new(&base);
    assert_eq!(
        fresh
            .log_in(&base, "alice", "a new and better one", "/")
            .await
            .status,
        303
    );

    // The administrator's page.
    c.goto(&format!("{base}/admin")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Registry mirror"));
    check_page(&c, &axe, "node", &mut checked).await;
    println!("axe-core checked: {}", checked.join(", "));
    c.close().await.unwrap();
}

/// Every value of the hidden inputs named `name` in a page.
fn hidden_all(html: &str, name: &str) -> Vec<String> {
    let marker = format!("type=\"hidden\" name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .map(|(at, m)| {
            let start = at + m.len();
            let end = html[start..].find('"').unwrap() + start;
            html[start..end].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_form_drawn_before_another_change_does_not_undo_it() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut b = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[]).await;
    grant(
        &node,
        &mut b,
        "app",
        serde_json::json!(["view-profile", "update-profile"]),
    )
    .await;
    let base = node.url();
    // The owner opens the application page…
    let html = text(&b.get(&format!("{base}/grants/app")).await);
    let form_at = html.find("action=\"/grants/app\"").unwrap();
    let token = common::hidden(&html[form_at..], "csrf");
    let mut held = hidden_all(&html, "held");
    held.sort();
    assert_eq!(held, ["update-profile", "view-profile"], "{html}");
    // …meanwhile another change adds `react` through the API…
    let r = b
        .json(
            Method::PUT,
            &format!("{base}/api/grants/app"),
            Some(serde_json::json!({ "add": ["react"] })),
        )
        .await;
    assert_eq!(r.status, 200);
    // …then the owner submits the page as drawn, unticking update-profile.
    let mut fields: Vec<(&str, &str)> = vec![
        ("csrf", &token),
        ("scope", "view-profile"),
        ("expires", ""),
        ("held_expires", ""),
    ];
    for h in &held {
        fields.push(("held", h));
    }
    let r = b.post_form(&format!("{base}/grants/app"), &fields).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    // The owner's change is made, and the one made meanwhile is kept.
    let mut now: Vec<String> = scope_of(&node, &mut b, "app")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    now.sort();
    assert_eq!(now, ["react", "view-profile"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_page_shows_what_is_held_first_and_the_rest_behind_a_disclosure() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let mut b = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[]).await;
    grant(&node, &mut b, "app", serde_json::json!(["view-profile"])).await;
    let html = text(&b.get(&format!("{}/grants/app", node.url())).await);
    let details = html.find("<details>").expect("a disclosure");
    let held = html.find("value=\"view-profile\" checked").unwrap();
    let sheriff = html.find("value=\"sheriff\"").unwrap();
    assert!(held < details && details < sheriff, "{html}");
    // Revoke-all with nothing to revoke says so, with no button.
    grant(&node, &mut b, "app", serde_json::json!([])).await;
    let html = text(&b.get(&format!("{}/revoke-all", node.url())).await);
    assert!(html.contains("nothing to revoke"), "{html}");
    assert!(!html.contains("Revoke all 0"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_password_comes_with_recovery_words_that_hold_the_name() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let base = node.url();
    let before = HttpClient::new()
        .get(&format!("{base}/registry/names/alice"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    let (token, hash) = grant_node::auth::new_token();
    grant_node::store::owners::insert_setup_token(
        &node.db().lock().unwrap(),
        &hash,
        &grant_node::name::Name::parse("alice").unwrap(),
        common::now() + 600,
    )
    .unwrap();
    let mut b = Browser::new(&base);
    let page = b
        .post_form(
            &format!("{base}/setup"),
            &[("token", &token), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let words = common::shown_words(&page);
    // The registry now holds the updating key these words derive.
    let derived = grant_node::recovery::RecoveryWords::parse(&words.join(" "))
        .unwrap()
        .updating_key();
    let after = HttpClient::new()
        .get(&format!("{base}/registry/names/alice"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    assert_ne!(after["updating_key"], before["updating_key"]);
    assert_eq!(
        after["updating_key"],
        hex::encode(derived.verifying_key().as_bytes())
    );
    // The words are in no file of the node's data directory.
    fn files(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    let phrase = words.join(" ");
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&phrase),
            "{} holds the words",
            f.display()
        );
    }
    // Wrong words: the form again, 400 setup.words-mismatch; the right ones: the console.
    let html = text(&page);
    let form = &html[html.find("action=\"/setup/words\"").unwrap()..];
    let (csrf, positions, check) = (
        common::hidden(form, "csrf"),
        common::hidden(form, "positions"),
        common::hidden(form, "check"),
    );
    let wrong = b
        .post_form(
            &format!("{base}/setup/words"),
            &[
                ("csrf", &csrf),
                ("positions", &positions),
                ("check", &check),
                ("w0", "abandon"),
                ("w1", "ability"),
                ("w2", "able"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(text(&wrong).contains("setup.words-mismatch"));
    let right = common::confirm_words(&mut b, &base, &page).await;
    assert_eq!(right.status, 303);
    assert_eq!(common::location(&right), "/");
}
