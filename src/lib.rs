//! grant-node: a node that records what applications may do for its owners.
//!
//! Applications register a name in a signed registry and prove themselves with a *carte*, a
//! short-lived token they sign themselves; owners approve requests on the node's `/grant` page
//! and the node records the granted scopes against the application's name. No access, refresh
//! or code token is ever minted.
//!
//! Modules, from the pure core outwards:
//!
//! - [`name`]: the canonical name type and its Unicode rules.
//! - [`scope`]: scope bitmasks and the catalogue of scope names.
//! - [`cbor`]: canonical CBOR helpers shared by every signed format.
//! - [`carte`]: the carte format (encode/decode) and its verifier, pure with an injected clock.
//! - [`uri`]: the rules for registered URIs and the exact redirect match.
//! - [`grant`]: the `/grant` request rules, receipts and grant-updated notifications (pure).
//! - [`registry`]: registry operations, rules, log, checkpoints and name map (pure); a client
//!   for the registry's API.
//! - [`ledger`]: the places that hold a registry: the authority, a node's verified mirror,
//!   replay and key resolution.
//! - [`auth`]: password hashing, tokens and the login rate limiter.
//! - [`recovery`]: recovery words (BIP39) and the updating key they stand for.
//! - [`backup`]: the encrypted backup file, and a data directory into it and back.
//! - [`strict_batch`]: batched Ed25519 checks that answer exactly as `verify_strict`.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`store`]: every query, written once against one connection interface with a SQLite and
//!   a PostgreSQL implementation; schemas and migrations.
//! - [`keyfile`]: key files with mode 0600.
//! - [`node`]: the node's state, carte access with its caches, durable grant changes, owners
//!   and moving them, the notification outbox, scheduled backups, metrics.
//! - [`outbound`]: every outbound HTTP(S) call: TLS, timeouts, reply caps, and the guard on
//!   addresses for URLs taken from registry data.
//! - [`http`]: the server: accept loop (plain or TLS), routers, pages and JSON API.
//! - [`client`]: the application developer's library: grants and calls across many nodes.
//! - [`config`]: the validated configuration, plain data (with the flags it is built from).
//! - [`server`]: the composition root: opens everything a configuration names and serves it.
//! - [`cli`], [`commands`]: the command line, and the subcommands `main` dispatches to.
//!
//! The top-level modules form no cycle, and `config`, `node`, `http`, `client`, `registry`
//! and `store` never name the modules above them; `tests/architecture.rs` checks both from
//! the code's `crate::` references.

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
