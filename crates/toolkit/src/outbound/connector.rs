//! Opening the TCP connection for an outbound call: resolve once, check the address, connect
//! to that very address.
//!
//! Checking a name and then letting the socket layer resolve it again would let DNS rebinding
//! swap a public answer for a private one between the check and the connection. So the name is
//! resolved here, once, each answer is held against the [`Guard`], and the connection goes to
//! an answer that passed. Operators can pin names to addresses (`resolve`, like curl's
//! `--resolve`); tests use that to reach `*.test` names on loopback ports.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::guard::Guard;

/// A boxed future, for the [`Resolve`] trait.
pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Name resolution. The default asks the system; tests substitute their own.
pub trait Resolve: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> Resolving;
}

/// The system resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolving {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// A fixed answer for `host:port`, as curl's `--resolve HOST:PORT:ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl ResolveOverride {
    /// Parses `HOST:PORT:ADDR`.
    pub fn parse(text: &str) -> Result<ResolveOverride, String> {
        let bad = || format!("{text:?}: expected HOST:PORT:ADDR");
        let (host, rest) = text.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port: port.parse().map_err(|_| bad())?,
            addr: addr.parse().map_err(|_| bad())?,
        })
    }
}

/// Why a connection was not even attempted: every address of the target is one the guard
/// refuses. Found in an error's chain with [`refused_target`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves only to addresses this node may not call ({addr})")]
pub struct TargetRefused {
    pub host: String,
    pub addr: IpAddr,
}

/// The refusal in `error`'s chain, if the guard refused the target.
pub fn refused_target(error: &(dyn std::error::Error + 'static)) -> Option<TargetRefused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<TargetRefused>() {
            return Some(r.clone());
        }
        // io::Error hides its payload from `source()`: look inside.
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(r) = inner.downcast_ref::<TargetRefused>() {
                return Some(r.clone());
            }
        }
        next = e.source();
    }
    None
}

/// The connector hyper calls for every new connection.
#[derive(Clone)]
pub struct Connector {
    pub(super) guard: Guard,
    pub(super) pins: Arc<Vec<ResolveOverride>>,
    pub(super) resolver: Arc<dyn Resolve>,
    pub(super) connect_timeout: Duration,
}

impl Connector {
    async fn connect(self, uri: Uri) -> io::Result<TcpStream> {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let answers: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Some(p) = self.pins.iter().find(|p| p.host == host && p.port == port) {
            vec![SocketAddr::new(p.addr, port)]
        } else {
            self.resolver.resolve(&host, port).await?
        };
        let Some(first) = answers.first().copied() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        };
        let allowed: Vec<SocketAddr> = answers
            .into_iter()
            .filter(|a| self.guard.allows(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                TargetRefused {
                    host,
                    addr: first.ip(),
                },
            ));
        }
        let mut last = None;
        for addr in allowed {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}
