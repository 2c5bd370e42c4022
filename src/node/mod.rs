//! The node: its state, and its behaviour that is more than one HTTP handler: [`access`]
//! (carte authentication and the grant check), [`grants`] (changing grants durably),
//! [`owners`] (creating owners and holding their keys), [`moves`] (owners moving between
//! nodes), [`outbox`] (delivering grant-updated notifications), [`backups`] (scheduled
//! backups), [`coherence`] (caches kept coherent across processes), [`metrics`] (counters).
//! [`crate::server`] builds a [`NodeState`] from a [`Config`] and serves it.

pub mod access;
pub mod backups;
pub mod coherence;
pub mod grants;
pub mod metrics;
pub mod moves;
pub mod outbox;
pub mod owners;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::ledger::authority::Authority;
use crate::ledger::mirror::Mirror;
use crate::name::Name;
use crate::node::metrics::Metrics;
use crate::outbound::HttpClient;
use crate::registry::client::RegistryClient;
use crate::store::{self, Db};

/// Everything a request handler can see.
pub struct NodeState {
    pub config: Config,
    /// The URL at which browsers and peers reach this node, without a trailing slash.
    pub public_url: String,
    pub db: Db,
    pub mirror: Arc<Mirror>,
    /// The embedded registry, when this node runs one.
    pub authority: Option<Authority>,
    /// Where owner registrations go when the registry is remote.
    pub registry_client: Option<RegistryClient>,
    /// The guarded client for URLs taken from registry data (notification targets).
    pub targets: HttpClient,
    /// Names of the owners hosted here.
    pub owners: RwLock<HashSet<Name>>,
    /// Owners that moved to another node, and its URI.
    pub moved: RwLock<HashMap<Name, String>>,
    /// With SQLite: how this process notices owners moved in or out by a command.
    pub outside: Option<moves::Outside>,
    pub owner_keys: Arc<owners::OwnerKeys>,
    pub limiter: LoginLimiter,
    /// Bounds concurrent argon2 work (memory) for every password check and hash.
    pub hash_gate: crate::auth::HashGate,
    pub cartes: access::CarteCache,
    pub grants: access::GrantCache,
    pub metrics: Metrics,
    /// The group-committing writer of grant changes.
    pub writer: grants::GrantWriter,
    /// The first owner, once known (the default node name).
    pub first_owner: std::sync::OnceLock<Name>,
    /// Wakes the outbox worker when a notification is queued.
    pub outbox_wake: tokio::sync::Notify,
    /// When grant uses were last written down (Unix seconds; 0: not yet).
    pub usage_flushed: std::sync::atomic::AtomicU64,
    /// With PostgreSQL: how this process keeps its caches coherent with the others'.
    pub coherence: Option<Arc<coherence::Coherence>>,
    /// When this node is a witness for its registry: the name and key it cosigns with.
    pub witness: Option<WitnessKey>,
    /// The scheduled backups' outcome, and when this process started (Unix seconds).
    pub backups: backups::Tracker,
    pub started: u64,
}

/// A witness's cosigning identity.
pub struct WitnessKey {
    pub name: String,
    pub key: ed25519_dalek::SigningKey,
}

