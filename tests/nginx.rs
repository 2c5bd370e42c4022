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

fn config(dir: &std::path::Path, port: u16, upstream: u16, node: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
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
}}
"#
    )
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
    let conf_dir = dir.path().join("nginx");
    std::fs::create_dir_all(conf_dir.join("tmp")).unwrap();
    std::fs::write(
        conf_dir.join("nginx.conf"),
        config(&conf_dir, port, upstream, &node.url()),
    )
    .unwrap();
    let mut nginx = Command::new(NGINX)
        .arg("-c")
        .arg(conf_dir.join("nginx.conf"))
        .arg("-e")
        .arg(conf_dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = HttpClient::new();
    let mut up = false;
    for _ in 0..200 {
        if http.get(&format!("{base}/")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(conf_dir.join("error.log")).unwrap_or_default()
    );

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

    nginx.kill().unwrap();
    nginx.wait().unwrap();
}
