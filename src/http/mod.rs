//! HTTP: the accept loop, the routers and the one table that maps errors to statuses.
//!
//! [`run`] takes its listener, a request handler and a shutdown future as arguments, so tests
//! start a node or a registry in-process on `127.0.0.1:0` and stop it when they like. Routing is
//! a `match` on method and path (see [`node`] and [`api::registry`]); there is no framework.
//!
//! Three groups: the plumbing here (accept loop, TLS, connection slots, sessions, the error
//! table, responses), [`api`] (the JSON endpoints) and [`pages`] (HTML, built with a template
//! macro). Pages and the API both call the node's operations ([`crate::node`]), never each
//! other.

pub mod api;
mod error;
pub mod node;
pub mod pages;
pub mod response;
pub mod session;
mod slots;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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

pub use crate::config::limits::{Limits, DEFAULT_PER_ADDRESS};

/// Raises this process's soft descriptor limit to its hard limit (systemd's default soft
/// limit is 1,024, far below what a server wants), returning the limit now in force.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One connection's place in [`PerAddress`], given back on drop.
struct AddressSlot(Arc<PerAddress>, IpAddr);

impl PerAddress {
    fn take(self: &Arc<Self>, addr: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(addr).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), addr))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// [`run_with`] under the limits the descriptor limit allows.
pub async fn run<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    run_with(listener, handler, shutdown, Limits::from_descriptors()).await
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish (up to a drain timeout).
pub async fn run_with<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) -> std::io::Result<()>
where
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    serve(listener, handler, shutdown, limits, None).await
}

/// How long a connection may stay open with no request in flight.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves on `listener`, over TLS when `tls` is given (HTTP/2 or HTTP/1.1 as ALPN chose,
/// HTTP/1.1 otherwise), until `shutdown` resolves; then stops accepting and lets in-flight
/// requests finish (up to a drain timeout).
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()>
where
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = JoinSet::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let open = Arc::new(slots::Open::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = async {
                // A slot first. At the cap, idle connections are closed, oldest first (see
                // `slots`); if every connection is busy, new ones wait in the backlog.
                let slot = match slots.clone().try_acquire_owned() {
                    Ok(slot) => Ok(slot),
                    Err(_) => {
                        let drained = open.drain_idle();
                        tracing::debug!(drained, "every connection slot is taken");
                        slots.clone().acquire_owned().await
                    }
                };
                (slot, listener.accept().await)
            } => {
                let (slot, accepted) = accepted;
                let Ok(slot) = slot else { break };
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Running out of file descriptors must not end the server.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let cap = if limits.exempt.iter().any(|c| c.contains(peer.ip())) {
                    usize::MAX
                } else {
                    limits.max_per_address
                };
                let Some(address_slot) = per_address.take(peer.ip(), cap) else {
                    tracing::debug!(%peer, "too many connections from one address; closed");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let closing = closing_rx.clone();
                let acceptor = acceptor.clone();
                let entry = open.add();
                connections.spawn(async move {
                    let activity = entry.activity.clone();
                    let _slots = (slot, address_slot, entry);
                    let Some(acceptor) = acceptor else {
                        return serve_connection(TokioIo::new(stream), false, peer, handler, closing, activity).await;
                    };
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let tls = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        _ = activity.close.notified() => return,
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_connection(TokioIo::new(tls), h2, peer, handler, closing, activity).await;
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

/// Serves one connection (plain or TLS) until it ends or the server closes.
async fn serve_connection<I, H, F>(
    io: I,
    h2: bool,
    peer: SocketAddr,
    handler: H,
    mut closing: tokio::sync::watch::Receiver<bool>,
    activity: Arc<slots::Activity>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Requests in flight on this connection, and when the last one ended: a connection with
    // nothing in flight for IDLE_TIMEOUT is closed, so idle HTTP/2 connections (which have no
    // header-read timeout to end them) cannot hold a connection slot for ever.
    let last = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let (seen, seen_last) = (activity.clone(), last.clone());
    let service = hyper::service::service_fn(move |req| {
        let fut = handler(req, peer);
        let (seen, seen_last) = (seen.clone(), seen_last.clone());
        seen.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        async move {
            let resp = fut.await;
            *seen_last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
            seen.in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let busy = activity.clone();
    let idle = move || {
        busy.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0
            && last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= IDLE_TIMEOUT
    };
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = closing.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                        break;
                    }
                    // Drained while idle, to make room (see `slots`): closed at once, unless a
                    // request began since the drain looked.
                    _ = activity.close.notified() => {
                        if activity.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0 {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(IDLE_TIMEOUT / 4) => {
                        if idle() {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                            break;
                        }
                    }
                }
            }
        }};
    }
    if h2 {
        drive!(
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .max_header_list_size(MAX_HEAD_BYTES as u32)
                .max_concurrent_streams(100)
                .serve_connection(io, service)
        );
    } else {
        drive!(http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .header_read_timeout(Duration::from_secs(30))
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(io, service));
    }
}
