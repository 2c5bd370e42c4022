//! The subcommands' implementations: each turns parsed flags into calls on the library.

pub mod app;
pub mod backup;
pub mod controller;
pub mod migrate;
pub mod name;
pub mod owner;
pub mod serve;
pub mod watch;
