//! Several node processes on one PostgreSQL database: the guarantees of the README's
//! "Running several node processes", each against real processes (the release binary),
//! a real registry and a real PostgreSQL cluster.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pg::{Cluster, Process};
use common::{Identity, Stub};
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::scope::Scope;
use hyper::Method;

const VIEW_PROFILE: u64 = 0x80000;

/// A registry, a database, and `n` processes of one node on it (alice is its owner).
struct Setup {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    stub: Stub,
    database: String,
    processes: Vec<Process>,
    app: Identity,
    /// alice's own carte for the grant API (admin scope `grant`).
    owner_carte: String,
}

async fn setup(n: usize) -> Option<Setup> {
    setup_on(Cluster::shared()?, n).await
}

async fn setup_on(cluster: Cluster, n: usize) -> Option<Setup> {
    let dir = common::tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let database = cluster.database("node").await;
    let key_file = dir.path().join("database.key");
    let mut processes = Vec::new();
    for i in 0..n {
        processes.push(
            Process::start(
                &dir.path().join(format!("p{i}")),
                &database,
                &key_file,
                &stub.url(),
                &stub.public_key_hex(),
            )
            .await,
        );
    }
    let app = Identity::new("app", 7);
    app.register(&stub.client(), 0).await;
    let owner_carte = common::pg::owner_carte(&database, &key_file, "alice").await;
    Some(Setup {
        _dir: dir,
        cluster,
        stub,
        database,
        processes,
        app,
        owner_carte,
    })
}

impl Setup {
    fn app_carte(&self) -> String {
        let mut c = self.app.carte("alice", VIEW_PROFILE, -5);
        c.deadline = c.beginning + 3000;
        c.sign(&self.app.signing)
    }

    /// Sets alice's grant to `app` through process `p`; the status.
    async fn set_grant(&self, http: &HttpClient, p: usize, scope: &[&str]) -> u16 {
        let body = serde_json::json!({ "scope": scope }).to_string();
        http.send(
            Method::PUT,
            &format!("{}/api/grants/app", self.processes[p].url()),
            &[
                ("authorization", &format!("Carte {}", self.owner_carte)),
                ("content-type", "application/json"),
            ],
            body.into(),
        )
        .await
        .unwrap()
        .status
        .as_u16()
    }
}

async fn profile(http: &HttpClient, url: &str, carte: &str) -> (u16, Option<String>) {
    let r = http
        .send(
            Method::GET,
            &format!("{url}/api/profile"),
            &[("authorization", &format!("Carte {carte}"))],
            Default::default(),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.error_code())
}

