//! grant-node: a node that records what applications may do for its owners.
//!
//! Applications register a name in a signed registry and prove themselves with a *carte*, a
//! short-lived token they sign themselves; owners approve requests on the node's `/grant` page
//! and the node records the granted scopes against the application's name. No access, refresh
//! or code token is ever minted.
//!
//! The pure core lives in workspace crates an application can link without the server, and
//! appears here under the names it always had:
//!
//! - `grant-wire` (`crates/wire`): [`name`], [`scope`], [`cbor`], [`carte`] (format and verifier,
//!   clock injected), [`uri`], [`grant`] (the `/grant` rules, receipts, notifications),
//!   [`registry`] (operations, rules, log, checkpoints, name map, proofs, witnesses),
//!   [`clock`] and [`keyfile`];
//! - `grant-toolkit` (`crates/toolkit`): [`client`], the application developer's library, and
//!   [`outbound`], every outbound HTTP(S) call (TLS, timeouts, reply caps, the address guard);
//!   `registry::client` is its client for the registry's API;
//! - `strict-batch` (`crates/strict-batch`): batched Ed25519 checks with `verify_strict`'s
//!   answers (no hot path uses it).
//!
//! This crate's modules, from the core outwards:
//!
//! - [`auth`]: password hashing, tokens and the login rate limiter.
//! - [`recovery`]: recovery words (BIP39) and the updating key they stand for.
//! - [`store`]: every query, written once against one connection interface with a SQLite and
//!   a PostgreSQL implementation; schemas and migrations. Nothing else names the database.
//! - [`ledger`]: the places that hold a registry: the authority, a node's verified mirror,
//!   replay and key resolution.
//! - [`backup`]: the encrypted backup file, and a data directory into it and back.
//! - [`config`]: the validated configuration, plain data (with the flags it is built from).
//! - [`node`]: the node's state, carte access with its caches, durable grant changes, owners
//!   and moving them, the notification outbox, scheduled backups, metrics.
//! - [`http`]: the server's plumbing (accept loop, TLS, the one error table, the router), the
//!   JSON API (`http::api`) and the pages (`http::pages`, built with a template macro).
//! - [`server`]: the composition root: opens everything a configuration names and serves it.
//! - [`cli`], [`commands`]: the command line, and the subcommands `main` dispatches to.
//!
//! The top-level modules form no cycle, `config`, `node`, `http`, `ledger` and `store` never
//! name the modules above them, and the toolkit's dependency tree holds none of the server's;
//! `tests/architecture.rs` checks all three.

pub mod auth;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod ledger;
pub mod node;
pub mod recovery;
pub mod server;
pub mod store;

// The wire formats live in `crates/wire` and the application toolkit in `crates/toolkit`; the
// node uses both under the names it always had.
pub use grant_toolkit as client;
pub use grant_toolkit::outbound;
pub use grant_wire::{carte, cbor, clock, grant, keyfile, name, scope, uri};

/// The registry's formats and rules ([`grant_wire::registry`]), and the client for its HTTP
/// API ([`grant_toolkit::registry_client`]).
pub mod registry {
    pub use grant_toolkit::registry_client as client;
    pub use grant_wire::registry::*;
}
