//! The README is a specification: its configuration snippets load, its tables match the code,
//! and its registry commands run as written.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use grant_node::cli::{Cli, Command as Sub};
use grant_node::config::Config;
use grant_node::outbound::HttpClient;
use grant_node::scope::Catalogue;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// Every fenced block of language `lang`, with the line number it starts on.
fn blocks(lang: &str) -> Vec<(usize, String)> {
    let text = readme();
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => {
                current = Some((i + 1, String::new()));
            }
            Some(_) if line.trim_start() == "```" => out.push(current.take().unwrap()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_toml_snippet_in_the_readme_loads_as_printed() {
    let dir = common::tempdir();
    let snippets = blocks("toml");
    assert!(
        !snippets.is_empty(),
        "the README's TOML snippets went missing"
    );
    for (line, toml) in snippets {
        let path = dir.path().join(format!("readme-{line}.toml"));
        std::fs::write(&path, &toml).unwrap();
        let cli = Cli::try_parse_from(["grant-node", "serve", "--config", path.to_str().unwrap()])
            .unwrap();
        let Sub::Serve(args) = cli.command else {
            unreachable!()
        };
        if let Err(e) = Config::build(args) {
            panic!("README.md line {line}: the snippet does not load: {e:#}\n{toml}");
        }
    }
}

#[test]
fn the_scopes_table_is_the_catalogue() {
    let text = readme();
    let start = text.find("| scope | bit index | mask |").unwrap();
    let catalogue = Catalogue::builtin();
    let mut rows = 0;
    for line in text[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (name, index, mask) = (cells[1], cells[2], cells[3].trim_matches('`'));
        let bits = catalogue.parse(name).unwrap().bits();
        assert_eq!(bits, 1u64 << index.parse::<u32>().unwrap(), "{line}");
        assert_eq!(format!("{bits:#x}"), mask, "{line}");
        rows += 1;
    }
    assert_eq!(rows, catalogue.defs().count());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a README command line: `cargo run --release [-p P] --` becomes the binary cargo built
/// for this test, the README's ports become free ones; everything else is as printed.
fn spawn(line: &str, ports: &[(&str, u16)], key: &str, dir: &std::path::Path) -> Child {
    let mut line = line
        .replace(
            "cargo run --release -p registry-stub --",
            common::registry_stub_bin().to_str().unwrap(),
        )
        .replace("cargo run --release --", env!("CARGO_BIN_EXE_grant-node"));
    for (from, to) in ports {
        line = line.replace(from, &to.to_string());
    }
    line = line.replace("8f67c8…", key);
    // The README's node listens on its default, 127.0.0.1:8650; the test moves it through the
    // environment, leaving the line as printed.
    let node_port = ports
        .iter()
        .find(|(p, _)| *p == "8650")
        .map_or(0, |(_, p)| *p);
    Command::new("bash")
        .args(["-c", &format!("exec {line}")])
        .env("GRANT_NODE_LISTEN", format!("127.0.0.1:{node_port}"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_commands_run_as_written() {
    let text = readme();
    let start = text.find("## The registry").unwrap();
    let block_start = text[start..].find("```sh\n").unwrap() + start + 6;
    let block_end = text[block_start..].find("```").unwrap() + block_start;
    let commands: Vec<&str> = text[block_start..block_end]
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let dir = common::tempdir();
    let ports = [("8651", free_port()), ("8650", free_port())];
    let mut stub = Killed(spawn(commands[0], &ports, "", dir.path()));
    let mut out = BufReader::new(stub.0.stdout.take().unwrap());
    let mut key = String::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        if let Some(k) = l.trim().strip_prefix("registry public key ") {
            key = k.to_owned();
        }
    }
    assert_eq!(key.len(), 64, "the stub printed its key");
    let node = Killed(spawn(commands[1], &ports, &key, dir.path()));
    let url = format!("http://127.0.0.1:{}/healthz", ports[1].1);
    let mut health = serde_json::Value::Null;
    for _ in 0..400 {
        if let Ok(r) = HttpClient::new().get(&url).await {
            health = r.json().unwrap();
            if health["registry"]["last_sync"].is_u64() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["registry"]["last_sync"].is_u64(), "{health}");
    drop(node);
}

#[test]
fn what_the_readme_commands_create_stays_out_of_git() {
    let root = env!("CARGO_MANIFEST_DIR");
    if !std::path::Path::new(root).join(".git").exists() {
        eprintln!("not a git checkout; skipping");
        return;
    }
    for path in [
        "grant-node-data/node.sqlite3",
        "grant-node-data/owners/owner/signing.key",
        "grant-node-data/registry/registry.key",
        "registry-data/registry.key",
        "demo/node/owners/alice/updating.key",
        "demo/keys/photo-app/signing.key",
        "demo/keys/photo-app/grants.book",
        "demo/keys/photo-app/grants.mirror.sqlite3",
        "node.age",
        "alice.age",
        "backup-pass",
        "restored-node/node.sqlite3",
        "restored-node/owners/alice/signing.key",
    ] {
        let ignored = Command::new("git")
            .args(["check-ignore", "-q", path])
            .current_dir(root)
            .status()
            .unwrap()
            .success();
        assert!(ignored, "{path} would show up in git status");
    }
}

#[test]
fn a_plain_http_registry_on_another_host_is_refused_at_start() {
    let parse = |args: &[&str]| {
        let mut all = vec!["grant-node", "serve"];
        all.extend_from_slice(args);
        let Sub::Serve(a) = Cli::try_parse_from(all).unwrap().command else {
            unreachable!()
        };
        Config::build(a).map(|_| ()).map_err(|e| format!("{e:#}"))
    };
    let key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .as_bytes(),
    );
    let key = key.as_str();
    let err = parse(&[
        "--registry",
        "http://registry.example",
        "--registry-key",
        key,
    ])
    .unwrap_err();
    assert!(err.contains("plain http"), "{err}");
    assert!(parse(&["--registry", "http://127.0.0.1:8651", "--registry-key", key]).is_ok());
    assert!(parse(&[
        "--registry",
        "https://registry.example",
        "--registry-key",
        key
    ])
    .is_ok());
}

/// Every section the README refers to (`see "Title"`, `"Title" below/above`) is a heading of
/// the README, with the same words.
#[test]
fn every_section_the_readme_names_exists() {
    let text = readme();
    let mut headings = std::collections::HashSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            headings.insert(line.trim_start_matches('#').trim().to_owned());
        }
        // A paragraph that opens with a bold title (`**Title.**`) is a section too.
        if let Some(title) = line.strip_prefix("**").and_then(|l| l.split_once(".**")) {
            headings.insert(title.0.to_owned());
        }
    }
    let mut named = Vec::new();
    for marker in ["see \"", "See \"", "section \"", "under \""] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let Some(end) = rest.find('"') else { continue };
            named.push(rest[..end].replace('\n', " "));
        }
    }
    // `"A" and "B"` after a see: both are names.
    for (at, _) in text.match_indices("\" and \"") {
        let before = &text[..at];
        if before.rfind("see \"").is_some_and(|s| at - s < 80) {
            let rest = &text[at + 7..];
            if let Some(end) = rest.find('"') {
                named.push(rest[..end].to_owned());
            }
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !headings.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "sections named but missing: {missing:?}"
    );
}

/// The codes a README table row names (`a.b`, and `a.*` for a family).
fn row_codes(row: &str) -> Vec<String> {
    row.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            t.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    && b.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '*')
            })
        })
        .map(str::to_owned)
        .collect()
}

