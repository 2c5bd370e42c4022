//! The node's configuration: one validated [`Config`], built once at start-up.
//!
//! Sources, lowest precedence first: built-in defaults, the TOML file (`--config`), environment
//! variables (`GRANT_NODE_*`), command-line flags. [`Config::build`] merges them and validates
//! every value once, with errors that name the bad key; nothing downstream reads flags, files
//! or the environment again. Key material never lives here: keys are files with mode 0600 in
//! the data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use ed25519_dalek::VerifyingKey;

use crate::carte::verify::{DEFAULT_MAX_LIFETIME, DEFAULT_SKEW};
use crate::clock::Clock;
use crate::name::Name;
use crate::scope::{Catalogue, ScopeDef};
use crate::uri::CheckedUri;
use args::ServeArgs;
use file::FileConfig;

/// The address a node listens on when nothing says otherwise: loopback only, so a fresh node
/// is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8650";
/// The owner a node creates on first start when none is named.
pub const DEFAULT_OWNER: &str = "owner";

/// Which registry the node trusts.
#[derive(Debug, Clone)]
pub enum RegistrySetting {
    /// Run the registry inside this node (a single node with no configuration is complete).
    Embedded { pow_bits: u32 },
    /// Mirror a remote registry (or a peer node), verifying against its public key.
    Remote { url: String, key: VerifyingKey },
}

pub mod args;
pub mod backups;
mod database;
mod file;
pub mod limits;
mod witnesses;
pub use database::{redact, Database};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where owners, sessions and grants live: the SQLite file in `data_dir` by default, or
    /// PostgreSQL shared by several node processes.
    pub database: Database,
    /// The URL at which browsers and peers reach this node (registered as its owners' node
    /// URI). Defaults to `http://` + the listen address.
    pub public_url: Option<String>,
    pub registry: RegistrySetting,
    /// The owner created on first start.
    pub owner: Name,
    /// The node's own registered name: the audience of node-level cartes. Defaults to the
    /// first owner.
    pub node_name: Option<Name>,
    /// How often the mirror syncs in the background.
    pub sync_interval: Duration,
    /// Allowed clock skew for cartes, seconds.
    pub carte_skew: u64,
    /// Longest carte lifetime accepted, seconds.
    pub carte_max_lifetime: u64,
    /// How long a login session lasts, seconds.
    pub session_ttl: u64,
    /// The scope catalogue: built-ins plus the node's own.
    pub scopes: Catalogue,
    /// Controllers designated in the config file (added or updated at start).
    pub controllers: Vec<(Name, crate::scope::Scope)>,
    /// Whether anyone may sign up for an owner account (`/signup`). Off by default: then only
    /// the node's administrator and controllers create owners.
    pub public_registration: bool,
    /// Where `/grant` sends a browser that must log in as an owner created by a controller.
    pub login_redirect: Option<String>,
    /// Origins allowed to call `POST /auth/login` from a browser, with credentials.
    pub cors_origins: Vec<String>,
    /// Open connections at most; `None` derives it from the descriptor limit.
    pub max_connections: Option<usize>,
    /// Open connections from one client address at most.
    pub max_connections_per_address: usize,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Outbound calls: trust roots, pinned names, plain-http policy. The guard for URLs from
    /// registry data is [`Config::target_guard`].
    pub outbound: crate::outbound::Options,
    /// Let notifications reach non-public addresses.
    pub allow_private_targets: bool,
    /// Non-public ranges notifications may reach anyway (an intranet's applications).
    pub allowed_targets: Vec<crate::outbound::Cidr>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<crate::outbound::Cidr>,
    /// How long a notification is retried before it is given up, seconds.
    pub outbox_give_up: u64,
    /// With PostgreSQL: how long a process's claim on a delivery lasts, seconds.
    pub outbox_claim: u64,
    /// Owners who administer the node (the console's node page); empty: the first owner.
    pub admins: Vec<Name>,
    /// How often "last used" times are written down.
    pub usage_flush: Duration,
    /// The witnesses whose cosignatures the mirror requires, and how many.
    pub witness_policy: crate::registry::witness::WitnessPolicy,
    /// When set, this node is a witness for its registry and cosigns under this name (key in
    /// `witness.key` in the data directory).
    pub witness_name: Option<String>,
    /// Scheduled backups, when `backup_every` is set.
    pub backups: Option<backups::Schedule>,
    pub clock: Clock,
}

