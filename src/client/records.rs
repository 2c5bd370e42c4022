//! Where the toolkit learns names: a full verified mirror in the grant book (the default), or
//! light look-ups, each proven against a witnessed checkpoint ([`crate::registry::light`]).
//!
//! In light mode nothing of the registry is stored but the last checkpoint trusted (size and
//! root, in the grant book), so every later checkpoint must prove consistent with it, across
//! restarts too. A verified record is reused for [`LIGHT_TTL`]; a key change made after that
//! is seen at the next look-up, and at once when a receipt does not verify (a fresh look-up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::carte::{key_in_history, KeyAt, KeyResolver};
use crate::ledger::mirror::Mirror;
use crate::name::Name;
use crate::outbound::HttpClient;
use crate::registry::light::{LightVerifier, NameProofJson, Trusted};
use crate::registry::note::Witness;
use crate::registry::NameRecord;
use crate::store::{self, Local};

use super::ClientError;

/// How long a light look-up is reused.
pub const LIGHT_TTL: Duration = Duration::from_secs(30);

/// Light mode: the witnesses whose cosignatures a checkpoint needs, and how many.
#[derive(Debug, Clone, Default)]
pub struct LightMode {
    pub witnesses: Vec<Witness>,
    pub quorum: usize,
}

pub(crate) enum Records {
    Mirror(Arc<Mirror>),
    Light(Light),
}

pub(crate) struct Light {
    verifier: LightVerifier,
    base: String,
    http: HttpClient,
    book: Local,
    trusted: Mutex<Option<Trusted>>,
    cache: Mutex<HashMap<Name, (Option<NameRecord>, Instant)>>,
}

const TRUSTED_KEY: &str = "light_checkpoint";

impl Light {
    pub(crate) fn open(
        verifier: LightVerifier,
        base: &str,
        http: HttpClient,
        book: Local,
    ) -> Result<Light, ClientError> {
        let saved = store::book::meta(&book.lock(), TRUSTED_KEY)?;
        let trusted = saved.and_then(|s| {
            let (size, root) = s.split_once(' ')?;
            Some(Trusted {
                size: size.parse().ok()?,
                root: hex::decode(root).ok()?.try_into().ok()?,
            })
        });
        Ok(Light {
            verifier,
            base: base.trim_end_matches('/').to_owned(),
            http,
            book,
            trusted: Mutex::new(trusted),
            cache: Mutex::new(HashMap::new()),
        })
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
            let book = self.book.clone();
            book.run(move |c| store::book::set_meta(c, TRUSTED_KEY, &value))
                .await?;
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), (record.clone(), Instant::now()));
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
            Records::Mirror(m) => {
                sync_if(m, fresh).await?;
                m.record_or_sync(name)
                    .await
                    .map_err(|e| ClientError::Registry(e.to_string()))
            }
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
            Records::Mirror(m) => {
                sync_if(m, fresh).await?;
                Ok(m.keys().key_at(name, time))
            }
            Records::Light(l) => Ok(match l.record(name, fresh).await? {
                None => KeyAt::UnknownName,
                Some(r) => key_in_history(&r.keys, time),
            }),
        }
    }
}

/// Brings the mirror up to date first when a fresh answer is asked for.
async fn sync_if(mirror: &Arc<Mirror>, fresh: bool) -> Result<(), ClientError> {
    if fresh {
        mirror
            .sync()
            .await
            .map_err(|e| ClientError::Registry(e.to_string()))?;
    }
    Ok(())
}

/// The registry key pinned in the grant book, or, on first use, the key the registry names
/// for itself, pinned from then on (with a warning: pass the key explicitly to be sure).
pub(super) async fn pinned_registry_key(
    book: &Local,
    registry: &crate::registry::client::RegistryClient,
) -> Result<ed25519_dalek::VerifyingKey, ClientError> {
    let pinned = book.run(|c| store::book::meta(c, "registry_key")).await?;
    let hex_key = match pinned {
        Some(k) => k,
        None => {
            let meta = registry
                .metadata()
                .await
                .map_err(|e| ClientError::Registry(e.to_string()))?;
            let k = meta.public_key.clone();
            let pin = k.clone();
            book.run(move |c| store::book::set_meta(c, "registry_key", &pin))
                .await?;
            tracing::warn!(key = %k, "trusting the registry key on first use; pass it explicitly to be sure");
            k
        }
    };
    crate::keyfile::parse_public(&hex_key)
        .map_err(|e| ClientError::Config(format!("registry key: {e:#}")))
}
