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
//! - [`client`]: the application developer's library: grants and calls across many nodes.
//! - [`http`]: the accept loop and router; the only place that speaks HTTP.
//! - [`cli`]: the raw command-line flags.
//! - [`config`]: the node's validated configuration.

pub mod auth;
pub mod carte;
pub mod cbor;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod grant;
pub mod http;
pub mod keyfile;
pub mod name;
pub mod node;
pub mod registry;
pub mod scope;
pub mod store;
pub mod uri;
