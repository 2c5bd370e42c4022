//! Runs the README's walkthrough as written: every `grant-node` line through bash, in a fresh
//! folder, with the real binary; the two browser steps are done over HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{hidden, location, text, Browser};

fn walkthrough() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n# walkthrough\n")
        .expect("README has the walkthrough block");
    let block = &readme[start + 6..];
    let end = block.find("```").unwrap();
    block[..end].lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_works_as_written() {
    let dir = common::tempdir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let node_url = format!("http://127.0.0.1:{port}");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_grant-node"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The README assumes the default port 8650; the test moves the node to a free port and
    // points the other commands at it, through the environment, leaving the lines untouched.
    let env = |cmd: &mut Command, serve: bool| {
        cmd.current_dir(dir.path())
            .env("PATH", &path)
            .env("HOME", dir.path());
        if serve {
            cmd.env("GRANT_NODE_LISTEN", format!("127.0.0.1:{port}"));
        } else {
            cmd.env("GRANT_NODE_REGISTRY", &node_url);
        }
    };
    let mut node = None;
    let mut setup_link = String::new();
    let mut last_output = String::new();
    let mut redirected = String::new();
    let mut outputs = Vec::new();
    for line in walkthrough() {
        let line = line.trim();
        if line.contains("browser: open the printed set-up link") {
            let mut b = Browser::new(&node_url);
            let token = setup_link.rsplit("token=").next().unwrap().to_owned();
            assert_eq!(b.get(&setup_link).await.status, 200);
            let r = b
                .post_form(
                    &format!("{node_url}/setup"),
                    &[("token", &token), ("password", "correct horse battery")],
                )
                .await;
            let r = common::confirm_words(&mut b, &node_url, &r).await;
            assert_eq!(r.status, 303);
            continue;
        }
        if line.contains("browser: open that URL") {
            let url = last_output.trim().to_owned();
            assert!(url.starts_with(&format!("{node_url}/grant?")), "{url}");
            let mut b = Browser::new(&node_url);
            let r = b.get(&url).await;
            assert_eq!(r.status, 303, "logged out: sent to log in");
            let login = b.get(&format!("{node_url}{}", location(&r))).await;
            let html = text(&login);
            let r = b
                .post_form(
                    &format!("{node_url}/login"),
                    &[
                        ("name", "alice"),
                        ("password", "correct horse battery"),
                        ("login_csrf", &hidden(&html, "login_csrf")),
                        ("next", &hidden(&html, "next").replace("&amp;", "&")),
                    ],
                )
                .await;
            let consent = b.get(&format!("{node_url}{}", location(&r))).await;
            let html = text(&consent);
            let r = b
                .post_form(
                    &format!("{node_url}/grant"),
                    &[
                        ("request_id", &hidden(&html, "request_id")),
                        ("csrf", &hidden(&html, "csrf")),
                        ("scope", "view-profile"),
                        ("decision", "allow"),
                    ],
                )
                .await;
            redirected = location(&r);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(background) = line.strip_suffix('&') {
            let mut cmd = Command::new("bash");
            cmd.arg("-c").arg(format!("exec {background}"));
            env(&mut cmd, true);
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let link = tokio::task::spawn_blocking(move || {
                for l in lines.by_ref() {
                    let l = l.unwrap();
                    if let Some(at) = l.find("set its password at ") {
                        return l[at + 20..].to_owned();
                    }
                }
                panic!("the node printed no set-up link");
            });
            setup_link = tokio::time::timeout(Duration::from_secs(60), link)
                .await
                .unwrap()
                .unwrap();
            node = Some(child);
            continue;
        }
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(line).env("REDIRECTED", &redirected);
        env(&mut cmd, false);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_output = String::from_utf8_lossy(&out.stdout).into_owned();
        outputs.push((line.to_owned(), last_output.clone()));
    }
    let find = |prefix: &str| -> String {
        outputs
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` step"))
            .1
            .clone()
    };
    assert!(find("grant-node app finish-grant").starts_with("alice granted view-profile"));
    let profile: serde_json::Value = serde_json::from_str(&find("grant-node app call")).unwrap();
    assert_eq!(profile["owner"], "alice");
    assert!(find("grant-node app grants").starts_with("alice\tview-profile\t"));
    let carte = find("grant-node app carte").trim().to_owned();
    let r = grant_node::outbound::HttpClient::new()
        .send(
            hyper::Method::GET,
            &format!("{node_url}/api/profile"),
            &[("authorization", &format!("Carte {carte}"))],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "the printed carte works with curl: {}",
        text(&r)
    );
    let mut node = node.unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(node.id().to_string())
        .status();
    let _ = node.wait();
}
