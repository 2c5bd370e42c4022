//! HTTP: the accept loop, the routers and the one table that maps errors to statuses.
//!
//! [`run`] takes its listener, a request handler and a shutdown future as arguments, so tests
//! start a node or a registry in-process on `127.0.0.1:0` and stop it when they like. Routing is
//! a `match` on method and path (see [`node`] and [`registry_api`]); there is no framework.

pub mod api;
pub mod client;
mod error;
pub mod grant_page;
pub mod grants_api;
pub mod html;
pub mod login;
pub mod metrics;
pub mod node;
pub mod owners_api;
pub mod registry_api;
pub mod response;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use error::ApiError;
pub use response::Body;

/// An incoming request, as handlers receive it.
pub type Request = hyper::Request<Incoming>;

/// How long in-flight connections get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish (up to a drain timeout).
pub async fn run<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Running out of file descriptors must not end the server.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let mut closing = closing_rx.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fut = handler(req, peer);
                        async move { Ok::<_, std::convert::Infallible>(fut.await) }
                    });
                    let conn = http1::Builder::new()
                        .max_buf_size(MAX_HEAD_BYTES)
                        .header_read_timeout(Duration::from_secs(30))
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        result = conn.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        _ = closing.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
    Ok(())
}
