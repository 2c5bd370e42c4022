//! The command tree, as raw flags. A validated [`crate::config::Config`] is built from these
//! once; no other code reads flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::config::args::{OutboundArgs, ServeArgs};

/// What `--version` prints: the version, the commit built from, the build date (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GRANT_NODE_COMMIT"),
    ", built ",
    env!("GRANT_NODE_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "grant-node",
    version = VERSION,
    about = "A node that records what applications may do for its owners"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GRANT_NODE_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node.
    Serve(ServeArgs),
    /// Register and manage names in the registry.
    #[command(subcommand)]
    Name(NameCommand),
    /// Designate the platforms that may create and drive owners (controlled accounts).
    #[command(subcommand)]
    Controller(ControllerCommand),
    /// Act as an application: ask for grants, finish them, call nodes, sign cartes.
    App(AppArgs),
    /// Copy a node's data from its SQLite file to PostgreSQL, then compare the two.
    Migrate(MigrateArgs),
    /// Take an encrypted backup of a node (while it serves): owners, grants and their
    /// history, controllers, the outbox, sessions, the owners' keys, an embedded registry.
    Backup(BackupArgs),
    /// Restore a backup into an empty data directory.
    Restore(RestoreArgs),
    /// Move an owner to another node: export it here, import it there.
    #[command(subcommand)]
    Owner(OwnerCommand),
}

/// A time on the command line: Unix seconds, or RFC 3339 (UTC `Z` or no zone).
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{text:?} is neither Unix seconds nor an RFC 3339 time: {e}"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| format!("{text:?} is before 1970"))
}

/// `owner` subcommands.
#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Take an owner out of this node into an encrypted file (its grants, their history, its
    /// password hash and keys). From then on this node answers for it with `owner.moved` and
    /// the new node's URI. Keep the file until the import has succeeded.
    Export(OwnerExportArgs),
    /// Host an owner exported from another node, and point its name at this node in the
    /// registry (signed with the owner's updating key). Its applications' grants keep working.
    Import(OwnerImportArgs),
}

/// `owner export` flags.
#[derive(Debug, Args)]
pub struct OwnerExportArgs {
    /// The owner's name.
    pub name: String,
    /// The export file to write.
    #[arg(long)]
    pub to: PathBuf,
    /// The URL of the node the owner moves to (this node names it to whoever still asks
    /// here).
    #[arg(long)]
    pub new_node: String,
    #[command(flatten)]
    pub seal: SealArgs,
    /// The node's flags, as given to `serve`.
    #[command(flatten)]
    pub node: ServeArgs,
}

/// `owner import` flags.
#[derive(Debug, Args)]
pub struct OwnerImportArgs {
    /// The export file.
    pub from: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// The node's flags, as given to `serve`.
    #[command(flatten)]
    pub node: ServeArgs,
}

/// How a backup or export is encrypted: one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SealArgs {
    /// A file whose first line is the passphrase (age's scrypt).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// An age X25519 recipient (`age1…`).
    #[arg(long)]
    pub recipient: Option<String>,
}

/// How a backup or export is opened: one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct OpenArgs {
    /// A file whose first line is the passphrase.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// A file holding the age identity (`AGE-SECRET-KEY-1…`).
    #[arg(long)]
    pub identity: Option<PathBuf>,
}

