//! The outbound HTTP client against real sockets: what it does when the other side misbehaves.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grant_node::outbound::HttpClient;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head (and no body) from `s`; false if the peer closed first.
async fn read_head(s: &mut tokio::net::TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => seen.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A server whose first connection answers one request with keep-alive and then, on the
/// next request, closes without answering (as a server does that closed an idle pooled
/// connection just as the client picked it); later connections answer normally.
async fn flaky_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                while read_head(&mut s).await {
                    s.write_all(ok).await.unwrap();
                    if n == 0 {
                        // Wait for the second request on this connection, then drop it.
                        let _ = read_head(&mut s).await;
                        return;
                    }
                }
            });
        }
    });
    (url, connections)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_request_is_retried_once_when_its_pooled_connection_was_closed() {
    let (url, connections) = flaky_server().await;
    let http = HttpClient::new();
    assert_eq!(http.get(&format!("{url}/a")).await.unwrap().status, 200);
    // Sent on the pooled connection, which the server drops: retried on a fresh one.
    let r = http.get(&format!("{url}/b")).await.unwrap();
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_is_never_resent() {
    let (url, connections) = flaky_server().await;
    let http = HttpClient::new();
    assert_eq!(http.get(&format!("{url}/a")).await.unwrap().status, 200);
    let r = http
        .send(Method::POST, &format!("{url}/b"), &[], "x".into())
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
