//! Outbound HTTP: every call this project makes to a registry, a node or an application goes
//! through [`HttpClient`]. HTTPS with rustls (trust roots from the system store plus an optional
//! `ca_file`), HTTP/2 when the server offers it by ALPN, timeouts on every call, a cap on how
//! much of a reply is read, and no redirects followed: the other side may be hostile.
//!
//! Plain `http://` is allowed only to loopback hosts unless [`Options::allow_http`] says
//! otherwise. A client built with a [`Guard`] resolves each name once, refuses private and
//! other non-public addresses, and connects to the address it checked ([`connector`]): that
//! is the client for URLs taken from registry data. The node's own registry URL is trusted
//! configuration and uses an unguarded client.

pub mod connector;
pub mod guard;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use connector::{refused_target, Resolve, ResolveOverride, TargetRefused};
pub use guard::{Cidr, Guard};

/// The largest response body read by default.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// How long one request may take, end to end.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How an [`HttpClient`] reaches the world.
#[derive(Clone)]
pub struct Options {
    /// Extra trust roots (PEM), for a private CA; the system store is always used.
    pub ca_file: Option<PathBuf>,
    /// Fixed answers for names (`HOST:PORT:ADDR`).
    pub resolve: Vec<ResolveOverride>,
    /// Which addresses may be reached.
    pub guard: Guard,
    /// Plain `http://` to hosts other than loopback.
    pub allow_http: bool,
    /// The largest reply body read.
    pub max_body: usize,
    /// End-to-end time for one request.
    pub timeout: Duration,
    /// The resolver; the system's unless a test substitutes one.
    pub resolver: Arc<dyn Resolve>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ca_file: None,
            resolve: Vec::new(),
            guard: Guard::Off,
            allow_http: false,
            max_body: MAX_RESPONSE_BYTES,
            timeout: TIMEOUT,
            resolver: Arc::new(connector::SystemResolver),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("ca_file", &self.ca_file)
            .field("resolve", &self.resolve)
            .field("guard", &self.guard)
            .field("allow_http", &self.allow_http)
            .field("max_body", &self.max_body)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("bad URL {0:?}")]
    BadUrl(String),
    #[error("{0}: plain http is allowed only to loopback hosts (or with allow_http)")]
    PlainHttp(String),
    #[error("refused {url}: {refused}")]
    Refused { url: String, refused: TargetRefused },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer in time")]
    Timeout { url: String },
    #[error("the response from {url} is too large or broken")]
    BadBody { url: String },
    #[error("the TLS set-up failed: {0}")]
    Tls(String),
}

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> Option<String> {
        self.json::<serde_json::Value>()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
    }
}

/// A pooled client (cheap to clone).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<connector::Connector>, Full<Bytes>>,
    options: Arc<Options>,
}

impl Default for HttpClient {
    fn default() -> HttpClient {
        HttpClient::new()
    }
}

impl HttpClient {
    /// A client with the default options: system trust roots, no guard, plain http only to
    /// loopback.
    pub fn new() -> HttpClient {
        HttpClient::with(Options::default()).expect("the default TLS set-up cannot fail")
    }

    /// A client with these options; fails only when `ca_file` cannot be read.
    pub fn with(options: Options) -> Result<HttpClient, ClientError> {
        let tls = tls::client_config(options.ca_file.as_deref())?;
        let connector = connector::Connector {
            guard: options.guard.clone(),
            pins: Arc::new(options.resolve.clone()),
            resolver: options.resolver.clone(),
            connect_timeout: Duration::from_secs(5),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
            options: Arc::new(options),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Refuses a URL this client may not call: not http(s), or plain http to a host other than
    /// loopback without `allow_http`.
    fn check_url(&self, url: &str) -> Result<(), ClientError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        match uri.scheme_str() {
            Some("https") => Ok(()),
            Some("http") => {
                let host = uri.host().unwrap_or("");
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost"
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if loopback || self.options.allow_http {
                    Ok(())
                } else {
                    Err(ClientError::PlainHttp(url.to_owned()))
                }
            }
            _ => Err(ClientError::BadUrl(url.to_owned())),
        }
    }

    pub async fn get(&self, url: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// Sends a request with the given headers and body.
    ///
    /// An idempotent request (GET, HEAD, PUT, DELETE, OPTIONS) that fails before any answer
    /// arrives is sent once more on a fresh connection: a pooled keep-alive connection may have
    /// been closed by the server (after an error answer, or an idle timeout) just as it was
    /// picked, and that is no reason to fail the caller. A POST is never resent: it may have
    /// been acted on.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        self.check_url(url)?;
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let first = self
            .send_once(method.clone(), url, headers, body.clone(), deadline)
            .await;
        match first {
            Err(ClientError::Unreachable { .. }) if idempotent => {
                tracing::debug!(url, "request failed before an answer; retrying once");
                self.send_once(method, url, headers, body, deadline).await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        let fut = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                match refused_target(&e) {
                    Some(refused) => ClientError::Refused {
                        url: url.to_owned(),
                        refused,
                    },
                    None => ClientError::Unreachable {
                        url: url.to_owned(),
                        // The chain, so a TLS failure says why ("certificate not trusted").
                        reason: chain(&e),
                    },
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, self.options.max_body)
                .collect()
                .await
                .map_err(|_| ClientError::BadBody {
                    url: url.to_owned(),
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_owned(),
            })?
    }
}

/// An error and its sources, joined.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = inner.source();
    }
    out
}
