//! `grant-node serve`: validate the flags into a [`Config`], bind, serve until a signal.

use anyhow::{bail, Context};
use ed25519_dalek::VerifyingKey;

use crate::cli::ServeArgs;
use crate::clock::Clock;
use crate::config::{Config, RegistrySetting};
use crate::name::Name;

/// Builds the validated configuration; errors name the flag at fault.
pub fn config(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::new(args.listen, args.data_dir);
    match (args.registry, args.registry_key) {
        (Some(url), Some(key)) => {
            let key = parse_key(&key).context("--registry-key")?;
            crate::uri::CheckedUri::parse_node(&url)
                .with_context(|| format!("--registry {url:?}"))?;
            config.registry = RegistrySetting::Remote { url, key };
        }
        (Some(_), None) => bail!(
            "--registry needs --registry-key: the mirror verifies every checkpoint against it"
        ),
        (None, Some(_)) => bail!("--registry-key is only meaningful with --registry"),
        (None, None) => {
            if let Some(bits) = args.pow_bits {
                if bits > 40 {
                    bail!("--pow-bits {bits}: at most 40");
                }
                config.registry = RegistrySetting::Embedded { pow_bits: bits };
            }
        }
    }
    if let Some(name) = args.node_name {
        config.node_name =
            Some(Name::parse(&name).with_context(|| format!("--node-name {name:?}"))?);
    }
    if args.sync_interval == 0 {
        bail!("--sync-interval must be at least 1 second");
    }
    config.sync_interval = std::time::Duration::from_secs(args.sync_interval);
    config.clock = Clock::offset(args.clock_offset);
    Ok(config)
}

/// A 32-byte Ed25519 public key in hex.
pub fn parse_key(hex_key: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("expected 64 hex digits (a 32-byte Ed25519 public key)")?;
    VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "grant-node listening");
        println!("grant-node listening on http://{addr}");
        crate::node::serve(config, listener, shutdown_signal()).await?;
        tracing::info!("grant-node stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