/// `backup` flags.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (written beside it first, then renamed into place).
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub seal: SealArgs,
    /// The node's configuration file, as given to `serve`.
    #[arg(long, env = "GRANT_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The node's data directory, as given to `serve`.
    #[arg(long, env = "GRANT_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to fill; it must not exist, or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// `migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The node's SQLite database: sqlite:DATA_DIR/node.sqlite3.
    #[arg(long)]
    pub from: String,
    /// The PostgreSQL database to fill: postgres://USER:PASSWORD@HOST/DB (it must hold no
    /// owners yet).
    #[arg(long)]
    pub to: String,
    /// The key that seals owners' keys in PostgreSQL [default: DATA_DIR/database.key, made
    /// if missing]; give the node the same file.
    #[arg(long)]
    pub database_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AppArgs {
    /// The application's registered name.
    #[arg(long, env = "GRANT_NODE_APP", global = true)]
    pub name: Option<String>,
    /// The registry (or a node with an embedded registry).
    #[arg(
        long,
        env = "GRANT_NODE_REGISTRY",
        default_value = "http://127.0.0.1:8650",
        global = true
    )]
    pub registry: String,
    /// The registry's public key (hex); without it the key is fetched once and pinned.
    #[arg(long, env = "GRANT_NODE_REGISTRY_KEY", global = true)]
    pub registry_key: Option<String>,
    /// Where `grant-node name register` put the application's keys.
    #[arg(long, env = "GRANT_NODE_KEY_DIR", global = true)]
    pub key_dir: Option<PathBuf>,
    /// The grant book [default: KEY_DIR/NAME/grants.book]; without --light, the registry
    /// mirror is kept beside it (grants.mirror.sqlite3).
    #[arg(long, env = "GRANT_NODE_BOOK", global = true)]
    pub book: Option<PathBuf>,
    #[command(flatten)]
    pub light: LightArgs,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    #[command(subcommand)]
    pub command: AppCommand,
}

/// Light mode for the toolkit: no mirror; each name is proven against a witnessed checkpoint.
#[derive(Debug, Args, Clone)]
pub struct LightArgs {
    /// Look names up by proof instead of keeping a verified mirror of the whole registry.
    #[arg(long, env = "GRANT_NODE_LIGHT", global = true)]
    pub light: bool,
    /// A witness's verifier key (name+id+base64); repeat for several.
    #[arg(long = "witness", value_name = "VKEY", global = true)]
    pub witnesses: Vec<String>,
    /// How many of the witnesses must have cosigned a checkpoint.
    #[arg(long, default_value_t = 0, global = true)]
    pub witness_quorum: usize,
}

impl LightArgs {
    /// The light mode these flags ask for (`None`: a full mirror).
    pub fn mode(&self) -> anyhow::Result<Option<crate::client::LightMode>> {
        if !self.light {
            if !self.witnesses.is_empty() || self.witness_quorum > 0 {
                anyhow::bail!("--witness and --witness-quorum need --light");
            }
            return Ok(None);
        }
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| crate::registry::note::Witness::parse_vkey(w).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.witness_quorum > witnesses.len() {
            anyhow::bail!(
                "--witness-quorum {}: more than the {} witnesses given",
                self.witness_quorum,
                witnesses.len()
            );
        }
        Ok(Some(crate::client::LightMode {
            witnesses,
            quorum: self.witness_quorum,
        }))
    }
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Print the /grant URL to send USER to, and remember the request.
    GrantUrl {
        #[arg(long)]
        user: String,
        #[arg(long)]
        scope: String,
        #[arg(long)]
        redirect_uri: String,
    },
    /// Verify the URL the browser was redirected to, and record the grant.
    FinishGrant { url: String },
    /// Call USER's node with a fresh carte.
    Call {
        #[arg(long)]
        user: String,
        method: String,
        path: String,
        /// The admin scope the call needs.
        #[arg(long, default_value = "")]
        scope: String,
        /// A JSON body.
        #[arg(long)]
        data: Option<String>,
    },
    /// Print the grant book.
    Grants,
    /// Print a carte, for use with curl.
    Carte {
        #[arg(long)]
        audience: String,
        #[arg(long, default_value = "")]
        admin_scope: String,
        /// Lifetime, e.g. 10m, 1h, 300s.
        #[arg(long, default_value = "5m")]
        ttl: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Designate NAME (a registered name) as a controller, or change its maximum scope.
    Add {
        name: String,
        /// The most a controller may do on an owner's behalf, e.g. "view-profile,grant".
        #[arg(long)]
        max_scope: String,
        #[arg(long, env = "GRANT_NODE_DATA_DIR", default_value = "grant-node-data")]
        data_dir: PathBuf,
        /// The node's shared database, when it is PostgreSQL (as `serve --database`).
        #[arg(long, env = "GRANT_NODE_DATABASE")]
        database: Option<String>,
    },
    /// List the controllers.
    List {
        #[arg(long, env = "GRANT_NODE_DATA_DIR", default_value = "grant-node-data")]
        data_dir: PathBuf,
        /// The node's shared database, when it is PostgreSQL (as `serve --database`).
        #[arg(long, env = "GRANT_NODE_DATABASE")]
        database: Option<String>,
    },
    /// Remove a controller (the owners it created stay).
    Remove {
        name: String,
        #[arg(long, env = "GRANT_NODE_DATA_DIR", default_value = "grant-node-data")]
        data_dir: PathBuf,
        /// The node's shared database, when it is PostgreSQL (as `serve --database`).
        #[arg(long, env = "GRANT_NODE_DATABASE")]
        database: Option<String>,
    },
}

/// Flags every `name` command takes.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// The registry (or a node with an embedded registry) to talk to.
    #[arg(
        long,
        env = "GRANT_NODE_REGISTRY",
        default_value = "http://127.0.0.1:8650"
    )]
    pub registry: String,

    /// Where the name's keys live (one folder per name, files with mode 0600).
    #[arg(long, env = "GRANT_NODE_KEY_DIR")]
    pub key_dir: Option<PathBuf>,

    #[command(flatten)]
    pub outbound: OutboundArgs,
}