impl Config {
    /// The defaults: embedded registry, listening on `listen`, data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            listen,
            data_dir,
            database: Database::Sqlite,
            public_url: None,
            registry: RegistrySetting::Embedded {
                pow_bits: crate::registry::op::DEFAULT_POW_BITS,
            },
            owner: Name::parse(DEFAULT_OWNER).expect("the default owner is a valid name"),
            node_name: None,
            sync_interval: Duration::from_secs(5),
            carte_skew: DEFAULT_SKEW,
            carte_max_lifetime: DEFAULT_MAX_LIFETIME,
            session_ttl: 12 * 3600,
            scopes: Catalogue::builtin(),
            controllers: Vec::new(),
            public_registration: false,
            login_redirect: None,
            cors_origins: Vec::new(),
            max_connections: None,
            max_connections_per_address: limits::DEFAULT_PER_ADDRESS,
            tls: None,
            outbound: crate::outbound::Options::default(),
            allow_private_targets: false,
            allowed_targets: Vec::new(),
            trusted_proxies: Vec::new(),
            outbox_give_up: DEFAULT_OUTBOX_GIVE_UP,
            outbox_claim: DEFAULT_OUTBOX_CLAIM,
            admins: Vec::new(),
            usage_flush: USAGE_FLUSH,
            witness_policy: crate::registry::witness::WitnessPolicy::default(),
            witness_name: None,
            backups: None,
            clock: Clock::system(),
        }
    }

    /// Merges defaults, the file named by `--config` (if any), environment and flags (clap
    /// has already folded the environment into `args`), and validates the result.
    pub fn build(args: ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file)
    }

    /// [`Config::build`] with the file's text given (reads no file): what the fuzz target
    /// `config` drives.
    pub fn from_text(args: ServeArgs, text: &str) -> anyhow::Result<Config> {
        let file: FileConfig = toml::from_str(text).context("in the config file")?;
        Config::merge(args, file)
    }

    fn merge(args: ServeArgs, file: FileConfig) -> anyhow::Result<Config> {
        let listen = match args.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().expect("the default address parses"),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("grant-node-data"));
        let mut config = Config::new(listen, data_dir);

        if let Some(url) = args.public_url.or(file.public_url) {
            let url = CheckedUri::base_url(&url).with_context(|| format!("public_url {url:?}"))?;
            config.public_url = Some(url);
        }
        let registry_url = args.registry.or(file.registry);
        let registry_key = args.registry_key.or(file.registry_key);
        match (registry_url, registry_key) {
            (Some(url), Some(key)) => {
                let key = parse_key(&key).context("registry_key")?;
                let url =
                    CheckedUri::base_url(&url).with_context(|| format!("registry {url:?}"))?;
                config.registry = RegistrySetting::Remote { url, key };
            }
            (Some(_), None) => bail!(
                "registry is set but registry_key is not: the mirror verifies every checkpoint against it"
            ),
            (None, Some(_)) => bail!("registry_key is only meaningful with registry"),
            (None, None) => {
                if let Some(bits) = args.pow_bits.or(file.pow_bits) {
                    if bits > 40 {
                        bail!("pow_bits {bits}: at most 40");
                    }
                    config.registry = RegistrySetting::Embedded { pow_bits: bits };
                }
            }
        }
        if let Some(url) = args.database.or(file.database) {
            config.database = Database::parse(&url)?;
        }
        let key_file = args.database_key.or(file.database_key);
        if let Database::Postgres { key_file: k, .. } = &mut config.database {
            *k = key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("database.key"));
            if matches!(config.registry, RegistrySetting::Embedded { .. }) {
                bail!(
                    "database is PostgreSQL, and the embedded registry cannot be shared by \
                     several processes: run a registry (registry-stub) and set registry and \
                     registry_key"
                );
            }
        } else if key_file.is_some() {
            bail!("database_key is only meaningful with a PostgreSQL database");
        }
        if let Some(owner) = args.owner.or(file.owner) {
            config.owner = Name::parse(&owner).with_context(|| format!("owner {owner:?}"))?;
        }
        if let Some(name) = args.node_name.or(file.node_name) {
            config.node_name =
                Some(Name::parse(&name).with_context(|| format!("node_name {name:?}"))?);
        }
        let sync = args.sync_interval.or(file.sync_interval).unwrap_or(5);
        if sync == 0 {
            bail!("sync_interval must be at least 1 second");
        }
        config.sync_interval = Duration::from_secs(sync);
        if let Some(skew) = file.carte_skew {
            if skew > 600 {
                bail!("carte_skew {skew}: at most 600 seconds");
            }
            config.carte_skew = skew;
        }
        if let Some(max) = file.carte_max_lifetime {
            if !(60..=86_400).contains(&max) {
                bail!("carte_max_lifetime {max}: between 60 and 86400 seconds");
            }
            config.carte_max_lifetime = max;
        }
        if let Some(ttl) = file.session_ttl {
            if !(60..=30 * 86_400).contains(&ttl) {
                bail!("session_ttl {ttl}: between 60 seconds and 30 days");
            }
            config.session_ttl = ttl;
        }
        let custom: Vec<ScopeDef> = file
            .scopes
            .into_iter()
            .map(|s| ScopeDef {
                name: s.name,
                bit: s.bit,
                description: s.description,
            })
            .collect();
        config.scopes = Catalogue::with_custom(&custom).context("scopes")?;
        for c in file.controllers {
            let name =
                Name::parse(&c.name).with_context(|| format!("controllers: name {:?}", c.name))?;
            let max = config
                .scopes
                .parse_list(&c.max_scope)
                .with_context(|| format!("controllers: {name}: max_scope"))?;
            config.controllers.push((name, max));
        }
        config.public_registration = file.public_registration.unwrap_or(false);
        if let Some(url) = file.login_redirect {
            CheckedUri::parse_node(&url).with_context(|| format!("login_redirect {url:?}"))?;
            config.login_redirect = Some(url);
        }
        for origin in file.cors_origins {
            let uri = CheckedUri::parse_node(&format!("{origin}/"))
                .with_context(|| format!("cors_origins: {origin:?} is not an origin"))?;
            if uri.origin() != origin {
                bail!("cors_origins: {origin:?} is not an origin (scheme://host[:port])");
            }
            config.cors_origins.push(origin);
        }
        if let Some(max) = file.max_connections {
            if max < 16 {
                bail!("max_connections {max}: at least 16");
            }
            config.max_connections = Some(max);
        }
        if let Some(max) = file.max_connections_per_address {
            if max == 0 {
                bail!("max_connections_per_address must be at least 1");
            }
            config.max_connections_per_address = max;
        }
        match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => {
                config.tls = Some(TlsFiles { cert, key });
            }
            (None, None) => {}
            _ => bail!("tls_cert and tls_key go together"),
        }
        let mut outbound = args.outbound.options().context("resolve")?;
        if outbound.ca_file.is_none() {
            outbound.ca_file = file.ca_file;
        }
        for r in &file.resolve {
            outbound.resolve.push(
                crate::outbound::ResolveOverride::parse(r)
                    .map_err(anyhow::Error::msg)
                    .context("resolve")?,
            );
        }
        outbound.allow_http = file.allow_http.unwrap_or(false);
        if let Some(ca) = &outbound.ca_file {
            if !ca.exists() {
                bail!("ca_file {}: no such file", ca.display());
            }
        }
        if let RegistrySetting::Remote { url, .. } = &config.registry {
            let uri = CheckedUri::parse_node(&format!("{url}/"))
                .with_context(|| format!("registry {url:?}"))?;
            if url.starts_with("http://") && !uri.is_loopback() && !outbound.allow_http {
                bail!(
                    "registry {url:?} is plain http on another host: use https, or set \
                     allow_http = true if a proxy on a private network terminates TLS"
                );
            }
        }
        config.outbound = outbound;
        config.allow_private_targets =
            args.allow_private_targets || file.allow_private_targets.unwrap_or(false);
        config.allowed_targets = cidrs(&file.allowed_targets).context("allowed_targets")?;
        config.trusted_proxies = cidrs(&file.trusted_proxies).context("trusted_proxies")?;
        if let Some(secs) = file.outbox_give_up {
            if secs < 60 {
                bail!("outbox_give_up {secs}: at least 60 seconds");
            }
            config.outbox_give_up = secs;
        }
        if let Some(secs) = file.outbox_claim {
            // Longer than one attempt can take (the outbound client's 10 s time-out), or a
            // slow delivery would be claimed by a second process while the first is still on it.
            if !(11..=3600).contains(&secs) {
                bail!("outbox_claim {secs}: between 11 and 3600 seconds");
            }
            config.outbox_claim = secs;
        }
        if let Some(secs) = file.usage_flush {
            if !(1..=3600).contains(&secs) {
                bail!("usage_flush {secs}: between 1 and 3600 seconds");
            }
            config.usage_flush = Duration::from_secs(secs);
        }
        for a in &file.admins {
            config
                .admins
                .push(Name::parse(a).with_context(|| format!("admins: {a:?}"))?);
        }
        let embedded = matches!(config.registry, RegistrySetting::Embedded { .. });
        config.witness_policy = witnesses::policy(&file.witnesses, file.witness_quorum, embedded)?;
        config.witness_name = witnesses::name(file.witness_name.as_deref())?;
        config.backups = backups::schedule(
            file.backup_every.as_deref(),
            file.backup_dir,
            file.backup_keep,
            file.backup_recipient,
            file.backup_passphrase_file,
        )?;
        config.clock = Clock::offset(args.clock_offset);
        Ok(config)
    }

    /// The guard for outbound calls to URLs taken from registry data.
    pub fn target_guard(&self) -> crate::outbound::Guard {
        if self.allow_private_targets {
            crate::outbound::Guard::Off
        } else {
            crate::outbound::Guard::PublicOnly {
                allow: self.allowed_targets.clone(),
            }
        }
    }

    /// The connection limits: configured, or derived from the descriptor limit.
    pub fn limits(&self) -> limits::Limits {
        let mut limits = limits::Limits::from_descriptors();
        if let Some(max) = self.max_connections {
            limits.max_connections = max;
        }
        limits.max_per_address = self.max_connections_per_address.min(limits.max_connections);
        limits
    }

    /// The URL at which this node is reached.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None if self.tls.is_some() => format!("https://{bound}"),
            None => format!("http://{bound}"),
        }
    }
}

/// How long a claimed delivery stays with its process (PostgreSQL): a minute.
pub const DEFAULT_OUTBOX_CLAIM: u64 = 60;

/// How long an undeliverable notification is retried: three days.
pub const DEFAULT_OUTBOX_GIVE_UP: u64 = 3 * 86_400;

fn cidrs(list: &[String]) -> anyhow::Result<Vec<crate::outbound::Cidr>> {
    list.iter()
        .map(|c| crate::outbound::Cidr::parse(c).map_err(anyhow::Error::msg))
        .collect()
}

pub use crate::keyfile::parse_public as parse_key;

/// Where the certificate chain and its key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How often grant uses are written down.
pub const USAGE_FLUSH: std::time::Duration = std::time::Duration::from_secs(60);
