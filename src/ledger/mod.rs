//! The places that hold a registry: the authority, which accepts operations and signs
//! checkpoints, and a node's verified mirror of it; how both replay the log into their
//! database, and answer key look-ups from it. The formats and rules they apply are
//! [`crate::registry`]'s (pure); their tables are [`crate::store::registry`]'s.
//!
//! - [`authority`]: the registry itself; [`cosigning`]: collecting witnesses' cosignatures;
//! - [`mirror`]: a node's verified copy, the only registry I/O a node does; [`directory`]: the
//!   same mirror as the toolkit's `Directory`, for `grant-node app`;
//! - [`replay`]: applying log entries to a database, with batched signature checks;
//! - [`resolver`]: key look-ups for carte verification, answered from a local database;
//! - [`source`]: where a mirror reads the log (a remote registry, or an authority in process).

pub mod authority;
pub mod cosigning;
pub mod directory;
pub mod mirror;
pub mod replay;
pub mod resolver;
pub mod source;