#[derive(Debug, Subcommand)]
pub enum NameCommand {
    /// Register a name: creates its keys if missing, solves the proof of work, submits. A new
    /// updating key comes from 24 recovery words, shown once (or written to --words-out).
    Register {
        name: String,
        /// Where the name's node or application lives.
        #[arg(long)]
        node_uri: String,
        /// A redirect URI grants may return to (repeat for several; at most 16).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Write the recovery words to this file (mode 0600, must not exist) instead of
        /// showing them on the terminal.
        #[arg(long)]
        words_out: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Take a name back with nothing but its recovery words: derives the updating key, checks
    /// it against the registry before sending anything, then registers a new signing key,
    /// marks the current one compromised, and optionally moves the name to a new node URI.
    Recover {
        name: String,
        /// A file holding the 24 recovery words.
        #[arg(long)]
        words_file: PathBuf,
        /// The name's new node URI.
        #[arg(long)]
        node_uri: Option<String>,
        /// From when the old signing key is to be treated as stolen: Unix seconds or RFC 3339
        /// (`2026-12-01T08:00:00Z`); what it signed before still counts [default: now].
        #[arg(long, value_parser = parse_time)]
        compromised_since: Option<u64>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Start signing with a new key from now on; cartes signed earlier stay valid.
    RotateKey {
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Mark the current signing key compromised (everything it signed stops working at once)
    /// and switch to a new key.
    RevokeKey {
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Change a name's node URI or redirect URIs.
    Update {
        name: String,
        #[arg(long)]
        node_uri: Option<String>,
        /// The new list of redirect URIs (replaces the old one).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Remove every redirect URI.
        #[arg(long, conflicts_with = "redirect_uris")]
        clear_redirect_uris: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show a name's record.
    Show {
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Follow the verified registry log and report every operation on these names, one JSON
    /// line each. An operation not in the name's journal (`KEY_DIR/NAME/journal`, which the
    /// commands above write before they submit) is unexpected: someone else used the
    /// updating key. Exits 1 on the first unexpected operation, or runs --hook and goes on.
    Watch {
        #[arg(required = true)]
        names: Vec<String>,
        /// The registry's public key (hex); without it the key is fetched once and trusted.
        #[arg(long, env = "GRANT_NODE_REGISTRY_KEY")]
        registry_key: Option<String>,
        /// Start from this log position (0: the whole history).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Run this shell command for each unexpected operation (the event's JSON in
        /// GRANT_NODE_WATCH_EVENT) instead of exiting.
        #[arg(long)]
        hook: Option<String>,
        /// Check the log up to the registry's current checkpoint, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between polls of the registry.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}
