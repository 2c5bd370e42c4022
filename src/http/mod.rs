//! HTTP: the accept loop, the router and the one table that maps errors to statuses.
//!
//! [`run`] takes its listener and a shutdown future as arguments, so tests start a node
//! in-process on `127.0.0.1:0` and stop it when they like. Routing is a single `match` on
//! method and path in [`router`]; there is no framework.

mod error;
mod router;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use error::ApiError;

use crate::config::Config;
use crate::scope::Catalogue;

/// What every request handler can see.
pub struct AppState {
    pub config: Config,
    pub scopes: Catalogue,
}

/// How long in-flight connections get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
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
                let state = state.clone();
                let mut closing = closing_rx.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        router::route(state.clone(), peer, req)
                    });
                    let conn = http1::Builder::new()
                        .max_buf_size(64 * 1024)
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
