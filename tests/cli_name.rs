//! `grant-node name …` end to end: the real binary against a running registry stub.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{tempdir, Stub};

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
