//! The TOML configuration file, as read: every key optional, unknown keys refused.
//! [`super::Config::build`] merges it under the flags and validates the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The TOML file. Unknown keys are an error, so a typo never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<SocketAddr>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) database: Option<String>,
    pub(super) database_key: Option<PathBuf>,
    pub(super) public_url: Option<String>,
    pub(super) registry: Option<String>,
    pub(super) registry_key: Option<String>,
    pub(super) pow_bits: Option<u32>,
    pub(super) owner: Option<String>,
    pub(super) node_name: Option<String>,
    pub(super) sync_interval: Option<u64>,
    pub(super) carte_skew: Option<u64>,
    pub(super) carte_max_lifetime: Option<u64>,
    pub(super) session_ttl: Option<u64>,
    #[serde(default)]
    pub(super) scopes: Vec<FileScope>,
    #[serde(default)]
    pub(super) controllers: Vec<FileController>,
    pub(super) public_registration: Option<bool>,
    pub(super) login_redirect: Option<String>,
    #[serde(default)]
    pub(super) cors_origins: Vec<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_address: Option<usize>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) resolve: Vec<String>,
    pub(super) allow_http: Option<bool>,
    pub(super) allow_private_targets: Option<bool>,
    #[serde(default)]
    pub(super) allowed_targets: Vec<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    pub(super) outbox_give_up: Option<u64>,
    pub(super) outbox_claim: Option<u64>,
    pub(super) backup_every: Option<String>,
    pub(super) backup_dir: Option<PathBuf>,
    pub(super) backup_keep: Option<usize>,
    pub(super) backup_recipient: Option<String>,
    pub(super) backup_passphrase_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) admins: Vec<String>,
    pub(super) usage_flush: Option<u64>,
    #[serde(default)]
    pub(super) witnesses: Vec<super::witnesses::FileWitness>,
    pub(super) witness_quorum: Option<usize>,
    pub(super) witness_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileController {
    pub(super) name: String,
    pub(super) max_scope: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileScope {
    pub(super) name: String,
    pub(super) bit: u32,
    pub(super) description: String,
}

impl FileConfig {
    pub(super) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }
}
