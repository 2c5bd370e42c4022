//! The crash test: a node is killed with SIGKILL at random moments while several clients
//! stream grant changes and owner creations. After every restart, every change that was
//! answered 2xx is there, the database passes `PRAGMA integrity_check`, and nothing is
//! half-applied (every grant agrees with the last audit entry written for it).
//!
//! The node is the real binary: `GRANT_NODE_BIN` (scripts/test.sh points it at a release build)
//! or the debug build cargo made for this test. `GRANT_NODE_CRASH_ROUNDS` sets the rounds.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Identity;
use grant_node::carte::Carte;
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::scope::Scope;
use hyper::Method;

const SCOPES: [&str; 6] = [
    "view-profile",
    "update-profile",
    "react",
    "view-settings",
    "friend",
    "drafts",
];
const CLIENTS: usize = 4;

/// With `GRANT_NODE_TEST_BACKEND=postgres`: the node's database and its registry stub
/// (the embedded registry is off on PostgreSQL).
struct Postgres {
    database: String,
    stub: common::Stub,
}

fn start(bin: &str, dir: &Path, port: u16, pg: Option<&Postgres>) -> Child {
    let mut command = Command::new(bin);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--owner",
            "alice",
            "--pow-bits",
            "0",
            "--config",
        ])
        .arg(dir.join("node.toml"))
        .arg("--data-dir")
        .arg(dir.join("node"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(pg) = pg {
        command
            .args(["--database", &pg.database, "--registry", &pg.stub.url()])
            .args(["--registry-key", &pg.stub.public_key_hex()])
            .arg("--database-key")
            .arg(dir.join("database.key"));
    }
    command.spawn().unwrap()
}

/// Rows of one SQL query on the node's database, whichever it is.
async fn query(dir: &Path, pg: Option<&Postgres>, sql: &str) -> Vec<Vec<Option<String>>> {
    match pg {
        Some(pg) => common::pg::query(&pg.database, sql).await,
        None => {
            let conn = rusqlite::Connection::open(dir.join("node/node.sqlite3")).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let width = stmt.column_count();
            stmt.query_map([], |r| {
                Ok((0..width)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i).ok().map(|v| match v {
                            rusqlite::types::Value::Integer(i) => i.to_string(),
                            rusqlite::types::Value::Text(t) => t,
                            other => format!("{other:?}"),
                        })
                    })
                    .collect())
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        }
    }
}

