//! The outbound HTTP client against real sockets: what it does when the other side misbehaves.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grant_node::outbound::HttpClient;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head (and no body) from `s`; `None` if the peer closed first.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => seen.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// A server whose first connection answers one request with keep-alive and then, on the
/// next request, closes without answering (as a server does that closed an idle pooled
/// connection just as the client picked it); later connections answer normally.
///
/// Returns its URL and the request lines it received, in order. (Counting connections would
/// not do: the client may open a spare connection while the pooled one is being returned.)
async fn flaky_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let n = connections.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                let line = |head: &str| head.lines().next().unwrap_or("").to_owned();
                while let Some(head) = read_head(&mut s).await {
                    log.lock().unwrap().push(line(&head));
                    s.write_all(ok).await.unwrap();
                    if n == 0 {
                        // Wait for the second request on this connection, then drop it.
                        if let Some(head) = read_head(&mut s).await {
                            log.lock().unwrap().push(line(&head));
                        }
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_request_is_retried_once_when_its_pooled_connection_was_closed() {
    let (url, received) = flaky_server().await;
    let http = HttpClient::new();
    assert_eq!(http.get(&format!("{url}/a")).await.unwrap().status, 200);
    // Sent on the pooled connection, which the server drops: retried on a fresh one.
    let r = http.get(&format!("{url}/b")).await.unwrap();
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
    let sent = received.lock().unwrap().clone();
    let b = sent.iter().filter(|l| l.starts_with("GET /b ")).count();
    assert!(b == 1 || b == 2, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_is_never_resent() {
    let (url, received) = flaky_server().await;
    let http = HttpClient::new();
    assert_eq!(http.get(&format!("{url}/a")).await.unwrap().status, 200);
    let r = http
        .send(Method::POST, &format!("{url}/b"), &[], "x".into())
        .await;
    // Either it went out on the pooled connection, which was dropped (an error, and never
    // sent again), or on a spare connection the client had opened meanwhile (answered).
    let sent = received.lock().unwrap().clone();
    let posts = sent.iter().filter(|l| l.starts_with("POST /b ")).count();
    assert_eq!(posts, 1, "{sent:?}");
    if let Ok(reply) = r {
        assert_eq!(reply.status, 200);
    }
}
