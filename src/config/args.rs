//! The flags a node is configured from (`serve`, and the commands that open a node's data):
//! raw, each optional so that the configuration file can supply it; [`super::Config::build`]
//! validates them. They live with the configuration, not in [`crate::cli`], so that the
//! configuration depends on nothing above it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// `serve` flags. Each is optional so that the config file can supply it; defaults are
/// applied in [`crate::config::Config::build`].
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// A TOML configuration file (flags and environment override it).
    #[arg(long, env = "GRANT_NODE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8650].
    #[arg(long, env = "GRANT_NODE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Directory for the database and key files [default: grant-node-data].
    #[arg(long, env = "GRANT_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Shared database for several node processes: postgres://USER:PASSWORD@HOST/DB
    /// [default: the SQLite file in the data directory].
    #[arg(long, env = "GRANT_NODE_DATABASE")]
    pub database: Option<String>,

    /// With PostgreSQL: the file holding the key that seals owners' keys in the database
    /// [default: DATA_DIR/database.key, made if missing].
    #[arg(long, env = "GRANT_NODE_DATABASE_KEY")]
    pub database_key: Option<PathBuf>,

    /// The URL browsers and peers reach this node at [default: http://LISTEN].
    #[arg(long, env = "GRANT_NODE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Mirror this registry instead of running one inside the node.
    #[arg(long, env = "GRANT_NODE_REGISTRY")]
    pub registry: Option<String>,

    /// The registry's public key (hex), against which every checkpoint is verified.
    #[arg(long, env = "GRANT_NODE_REGISTRY_KEY")]
    pub registry_key: Option<String>,

    /// Proof-of-work difficulty of the embedded registry, in bits [default: 20].
    #[arg(long, env = "GRANT_NODE_POW_BITS")]
    pub pow_bits: Option<u32>,

    /// The owner to create on first start [default: owner].
    #[arg(long, env = "GRANT_NODE_OWNER")]
    pub owner: Option<String>,

    /// This node's registered name (the audience of node-level cartes) [default: the first
    /// owner].
    #[arg(long, env = "GRANT_NODE_NAME")]
    pub node_name: Option<String>,

    /// Seconds between background registry syncs [default: 5].
    #[arg(long, env = "GRANT_NODE_SYNC_INTERVAL")]
    pub sync_interval: Option<u64>,

    /// Shift this node's clock by this many seconds (for testing skew handling).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset: i64,

    /// Serve HTTPS with this certificate chain (PEM); reloaded when the file changes or on
    /// SIGHUP.
    #[arg(long, env = "GRANT_NODE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "GRANT_NODE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Let notifications go to private, loopback and other non-public addresses (intranets,
    /// tests).
    #[arg(long, env = "GRANT_NODE_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,

    #[command(flatten)]
    pub outbound: OutboundArgs,
}

/// How outbound calls reach registries and nodes: for private CAs and pinned names.
#[derive(Debug, Args, Clone, Default)]
pub struct OutboundArgs {
    /// Extra trust roots (PEM) for https, besides the system store: a private CA.
    #[arg(long, env = "GRANT_NODE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Resolve HOST:PORT to ADDR instead of asking DNS (like curl's --resolve); repeatable.
    #[arg(long = "resolve", value_name = "HOST:PORT:ADDR", global = true)]
    pub resolve: Vec<String>,
}

impl OutboundArgs {
    /// The outbound options these flags describe.
    pub fn options(&self) -> anyhow::Result<crate::outbound::Options> {
        let resolve = self
            .resolve
            .iter()
            .map(|r| crate::outbound::ResolveOverride::parse(r).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        Ok(crate::outbound::Options {
            ca_file: self.ca_file.clone(),
            resolve,
            ..Default::default()
        })
    }
}