async fn wait_ready(url: &str) {
    for _ in 0..400 {
        if let Ok(r) = HttpClient::new().get(&format!("{url}/healthz")).await {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node did not come up");
}

fn random_below(n: u64) -> u64 {
    u64::from_le_bytes(grant_node::auth::random_bytes()[..8].try_into().unwrap()) % n
}

#[derive(Default)]
struct Ledger {
    /// Per client: the last acknowledged step, and whether the next one was in flight.
    last_acked: Vec<Option<usize>>,
    in_flight: Vec<Option<usize>>,
    owners: Vec<String>,
    acked: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_sigkill() {
    let bin = std::env::var("GRANT_NODE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_grant-node").to_owned());
    let rounds: u32 = std::env::var("GRANT_NODE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let dir = common::tempdir();
    std::fs::write(
        dir.path().join("node.toml"),
        "[[controllers]]\nname = \"platform\"\nmax_scope = [\"view-profile\"]\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let pg = match common::on_postgres() {
        true => Some(Postgres {
            database: common::pg::Cluster::shared()
                .expect("PostgreSQL for this run")
                .database("crash")
                .await,
            stub: common::Stub::start(&dir.path().join("registry"), 0).await,
        }),
        false => None,
    };
    let pg = pg.as_ref();
    // Registry operations go to the node's embedded registry, or to the stub.
    let registry = pg.map_or_else(|| url.clone(), |p| p.stub.url());
    let mut node = start(&bin, dir.path(), port, pg);
    wait_ready(&url).await;

    // Applications and the platform, registered once.
    let apps: Vec<Identity> = (0..CLIENTS)
        .map(|i| Identity::new(&format!("app{i}"), i as u8 + 1))
        .collect();
    for app in &apps {
        assert_eq!(
            common::post_op(&registry, app.register_op("https://app.example/", &[], 0))
                .await
                .status,
            201
        );
    }
    let platform = Identity::new("platform", 50);
    assert_eq!(
        common::post_op(
            &registry,
            platform.register_op("https://p.example/", &[], 0)
        )
        .await
        .status,
        201
    );
    let owner_key = match pg {
        Some(pg) => {
            common::pg::owner_key(&pg.database, &dir.path().join("database.key"), "alice").await
        }
        None => {
            grant_node::keyfile::load(&dir.path().join("node/owners/alice/signing.key")).unwrap()
        }
    };
    let alice = Name::parse("alice").unwrap();
    let owner_carte = {
        let mut c = Carte::new(
            alice.clone(),
            common::now(),
            common::now() + 3500,
            common::random_nonce(),
        );
        c.audience = Some(alice.clone());
        c.admin_scope = Scope::GRANT;
        c.sign(&owner_key)
    };
    let controller_carte = {
        let mut c = platform.carte("alice", 0, 0);
        c.deadline = c.beginning + 3500;
        c.sign(&platform.signing)
    };

    let ledger = Arc::new(Mutex::new(Ledger {
        last_acked: vec![None; CLIENTS],
        in_flight: vec![None; CLIENTS],
        ..Ledger::default()
    }));
    let mut steps = [0usize; CLIENTS];
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (c, start_step) in steps.iter().enumerate() {
            let (url, carte, ledger, stop) = (
                url.clone(),
                owner_carte.clone(),
                ledger.clone(),
                stop.clone(),
            );
            let first = *start_step;
            tasks.push(tokio::spawn(async move {
                let http = HttpClient::new();
                let mut step = first;
                while !stop.load(Ordering::Relaxed) {
                    ledger.lock().unwrap().in_flight[c] = Some(step);
                    let body = format!("{{\"scope\":[\"{}\"]}}", SCOPES[step % SCOPES.len()]);
                    let r = http
                        .send(
                            Method::PUT,
                            &format!("{url}/api/grants/app{c}"),
                            &[
                                ("authorization", &format!("Carte {carte}")),
                                ("content-type", "application/json"),
                            ],
                            body.into(),
                        )
                        .await;
                    match r {
                        Ok(r) if r.status == 200 => {
                            let mut l = ledger.lock().unwrap();
                            l.last_acked[c] = Some(step);
                            l.in_flight[c] = None;
                            l.acked += 1;
                            step += 1;
                        }
                        Ok(r) => panic!("grant change answered {}: {:?}", r.status, r.error_code()),
                        Err(_) => return step,
                    }
                }
                step
            }));
        }
        let owners = {
            let (url, carte, ledger, stop) = (
                url.clone(),
                controller_carte.clone(),
                ledger.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let http = HttpClient::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("o{round}x{n}");
                    let r = http
                        .send(
                            Method::POST,
                            &format!("{url}/api/owners"),
                            &[
                                ("authorization", &format!("Carte {carte}")),
                                ("content-type", "application/json"),
                            ],
                            format!("{{\"name\":\"{name}\"}}").into(),
                        )
                        .await;
                    match r {
                        Ok(r) if r.status == 201 => {
                            let mut l = ledger.lock().unwrap();
                            l.owners.push(name);
                            l.acked += 1;
                        }
                        Ok(r) => {
                            panic!("owner creation answered {}: {:?}", r.status, r.error_code())
                        }
                        Err(_) => return,
                    }
                    n += 1;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + random_below(450))).await;
        node.kill().unwrap();
        node.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for (c, t) in tasks.into_iter().enumerate() {
            steps[c] = t.await.unwrap();
        }
        owners.await.unwrap();

        // The database, as the crash left it (PostgreSQL checks its own on recovery).
        if pg.is_none() {
            let check = query(dir.path(), pg, "PRAGMA integrity_check").await;
            assert_eq!(check[0][0].as_deref(), Some("ok"), "round {round}");
        }

        node = start(&bin, dir.path(), port, pg);
        wait_ready(&url).await;
        let (last_acked, in_flight, owners) = {
            let l = ledger.lock().unwrap();
            (l.last_acked.clone(), l.in_flight.clone(), l.owners.clone())
        };
        for c in 0..CLIENTS {
            let r = HttpClient::new()
                .send(
                    Method::GET,
                    &format!("{url}/api/grants/app{c}"),
                    &[("authorization", &format!("Carte {owner_carte}"))],
                    Default::default(),
                )
                .await
                .unwrap();
            let Some(acked) = last_acked[c] else {
                continue;
            };
            let v: serde_json::Value = r.json().unwrap();
            let got = v["scope"][0].as_str().unwrap_or("").to_owned();
            let allowed: Vec<&str> = [Some(acked), in_flight[c]]
                .iter()
                .flatten()
                .map(|s| SCOPES[s % SCOPES.len()])
                .collect();
            assert!(
                allowed.contains(&got.as_str()),
                "round {round}, app{c}: acknowledged step {acked}, found {got}"
            );
        }
        let d: serde_json::Value = HttpClient::new()
            .get(&format!("{url}/.well-known/grant-node"))
            .await
            .unwrap()
            .json()
            .unwrap();
        let present: Vec<String> = d["owners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        for o in &owners {
            assert!(
                present.contains(o),
                "round {round}: acknowledged owner {o} is missing"
            );
        }
        // Nothing half-applied: each grant equals the newest audit entry written for it.
        let mismatched = query(
            dir.path(),
            pg,
            "SELECT COUNT(*) FROM grants g WHERE g.scope != (SELECT new_scope FROM audit a
             WHERE a.owner = g.owner AND a.app = g.app ORDER BY a.id DESC LIMIT 1)",
        )
        .await;
        assert_eq!(mismatched[0][0].as_deref(), Some("0"), "round {round}");
    }
    let l = ledger.lock().unwrap();
    println!(
        "crash test ({}): {rounds} rounds, {} acknowledged writes ({} owners created), 0 lost",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" },
        l.acked,
        l.owners.len()
    );
    node.kill().unwrap();
    node.wait().unwrap();
}
