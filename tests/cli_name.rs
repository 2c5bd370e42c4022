//! `grant-node name …` end to end: the real binary against a running registry stub.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{tempdir, Stub};
use grant_node::outbound::HttpClient;

async fn grant_node(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_grant-node"))
            .args(&args)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str], stub: &str, keys: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend([
        "--registry".into(),
        stub.into(),
        "--key-dir".into(),
        keys.display().to_string(),
    ]);
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn record(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn name_commands_work_end_to_end() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 8).await;
    let keys = dir.path().join("keys");
    let url = stub.url();

    let out = grant_node(args(
        &[
            "name",
            "register",
            "Photo-App",
            "--node-uri",
            "https://photo.example/",
            "--redirect-uri",
            "https://photo.example/cb",
        ],
        &url,
        &keys,
    ))
    .await;
    let reg = record(&out);
    assert_eq!(reg["name"], "photo-app");
    assert_eq!(reg["redirect_uris"][0], "https://photo.example/cb");
    assert!(stderr(&out).contains("solving the proof of work (8 bits)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["updating.key", "signing.key"] {
            let mode = std::fs::metadata(keys.join("photo-app").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    let out = grant_node(args(&["name", "show", "photo-app"], &url, &keys)).await;
    assert_eq!(record(&out)["digest"], reg["digest"]);

    let out = grant_node(args(
        &[
            "name",
            "update",
            "photo-app",
            "--redirect-uri",
            "https://photo.example/cb2",
            "--redirect-uri",
            "http://127.0.0.1:9000/cb",
        ],
        &url,
        &keys,
    ))
    .await;
    let updated = record(&out);
    assert_eq!(updated["redirect_uris"].as_array().unwrap().len(), 2);

    let out = grant_node(args(&["name", "rotate-key", "photo-app"], &url, &keys)).await;
    let rotated = record(&out);
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    let signing = std::fs::read_to_string(keys.join("photo-app/signing.key")).unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(
        &hex::decode(signing.trim()).unwrap().try_into().unwrap(),
    );
    assert_eq!(
        rotated["keys"][1]["key"],
        hex::encode(signing.verifying_key().as_bytes()),
        "the key file now holds the new key"
    );
    let retired = std::fs::read_dir(keys.join("photo-app"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("signing-")
        })
        .count();
    assert_eq!(retired, 1, "the old key is kept");

    let out = grant_node(args(&["name", "revoke-key", "photo-app"], &url, &keys)).await;
    let revoked = record(&out);
    assert_eq!(revoked["keys"].as_array().unwrap().len(), 3);
    assert_eq!(revoked["keys"][1]["compromised"], true);
    assert_eq!(revoked["keys"][2]["compromised"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn name_command_errors_say_what_to_do() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let url = stub.url();
    let register = |name: &str| {
        vec![
            "name".to_string(),
            "register".into(),
            name.into(),
            "--node-uri".into(),
            "https://n.example/".into(),
        ]
    };
    let first = grant_node(args(
        &strs(&register("taken")),
        &url,
        &dir.path().join("k1"),
    ))
    .await;
    assert!(first.status.success(), "{}", stderr(&first));

    let again = grant_node(args(
        &strs(&register("taken")),
        &url,
        &dir.path().join("k2"),
    ))
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("name.taken"), "{}", stderr(&again));
    assert!(stderr(&again).contains("choose another name"));

    let bad = grant_node(args(
        &strs(&register("bad name")),
        &url,
        &dir.path().join("k3"),
    ))
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("is not a valid name"),
        "{}",
        stderr(&bad)
    );

    let mut insecure = register("app");
    insecure.extend(["--redirect-uri".into(), "http://app.example/cb".into()]);
    let out = grant_node(args(&strs(&insecure), &url, &dir.path().join("k4"))).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("plain http is only allowed for loopback"),
        "{}",
        stderr(&out)
    );

    let missing = grant_node(args(
        &["name", "rotate-key", "taken"],
        &url,
        &dir.path().join("none"),
    ))
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("the updating key is needed"),
        "{}",
        stderr(&missing)
    );

    stub.stop().await;
    let down = grant_node(args(
        &strs(&register("later")),
        &url,
        &dir.path().join("k5"),
    ))
    .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("check --registry"),
        "{}",
        stderr(&down)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn name_watch_catches_an_update_made_with_a_stolen_updating_key() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let keys = dir.path().join("keys");
    let url = stub.url();
    let key = stub.public_key_hex();
    let watch = |extra: &[&str]| {
        let mut a = args(
            &["name", "watch", "shop", "--once", "--registry-key", &key],
            &url,
            &keys,
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // The owner's own operations are expected.
    record(
        &grant_node(args(
            &[
                "name",
                "register",
                "shop",
                "--node-uri",
                "https://shop.example/",
            ],
            &url,
            &keys,
        ))
        .await,
    );
    record(
        &grant_node(args(
            &[
                "name",
                "update",
                "shop",
                "--node-uri",
                "https://shop2.example/",
            ],
            &url,
            &keys,
        ))
        .await,
    );
    record(
        &grant_node(args(
            &[
                "name",
                "register",
                "other",
                "--node-uri",
                "https://o.example/",
            ],
            &url,
            &keys,
        ))
        .await,
    );
    let out = grant_node(watch(&[])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "only the watched name: {events:?}");
    assert_eq!(events[0]["op"], "register");
    assert_eq!(events[1]["op"], "update");
    assert!(events.iter().all(|e| e["expected"] == true));

    // A thief with a copy of the updating key moves the name to their own signing key.
    let stolen = grant_node::keyfile::load(&keys.join("shop/updating.key")).unwrap();
    let thief = ed25519_dalek::SigningKey::from_bytes(&[99; 32]);
    let current = stub
        .client()
        .record(&grant_node::name::Name::parse("shop").unwrap())
        .await
        .unwrap()
        .unwrap();
    let op = grant_node::registry::op::Operation::Update(grant_node::registry::op::Update {
        name: grant_node::name::Name::parse("shop").unwrap(),
        previous_digest: hex::decode(&current.digest).unwrap().try_into().unwrap(),
        new_signing_key: Some((thief.verifying_key(), common::now())),
        node_uri: Some("https://thief.example/".into()),
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: None,
        compromised_since: None,
    })
    .sign(&stolen);
    stub.client().submit(op).await.unwrap();

    let out = grant_node(watch(&[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["expected"], false);
    assert_eq!(last["seq"], 3);
    let changes = last["changes"].to_string();
    assert!(
        changes.contains(&hex::encode(thief.verifying_key().as_bytes())),
        "{changes}"
    );
    assert!(changes.contains("https://thief.example/"), "{changes}");
    assert!(
        stderr(&out).contains("unexpected operation on shop at log position 3"),
        "{}",
        stderr(&out)
    );

    // With a hook, the watcher reports and goes on.
    let alerts = dir.path().join("alerts");
    let hook = format!(
        "printf '%s\\n' \"$GRANT_NODE_WATCH_EVENT\" >> {}",
        alerts.display()
    );
    let out = grant_node(watch(&["--hook", &hook])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let alert: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&alerts).unwrap().trim()).unwrap();
    assert_eq!(alert["seq"], 3);
    assert_eq!(alert["expected"], false);

    // A wrong registry key: nothing is trusted, and the watcher says so.
    let wrong = "11".repeat(32);
    let out = grant_node(args(
        &["name", "watch", "shop", "--once", "--registry-key", &wrong],
        &url,
        &keys,
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("could not be verified"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_is_recovered_from_nothing_but_its_recovery_words() {
    let dir = tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let url = stub.url();
    // Registered on a machine that is then lost: only the words survive, on paper.
    let lost = dir.path().join("lost-machine");
    let words = dir.path().join("words.txt");
    let out = grant_node(args(
        &[
            "name",
            "register",
            "shop",
            "--node-uri",
            "https://old.example/",
            "--words-out",
            &words.display().to_string(),
        ],
        &url,
        &lost,
    ))
    .await;
    let before = record(&out);
    let phrase = std::fs::read_to_string(&words).unwrap();
    assert_eq!(phrase.split_whitespace().count(), 24);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&words).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The words were never kept beside the keys.
    for entry in std::fs::read_dir(lost.join("shop")).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        let first = phrase.split_whitespace().next().unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(phrase.trim()));
        assert!(!String::from_utf8_lossy(&text).contains(&format!("{first} ")));
    }
    std::fs::remove_dir_all(&lost).unwrap();
    let log_size = || async {
        stub.authority
            .checkpoint_blocking()
            .unwrap()
            .checkpoint
            .size
    };
    let size_before = log_size().await;

    // Wrong words: a clear error naming the mismatch, and nothing is submitted.
    let fresh = dir.path().join("new-machine");
    let wrong = dir.path().join("wrong.txt");
    let other = grant_node::recovery::RecoveryWords::from_entropy(&[9; 32]);
    std::fs::write(&wrong, other.phrase()).unwrap();
    let out = grant_node(args(
        &[
            "name",
            "recover",
            "shop",
            "--words-file",
            &wrong.display().to_string(),
        ],
        &url,
        &fresh,
    ))
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("are not this name's words") && err.contains("nothing was sent"),
        "{err}"
    );
    // A mistyped word: refused by the checksum or the word list, before any request.
    let mut typo: Vec<&str> = phrase.split_whitespace().collect();
    typo[3] = "zzzz";
    std::fs::write(&wrong, typo.join(" ")).unwrap();
    let out = grant_node(args(
        &[
            "name",
            "recover",
            "shop",
            "--words-file",
            &wrong.display().to_string(),
        ],
        &url,
        &fresh,
    ))
    .await;
    assert!(
        stderr(&out).contains("recovery.unknown-word"),
        "{}",
        stderr(&out)
    );
    assert_eq!(log_size().await, size_before, "wrong words changed the log");
    assert!(!fresh.join("shop").join("signing.key").exists());

    // The right words, on a fresh key directory: a new signing key, the old one compromised
    // from a given time (RFC 3339), the new node URI.
    let old_from = before["keys"][0]["valid_from"].as_u64().unwrap();
    let since = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(old_from + 1),
    )
    .to_string();
    let out = grant_node(args(
        &[
            "name",
            "recover",
            "shop",
            "--words-file",
            &words.display().to_string(),
            "--node-uri",
            "https://new.example/",
            "--compromised-since",
            &since,
        ],
        &url,
        &fresh,
    ))
    .await;
    let after = record(&out);
    assert_eq!(log_size().await, size_before + 1);
    assert_eq!(after["node_uri"], "https://new.example/");
    assert_eq!(after["updating_key"], before["updating_key"]);
    let keys = after["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["key"], before["keys"][0]["key"]);
    assert_eq!(keys[0]["compromised"], true);
    assert_eq!(keys[0]["compromised_from"], old_from + 1);
    assert_eq!(keys[1]["compromised"], false);
    // What the old key signed before that time still counts; from then on, nothing does.
    for (at, void) in [(old_from, false), (old_from + 1, true)] {
        let key_at: serde_json::Value = HttpClient::new()
            .get(&format!("{url}/registry/names/shop/key?at={at}"))
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(key_at["key"], before["keys"][0]["key"], "at {at}");
        assert_eq!(key_at["compromised"], void, "at {at}");
    }
    let new_key = grant_node::keyfile::load(&fresh.join("shop").join("signing.key")).unwrap();
    assert_eq!(
        keys[1]["key"],
        hex::encode(new_key.verifying_key().as_bytes())
    );
    // And the recovered keys work for the next change.
    let out = grant_node(args(
        &[
            "name",
            "update",
            "shop",
            "--node-uri",
            "https://newer.example/",
        ],
        &url,
        &fresh,
    ))
    .await;
    assert_eq!(record(&out)["node_uri"], "https://newer.example/");
}

#[test]
fn the_version_names_the_commit_and_the_build_date() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let rest = line
        .trim_end()
        .strip_prefix(concat!(
            "grant-node ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        ))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("{line}"));
    // Built from a git checkout (CI's clean clone is one): the commit of the source tree.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        commit,
        String::from_utf8(head.stdout).unwrap().trim(),
        "{line}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert!(
        parts[0].len() == 4 && parts[1].len() == 2 && parts[2].len() == 2,
        "{line}"
    );
    assert!(
        date.chars().all(|c| c.is_ascii_digit() || c == '-'),
        "{line}"
    );
    assert!(date >= "2026-01-01", "{line}");
}
