//! A small HTTP/1 client for talking to registries and nodes: timeouts on every call, and a
//! cap on how much of a response is read, because the other side may be hostile.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// How long one request may take, end to end.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("bad URL {0:?}")]
    BadUrl(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer within {TIMEOUT:?}")]
    Timeout { url: String },
    #[error("the response from {url} is too large or broken")]
    BadBody { url: String },
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
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> HttpClient {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
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
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let deadline = tokio::time::Instant::now() + TIMEOUT;
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
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
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
