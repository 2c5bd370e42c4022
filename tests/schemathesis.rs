//! The node against its own `/openapi.json`, as an outside reviewer drives it: Schemathesis
//! (from PyPI; `scripts/test.sh` installs it under `target/openapi-venv`) generates requests
//! from the document, valid and invalid, with the owner's carte, and runs every check it has
//! (server errors, status codes, content types, headers, schemas, rejection of invalid data,
//! acceptance of valid data, `Allow` on 405, ignored authentication…). Zero failures.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{tempdir, Identity, Node};
use grant_node::name::Name;
use grant_node::scope::Scope;

/// The Schemathesis command, or `None` (with a note) when this machine has none.
fn schemathesis() -> Option<String> {
    let bin = std::env::var("GRANT_NODE_SCHEMATHESIS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/openapi-venv/bin/schemathesis"
        )
        .to_owned()
    });
    if Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some(bin);
    }
    assert!(
        std::env::var_os("GRANT_NODE_REQUIRE_OPENAPI").is_none(),
        "Schemathesis is required but {bin} does not run (scripts/test.sh installs it)"
    );
    eprintln!("skipped: no schemathesis (scripts/test.sh installs it)");
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure_against_the_live_node() {
    let Some(bin) = schemathesis() else { return };
    let dir = tempdir();
    let mut config = Node::embedded_config(dir.path(), "alice");
    config.controllers = vec![(Name::parse("platform").unwrap(), Scope::from_bits(0x80000))];
    let node = Node::start(config).await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    // alice's own carte with every scope the API asks for; alice's key is in the data dir.
    let all = 0x80000 | 0x100000 | 0x400000 | 0x800000 | 0x8000000;
    let key = grant_node::keyfile::load(&dir.path().join("owners/alice/signing.key")).unwrap();
    let mut carte = Identity::new("alice", 0).carte("alice", all, -5);
    carte.deadline = carte.beginning + 3600;
    let carte = carte.sign(&key);
    let base = node.url();
    let node_for_run = base.clone();
    // Schemathesis and Hypothesis keep their databases in the working directory: give them
    // the test's own, so nothing is written into the checkout.
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .current_dir(&cwd)
            .args([
                "--config-file",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/schemathesis/config.toml"
                ),
                "run",
                &format!("{node_for_run}/openapi.json"),
                "--url",
                &node_for_run,
                "--checks",
                "all",
                "--max-examples",
                "20",
                "--workers",
                "1",
                "--seed",
                "1",
                "--no-color",
                "-H",
                &format!("Authorization: Carte {carte}"),
            ])
            .env(
                "SCHEMATHESIS_HOOKS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis/hooks.py"),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("passed") || l.contains("failed") || l.contains("cases"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(out.status.success(), "Schemathesis found failures:\n{text}");
}
