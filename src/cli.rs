//! The command tree, as raw flags. [`crate::config::Config`] is built from these once; no
//! other code reads flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "grant-node",
    version,
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
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GRANT_NODE_LISTEN", default_value = crate::config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Directory for the database and key files.
    #[arg(long, env = "GRANT_NODE_DATA_DIR", default_value = "grant-node-data")]
    pub data_dir: PathBuf,
}
