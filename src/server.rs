//! The composition root: opens what a [`Config`] names (databases, registry or mirror, the
//! owners' keys), builds the node's state, starts its background tasks and serves it over
//! HTTP. `main` and the integration tests both start nodes through [`serve`], so tests run
//! exactly the code a deployed node runs. Nothing below imports this module.

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
use crate::ledger::authority::{Authority, AuthorityConfig};
use crate::ledger::mirror::Mirror;
use crate::ledger::source::Source;
use crate::name::Name;
use crate::node::metrics::Metrics;
use crate::node::{access, backups, coherence, flush_usage, grants, moves, outbox, owners};
use crate::node::{NodeState, WitnessKey};
use crate::outbound::HttpClient;
use crate::registry::client::RegistryClient;
use crate::store::{self, Db};

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
    let owner_keys = owner_keys(&config, &db)?;
    let started = config.clock.now();
    Ok(NodeState {
        public_url: config.public_url(bound),
        owner_keys: Arc::new(owner_keys),
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

/// Where `config` keeps owners' keys: files with SQLite; sealed in PostgreSQL with the
/// database key (which must open every key already sealed there).
pub fn owner_keys(config: &Config, db: &Db) -> anyhow::Result<owners::OwnerKeys> {
    Ok(match &config.database {
        Database::Sqlite => owners::OwnerKeys::in_files(config.data_dir.join("owners")),
        Database::Postgres { key_file, .. } => {
            let key = crate::keyfile::load_or_create(key_file)
                .with_context(|| format!("the database key {}", key_file.display()))?;
            let sealer = store::owner_keys::Sealer::new(&key.to_bytes());
            store::owner_keys::check_sealer(&db.lock()?, &sealer).with_context(|| {
                format!(
                    "the database key {} does not open the owners' keys sealed in this \
                     database: every process of one node needs the same key file",
                    key_file.display()
                )
            })?;
            owners::OwnerKeys::in_database(db.clone(), &key.to_bytes())
        }
    })
}
