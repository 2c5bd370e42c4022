//! A stalled database stalls only what needs it. PostgreSQL is paused with `SIGSTOP` (every
//! process of the cluster) for 5 s while more requests than the node has worker threads wait
//! on it; meanwhile `/healthz` and checks of cartes the node has never seen, whose signer's
//! key it holds, keep answering within 100 ms. Before the fix, grant look-ups took the database
//! connection on the async workers, and two stuck requests stalled a 2-core node entirely.
//! (In a file of its own so that no other test loads the machine while it measures.)

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::pg::{Cluster, Process};
use common::{Identity, Stub};
use grant_node::outbound::HttpClient;
use hyper::Method;

const VIEW_PROFILE: u64 = 0x80000;

async fn verify(http: &HttpClient, url: &str, carte: &str) -> (u16, serde_json::Value) {
    let r = http
        .send(
            Method::POST,
            &format!("{url}/api/cartes/verify"),
            &[("content-type", "application/json")],
            serde_json::json!({ "carte": carte }).to_string().into(),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.json().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_database_stalls_only_the_requests_that_need_it() {
    // A cluster of this test's own: it is paused.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = common::tempdir();
    let stub = Stub::start(&dir.path().join("registry"), 0).await;
    let database = cluster.database("node").await;
    let key_file = dir.path().join("database.key");
    let node = Process::start(
        &dir.path().join("p0"),
        &database,
        &key_file,
        &stub.url(),
        &stub.public_key_hex(),
    )
    .await;
    let url = node.url();
    let app = Identity::new("app", 7);
    app.register(&stub.client(), 0).await;
    let owner_carte = common::pg::owner_carte(&database, &key_file, "alice").await;
    let http = HttpClient::new();
    let fresh = || app.carte("alice", VIEW_PROFILE, -5).sign(&app.signing);
    // The node learns the application's key (a registry sync), once.
    let (status, body) = verify(&http, &url, &fresh()).await;
    assert_eq!((status, body["principal"].as_str()), (200, Some("app")));

    // alice grants view-profile; the change empties that grant from the node's cache.
    let r = http
        .send(
            Method::PUT,
            &format!("{url}/api/grants/app"),
            &[
                ("authorization", &format!("Carte {owner_carte}")),
                ("content-type", "application/json"),
            ],
            r#"{"scope": ["view-profile"]}"#.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    cluster.signal("STOP");
    let paused = Instant::now();
    // Requests that need the database, more than the node's worker threads (one per core):
    // grant changes, and calls whose grant is not cached.
    let mut stuck = Vec::new();
    for i in 0..16 {
        let (http, url, owner_carte, carte) =
            (http.clone(), url.clone(), owner_carte.clone(), fresh());
        stuck.push(tokio::spawn(async move {
            let r = if i % 2 == 0 {
                http.send(
                    Method::PUT,
                    &format!("{url}/api/grants/app"),
                    &[
                        ("authorization", &format!("Carte {owner_carte}")),
                        ("content-type", "application/json"),
                    ],
                    r#"{"scope": ["view-profile"]}"#.into(),
                )
                .await
            } else {
                http.send(
                    Method::GET,
                    &format!("{url}/api/profile"),
                    &[("authorization", &format!("Carte {carte}"))],
                    Default::default(),
                )
                .await
            };
            r.map(|r| (r.status.as_u16(), r.error_code()))
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = (Duration::ZERO, "");
    let mut answered = 0;
    while paused.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let r = http.get(&format!("{url}/healthz")).await.unwrap();
        assert_eq!(r.status, 200);
        slowest = slowest.max((t.elapsed(), "/healthz"));
        let t = Instant::now();
        let (status, body) = verify(&http, &url, &fresh()).await;
        assert_eq!(
            (status, body["principal"].as_str()),
            (200, Some("app")),
            "{body}"
        );
        slowest = slowest.max((t.elapsed(), "/api/cartes/verify"));
        answered += 2;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still_waiting = stuck.iter().filter(|t| !t.is_finished()).count();
    cluster.signal("CONT");
    println!(
        "PostgreSQL paused 5 s: {answered} answers from memory, the slowest {:?} ({}); {still_waiting} of 16 database requests still waiting at the end",
        slowest.0, slowest.1
    );
    assert!(
        slowest.0 < Duration::from_millis(100),
        "{} took {:?} while the database was paused",
        slowest.1,
        slowest.0
    );
    // What waited on the database ends: done, or refused as unavailable; never hung.
    for t in stuck {
        let outcome = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a request hung after the database came back")
            .unwrap();
        match outcome {
            Ok((200, _)) => {}
            Ok((503, Some(code))) if code == "store.unavailable" => {}
            other => panic!("a request that needed the database: {other:?}"),
        }
    }
    // And the node serves the database again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .send(
                Method::GET,
                &format!("{url}/api/profile"),
                &[("authorization", &format!("Carte {}", fresh()))],
                Default::default(),
            )
            .await
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} {:?}",
            r.status,
            r.error_code()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(node);
}
