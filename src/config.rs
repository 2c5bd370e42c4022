//! The node's configuration: one validated [`Config`], built once at start-up.
//!
//! Today it is built from command-line flags (with their environment variables); the
//! grant-node issue adds the TOML file beneath them. Everything downstream takes a `Config` and
//! never re-reads flags or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use crate::carte::verify::{DEFAULT_MAX_LIFETIME, DEFAULT_SKEW};
use crate::clock::Clock;
use crate::name::Name;

/// The address a node listens on when nothing says otherwise: loopback only, so a fresh node
/// is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8650";

/// Which registry the node trusts.
#[derive(Debug, Clone)]
pub enum RegistrySetting {
    /// Run the registry inside this node (a single node with no configuration is complete).
    Embedded { pow_bits: u32 },
    /// Mirror a remote registry (or a peer node), verifying against its public key.
    Remote { url: String, key: VerifyingKey },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub registry: RegistrySetting,
    /// The node's own registered name: the audience of node-level cartes.
    pub node_name: Option<Name>,
    /// How often the mirror syncs in the background.
    pub sync_interval: Duration,
    /// Allowed clock skew for cartes, seconds.
    pub carte_skew: u64,
    /// Longest carte lifetime accepted, seconds.
    pub carte_max_lifetime: u64,
    pub clock: Clock,
}

impl Config {
    /// The defaults: embedded registry, listening on `listen`, data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            listen,
            data_dir,
            registry: RegistrySetting::Embedded {
                pow_bits: crate::registry::authority::DEFAULT_POW_BITS,
            },
            node_name: None,
            sync_interval: Duration::from_secs(5),
            carte_skew: DEFAULT_SKEW,
            carte_max_lifetime: DEFAULT_MAX_LIFETIME,
            clock: Clock::system(),
        }
    }
}
