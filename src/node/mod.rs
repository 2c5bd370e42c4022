//! The node: its state, and the wiring that opens storage, registry and mirror from a
//! [`Config`] and serves them.
//!
//! `main` and the integration tests both start nodes through [`serve`], so tests run exactly
//! the code a deployed node runs. Submodules hold the node's behaviour that is more than one
//! HTTP handler: [`access`] (carte authentication and the grant check), [`grants`] (changing
//! grants durably), [`owners`] (creating owners and holding their keys), [`outbox`]
//! (delivering grant-updated notifications).

pub mod access;
pub mod backups;
pub mod coherence;
pub mod grants;
pub mod moves;
pub mod outbox;
pub mod owners;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::LoginLimiter;
use crate::config::{Config, Database, RegistrySetting};
use crate::http;
use crate::http::metrics::Metrics;
use crate::ledger::authority::{Authority, AuthorityConfig};
use crate::ledger::mirror::Mirror;
use crate::ledger::source::Source;
use crate::name::Name;
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
    pub owner_keys: owners::OwnerKeys,
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
    /// Whether `name` is an owner hosted here.
    pub fn hosts(&self, name: &Name) -> bool {
        self.notice_outside();
        if self.coherence.as_ref().is_some_and(|c| !c.trusted()) {
            // Cut off from the other processes' announcements: ask the database. When it
            // is out of reach too, the set known so far answers: whatever the request then
            // does for that owner needs the database, and gets `store.unavailable`.
            if let Ok(found) = self.db.lock().and_then(|c| store::owners::owner(&c, name)) {
                return found.is_some();
            }
        }
        self.owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
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
        let shared = self.coherence.is_some();
        let (value, version) = self
            .db
            .run(move |c| {
                let tx = c.transaction()?;
                let value = f(&tx)?;
                let version = match shared {
                    true => Some(coherence::announce(&tx, &change)?),
                    false => None,
                };
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
    fn invalidate(&self, change: Option<&coherence::Change>) {
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

/// Opens everything `config` names and serves on `listener` until `shutdown` resolves; then
/// lets in-flight requests finish and stops the background tasks.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("reading the bound address")?;
    let state = Arc::new(open(config, bound).await?);
    owners::ensure_first_owner(&state).await?;
    let now = state.config.clock.now();
    for (name, max) in &state.config.controllers {
        store::controllers::put(&state.db.lock()?, name, *max, now)?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(c) = &state.coherence {
        let _ = state.grants.coherence.set(c.clone());
        let weak = Arc::downgrade(&state);
        let invalidate: coherence::Invalidate = Arc::new(move |change| {
            if let Some(state) = weak.upgrade() {
                state.invalidate(change);
            }
        });
        tasks.push(tokio::spawn(c.clone().run(invalidate, stop_rx.clone())));
        tasks.push(tokio::spawn(c.clone().poll(stop_rx.clone())));
    }
    {
        let mirror = state.mirror.clone();
        let every = state.config.sync_interval;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            mirror
                .run_background(every, async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
    }
    {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            outbox::run(state, async move {
                let _ = stop.changed().await;
            })
            .await;
        }));
    }
    {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            backups::run(state, async move {
                let _ = stop.changed().await;
            })
            .await;
        }));
    }
    {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let now = state.config.clock.now();
                if let Err(e) = state
                    .db
                    .run(move |c| {
                        store::owners::purge_expired(c, now)?;
                        if c.is_postgres() {
                            store::login_budget::sweep(c, now)?;
                        }
                        Ok::<_, store::StoreError>(())
                    })
                    .await
                {
                    tracing::warn!(error = %e, "purging expired rows failed");
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }));
    }
    {
        // "Last used" for the owner's console: collected from the grant cache and written in
        // one batch a minute, and once more at shutdown.
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let done = tokio::select! {
                    _ = stop.changed() => true,
                    _ = tokio::time::sleep(state.config.usage_flush) => false,
                };
                flush_usage(&state).await;
                if done {
                    return;
                }
            }
        }));
    }
    let handler_state = state.clone();
    let handler = move |req, peer| {
        let state = handler_state.clone();
        async move { http::node::route(state, peer, req).await }
    };
    let tls = match &state.config.tls {
        Some(files) => {
            let store =
                http::tls::CertStore::open(files.clone()).context("loading the TLS certificate")?;
            let config = store.server_config();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .watch(Duration::from_secs(2), async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            }));
            Some(config)
        }
        None => None,
    };
    let limits = state.config.limits();
    tracing::info!(
        max_connections = limits.max_connections,
        max_per_address = limits.max_per_address,
        "connection limits"
    );
    http::serve(listener, handler, shutdown, limits, tls)
        .await
        .context("serving HTTP")?;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// How often grant uses are written down, by default.
pub const USAGE_FLUSH: Duration = Duration::from_secs(60);

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

