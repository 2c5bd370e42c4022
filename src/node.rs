//! Wiring: opens a node's storage, registry and mirror from a [`Config`] and serves it.
//!
//! `main` and the integration tests both start nodes through [`start`], so tests run exactly
//! the code a deployed node runs.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Config, RegistrySetting};
use crate::http;
use crate::http::node::NodeState;
use crate::registry::authority::{Authority, AuthorityConfig};
use crate::registry::mirror::Mirror;
use crate::registry::source::Source;
use crate::scope::Catalogue;
use crate::store::Db;

/// Opens everything `config` names and serves on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let state = open(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mirror = state.mirror.clone();
    let every = state.config.sync_interval;
    let background = tokio::spawn(async move {
        let mut stop = stop_rx;
        mirror
            .run_background(every, async move {
                let _ = stop.changed().await;
            })
            .await;
    });
    let state = Arc::new(state);
    let handler = move |req, peer| {
        let state = state.clone();
        async move { http::node::route(state, peer, req).await }
    };
    http::run(listener, handler, shutdown)
        .await
        .context("serving HTTP")?;
    let _ = stop_tx.send(true);
    let _ = background.await;
    Ok(())
}

/// Opens the node's database, registry and mirror, and syncs the mirror once.
pub async fn open(config: Config) -> anyhow::Result<NodeState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = Db::open(&config.data_dir.join("node.sqlite3")).context("opening the database")?;
    let (authority, source, key) = match &config.registry {
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
            (Some(authority.clone()), Source::Local(authority), key)
        }
        RegistrySetting::Remote { url, key } => (None, Source::remote(url), *key),
    };
    let mirror = Arc::new(Mirror::new(db.clone(), key, source, config.clock)?);
    if let Err(e) = mirror.sync().await {
        // A node whose registry is down still starts, serving what it has verified.
        tracing::warn!(error = %e, "initial registry sync failed; serving the verified mirror");
    }
    Ok(NodeState {
        config,
        scopes: Catalogue::builtin(),
        db,
        mirror,
        authority,
    })
}
