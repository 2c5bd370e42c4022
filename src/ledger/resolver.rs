//! Key look-ups for carte verification, answered from a local registry database with an
//! in-memory cache of key histories.
//!
//! The cache holds only names that exist (a miss on an unknown name goes to SQLite, which is
//! cheap, and lets the mirror's sync-on-unknown find new names). The mirror invalidates a name
//! whenever it applies an operation to it, so a compromised mark or a rotation takes effect on
//! the very next verification.
//!
//! On the node's request path the resolver is [`DbKeys::cached`]: memory only, answering
//! "unknown" on a miss, after which the caller loads the name on the blocking pool
//! ([`DbKeys::load`]) and asks again. So checking a carte never waits for SQLite on an async
//! worker (the mirror may share the node's file with the grant writer).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::carte::{key_in_history, KeyAt, KeyEntry, KeyResolver};
use crate::name::Name;
use crate::store::{self, Local};

/// Histories kept in memory before the cache is emptied and refilled from use.
const MAX_CACHED: usize = 200_000;

/// A [`KeyResolver`] over a registry database.
pub struct DbKeys {
    db: Local,
    cache: RwLock<HashMap<Name, Arc<[KeyEntry]>>>,
}

impl DbKeys {
    pub fn new(db: Local) -> DbKeys {
        DbKeys {
            db,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Forgets cached histories of these names.
    pub fn invalidate<'a>(&self, names: impl IntoIterator<Item = &'a Name>) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for n in names {
            cache.remove(n);
        }
    }

    /// Forgets every cached history.
    pub fn forget_all(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether `name` is in the database (cached or not); loads it into the cache, on the
    /// blocking pool.
    pub async fn load(self: &Arc<Self>, name: &Name) -> bool {
        if self.in_memory(name).is_some() {
            return true;
        }
        let (this, n) = (self.clone(), name.clone());
        tokio::task::spawn_blocking(move || matches!(this.history(&n), Ok(Some(_))))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// The resolver of the request path: what is in memory, never the database.
    pub fn cached(&self) -> Cached<'_> {
        Cached(self)
    }

    fn in_memory(&self, name: &Name) -> Option<Arc<[KeyEntry]>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn history(&self, name: &Name) -> Result<Option<Arc<[KeyEntry]>>, ()> {
        if let Some(h) = self.in_memory(name) {
            return Ok(Some(h));
        }
        // A cache miss reads SQLite on the calling thread: one indexed look-up, well under a
        // millisecond, and only once per name until it changes.
        let keys = store::registry::keys(&self.db.lock(), name).map_err(|e| {
            tracing::error!(error = %e, "reading registry keys failed");
        })?;
        let Some(keys) = keys else { return Ok(None) };
        let keys: Arc<[KeyEntry]> = keys.into();
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(name.clone(), keys.clone());
        Ok(Some(keys))
    }
}

/// [`DbKeys`] from memory only: a name not loaded is "unknown" (see [`DbKeys::load`]).
pub struct Cached<'a>(&'a DbKeys);

impl KeyResolver for Cached<'_> {
    fn key_at(&self, name: &Name, at: u64) -> KeyAt {
        match self.0.in_memory(name) {
            Some(h) => key_in_history(&h, at),
            None => KeyAt::UnknownName,
        }
    }
}

impl KeyResolver for DbKeys {
    fn key_at(&self, name: &Name, at: u64) -> KeyAt {
        match self.history(name) {
            Ok(Some(h)) => key_in_history(&h, at),
            Ok(None) => KeyAt::UnknownName,
            Err(()) => KeyAt::Unavailable,
        }
    }
}