/// Every page a form posts to: each error it answers, when driven without its token, from
/// another origin, without a session, with a body too large or with nothing at all, is a
/// code its README row lists (or one the sentence under the table gives every form).
#[tokio::test(flavor = "multi_thread")]
async fn every_page_answers_only_the_codes_its_readme_row_lists() {
    let dir = common::tempdir();
    let mut config = common::Node::embedded_config(dir.path(), "alice");
    config.public_registration = true;
    let node = common::Node::start(config).await;
    let base = node.url();
    let mut logged_in = node.set_password("alice", "correct horse battery").await;
    let text = readme();
    let pages = &text[text.find("## HTTP endpoints").unwrap()..];
    let pages = &pages[..pages.find("Every JSON endpoint below").unwrap()];
    let every_form = ["request.too-large"];
    let posts = [
        "/grant",
        "/login",
        "/logout",
        "/setup",
        "/setup/words",
        "/grants/app",
        "/grants/app/revoke",
        "/revoke-all",
        "/sessions/end-others",
        "/password",
        "/signup",
    ];
    let mut checked = 0;
    for path in posts {
        let pattern = path.replace("/app", "/{app}");
        let row = pages
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`POST {pattern}")))
            .unwrap_or_else(|| panic!("no README row for POST {pattern}"));
        let listed = row_codes(row);
        let big = "x=".to_owned() + &"a".repeat(17 * 1024);
        let mut fresh = common::Browser::new(&base);
        let mut answers = Vec::new();
        for (who, fields, origin) in [
            ("logged in, no fields", String::new(), Some(base.clone())),
            (
                "logged in, another origin",
                String::new(),
                Some("https://evil.example".to_owned()),
            ),
            ("no session", String::new(), Some(base.clone())),
            ("logged in, too large", big, Some(base.clone())),
        ] {
            let b = if who == "no session" {
                &mut fresh
            } else {
                &mut logged_in
            };
            b.origin = origin;
            let pairs: Vec<(String, String)> = form_urlencoded::parse(fields.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = b.post_form(&format!("{base}{path}"), &pairs).await;
            if r.status.is_client_error() || r.status.is_server_error() {
                let code = r.error_code().unwrap_or_else(|| common::page_code(&r));
                answers.push((who, r.status.as_u16(), code));
            }
        }
        logged_in.origin = Some(base.clone());
        for (who, status, code) in &answers {
            let family = format!("{}.*", code.split('.').next().unwrap());
            assert!(
                listed.contains(code) || listed.contains(&family) || every_form.contains(&code.as_str()),
                "POST {path} ({who}) answered {status} {code}, which its README row does not list: {listed:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked}");
}

#[test]
fn the_owner_move_commands_parse_as_printed() {
    let text = readme();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("grant-node owner "))
        .collect();
    assert_eq!(lines.len(), 2, "the README shows export and import");
    for line in lines {
        if let Err(e) = Cli::try_parse_from(line.split_whitespace()) {
            panic!("README: {line}\ndoes not parse: {e}");
        }
    }
}
