//! What an outside attack review got through, one test per hole: each failed on the main of
//! the time and pins the fix. Requests go over real sockets; where a client address matters,
//! the test binds its socket to another loopback address (127.0.0.0/8 is all loopback).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{grant_url, page_code, post_op, tempdir, text, Browser, Identity, Node};
use grant_node::outbound::HttpClient;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIRECT: &str = "http://127.0.0.1:4000/cb";
const VIEW_PROFILE: u64 = 0x80000;

async fn setup() -> (tempfile::TempDir, Node, Browser, Identity) {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    (dir, node, browser, app)
}

/// A connection from `from` (a loopback address) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends raw request bytes from `from` and returns the status and the whole reply.
async fn raw(from: &str, to: SocketAddr, request: String) -> (u16, String) {
    let mut s = connect_from(from, to).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

/// A login POST as a browser form would send it (the double-submit cookie and field agree).
fn login_request(name: &str, password: &str) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("password", password)
        .append_pair("login_csrf", "same-token")
        .append_pair("next", "/")
        .finish();
    format!(
        "POST /login HTTP/1.1\r\nHost: node\r\nCookie: gn_login=same-token\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The error code in a raw reply's HTML error page.
fn raw_code(reply: &str) -> &str {
    let start = reply.find("error: ").map(|i| i + 7).unwrap_or(0);
    let end = reply[start..].find('<').map(|i| i + start).unwrap_or(start);
    &reply[start..end]
}

async fn check(node: &Node, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = HttpClient::new()
        .send(
            Method::GET,
            &format!("{}{path}", node.url()),
            headers,
            Default::default(),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.error_code().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_scope_cannot_be_chosen_by_the_client() {
    let (_dir, node, _browser, app) = setup().await;
    // The app holds no grant from alice at all.
    let carte = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    let auth = format!("Carte {carte}");
    let a = ("authorization", auth.as_str());
    let q = "/auth/check?scope=view-profile";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, (u16, &'a str));
    let cases: [Case; 8] = [
        (
            q,
            vec![a, ("x-required-scope", "")],
            (400, "request.scope-required"),
        ),
        (
            q,
            vec![a, ("x-required-scope", ",")],
            (400, "request.scope-required"),
        ),
        (
            q,
            vec![a, ("x-required-scope", " , ")],
            (400, "request.scope-required"),
        ),
        ("/auth/check", vec![a], (400, "request.scope-required")),
        (
            "/auth/check?scope=",
            vec![a],
            (400, "request.scope-required"),
        ),
        (
            q,
            vec![a, ("x-required-scope", "view-settings")],
            (400, "request.scope-conflict"),
        ),
        (
            "/auth/check",
            vec![
                a,
                ("x-required-scope", "view-profile"),
                ("x-required-scope", ""),
            ],
            (400, "request.scope-conflict"),
        ),
        // Agreeing sources: the real check runs, and there is no grant.
        (
            q,
            vec![a, ("x-required-scope", "view-profile")],
            (403, "grant.missing-scope"),
        ),
    ];
    for (path, headers, (status, code)) in cases {
        assert_eq!(
            check(&node, path, &headers).await,
            (status, code.to_owned()),
            "{path} {headers:?}"
        );
    }
    assert_eq!(
        check(&node, q, &[a]).await,
        (403, "grant.missing-scope".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_login_guesses_are_counted_before_any_is_checked() {
    let (_dir, node, _browser, _app) = setup().await;
    let to = node.server.addr;
    // 30 wrong guesses at once as alice from one address.
    let mut tasks = Vec::new();
    for i in 0..30 {
        tasks.push(tokio::spawn(async move {
            raw(
                "127.0.0.1",
                to,
                login_request("alice", &format!("wrong guess {i}")),
            )
            .await
        }));
    }
    let mut checked = 0;
    let mut limited = 0;
    for t in tasks {
        let (status, reply) = t.await.unwrap();
        match status {
            401 => checked += 1,
            429 => {
                assert_eq!(raw_code(&reply), "login.rate-limited");
                assert!(reply.to_ascii_lowercase().contains("retry-after:"));
                limited += 1;
            }
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    assert_eq!((checked, limited), (5, 25));
    // The right password now is refused too: guessing cannot go on.
    let (status, reply) = raw(
        "127.0.0.1",
        to,
        login_request("alice", "correct horse battery"),
    )
    .await;
    assert_eq!((status, raw_code(&reply)), (429, "login.rate-limited"));
    // The budget is per address too: other names from the same address are refused now.
    let (status, reply) = raw("127.0.0.1", to, login_request("bob", "whatever1")).await;
    assert_eq!((status, raw_code(&reply)), (429, "login.rate-limited"));
    // And per name: alice from another address is refused as well.
    let (status, reply) = raw("127.0.0.3", to, login_request("alice", "whatever1")).await;
    assert_eq!((status, raw_code(&reply)), (429, "login.rate-limited"));
    // Someone else from elsewhere is not.
    let (status, _) = raw("127.0.0.4", to, login_request("carol", "whatever1")).await;
    assert_eq!(status, 401);
}

fn node_binary() -> String {
    std::env::var("GRANT_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_grant-node").to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary, with `prefix` in front (for `prlimit`).
fn start_binary(prefix: &[&str], dir: &Path, port: u16) -> Child {
    let bin = node_binary();
    let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    args.push(bin);
    args.extend(
        [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--owner",
            "alice",
            "--pow-bits",
            "0",
        ]
        .map(str::to_owned),
    );
    Command::new(&args[0])
        .args(&args[1..])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(addr: SocketAddr) {
    for _ in 0..400 {
        if let Ok(r) = HttpClient::new()
            .get(&format!("http://{addr}/healthz"))
            .await
        {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node did not come up");
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `/healthz` from another address, timed; the status and the time it took.
async fn timed_health(from: &str, to: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let request = "GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n".to_owned();
    let (status, _) = tokio::time::timeout(Duration::from_secs(60), raw(from, to, request))
        .await
        .unwrap_or((0, String::new()));
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_parallel_logins_stay_within_bounded_memory() {
    let dir = tempdir();
    let port = free_port();
    let mut child = start_binary(&[], dir.path(), port);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_ready(to).await;
    let rss_before = peak_rss_kib(child.id());
    // 200 logins at once, each from its own address and for its own name, so the rate limiter
    // lets every one through to the password check: only the hash gate stands in the way.
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let from = format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250);
        tasks.push(tokio::spawn(async move {
            raw(
                &from,
                to,
                login_request(&format!("user{i}"), "wrong password"),
            )
            .await
        }));
    }
    let health = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let (status, took) = timed_health("127.0.9.9", to).await;
            assert_eq!(status, 200, "/healthz during the login storm");
            worst = worst.max(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worst
    });
    let (mut refused, mut busy) = (0, 0);
    for t in tasks {
        let (status, reply) = t.await.unwrap();
        match status {
            401 => refused += 1,
            503 => {
                assert_eq!(raw_code(&reply), "login.busy");
                assert!(reply.to_ascii_lowercase().contains("retry-after: 1"));
                busy += 1;
            }
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    let worst_health = health.await.unwrap();
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "200 parallel logins: {refused} checked, {busy} turned away busy; peak RSS {} MiB \
         (before {} MiB); slowest /healthz {worst_health:?}",
        peak / 1024,
        rss_before / 1024
    );
    assert_eq!(refused + busy, 200);
    assert!(busy > 0, "the gate turned nobody away");
    assert!(peak < 256 * 1024, "peak RSS {} MiB", peak / 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_body_is_cut_off() {
    let (_dir, node, _browser, _app) = setup().await;
    let mut s = connect_from("127.0.0.1", node.server.addr).await;
    s.write_all(
        b"POST /api/cartes/verify HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n\
          Content-Length: 4000\r\n\r\n{",
    )
    .await
    .unwrap();
    // One byte every 2 s, as the review's client did, until the node answers.
    let mut reply = vec![0u8; 4096];
    let n = loop {
        tokio::select! {
            n = s.read(&mut reply) => break n.unwrap(),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                if s.write_all(b" ").await.is_err() {
                    break s.read(&mut reply).await.unwrap_or(0);
                }
            }
        }
    };
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"request.timeout\""), "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn eleven_hundred_slow_sockets_do_not_starve_healthz_under_a_1024_descriptor_limit() {
    let dir = tempdir();
    let port = free_port();
    let mut child = start_binary(&["prlimit", "--nofile=1024:1024", "--"], dir.path(), port);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_ready(to).await;
    // 1,100 sockets from one address, each starting a POST whose body never finishes.
    let mut held = Vec::new();
    for _ in 0..1100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(to)).await {
            Ok(Ok(mut s)) => {
                let _ = s
                    .write_all(
                        b"POST /api/cartes/verify HTTP/1.1\r\nHost: node\r\n\
                          Content-Length: 4000\r\n\r\n{",
                    )
                    .await;
                held.push(s);
            }
            _ => continue,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let (status, took) = timed_health(&format!("127.0.2.{}", i + 1), to).await;
        assert_eq!(status, 200, "/healthz with 1,100 slow sockets open");
        worst = worst.max(took);
    }
    println!(
        "/healthz with 1,100 slow-body sockets open under a 1,024 descriptor limit: \
         slowest of 10 took {worst:?}"
    );
    drop(held);
    // The node is still whole afterwards.
    assert_eq!(timed_health("127.0.0.1", to).await.0, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_redirected_before_every_check_passes() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &[REDIRECT]).await;
    // `elsewhere` lives on another node, per the registry.
    let elsewhere = Identity::new("elsewhere", 7);
    let r = post_op(
        &node.url(),
        elsewhere.register_op("https://other-node.example/", &[], 0),
    )
    .await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let good = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let garbage = "/grant?client_id=x&client_secret=x&scope=x&redirect_uri=x&state=x";
    let bad_redirect = app.grant_carte(VIEW_PROFILE, "https://evil.example/cb", "s");
    let cases: Vec<(String, &str)> = vec![
        // Garbage, for an owner elsewhere (the review's case) and for one at home.
        (format!("{garbage}&owner=elsewhere"), "grant.unknown-client"),
        (format!("{garbage}&owner=alice"), "grant.unknown-client"),
        (
            grant_url(
                "",
                "app",
                "x",
                "view-profile",
                REDIRECT,
                "s",
                Some("elsewhere"),
            ),
            "carte.malformed",
        ),
        (
            grant_url(
                "",
                "app",
                &bad_redirect,
                "view-profile",
                "https://evil.example/cb",
                "s",
                Some("elsewhere"),
            ),
            "grant.redirect-uri-not-registered",
        ),
        (
            grant_url(
                "",
                "app",
                &good,
                "view-profile",
                REDIRECT,
                "other",
                Some("elsewhere"),
            ),
            "grant.request-mismatch",
        ),
        (
            grant_url(
                "",
                "app",
                &good,
                "view-profile",
                REDIRECT,
                "other",
                Some("alice"),
            ),
            "grant.request-mismatch",
        ),
    ];
    let http = HttpClient::new();
    for (path, code) in cases {
        let r = http.get(&format!("{}{path}", node.url())).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), page_code(&r)),
            (400, code.to_owned()),
            "{path}"
        );
        assert!(r.headers.get("location").is_none(), "{path} redirected");
    }
    // A request that passes every check is sent home, and an owner here to log in.
    let home = grant_url(
        "",
        "app",
        &good,
        "view-profile",
        REDIRECT,
        "s",
        Some("elsewhere"),
    );
    let r = http.get(&format!("{}{home}", node.url())).await.unwrap();
    assert_eq!(r.status, 303);
    assert!(common::location(&r).starts_with("https://other-node.example/grant?"));
    let login = grant_url(
        "",
        "app",
        &good,
        "view-profile",
        REDIRECT,
        "s",
        Some("alice"),
    );
    let r = http.get(&format!("{}{login}", node.url())).await.unwrap();
    assert_eq!(r.status, 303);
    assert!(common::location(&r).starts_with("/login?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_name_prompt_names_only_a_verified_client() {
    let (_dir, node, _browser, app) = setup().await;
    let http = HttpClient::new();
    let spoof = "Security alert: your account is locked";
    let url = grant_url(&node.url(), spoof, "x", "view-profile", REDIRECT, "s", None);
    let r = http.get(&url).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (400, "grant.unknown-client".to_owned())
    );
    assert!(!text(&r).contains("Security alert"), "{}", text(&r));
    // A registered name with a forged carte is not named either.
    let forged = Identity::new("app", 99).grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let url = grant_url(
        &node.url(),
        "app",
        &forged,
        "view-profile",
        REDIRECT,
        "s",
        None,
    );
    let r = http.get(&url).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), page_code(&r)),
        (400, "carte.bad-signature".to_owned())
    );
    // The genuine request gets the prompt, with the registered name.
    let carte = app.grant_carte(VIEW_PROFILE, REDIRECT, "s");
    let url = grant_url(
        &node.url(),
        "app",
        &carte,
        "view-profile",
        REDIRECT,
        "s",
        None,
    );
    let r = http.get(&url).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("<h1>app asks for access"), "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn digit_look_alikes_of_a_registered_name_are_refused() {
    let dir = tempdir();
    let node = Node::start_embedded(dir.path(), "alice").await;
    let google = Identity::new("google", 3);
    assert_eq!(
        post_op(
            &node.url(),
            google.register_op("https://g.example/", &[], 0)
        )
        .await
        .status,
        201
    );
    for look_alike in ["g00gle", "G0OGLE", "goog1e", "googie", "goo9le-x"] {
        let id = Identity::new(look_alike, 4);
        let r = post_op(&node.url(), id.register_op("https://g.example/", &[], 0)).await;
        if look_alike == "goo9le-x" {
            assert_eq!(r.status, 201, "{look_alike}: {}", text(&r));
            continue;
        }
        assert_eq!(
            (r.status.as_u16(), r.error_code().unwrap_or_default()),
            (409, "name.confusable".to_owned()),
            "{look_alike}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_origin_header_is_refused() {
    let (_dir, node, browser, _app) = setup().await;
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ours = node.url();
    let post = |origins: Vec<&'static str>| {
        let cookie = cookie.clone();
        let ours = ours.clone();
        async move {
            let mut headers = vec![
                ("cookie", cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            for o in &origins {
                headers.push(("origin", if *o == "ours" { ours.as_str() } else { o }));
            }
            let r = HttpClient::new()
                .send(
                    Method::POST,
                    &format!("{ours}/grant"),
                    &headers,
                    "request_id=x&csrf=y&decision=allow".into(),
                )
                .await
                .unwrap();
            (r.status.as_u16(), page_code(&r))
        }
    };
    // Ours alone gets past the origin check (to the form check).
    assert_eq!(post(vec!["ours"]).await, (403, "csrf.bad-token".to_owned()));
    assert_eq!(
        post(vec!["ours", "https://evil.example"]).await,
        (403, "csrf.bad-origin".to_owned())
    );
    assert_eq!(
        post(vec!["https://evil.example", "ours"]).await,
        (403, "csrf.bad-origin".to_owned())
    );
    assert_eq!(
        post(vec!["ours", "ours"]).await,
        (403, "csrf.bad-origin".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_and_slow_header_connections_from_many_addresses_do_not_lock_out_a_newcomer() {
    let dir = tempdir();
    let port = free_port();
    let mut child = start_binary(&["prlimit", "--nofile=1024:1024", "--"], dir.path(), port);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_ready(to).await;
    // A newcomer from 127.0.0.1 asks for /healthz every 100 ms throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(timed_health("127.0.0.1", to).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answers
        })
    };
    // 1,100 silent connections and 1,100 that trickle a request head, from 127.0.0.2 to
    // 127.0.0.20: together more than the node has descriptors for.
    let mut silent = Vec::new();
    let mut trickling = Vec::new();
    for i in 0..2200 {
        let from = format!("127.0.0.{}", 2 + i % 19);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_millis(500), socket.connect(to)).await
        else {
            continue;
        };
        if i % 2 == 0 {
            silent.push(s);
        } else {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")
                .await;
            trickling.push(s);
        }
    }
    // A header line now and then on each trickling connection, for 3 s more.
    for _ in 0..3 {
        for s in trickling.iter_mut() {
            let _ = tokio::time::timeout(Duration::from_millis(5), s.write_all(b"X-Slow: yes\r\n"))
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = probe.await.unwrap();
    assert!(answers.len() >= 10, "{answers:?}");
    let worst = answers.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        answers
            .iter()
            .all(|(status, took)| *status == 200 && *took < Duration::from_secs(1)),
        "a newcomer waited or was refused: {answers:?}"
    );
    println!(
        "{} /healthz from a newcomer while 2,200 silent or slow-header connections from 19 \
         addresses competed for 1,024 descriptors: all 200, slowest {worst:?}",
        answers.len()
    );
    drop((silent, trickling));
    assert_eq!(timed_health("127.0.0.1", to).await.0, 200);
    let _ = child.kill();
    let _ = child.wait();
}