/// alice's grant to `app` as process `p` reports it, sorted.
async fn held(s: &Setup, http: &HttpClient, p: usize) -> Vec<String> {
    let r = http
        .send(
            Method::GET,
            &format!("{}/api/grants/app", s.processes[p].url()),
            &[("authorization", &format!("Carte {}", s.owner_carte))],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = r.json().unwrap();
    let mut held: Vec<String> = v["scope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    held.sort();
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_through_two_processes_are_all_kept() {
    let Some(s) = setup(2).await else { return };
    let s = Arc::new(s);
    let http = HttpClient::new();
    const ADDED: [&str; 12] = [
        "other",
        "view-content",
        "add-post",
        "update-post",
        "add-comment",
        "update-comment",
        "react",
        "delete-own-content",
        "block",
        "friend",
        "remote-identify",
        "drafts",
    ];
    const REMOVED: [&str; 4] = [
        "view-feeds",
        "update-feeds",
        "view-profile",
        "update-profile",
    ];
    for round in 0..5 {
        assert_eq!(s.set_grant(&http, 0, &REMOVED).await, 200);
        // 16 changes at once, alternating between the two processes, each to its own scope.
        let bodies: Vec<serde_json::Value> = ADDED
            .iter()
            .map(|x| serde_json::json!({ "add": [x] }))
            .chain(REMOVED.iter().map(|x| serde_json::json!({ "remove": [x] })))
            .collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(bodies.len()));
        let tasks: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let (s, barrier) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    let http = HttpClient::new();
                    let url = format!("{}/api/grants/app", s.processes[i % 2].url());
                    barrier.wait().await;
                    http.send(
                        Method::PUT,
                        &url,
                        &[
                            ("authorization", &format!("Carte {}", s.owner_carte)),
                            ("content-type", "application/json"),
                        ],
                        body.to_string().into(),
                    )
                    .await
                    .unwrap()
                    .status
                    .as_u16()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "round {round}");
        }
        let mut want: Vec<String> = ADDED.iter().map(|x| x.to_string()).collect();
        want.sort();
        for p in 0..2 {
            assert_eq!(held(&s, &http, p).await, want, "round {round}, process {p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_through_one_process_is_enforced_by_the_other_at_once() {
    let Some(s) = setup(2).await else { return };
    let s = Arc::new(s);
    let carte = s.app_carte();
    let http = HttpClient::new();
    let b = s.processes[1].url();

    // A steady load on B with the application's carte keeps B's carte and grant caches warm.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, served, b, carte) = (stop.clone(), served.clone(), b.clone(), carte.clone());
        load.push(tokio::spawn(async move {
            let http = HttpClient::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = profile(&http, &b, &carte).await;
                assert!(status == 200 || status == 403, "load got {status}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let rounds: usize = std::env::var("GRANT_NODE_PG_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1000);
    for round in 0..rounds {
        assert_eq!(s.set_grant(&http, 0, &["view-profile"]).await, 200);
        assert_eq!(
            profile(&http, &b, &carte).await,
            (200, None),
            "round {round}: the grant made through A is not in force on B"
        );
        assert_eq!(s.set_grant(&http, 0, &[]).await, 200);
        assert_eq!(
            profile(&http, &b, &carte).await,
            (403, Some("grant.missing-scope".into())),
            "round {round}: the revocation made through A is not enforced by B"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    println!(
        "{rounds} revocations through A, each enforced by B on the next request; {} requests of concurrent load on B",
        served.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_with_another_database_key_refuses_to_start() {
    let Some(s) = setup(1).await else { return };
    let dir = s._dir.path().join("wrong");
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("other.key");
    let port = common::pg::free_port();
    let mut child = std::process::Command::new(common::pg::node_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--owner",
            "alice",
            "--data-dir",
            &dir.display().to_string(),
            "--database",
            &s.database,
            "--database-key",
            &wrong.display().to_string(),
            "--registry",
            &s.stub.url(),
            "--registry-key",
            &s.stub.public_key_hex(),
            "--allow-private-targets",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..300 {
        if let Some(st) = child.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("a process with the wrong database key is still running");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&wrong.display().to_string()) && err.contains("does not open"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_budget_is_shared_by_every_process() {
    let Some(s) = setup(2).await else { return };
    let urls = [s.processes[0].url(), s.processes[1].url()];
    let (token, hash) = grant_node::auth::new_token();
    let db = grant_node::store::Db::connect(&s.database, 1).unwrap();
    grant_node::store::owners::insert_setup_token(
        &db.lock().unwrap(),
        &hash,
        &Name::parse("alice").unwrap(),
        common::now() + 600,
    )
    .unwrap();
    let mut owner = common::Browser::new(&urls[0]);
    let r = owner
        .post_form(
            &format!("{}/setup", urls[0]),
            &[("token", &token), ("password", "correct horse battery")],
        )
        .await;
    let r = common::confirm_words(&mut owner, &urls[0], &r).await;
    assert_eq!(r.status, 303, "{}", common::text(&r));
    // 20 wrong guesses, alternating between the two processes: 5 are checked (401), the
    // other 15 are refused unchecked (429), whichever process answers.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let base = &urls[i % 2];
        let mut b = common::Browser::new(base);
        let r = b.log_in(base, "alice", "wrong guess number", "/").await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    // The budget holds for the right password too, on either process.
    for base in &urls {
        let mut b = common::Browser::new(base);
        let r = b.log_in(base, "alice", "correct horse battery", "/").await;
        assert_eq!(r.status, 429, "{}", common::text(&r));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_grant_cartes_and_owners_are_shared_by_every_process() {
    let Some(s) = setup(2).await else { return };
    let (a, b) = (s.processes[0].url(), s.processes[1].url());

    // A session made by A works on B: log in on A (set-up link), read the console on B.
    let (token, hash) = grant_node::auth::new_token();
    let db = grant_node::store::Db::connect(&s.database, 1).unwrap();
    grant_node::store::owners::insert_setup_token(
        &db.lock().unwrap(),
        &hash,
        &Name::parse("alice").unwrap(),
        common::now() + 600,
    )
    .unwrap();
    let mut browser = common::Browser::new(&a);
    let r = browser
        .post_form(
            &format!("{a}/setup"),
            &[("token", &token), ("password", "correct horse battery")],
        )
        .await;
    let r = common::confirm_words(&mut browser, &a, &r).await;
    assert_eq!(r.status, 303, "{}", common::text(&r));
    let cookie = browser.cookies["gn_session"].clone();
    let mut on_b = common::Browser::new(&b);
    on_b.cookies.insert("gn_session".into(), cookie);
    let r = on_b.get(&format!("{b}/sessions")).await;
    assert_eq!(r.status, 200, "{}", common::text(&r));
    assert!(
        common::text(&r).contains("(this browser)"),
        "{}",
        common::text(&r)
    );

    // A grant carte is accepted once across all processes: the second process to see it
    // refuses it as used.
    let redirect = "https://app.example/back";
    let app = Identity::new("app2", 9);
    let op = app.register_op("https://app.example/", &[redirect], 0);
    assert_eq!(common::post_op(&s.stub.url(), op).await.status, 201);
    let grant_carte = app.grant_carte(VIEW_PROFILE, redirect, "st");
    let consent_a = browser
        .get(&common::grant_url(
            &a,
            "app2",
            &grant_carte,
            "view-profile",
            redirect,
            "st",
            Some("alice"),
        ))
        .await;
    assert_eq!(consent_a.status, 200, "{}", common::text(&consent_a));
    // The same session reloading through B sees the same request (shared, not made anew)…
    let mut same_on_b = common::Browser::new(&b);
    same_on_b.cookies = browser.cookies.clone();
    let url_b = common::grant_url(
        &b,
        "app2",
        &grant_carte,
        "view-profile",
        redirect,
        "st",
        Some("alice"),
    );
    let reload = same_on_b.get(&url_b).await;
    assert_eq!(reload.status, 200, "{}", common::text(&reload));
    assert_eq!(
        common::hidden(&common::text(&reload), "request_id"),
        common::hidden(&common::text(&consent_a), "request_id")
    );
    // …and another session, logged in through B, is refused the used carte.
    let (token, hash) = grant_node::auth::new_token();
    grant_node::store::owners::insert_setup_token(
        &db.lock().unwrap(),
        &hash,
        &Name::parse("alice").unwrap(),
        common::now() + 600,
    )
    .unwrap();
    let mut other = common::Browser::new(&b);
    let r = other
        .post_form(
            &format!("{b}/setup"),
            &[("token", &token), ("password", "another horse battery")],
        )
        .await;
    let r = common::confirm_words(&mut other, &b, &r).await;
    assert_eq!(r.status, 303, "{}", common::text(&r));
    let again = other.get(&url_b).await;
    assert_eq!(
        (again.status.as_u16(), common::page_code(&again)),
        (400, "carte.replayed".to_owned()),
        "{}",
        common::text(&again)
    );

    // An owner created through one process is hosted by the other at once.
    let r = HttpClient::new()
        .get(&format!("{b}/.well-known/grant-node"))
        .await
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["owners"], serde_json::json!(["alice"]));
    drop(s.cluster);
}

/// What each writer client knows: the last change acknowledged, and the one in flight.
#[derive(Default, Clone)]
struct Ledger {
    last_acked: Option<usize>,
    in_flight: Option<usize>,
    acked: u64,
    unavailable: u64,
}

const STEPS: [&str; 4] = ["view-profile", "update-profile", "react", "drafts"];

/// `clients` writers, each changing its own application's grant step by step through
/// process `client % urls.len()`, retrying a step answered 503 (or cut off) until it is
/// acknowledged. Any other answer fails the test, as does an answer slower than 10 s.
fn writers(
    urls: Vec<String>,
    owner_carte: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
    ledgers: &Arc<std::sync::Mutex<Vec<Ledger>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (urls, stop, ledgers) = (urls.clone(), stop.clone(), ledgers.clone());
            let owner_carte = owner_carte.to_owned();
            tokio::spawn(async move {
                let http = HttpClient::new();
                let mut step = ledgers.lock().unwrap()[c].last_acked.map_or(0, |s| s + 1);
                while !stop.load(Ordering::Relaxed) {
                    ledgers.lock().unwrap()[c].in_flight = Some(step);
                    let p = &urls[c % urls.len()];
                    let body = serde_json::json!({ "scope": [STEPS[step % STEPS.len()]] });
                    let started = std::time::Instant::now();
                    let r = http
                        .send(
                            Method::PUT,
                            &format!("{p}/api/grants/w{c}"),
                            &[
                                ("authorization", &format!("Carte {owner_carte}")),
                                ("content-type", "application/json"),
                            ],
                            body.to_string().into(),
                        )
                        .await;
                    let took = started.elapsed();
                    assert!(took < Duration::from_secs(10), "an answer took {took:?}");
                    match r {
                        Ok(r) if r.status == 200 => {
                            let mut l = ledgers.lock().unwrap();
                            l[c].last_acked = Some(step);
                            l[c].in_flight = None;
                            l[c].acked += 1;
                            step += 1;
                        }
                        Ok(r) if r.status == 503 => {
                            assert_eq!(r.error_code().as_deref(), Some("store.unavailable"));
                            ledgers.lock().unwrap()[c].unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(r) => {
                            panic!("a grant change answered {}: {:?}", r.status, r.error_code())
                        }
                        // The process was killed mid-request: not acknowledged; try again.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged change is in the database: each writer's grant is its last
/// acknowledged step, or the one in flight; and each grant equals its newest audit entry.
async fn check_ledgers(s: &Setup, ledgers: &[Ledger], round: usize) {
    for (c, l) in ledgers.iter().enumerate() {
        let Some(acked) = l.last_acked else { continue };
        let rows = common::pg::query(
            &s.database,
            &format!("SELECT scope FROM grants WHERE owner = 'alice' AND app = 'w{c}'"),
        )
        .await;
        let bits: u64 = rows[0][0].as_ref().unwrap().parse().unwrap();
        let catalogue = grant_node::scope::Catalogue::builtin();
        let got = catalogue.format(Scope::from_bits(bits));
        let allowed: Vec<&str> = [Some(acked), l.in_flight]
            .iter()
            .flatten()
            .map(|s| STEPS[s % STEPS.len()])
            .collect();
        assert!(
            allowed.contains(&got.as_str()),
            "round {round}, w{c}: acknowledged step {acked} ({}), found {got}",
            STEPS[acked % STEPS.len()]
        );
    }
    let mismatched = common::pg::query(
        &s.database,
        "SELECT COUNT(*) FROM grants g WHERE g.scope != (SELECT new_scope FROM audit a
         WHERE a.owner = g.owner AND a.app = g.app ORDER BY a.id DESC LIMIT 1)",
    )
    .await;
    assert_eq!(mismatched[0][0].as_deref(), Some("0"), "round {round}");
}

async fn register_writers(s: &Setup, clients: usize) {
    for c in 0..clients {
        Identity::new(&format!("w{c}"), 100 + c as u8)
            .register(&s.stub.client(), 0)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_killed_under_load_loses_no_acknowledged_write() {
    let Some(mut s) = setup(2).await else { return };
    const CLIENTS: usize = 4;
    register_writers(&s, CLIENTS).await;
    let urls: Vec<String> = s.processes.iter().map(Process::url).collect();
    let rounds: usize = std::env::var("GRANT_NODE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let ledgers = Arc::new(std::sync::Mutex::new(vec![Ledger::default(); CLIENTS]));
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(urls.clone(), &s.owner_carte, CLIENTS, &stop, &ledgers);
        tokio::time::sleep(Duration::from_millis(200 + 60 * round as u64)).await;
        // SIGKILL one process in the middle of the stream.
        let victim = round % 2;
        s.processes[victim].kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let snapshot = ledgers.lock().unwrap().clone();
        check_ledgers(&s, &snapshot, round).await;
        s.processes[victim].restart().await;
    }
    let l = ledgers.lock().unwrap();
    println!(
        "SIGKILL under load: {rounds} rounds, {} acknowledged grant changes, 0 lost",
        l.iter().map(|l| l.acked).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_answers_503_and_loses_nothing() {
    // A cluster of this test's own: it is crashed and restarted.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let Some(s) = setup_on(cluster, 2).await else {
        return;
    };
    const CLIENTS: usize = 4;
    register_writers(&s, CLIENTS).await;
    let urls: Vec<String> = s.processes.iter().map(Process::url).collect();
    let ledgers = Arc::new(std::sync::Mutex::new(vec![Ledger::default(); CLIENTS]));
    let rounds = 3;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(urls.clone(), &s.owner_carte, CLIENTS, &stop, &ledgers);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before: u64 = ledgers.lock().unwrap().iter().map(|l| l.acked).sum();
        // A crash of the database server, and its restart.
        let cluster = &s.cluster;
        tokio::task::block_in_place(|| cluster.restart_immediate());
        // The processes reconnect by themselves: writes are acknowledged again.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let now: u64 = ledgers.lock().unwrap().iter().map(|l| l.acked).sum();
            if now >= before + 20 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no writes acknowledged after the restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let snapshot = ledgers.lock().unwrap().clone();
        check_ledgers(&s, &snapshot, round).await;
    }
    let l = ledgers.lock().unwrap();
    println!(
        "PostgreSQL restarted under load: {rounds} rounds, {} acknowledged grant changes, 0 lost, {} answers 503 store.unavailable",
        l.iter().map(|l| l.acked).sum::<u64>(),
        l.iter().map(|l| l.unavailable).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_moves_a_populated_sqlite_node_to_postgres() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let dir = common::tempdir();
    let data = dir.path().join("node");
    // A node on SQLite with its embedded registry, used for a while: an owner with a
    // password and a session, an application with a grant (and its audit entries).
    let node = common::Node::start_embedded(&data, "alice").await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    for scope in [&["view-profile", "react"][..], &["view-profile"][..]] {
        let r = browser
            .json(
                Method::PUT,
                &format!("{}/api/grants/app", node.url()),
                Some(serde_json::json!({ "scope": scope })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", common::text(&r));
    }
    node.stop().await;

    let database = cluster.database("moved").await;
    let key_file = dir.path().join("database.key");
    let migrate = |to: &str| {
        std::process::Command::new(common::pg::node_bin())
            .args(["migrate", "--from"])
            .arg(format!("sqlite:{}", data.join("node.sqlite3").display()))
            .args(["--to", to, "--database-key"])
            .arg(&key_file)
            .output()
            .unwrap()
    };
    let out = migrate(&database);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every table was compared; the copy's counts are the original's.
    for (table, _) in grant_node::store::copy::TABLES {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(table) && l.ends_with("ok")),
            "{table} not reported: {report}"
        );
    }
    let sqlite = rusqlite::Connection::open(data.join("node.sqlite3")).unwrap();
    for table in ["owners", "sessions", "grants", "audit"] {
        let n: i64 = sqlite
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        let m = common::pg::query(&database, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(m[0][0].as_deref(), Some(n.to_string().as_str()), "{table}");
        assert!(n > 0, "{table} is empty: the test copies nothing");
    }
    // A second migration into the same database is refused, and changes nothing.
    let again = migrate(&database);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds 1 owners"));

    // The moved node runs on PostgreSQL, its embedded registry now served by registry-stub
    // from the same folder: the grant is in force, and alice's session still works.
    let stub = Stub::start(&data.join("registry"), 0).await;
    let p = Process::start(
        &dir.path().join("p0"),
        &database,
        &key_file,
        &stub.url(),
        &stub.public_key_hex(),
    )
    .await;
    let carte = app.carte("alice", VIEW_PROFILE, -5).sign(&app.signing);
    assert_eq!(
        profile(&HttpClient::new(), &p.url(), &carte).await,
        (200, None)
    );
    let mut moved = common::Browser::new(&p.url());
    moved.cookies = browser.cookies.clone();
    let r = moved.get(&format!("{}/sessions", p.url())).await;
    assert_eq!(r.status, 200, "{}", common::text(&r));
    // And alice's keys moved with her: a grant change is signed (its notification) as alice.
    let r = moved
        .json(
            Method::PUT,
            &format!("{}/api/grants/app", p.url()),
            Some(serde_json::json!({ "scope": ["view-profile", "react"] })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", common::text(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_notification_is_delivered_once_and_a_dead_process_leaves_none_behind() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    // The application's notification receiver: records every body; while `hold` is set it
    // takes requests and never answers (a delivery in flight when its process dies).
    let received = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let held = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/", listener.local_addr().unwrap());
    let (r, h, hd) = (received.clone(), held.clone(), hold.clone());
    let _receiver = common::serve_task(listener, move |req, _| {
        let (r, h, hd) = (r.clone(), h.clone(), hd.clone());
        async move {
            use http_body_util::BodyExt;
            if hd.load(Ordering::SeqCst) {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            r.lock().unwrap().push(body);
            hyper::Response::new(grant_node::http::Body::default())
        }
    });

    let dir = common::tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let database = cluster.database("outbox").await;
    let key_file = dir.path().join("database.key");
    let toml = "outbox_claim = 12\n";
    let start = |i: usize| {
        let (dir, database, key_file, stub_url, key) = (
            dir.path().join(format!("p{i}")),
            database.clone(),
            key_file.clone(),
            stub.url(),
            stub.public_key_hex(),
        );
        async move { Process::start_with(&dir, &database, &key_file, &stub_url, &key, toml).await }
    };
    let mut a = start(0).await;
    let mut b = start(1).await;
    let app = Identity::new("app", 7);
    assert_eq!(
        common::post_op(&stub.url(), app.register_op(&target, &[], 0))
            .await
            .status,
        201
    );
    let owner_carte = common::pg::owner_carte(&database, &key_file, "alice").await;
    let http = HttpClient::new();
    let change = |url: String, step: usize| {
        let (http, owner_carte) = (http.clone(), owner_carte.clone());
        async move {
            let body = serde_json::json!({ "scope": [STEPS[step % STEPS.len()]] });
            let r = http
                .send(
                    Method::PUT,
                    &format!("{url}/api/grants/app"),
                    &[
                        ("authorization", &format!("Carte {owner_carte}")),
                        ("content-type", "application/json"),
                    ],
                    body.to_string().into(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{:?}", r.error_code());
        }
    };
    let outbox_empty = || async {
        common::pg::query(&database, "SELECT COUNT(*) FROM outbox").await[0][0].as_deref()
            == Some("0")
    };

    // Twenty changes through both processes: twenty notifications, each delivered once.
    for step in 0..20 {
        let url = if step % 2 == 0 { a.url() } else { b.url() };
        change(url, step).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(received.lock().unwrap().len() >= 20 && outbox_empty().await) {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more arrives: twenty queued, twenty delivered, none twice. (Bodies alone
    // cannot tell: two changes to the same scope in one second sign the same notification.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        20,
        "each notification exactly once"
    );

    // A delivery in flight when its process is killed: the other process delivers it once
    // the claim has run out. B is stopped first, so that A is the one that claims it.
    b.kill();
    hold.store(true, Ordering::SeqCst);
    change(a.url(), 20).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "A never tried to deliver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    hold.store(false, Ordering::SeqCst);
    b.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !(received.lock().unwrap().len() == 21 && outbox_empty().await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery A died holding was never made"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received.lock().unwrap().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_that_loses_its_notifications_never_answers_from_stale_caches() {
    let Some(s) = setup(2).await else { return };
    let carte = s.app_carte();
    let http = HttpClient::new();
    let b = s.processes[1].url();
    for round in 0..20 {
        assert_eq!(s.set_grant(&http, 0, &["view-profile"]).await, 200);
        // B's caches hold the grant…
        assert_eq!(
            profile(&http, &b, &carte).await,
            (200, None),
            "round {round}"
        );
        // …when every notification connection is cut (the processes' other connections
        // stay up), and the grant is revoked through A at that moment.
        common::pg::query(
            &s.database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE query LIKE 'LISTEN%' AND pid != pg_backend_pid()",
        )
        .await;
        assert_eq!(s.set_grant(&http, 0, &[]).await, 200);
        assert_eq!(
            profile(&http, &b, &carte).await,
            (403, Some("grant.missing-scope".into())),
            "round {round}: B answered from a stale cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_connection_is_tls_verified_against_ca_file() {
    // A cluster of this test's own, serving TLS with a certificate for 127.0.0.1 from a CA
    // made here.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = common::tempdir();
    let pki = common::test_certificate(dir.path(), "127.0.0.1");
    let (ca_file, cert, key) = (pki.ca_file, pki.chain, pki.key);
    cluster.serve_tls(&cert, &key);
    let database = format!("{}?sslmode=require", cluster.database("tls").await);
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let key_file = dir.path().join("database.key");

    // Without the CA the node refuses the server's certificate and does not start.
    let refused = std::process::Command::new(common::pg::node_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--owner", "alice"])
        .args(["--database", &database, "--registry", &stub.url()])
        .args(["--registry-key", &stub.public_key_hex(), "--data-dir"])
        .arg(dir.path().join("untrusting"))
        .arg("--database-key")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );

    // With it, the node runs, and every one of its connections is encrypted.
    let p = Process::start_with(
        &dir.path().join("p0"),
        &database,
        &key_file,
        &stub.url(),
        &stub.public_key_hex(),
        &format!("ca_file = {:?}\n", ca_file.display().to_string()),
    )
    .await;
    let r = HttpClient::new()
        .get(&format!("{}/.well-known/grant-node", p.url()))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let plain = common::pg::query(
        &cluster.url,
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname LIKE 'tls_%' AND NOT s.ssl",
    )
    .await;
    let encrypted = common::pg::query(
        &cluster.url,
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname LIKE 'tls_%' AND s.ssl",
    )
    .await;
    assert_eq!(plain[0][0].as_deref(), Some("0"));
    assert_ne!(encrypted[0][0].as_deref(), Some("0"));
}

/// A PostgreSQL tool of the cluster's version (`pg_dump`, `pg_restore`).
fn pg_tool(name: &str) -> String {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_owned())
}

/// The README's PostgreSQL backup, drilled: `pg_dump --format=custom` while the node takes a
/// steady load of grant changes, `pg_restore` into an empty database, a process started on it
/// with the same `database_key` file: every change acknowledged before the dump began is
/// there, and the application's carte is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_dump_and_the_database_key_restore_a_node_under_load() {
    let Some(s) = setup(1).await else { return };
    let s = Arc::new(s);
    let http = HttpClient::new();
    assert_eq!(s.set_grant(&http, 0, &["view-profile"]).await, 200);
    let acked = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let http = HttpClient::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let scope: &[&str] = if i % 2 == 0 {
                    &["view-profile", "react"]
                } else {
                    &["view-profile"]
                };
                assert_eq!(s.set_grant(&http, 0, scope).await, 200);
                acked.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.load(Ordering::SeqCst);
    let dump = s.processes[0].dir.join("node.pgdump");
    let (database, dump2) = (s.database.clone(), dump.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(pg_tool("pg_dump"))
            .args(["--format=custom", "--file"])
            .arg(&dump2)
            .arg(&database)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let restored = s.cluster.database("restored").await;
    let (restored2, dump2) = (restored.clone(), dump.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(pg_tool("pg_restore"))
            .args(["--no-owner", "--dbname"])
            .arg(&restored2)
            .arg(&dump2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_file = s._dir.path().join("database.key");
    let p = Process::start(
        &s._dir.path().join("restored"),
        &restored,
        &key_file,
        &s.stub.url(),
        &s.stub.public_key_hex(),
    )
    .await;
    let history = http
        .send(
            Method::GET,
            &format!("{}/api/grants/app/history", p.url()),
            &[("authorization", &format!("Carte {}", s.owner_carte))],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(history.status, 200);
    let entries = history.json::<serde_json::Value>().unwrap()["entries"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(
        entries >= before,
        "{entries} history entries restored, {before} were acknowledged before the dump began"
    );
    assert_eq!(profile(&http, &p.url(), &s.app_carte()).await, (200, None));
}
