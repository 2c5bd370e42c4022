//! Where the toolkit learns names: light look-ups, each proven against a signed (and, if
//! asked, witnessed) checkpoint ([`grant_wire::registry::light`]), or a [`Directory`] the
//! application plugs in (a full verified mirror, say).
//!
//! In light mode nothing of the registry is stored but the last checkpoint trusted (size and
//! root, in the grant book), so every later checkpoint must prove consistent with it, across
//! restarts too. A verified record is reused for [`LIGHT_TTL`]; a key change made after that
//! is seen at the next look-up, and at once when a receipt does not verify (a fresh look-up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::book::Book;
use crate::outbound::HttpClient;
use grant_wire::carte::{key_in_history, KeyAt};
use grant_wire::name::Name;
use grant_wire::registry::light::{LightVerifier, NameProofJson, Trusted};
use grant_wire::registry::note::Witness;
use grant_wire::registry::NameRecord;
use std::future::Future;
use std::pin::Pin;

use super::ClientError;

/// How long a light look-up is reused.
pub const LIGHT_TTL: Duration = Duration::from_secs(30);

/// Light mode: the witnesses whose cosignatures a checkpoint needs, and how many.
#[derive(Debug, Clone, Default)]
pub struct LightMode {
    pub witnesses: Vec<Witness>,
    pub quorum: usize,
}

/// A future a [`Directory`] returns.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// A source of verified registry records other than the toolkit's own proven look-ups.
pub trait Directory: Send + Sync {
    /// `name`'s verified record (`None`: not registered); `fresh` asks the registry again.
    fn record<'a>(&'a self, name: &'a Name, fresh: bool) -> Answer<'a, Option<NameRecord>>;
    /// The key `name` held at `time`; `fresh` asks the registry again first.
    fn key_at<'a>(&'a self, name: &'a Name, time: u64, fresh: bool) -> Answer<'a, KeyAt>;
}

/// Builds a [`Directory`] once the registry's URL and key are known (the key may have been
/// pinned on first use), with the toolkit's HTTP client.
pub type DirectoryMaker = Arc<
    dyn Fn(
            &str,
            &ed25519_dalek::VerifyingKey,
            &HttpClient,
        ) -> Result<Arc<dyn Directory>, ClientError>
        + Send
        + Sync,
>;

pub(crate) enum Records {
    Directory(Arc<dyn Directory>),
    Light(Light),
}

pub(crate) struct Light {
    verifier: LightVerifier,
    base: String,
    http: HttpClient,
    book: Book,
    trusted: Mutex<Option<Trusted>>,
    cache: Mutex<HashMap<Name, (Option<NameRecord>, Instant)>>,
}

const TRUSTED_KEY: &str = "light_checkpoint";

impl Light {
    pub(crate) fn open(verifier: LightVerifier, base: &str, http: HttpClient, book: Book) -> Light {
        let saved = book.meta(TRUSTED_KEY);
        let trusted = saved.and_then(|s| {
            let (size, root) = s.split_once(' ')?;
            Some(Trusted {
                size: size.parse().ok()?,
                root: hex::decode(root).ok()?.try_into().ok()?,
            })
        });
        Light {
            verifier,
            base: base.trim_end_matches('/').to_owned(),
            http,
            book,
            trusted: Mutex::new(trusted),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, name: &Name) -> Result<Option<NameRecord>, ClientError> {
        let trusted = *self.trusted.lock().unwrap_or_else(|p| p.into_inner());
        let known = trusted.map_or(String::new(), |t| format!("?known={}", t.size));
        let url = format!("{}/registry/names/{name}/proof{known}", self.base);
        let reply = self
            .http
            .get(&url)
            .await
            .map_err(|e| ClientError::Registry(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(ClientError::Registry(format!(
                "{url} answered {}",
                reply.status
            )));
        }
        let answer: NameProofJson = reply
            .json()
            .ok_or_else(|| ClientError::Registry(format!("{url} answered malformed JSON")))?;
        let (record, now) = self
            .verifier
            .check(name, &answer, trusted)
            .map_err(|e| ClientError::Registry(e.to_string()))?;
        // Another look-up may have moved on meanwhile; keep the larger (both were checked
        // against the same earlier one).
        let moved = {
            let mut held = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
            let moved = !matches!(*held, Some(h) if h.size >= now.size);
            if moved {
                *held = Some(now);
            }
            moved
        };
        if moved {
            let value = format!("{} {}", now.size, hex::encode(now.root));
            self.book.set_meta(TRUSTED_KEY, &value).await?;
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: past the bound it starts over (a look-up is one request away).
            if cache.len() >= crate::MAX_CACHED {
                cache.clear();
            }
            cache.insert(name.clone(), (record.clone(), Instant::now()));
        }
        Ok(record)
    }

    async fn record(&self, name: &Name, fresh: bool) -> Result<Option<NameRecord>, ClientError> {
        if !fresh {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((r, at)) = cache.get(name) {
                if at.elapsed() < LIGHT_TTL {
                    return Ok(r.clone());
                }
            }
        }
        self.fetch(name).await
    }
}

impl Records {
    /// A name's verified record; `fresh` asks the registry again.
    pub(crate) async fn record(
        &self,
        name: &Name,
        fresh: bool,
    ) -> Result<Option<NameRecord>, ClientError> {
        match self {
            Records::Directory(d) => d.record(name, fresh).await,
            Records::Light(l) => l.record(name, fresh).await,
        }
    }

    /// The key `name` held at `time`.
    pub(crate) async fn key_at(
        &self,
        name: &Name,
        time: u64,
        fresh: bool,
    ) -> Result<KeyAt, ClientError> {
        match self {
            Records::Directory(d) => d.key_at(name, time, fresh).await,
            Records::Light(l) => Ok(match l.record(name, fresh).await? {
                None => KeyAt::UnknownName,
                Some(r) => key_in_history(&r.keys, time),
            }),
        }
    }
}

/// The registry key pinned in the grant book, or, on first use, the key the registry names
/// for itself, pinned from then on (with a warning: pass the key explicitly to be sure).
pub(super) async fn pinned_registry_key(
    book: &Book,
    registry: &crate::registry_client::RegistryClient,
) -> Result<ed25519_dalek::VerifyingKey, ClientError> {
    let pinned = book.meta("registry_key");
    let hex_key = match pinned {
        Some(k) => k,
        None => {
            let meta = registry
                .metadata()
                .await
                .map_err(|e| ClientError::Registry(e.to_string()))?;
            let k = meta.public_key.clone();
            book.set_meta("registry_key", &k).await?;
            tracing::warn!(key = %k, "trusting the registry key on first use; pass it explicitly to be sure");
            k
        }
    };
    grant_wire::keyfile::parse_public(&hex_key)
        .map_err(|e| ClientError::Config(format!("registry key: {e:#}")))
}
