//! A client for a registry's HTTP API: what the `name` commands and applications use to
//! register and update names. Reads go to [`super::mirror`] when they must be verified; this
//! client is for talking to the registry, not for trusting it.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use crate::outbound::{ClientError, HttpClient, Reply};
use grant_wire::name::Name;
use grant_wire::registry::RecordJson;

/// What a registry said when it refused, or why it could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    #[error("{code}: {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Unreachable(#[from] ClientError),
    #[error("the registry answered {0} with an unreadable body")]
    BadAnswer(StatusCode),
}

impl RemoteError {
    /// The stable code of a refusal.
    pub fn code(&self) -> &str {
        match self {
            RemoteError::Refused { code, .. } => code,
            RemoteError::Unreachable(_) => "registry.unavailable",
            RemoteError::BadAnswer(_) => "registry.untrusted",
        }
    }
}

/// `GET /registry/metadata`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Metadata {
    pub public_key: String,
    pub pow_bits: u32,
    pub skew: u64,
}

/// A registry at a base URL.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: HttpClient,
}

impl RegistryClient {
    pub fn new(base: &str) -> RegistryClient {
        RegistryClient::with_client(base, HttpClient::new())
    }

    /// A client for the registry at `base`, reached through `http`.
    pub fn with_client(base: &str, http: HttpClient) -> RegistryClient {
        RegistryClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// The HTTP client this registry client uses.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn metadata(&self) -> Result<Metadata, RemoteError> {
        let reply = self
            .http
            .get(&format!("{}/registry/metadata", self.base))
            .await?;
        parse(reply)
    }

    /// The record of `name`, or `None` if it is not registered.
    pub async fn record(&self, name: &Name) -> Result<Option<RecordJson>, RemoteError> {
        let url = format!(
            "{}/registry/names/{}",
            self.base,
            percent_encoding::utf8_percent_encode(
                name.as_str(),
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        let reply = self.http.get(&url).await?;
        if reply.status == StatusCode::NOT_FOUND
            && reply.error_code().as_deref() == Some("name.unknown")
        {
            return Ok(None);
        }
        parse(reply).map(Some)
    }

    /// Submits a signed operation envelope.
    pub async fn submit(&self, envelope: Vec<u8>) -> Result<RecordJson, RemoteError> {
        let reply = self
            .http
            .send(
                Method::POST,
                &format!("{}/registry/ops", self.base),
                &[("content-type", "application/cbor")],
                Bytes::from(envelope),
            )
            .await?;
        parse(reply)
    }
}

fn parse<T: serde::de::DeserializeOwned>(reply: Reply) -> Result<T, RemoteError> {
    if reply.status.is_success() {
        return reply.json().ok_or(RemoteError::BadAnswer(reply.status));
    }
    let body: Option<serde_json::Value> = reply.json();
    match body {
        Some(v) if v.get("error").is_some() => Err(RemoteError::Refused {
            status: reply.status,
            code: v["error"].as_str().unwrap_or("").to_owned(),
            message: v["message"].as_str().unwrap_or("").to_owned(),
        }),
        _ => Err(RemoteError::BadAnswer(reply.status)),
    }
}
