//! Where a mirror reads the registry log from: a remote registry (or peer node) over HTTP, or
//! the authority embedded in this process. Both answer the same two questions, and the mirror
//! verifies both answers the same way: an embedded registry is trusted no more than a remote one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::authority::Authority;
use crate::outbound::HttpClient;
use crate::registry::RegistryError;
use crate::store;

/// The most entries one `GET /registry/log` returns.
pub const MAX_LOG_PAGE: u64 = 1000;

/// `GET /registry/checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointJson {
    pub size: u64,
    /// RFC 6962 root of the log, standard base64 (as in the note).
    pub root_hash: String,
    /// Root of the name map, standard base64.
    pub map_root: String,
    pub time: u64,
    /// The signed note (checkpoint body, registry signature, cosignatures), base64url.
    pub checkpoint: String,
}

/// `GET /registry/log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPageJson {
    pub from: u64,
    /// Encoded entries, base64url.
    pub entries: Vec<String>,
}

/// A log to sync from.
#[derive(Clone)]
pub enum Source {
    /// A registry or peer node at this base URL (`http://host:port`).
    Remote { base: String, client: HttpClient },
    /// The authority in this process.
    Local(Authority),
}

impl Source {
    /// The HTTP client to reach others with (a remote source's, or a default one).
    pub fn client(&self) -> HttpClient {
        match self {
            Source::Remote { client, .. } => client.clone(),
            Source::Local(_) => HttpClient::new(),
        }
    }

    pub fn remote(base: &str) -> Source {
        Source::remote_with(base, HttpClient::new())
    }

    /// A remote registry reached through `client` (its trust roots and pinned names).
    pub fn remote_with(base: &str, client: HttpClient) -> Source {
        Source::Remote {
            base: base.trim_end_matches('/').to_owned(),
            client,
        }
    }

    /// The latest signed checkpoint envelope.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, RegistryError> {
        match self {
            Source::Local(a) => a
                .db()
                .run(|c| store::registry::checkpoint(c).map_err(RegistryError::from))
                .await?
                .ok_or_else(|| RegistryError::Unavailable("no checkpoint yet".into())),
            Source::Remote { base, client } => {
                let url = format!("{base}/registry/checkpoint");
                let json: CheckpointJson = fetch_json(client, &url).await?;
                URL_SAFE_NO_PAD
                    .decode(&json.checkpoint)
                    .map_err(|_| RegistryError::Untrusted("checkpoint is not base64url".into()))
            }
        }
    }

    /// Up to `limit` encoded entries from `from`.
    pub async fn entries(&self, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, RegistryError> {
        match self {
            Source::Local(a) => {
                a.db()
                    .run(move |c| {
                        store::registry::entries(c, from, limit).map_err(RegistryError::from)
                    })
                    .await
            }
            Source::Remote { base, client } => {
                let url = format!("{base}/registry/log?from={from}&limit={limit}");
                let page: LogPageJson = fetch_json(client, &url).await?;
                page.entries
                    .iter()
                    .map(|e| {
                        URL_SAFE_NO_PAD
                            .decode(e)
                            .map_err(|_| RegistryError::Untrusted("entry is not base64url".into()))
                    })
                    .collect()
            }
        }
    }
}

/// The latest checkpoint the witness at `base` cosigned for this registry (`GET
/// {base}/witness/latest`), if it answers; what it says is checked by the caller.
pub async fn witness_latest(client: &HttpClient, base: &str) -> Option<Vec<u8>> {
    let url = format!("{}/witness/latest", base.trim_end_matches('/'));
    match client.get(&url).await {
        Ok(reply) if reply.status.is_success() => Some(reply.body.to_vec()),
        Ok(reply) => {
            tracing::debug!(url, status = %reply.status, "witness has no checkpoint to compare");
            None
        }
        Err(e) => {
            tracing::warn!(url, error = %e, "witness unreachable");
            None
        }
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    url: &str,
) -> Result<T, RegistryError> {
    let reply = client
        .get(url)
        .await
        .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
    if !reply.status.is_success() {
        return Err(RegistryError::Unavailable(format!(
            "{url} answered {}",
            reply.status
        )));
    }
    reply
        .json()
        .ok_or_else(|| RegistryError::Untrusted(format!("{url} answered malformed JSON")))
}
