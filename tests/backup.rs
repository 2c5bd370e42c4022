//! Backups and restore, drilled: backups taken from a serving node under a steady load of
//! grant changes, each restored into a fresh directory and started; every change acknowledged
//! before the backup began is there, and the restored node serves cartes at once. A changed
//! byte, a cut file or a wrong key is refused and writes nothing. The real binary takes and
//! restores the backups.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{tempdir, Identity, Node};
use grant_node::outbound::HttpClient;
use hyper::Method;

const VIEW_PROFILE: u64 = 0x80000;
const GRANT: u64 = 0x8000000;

fn node_bin() -> String {
    std::env::var("GRANT_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_grant-node").to_owned())
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(node_bin()).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The number of audit entries of alice's grant to `app`, through `node`'s API.
async fn history_len(node: &str, owner_carte: &str) -> usize {
    let r = HttpClient::new()
        .send(
            Method::GET,
            &format!("{node}/api/grants/app/history"),
            &[("authorization", &format!("Carte {owner_carte}"))],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.json::<serde_json::Value>().unwrap()["entries"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_under_load_restore_every_acknowledged_change_and_serve_at_once() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start_embedded(&data, "alice").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    let key = node.owner_key("alice").await;
    let owner = Identity {
        name: "alice".parse().unwrap(),
        updating: key.clone(),
        signing: key,
    };
    let owner_carte = || {
        let mut c = owner.carte("alice", GRANT, -5);
        c.deadline = c.beginning + 3000;
        c.sign(&owner.signing)
    };
    let carte = owner_carte();
    let url = node.url();
    let put = move |body: serde_json::Value| {
        let (url, carte) = (url.clone(), carte.clone());
        async move {
            HttpClient::new()
                .send(
                    Method::PUT,
                    &format!("{url}/api/grants/app"),
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
        }
    };
    assert_eq!(put(serde_json::json!({"add": ["view-profile"]})).await, 200);

    // A steady load of grant changes, each counted once acknowledged.
    let acked = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop, put) = (acked.clone(), stop.clone(), put.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = if i % 2 == 0 {
                    serde_json::json!({"add": ["react"]})
                } else {
                    serde_json::json!({"remove": ["react"]})
                };
                assert_eq!(put(body).await, 200);
                acked.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let mut taken = Vec::new();
    for n in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let before = acked.load(Ordering::SeqCst);
        let file = dir.path().join(format!("backup-{n}.age"));
        let out = run(strings(&[
            "backup",
            "--to",
            &file.display().to_string(),
            "--passphrase-file",
            &pass.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
        ]))
        .await;
        ok(&out);
        taken.push((file, before));
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        acked.load(Ordering::SeqCst) > 10,
        "the load made too few changes"
    );
    // Nothing of a backup in progress is left beside it, and the keys are not readable.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    let signing = std::fs::read(data.join("owners/alice/signing.key")).unwrap();
    for (file, _) in &taken {
        let bytes = std::fs::read(file).unwrap();
        assert!(!bytes.windows(signing.len()).any(|w| w == &signing[..]));
    }
    drop(node);

    for (n, (file, before)) in taken.iter().enumerate() {
        let restored = dir.path().join(format!("restored-{n}"));
        ok(&run(strings(&[
            "restore",
            "--from",
            &file.display().to_string(),
            "--data-dir",
            &restored.display().to_string(),
            "--passphrase-file",
            &pass.display().to_string(),
        ]))
        .await);
        let again = Node::start_embedded(&restored, "alice").await;
        // Every change acknowledged before the backup began is there.
        let entries = history_len(&again.url(), &owner_carte()).await;
        assert!(
            entries as u64 >= *before,
            "backup {n}: {entries} history entries, {before} were acknowledged before it began"
        );
        // The restored node serves the application's carte at once.
        let app_carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
        let r = HttpClient::new()
            .send(
                Method::GET,
                &format!("{}/api/profile", again.url()),
                &[("authorization", &format!("Carte {app_carte}"))],
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "backup {n}: {}", common::text(&r));
        drop(again);
    }
}

fn restore_args(from: &Path, to: &Path, pass: &Path) -> Vec<String> {
    strings(&[
        "restore",
        "--from",
        &from.display().to_string(),
        "--data-dir",
        &to.display().to_string(),
        "--passphrase-file",
        &pass.display().to_string(),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_foreign_backup_is_refused_and_writes_nothing() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start_embedded(&data, "alice").await;
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let file = dir.path().join("backup.age");
    ok(&run(strings(&[
        "backup",
        "--to",
        &file.display().to_string(),
        "--passphrase-file",
        &pass.display().to_string(),
        "--data-dir",
        &data.display().to_string(),
    ]))
    .await);
    drop(node);
    let good = std::fs::read(&file).unwrap();
    let target = dir.path().join("restored");
    // One byte changed: at the start (header), the middle, the end.
    for at in [20, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&file, &bad).unwrap();
        let out = run(restore_args(&file, &target, &pass)).await;
        assert!(!out.status.success(), "a change at byte {at} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing was written"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!target.exists());
    }
    // Cut short.
    std::fs::write(&file, &good[..good.len() - 100]).unwrap();
    assert!(!run(restore_args(&file, &target, &pass))
        .await
        .status
        .success());
    assert!(!target.exists());
    // Another passphrase.
    std::fs::write(&file, &good).unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, "another passphrase\n").unwrap();
    let out = run(restore_args(&file, &target, &other)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("backup.wrong-key"));
    assert!(!target.exists());
    // Not into a directory that holds something.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("x"), "x").unwrap();
    let out = run(restore_args(&file, &target, &pass)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // The good file, into an empty directory.
    std::fs::remove_file(target.join("x")).unwrap();
    ok(&run(restore_args(&file, &target, &pass)).await);
    assert!(target.join("node.sqlite3").exists());
    assert!(target.join("owners/alice/signing.key").exists());
    assert!(target.join("registry/registry.key").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_are_kept_measured_and_a_failure_degrades_health() {
    use age::secrecy::ExposeSecret;
    let dir = tempdir();
    let identity = age::x25519::Identity::generate();
    let backups = dir.path().join("backups");
    let mut config = Node::embedded_config(&dir.path().join("node"), "alice");
    config.backups = Some(grant_node::config::backups::Schedule {
        every: std::time::Duration::from_secs(1),
        dir: backups.clone(),
        keep: 2,
        key: grant_node::config::backups::KeySetting::Recipient(identity.to_public().to_string()),
    });
    let node = Node::start(config).await;
    let health = || async {
        HttpClient::new()
            .get(&format!("{}/healthz", node.url()))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .unwrap()
    };
    // Several intervals (polled, not timed): never more than `keep` files, and the newest
    // restores.
    let list = || {
        let mut files: Vec<_> = std::fs::read_dir(&backups)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..600 {
        let files = list();
        // The new file lands before the oldest goes: never a moment with fewer than `keep`.
        assert!(files.len() <= 3, "{files:?}");
        seen.extend(files);
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.len() >= 4, "{seen:?}");
    let mut files = list();
    for _ in 0..600 {
        if files.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        files = list();
    }
    assert_eq!(files.len(), 2, "{files:?}");
    let h = health().await;
    assert!(h["backups"]["last_ok"].as_u64().is_some(), "{h}");
    assert!(h["backups"]["last_error"].is_null(), "{h}");
    let metrics = common::text(
        &HttpClient::new()
            .get(&format!("{}/metrics", node.url()))
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("grant_node_backup_age_seconds "),
        "{metrics}"
    );
    assert!(
        metrics.contains("grant_node_backup_last_failed 0"),
        "{metrics}"
    );
    let key_file = dir.path().join("identity.txt");
    std::fs::write(&key_file, identity.to_string().expose_secret()).unwrap();
    let restored = dir.path().join("restored");
    ok(&run(strings(&[
        "restore",
        "--from",
        &files[1].display().to_string(),
        "--data-dir",
        &restored.display().to_string(),
        "--identity",
        &key_file.display().to_string(),
    ]))
    .await);
    // The backup directory becomes unusable: the next attempt fails and health says so.
    std::fs::remove_dir_all(&backups).unwrap();
    std::fs::write(&backups, "not a directory").unwrap();
    let mut h = health().await;
    for _ in 0..600 {
        if h["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        h = health().await;
    }
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["backups"]["degraded"]
            .as_str()
            .unwrap()
            .contains("the last scheduled backup failed"),
        "{h}"
    );
    let metrics = common::text(
        &HttpClient::new()
            .get(&format!("{}/metrics", node.url()))
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("grant_node_backup_last_failed 1"),
        "{metrics}"
    );
}

/// The README's `# backups` block, run line by line as printed, in a directory holding a
/// node's `grant-node-data` and a `backup-pass` file.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_backup_commands_run_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n# backups\n")
        .expect("the README's backups block");
    let block = &readme[start + 6..];
    let block = &block[..block.find("```").unwrap()];
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 2, "{block}");
    let dir = tempdir();
    let node = Node::start_embedded(&dir.path().join("grant-node-data"), "alice").await;
    std::fs::write(
        dir.path().join("backup-pass"),
        "a long passphrase for backups\n",
    )
    .unwrap();
    let bin_dir = Path::new(&node_bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in lines {
        let (line, cwd, path) = (line.to_owned(), dir.path().to_path_buf(), path.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(&line)
                .current_dir(&cwd)
                .env("PATH", &path)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        ok(&out);
    }
    drop(node);
    assert!(dir.path().join("restored-node/node.sqlite3").exists());
    assert!(dir
        .path()
        .join("restored-node/owners/alice/signing.key")
        .exists());
}