/// The shared database and this process's own SQLite file (the registry mirror): one file
/// for both with SQLite, PostgreSQL and `DATA_DIR/mirror.sqlite3` otherwise.
pub fn open_databases(config: &Config) -> anyhow::Result<(Db, store::Local)> {
    match &config.database {
        Database::Sqlite => {
            let db =
                Db::open(&config.data_dir.join("node.sqlite3")).context("opening the database")?;
            let local = db.local().expect("a SQLite database is local");
            Ok((db, local))
        }
        Database::Postgres { url, .. } => {
            // TLS to the database trusts what outbound HTTPS trusts: the system and `ca_file`.
            let ca_file = config.outbound.ca_file.as_deref();
            let db = Db::connect_trusting(url, store::PG_POOL, ca_file)
                .with_context(|| format!("connecting to {}", crate::config::redact(url)))?;
            let local = store::Local::open(&config.data_dir.join("mirror.sqlite3"))
                .context("opening the registry mirror")?;
            Ok((db, local))
        }
    }
}

/// Opens the node's database, registry and mirror, and syncs the mirror once.
pub async fn open(config: Config, bound: SocketAddr) -> anyhow::Result<NodeState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (db, local) = open_databases(&config)?;
    // Two outbound clients: the registry is the node's own trusted configuration; URLs from
    // registry data (notification targets) go through the address guard, with a small cap on
    // what is read back.
    let outbound = HttpClient::with(config.outbound.clone()).context("setting up outbound TLS")?;
    let targets = HttpClient::with(crate::outbound::Options {
        guard: config.target_guard(),
        max_body: 64 * 1024,
        ..config.outbound.clone()
    })
    .context("setting up outbound TLS")?;
    let (authority, source, key, registry_client) = match &config.registry {
        RegistrySetting::Embedded { pow_bits } => {
            let authority = Authority::open(
                &config.data_dir.join("registry"),
                AuthorityConfig {
                    pow_bits: *pow_bits,
                    ..AuthorityConfig::default()
                },
                config.clock,
            )
            .context("opening the embedded registry")?;
            let key = authority.public_key();
            (Some(authority.clone()), Source::Local(authority), key, None)
        }
        RegistrySetting::Remote { url, key } => (
            None,
            Source::remote_with(url, outbound.clone()),
            *key,
            Some(RegistryClient::with_client(url, outbound.clone())),
        ),
    };
    let mirror = Arc::new(
        Mirror::new(local, key, source, config.clock)?
            .with_witnesses(config.witness_policy.clone()),
    );
    let witness = match &config.witness_name {
        Some(name) => {
            let key = crate::keyfile::load_or_create(&config.data_dir.join("witness.key"))
                .context("loading the witness key")?;
            // What the registry (`--witness URL,VKEY`) and other nodes (`witnesses`) need.
            println!(
                "grant-node: witness {name}, verifier key {}",
                crate::registry::note::Witness::new(name, key.verifying_key()).vkey()
            );
            Some(WitnessKey {
                name: name.clone(),
                key,
            })
        }
        None => None,
    };
    if let Err(e) = mirror.sync().await {
        // A node whose registry is down still starts, serving what it has verified.
        tracing::warn!(error = %e, "initial registry sync failed; serving the verified mirror");
    }
    let owners: HashSet<Name> = store::owners::owner_names(&db.lock()?)?
        .into_iter()
        .collect();
    let moved: HashMap<Name, String> = store::moves::moved(&db.lock()?)?
        .into_iter()
        .map(|m| (m.name, m.node_uri))
        .collect();
    let outside = match config.database {
        Database::Sqlite => Some(moves::Outside::new(&config.data_dir)),
        Database::Postgres { .. } => None,
    };
    // The writer has its own connection: in WAL mode readers on the main connection are not
    // held up while a group commit waits for its fsync. (On PostgreSQL it leases from the
    // pool like everyone else.)
    let writer_db = match &config.database {
        Database::Sqlite => {
            Db::open(&config.data_dir.join("node.sqlite3")).context("opening the database")?
        }
        Database::Postgres { .. } => db.clone(),
    };
    let writer = grants::GrantWriter::start(writer_db).context("starting the grant writer")?;
    let coherence = match db.postgres() {
        Some(_) => Some(Arc::new(
            coherence::Coherence::new(db.clone(), &config.data_dir.join("process-id"))
                .context("this process's id")?,
        )),
        None => None,
    };
    let owner_keys = owners::OwnerKeys::open(&config, &db)?;
    let started = config.clock.now();
    Ok(NodeState {
        public_url: config.public_url(bound),
        owner_keys,
        config,
        db,
        mirror,
        authority,
        registry_client,
        targets,
        owners: RwLock::new(owners),
        moved: RwLock::new(moved),
        outside,
        limiter: LoginLimiter::default(),
        hash_gate: crate::auth::HashGate::default(),
        cartes: access::CarteCache::new(access::DEFAULT_CARTE_CACHE),
        grants: access::GrantCache::default(),
        metrics: Metrics::default(),
        writer,
        first_owner: std::sync::OnceLock::new(),
        witness,
        outbox_wake: tokio::sync::Notify::new(),
        usage_flushed: std::sync::atomic::AtomicU64::new(0),
        coherence,
        backups: backups::Tracker::default(),
        started,
    })
}
