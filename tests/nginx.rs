//! A real nginx (Debian's package; scripts/test.sh installs it) with `auth_request` pointed at
//! the node's `/auth/check`, in front of a tiny upstream: a carte with the grant passes, one
//! without is stopped with 403, none at all with 401.
//!
//! Without nginx on the machine the test says so and passes, unless
//! `GRANT_NODE_REQUIRE_NGINX=1` (set by scripts/test.sh), where a missing nginx fails it.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tempdir, Identity, Node};
use grant_node::outbound::HttpClient;
use hyper::{Method, Response};

const NGINX: &str = "/usr/sbin/nginx";

/// The server block of the plain-HTTP test.
fn config(port: u16, upstream: u16, node: &str) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{port};
        location /photos/ {{
            auth_request /_grant_check;
            auth_request_set $grant_client $upstream_http_x_grant_client;
            proxy_set_header X-Grant-Client $grant_client;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location = /_grant_check {{
            internal;
            proxy_pass {node}/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Required-Scope "view-profile";
        }}
    }}
"#
    )
}

/// Runs nginx with `server` inside the usual frame (everything under `dir`), and waits until
/// `probe` answers through `http`. Killed when the returned guard drops.
async fn start_nginx(
    dir: &std::path::Path,
    server: &str,
    http: &HttpClient,
    probe: &str,
) -> common::Killed {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    \
         client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n    \
         uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n{server}}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = common::Killed(
        Command::new(NGINX)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if http.get(probe).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_puts_a_service_behind_grants() {
    if !std::path::Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("GRANT_NODE_REQUIRE_NGINX").is_none(),
            "nginx is required here but missing: apt-get install nginx-light"
        );
        eprintln!("nginx is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let dir = tempdir();
    let node = Node::start_embedded(&dir.path().join("node"), "alice").await;
    let mut owner = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("photo-app", 1);
    node.register_app(&app, &[]).await;
    let stranger = Identity::new("stranger-app", 2);
    node.register_app(&stranger, &[]).await;
    let r = owner
        .json(
            Method::PUT,
            &format!("{}/api/grants/photo-app", node.url()),
            Some(serde_json::json!({"add": ["view-profile"]})),
        )
        .await;
    assert_eq!(r.status, 200);

    // The upstream echoes who nginx says is calling.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let _upstream = common::serve_task(listener, |req: grant_node::http::Request, _| async move {
        let who = req
            .headers()
            .get("x-grant-client")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Response::new(http_body_util::Full::new(hyper::body::Bytes::from(
            format!("photos for {who}"),
        )))
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let http = HttpClient::new();
    let _nginx = start_nginx(
        &dir.path().join("nginx"),
        &config(port, upstream, &node.url()),
        &http,
        &format!("{base}/"),
    )
    .await;

    let call = |carte: Option<String>| {
        let http = http.clone();
        let url = format!("{base}/photos/1");
        async move {
            let auth = carte.map(|c| format!("Carte {c}"));
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            http.send(Method::GET, &url, &headers, Default::default())
                .await
                .unwrap()
        }
    };
    let granted = call(Some(app.carte("alice", 0x80000, 0).sign(&app.signing))).await;
    assert_eq!(granted.status, 200);
    assert_eq!(common::text(&granted), "photos for photo-app");
    let without = call(Some(
        stranger.carte("alice", 0x80000, 0).sign(&stranger.signing),
    ))
    .await;
    assert_eq!(without.status, 403);
    let none = call(None).await;
    assert_eq!(none.status, 401);
}

/// The server block of the TLS-terminating test.
fn tls_config(port: u16, node: &str, cert: &str, key: &str) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name node-a.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        # The node trusts 127.0.0.2 as its proxy: nginx connects from there.
        proxy_bind 127.0.0.2;
        location /photos/ {{
            auth_request /_grant_check;
            # Any upstream will do; `return` would answer before auth_request ran.
            rewrite ^ /healthz break;
            proxy_pass {node};
        }}
        location = /_grant_check {{
            internal;
            proxy_pass {node}/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Required-Scope "view-profile";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
        location / {{
            proxy_pass {node};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_terminates_tls_in_front_of_a_plain_node_with_trusted_proxies() {
    if !std::path::Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("GRANT_NODE_REQUIRE_NGINX").is_none(),
            "nginx is required here but missing: apt-get install nginx-light"
        );
        eprintln!("nginx is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let dir = tempdir();
    // A test CA and a certificate for node-a.test.
    let pki = common::test_certificate(dir.path(), "node-a.test");
    let (ca_file, cert, key) = (pki.ca_file, pki.chain, pki.key);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Node::embedded_config(&dir.path().join("node"), "alice");
    config.public_url = Some(format!("https://node-a.test:{port}"));
    config.trusted_proxies = vec![grant_node::outbound::Cidr::parse("127.0.0.2").unwrap()];
    let node = Node::start(config).await;
    let app = Identity::new("photo-app", 1);
    node.register_app(&app, &[]).await;
    let http = HttpClient::with(grant_node::outbound::Options {
        ca_file: Some(ca_file),
        resolve: vec![grant_node::outbound::ResolveOverride::parse(&format!(
            "node-a.test:{port}:127.0.0.1"
        ))
        .unwrap()],
        ..Default::default()
    })
    .unwrap();
    let base = format!("https://node-a.test:{port}");
    let _nginx = start_nginx(
        &dir.path().join("nginx"),
        &tls_config(
            port,
            &node.url(),
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ),
        &http,
        &format!("{base}/healthz"),
    )
    .await;
    // The owner grants through the proxy, over https; the audit log keeps her address, not
    // the proxy's.
    let mut through = common::Browser::with_client(&base, http.clone());
    let db = grant_node::store::Db::open(&node.dir.join("node.sqlite3")).unwrap();
    let (token, hash) = grant_node::auth::new_token();
    let alice = grant_node::name::Name::parse("alice").unwrap();
    grant_node::store::owners::insert_setup_token(
        &db.lock().unwrap(),
        &hash,
        &alice,
        common::now() + 600,
    )
    .unwrap();
    assert_eq!(
        through
            .get(&format!("{base}/setup?token={token}"))
            .await
            .status,
        200
    );
    let r = through
        .post_form(
            &format!("{base}/setup"),
            &[("token", &token), ("password", "correct horse battery")],
        )
        .await;
    let r = common::confirm_words(&mut through, &base, &r).await;
    assert_eq!(r.status, 303, "{}", common::text(&r));
    let r = through
        .json(
            Method::PUT,
            &format!("{base}/api/grants/photo-app"),
            Some(serde_json::json!({"add": ["view-profile"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", common::text(&r));
    assert!(r.headers.get("strict-transport-security").is_some());
    let h = through
        .json(
            Method::GET,
            &format!("{base}/api/grants/photo-app/history"),
            None,
        )
        .await;
    let entries = h.json::<serde_json::Value>().unwrap()["entries"].clone();
    assert_eq!(entries[0]["address"], "127.0.0.1", "{entries}");

    // auth_request still works; a carte pinned to the client's address passes, one pinned
    // elsewhere does not: the node sees the client through the trusted proxy.
    let call = |carte: String| {
        let http = http.clone();
        let url = format!("{base}/photos/1");
        async move {
            let auth = format!("Carte {carte}");
            http.send(
                Method::GET,
                &url,
                &[("authorization", &auth)],
                Default::default(),
            )
            .await
            .unwrap()
            .status
            .as_u16()
        }
    };
    assert_eq!(
        call(app.carte("alice", 0x80000, 0).sign(&app.signing)).await,
        200
    );
    let mut pinned = app.carte("alice", 0x80000, 0);
    pinned.addresses = Some(vec!["127.0.0.1".parse().unwrap()]);
    assert_eq!(call(pinned.sign(&app.signing)).await, 200);
    let mut elsewhere = app.carte("alice", 0x80000, 0);
    elsewhere.addresses = Some(vec!["127.0.0.2".parse().unwrap()]);
    assert_eq!(call(elsewhere.sign(&app.signing)).await, 401);
}

/// The README's two-process example ("Running several node processes"): its nginx block, as
/// printed but for ports and certificate paths, in front of two node processes on one
/// PostgreSQL database.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_behind_nginx_as_the_readme_shows() {
    if !std::path::Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("GRANT_NODE_REQUIRE_NGINX").is_none(),
            "nginx is required here but missing: apt-get install nginx-light"
        );
        eprintln!("nginx is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let Some(cluster) = common::pg::Cluster::shared() else {
        return;
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Running several node processes").unwrap()..];
    let start = section.find("```nginx\n").unwrap() + "```nginx\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert!(block.contains("upstream grant_node"), "{block}");

    let dir = tempdir();
    let stub = common::Stub::start(&dir.path().join("registry"), 0).await;
    let database = cluster.database("behind_nginx").await;
    let key_file = dir.path().join("database.key");
    let mut processes = Vec::new();
    for i in 0..2 {
        processes.push(
            common::pg::Process::start(
                &dir.path().join(format!("p{i}")),
                &database,
                &key_file,
                &stub.url(),
                &stub.public_key_hex(),
            )
            .await,
        );
    }

    // A certificate for node.example from a CA made here.
    let pki = common::test_certificate(dir.path(), "node.example");
    let (ca_file, cert, key) = (
        pki.ca_file.display().to_string(),
        pki.chain.display().to_string(),
        pki.key.display().to_string(),
    );
    let port = common::pg::free_port();
    let server = block
        .replace(
            "127.0.0.1:8650",
            &format!("127.0.0.1:{}", processes[0].port),
        )
        .replace(
            "127.0.0.1:8651",
            &format!("127.0.0.1:{}", processes[1].port),
        )
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace("/etc/letsencrypt/live/node.example/fullchain.pem", &cert)
        .replace("/etc/letsencrypt/live/node.example/privkey.pem", &key);
    let http = HttpClient::with(grant_node::outbound::Options {
        ca_file: Some(ca_file.into()),
        resolve: vec![grant_node::outbound::ResolveOverride::parse(&format!(
            "node.example:{port}:127.0.0.1"
        ))
        .unwrap()],
        ..Default::default()
    })
    .unwrap();
    let base = format!("https://node.example:{port}");
    let _nginx = start_nginx(
        &dir.path().join("nginx"),
        &server,
        &http,
        &format!("{base}/healthz"),
    )
    .await;

    // Through the proxy, requests land on either process; a grant and a revocation made
    // through it hold on every request that follows.
    let app = Identity::new("app", 3);
    app.register(&stub.client(), 0).await;
    let owner_carte = common::pg::owner_carte(&database, &key_file, "alice").await;
    let carte = app.carte("alice", 0x80000, -5).sign(&app.signing);
    for (scope, expect) in [
        (serde_json::json!(["view-profile"]), 200),
        (serde_json::json!([]), 403),
    ] {
        let r = http
            .send(
                Method::PUT,
                &format!("{base}/api/grants/app"),
                &[
                    ("authorization", &format!("Carte {owner_carte}")),
                    ("content-type", "application/json"),
                ],
                serde_json::json!({ "scope": scope }).to_string().into(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.error_code());
        for _ in 0..20 {
            let r = http
                .send(
                    Method::GET,
                    &format!("{base}/api/profile"),
                    &[("authorization", &format!("Carte {carte}"))],
                    Default::default(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, expect, "{:?}", r.error_code());
        }
    }
}
