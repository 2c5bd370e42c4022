//! The node's configuration: one validated [`Config`], built once at start-up.
//!
//! Today it is built from command-line flags alone (with their environment variables); the
//! grant-node issue adds the TOML file beneath them. Everything downstream takes a `Config` and
//! never re-reads flags or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::carte::verify::{DEFAULT_MAX_LIFETIME, DEFAULT_SKEW};

/// The address a node listens on when nothing says otherwise: loopback only, so a fresh node
/// is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8650";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Allowed clock skew for cartes, seconds.
    pub carte_skew: u64,
    /// Longest carte lifetime accepted, seconds.
    pub carte_max_lifetime: u64,
}

impl Config {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            listen,
            data_dir,
            carte_skew: DEFAULT_SKEW,
            carte_max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}