impl NodeState {
    /// Whether `name` is an owner hosted here, as this process knows it: from memory, never
    /// waiting for the database. What acts for an owner asks [`NodeState::hosts_now`].
    pub fn hosts(&self, name: &Name) -> bool {
        self.notice_outside();
        self.owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// `owner`'s signing key: from memory once loaded, else read (a file, or PostgreSQL) on
    /// the blocking pool.
    pub async fn signing_key(&self, owner: &Name) -> anyhow::Result<ed25519_dalek::SigningKey> {
        if let Some(k) = self.owner_keys.loaded(owner) {
            return Ok(k);
        }
        let o = owner.clone();
        self.with_keys(move |k| k.signing(&o)).await
    }

    /// Runs `f` on the owners' keys on the blocking pool (they may wait for the database).
    pub async fn with_keys<T: Send + 'static>(
        &self,
        f: impl FnOnce(&owners::OwnerKeys) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let keys = self.owner_keys.clone();
        tokio::task::spawn_blocking(move || f(&keys))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// Whether this process is cut off from the other processes' announcements (PostgreSQL),
    /// so that what it holds in memory may be stale.
    pub fn cut_off(&self) -> bool {
        self.coherence.as_ref().is_some_and(|c| !c.trusted())
    }

    /// [`NodeState::hosts`], asking the database (on the blocking pool) when this process is
    /// cut off: another process may have created, moved or removed the owner meanwhile.
    pub async fn hosts_now(&self, name: &Name) -> Result<bool, store::StoreError> {
        if !self.cut_off() {
            return Ok(self.hosts(name));
        }
        let n = name.clone();
        self.db
            .run(move |c| Ok(store::owners::owner(c, &n)?.is_some()))
            .await
    }

    /// Where `name` moved, if it was hosted here and moved to another node.
    pub fn moved_to(&self, name: &Name) -> Option<String> {
        self.notice_outside();
        self.moved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// With SQLite: rereads the owners when a command moved one in or out.
    fn notice_outside(&self) {
        if self.outside.as_ref().is_some_and(|o| o.changed()) {
            self.invalidate(None);
        }
    }

    /// Runs `f` in one transaction that also announces `change` to the other processes
    /// (PostgreSQL), then waits until they have applied it: when this returns, every
    /// process answers from the new state.
    pub async fn write_announced<T: Send + 'static>(
        &self,
        change: coherence::Change,
        f: impl FnOnce(&store::Conn) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let (value, version) = self
            .db
            .run(move |c| {
                let tx = c.transaction()?;
                let value = f(&tx)?;
                let version = coherence::announce(&tx, &change)?;
                tx.commit()?;
                Ok::<_, store::StoreError>((value, version))
            })
            .await?;
        if let (Some(c), Some(v)) = (&self.coherence, version) {
            c.barrier(v).await?;
        }
        Ok(value)
    }

    /// Applies another process's announcement (or, for `None`, forgets everything cached).
    pub(crate) fn invalidate(&self, change: Option<&coherence::Change>) {
        match change {
            Some(coherence::Change::Grant(owner, app)) => {
                if let (Ok(o), Ok(a)) = (Name::parse_canonical(owner), Name::parse_canonical(app)) {
                    self.grants.invalidate(&o, &a);
                    return;
                }
                self.grants.clear();
            }
            Some(coherence::Change::Owner(owner)) => {
                if let Ok(o) = Name::parse_canonical(owner) {
                    self.grants.invalidate_owner(&o);
                    self.owner_keys.forget(&o);
                }
                self.reload_owners();
            }
            None => {
                self.grants.clear();
                self.owner_keys.forget_all();
                self.reload_owners();
            }
        }
    }

    fn reload_owners(&self) {
        let read = self
            .db
            .lock()
            .and_then(|c| Ok((store::owners::owner_names(&c)?, store::moves::moved(&c)?)));
        match read {
            Ok((names, moved)) => {
                *self.owners.write().unwrap_or_else(|p| p.into_inner()) =
                    names.into_iter().collect();
                *self.moved.write().unwrap_or_else(|p| p.into_inner()) =
                    moved.into_iter().map(|m| (m.name, m.node_uri)).collect();
            }
            Err(e) => tracing::warn!(error = %e, "reloading the owners failed"),
        }
    }

    /// The node's own name: configured, or the first owner.
    pub fn node_name(&self) -> Option<Name> {
        if let Some(n) = &self.config.node_name {
            return Some(n.clone());
        }
        // The first owner never changes once it exists, so it is read from the database once.
        if let Some(n) = self.first_owner.get() {
            return Some(n.clone());
        }
        let first = self
            .db
            .lock()
            .and_then(|c| store::owners::owner_names(&c))
            .ok()
            .and_then(|names| names.into_iter().next())?;
        Some(self.first_owner.get_or_init(|| first).clone())
    }

    /// Whether a carte addressed to `name` is addressed to this node.
    pub fn accepts_audience(&self, name: &Name) -> bool {
        self.hosts(name) || self.config.node_name.as_ref() == Some(name)
    }

    /// The origin browsers use for this node, for `Origin` checks.
    pub fn origin(&self) -> &str {
        let url = self.public_url.as_str();
        match url.find("://").map(|i| i + 3) {
            Some(start) => match url[start..].find('/') {
                Some(end) => &url[..start + end],
                None => url,
            },
            None => url,
        }
    }

    /// Whether session cookies get `Secure`: always, unless the node is served over plain
    /// http on a loopback address (a developer's machine), where browsers would drop them.
    pub fn secure_cookies(&self) -> bool {
        let loopback = crate::uri::CheckedUri::parse_node(&format!("{}/", self.public_url))
            .map(|u| u.is_loopback())
            .unwrap_or(false);
        !(self.public_url.starts_with("http://") && loopback)
    }
}

pub use crate::config::USAGE_FLUSH;

/// Writes the grant uses noted since the last flush.
pub async fn flush_usage(state: &NodeState) {
    let uses = state.grants.take_usage();
    let now = state.config.clock.now();
    if !uses.is_empty() {
        if let Err(e) = state
            .db
            .run(move |c| store::sessions::record_usage(c, &uses))
            .await
        {
            tracing::warn!(error = %e, "recording grant use failed");
            return;
        }
    }
    state
        .usage_flushed
        .store(now, std::sync::atomic::Ordering::Relaxed);
}
