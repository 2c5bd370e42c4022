//! grant-wire: the formats a grant-node and the applications that call it share, and the rules
//! that judge them. Pure: nothing here opens a socket or a database or reads the clock (but
//! [`clock`], the one place that does, and [`keyfile`], which reads and writes key files).
//!
//! - [`name`]: the canonical name type and its Unicode rules.
//! - [`scope`]: scope bitmasks and the catalogue of scope names.
//! - [`cbor`]: canonical CBOR helpers shared by every signed format.
//! - [`carte`]: the carte format (encode/decode) and its verifier, with an injected clock.
//! - [`uri`]: the rules for registered URIs and the exact redirect match.
//! - [`grant`]: the `/grant` request rules, receipts and grant-updated notifications.
//! - [`registry`]: registry operations, rules, log, checkpoints, the name map and its proofs,
//!   light look-ups and witnesses' cosignatures.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`keyfile`]: Ed25519 key files (hex, mode 0600).

pub mod carte;
pub mod cbor;
pub mod clock;
pub mod grant;
pub mod keyfile;
pub mod name;
pub mod registry;
pub mod scope;
pub mod uri;
