//! Cartes: the short-lived, self-signed token an application presents instead of a secret.
//!
//! This module owns the carte's value ([`Carte`]), its wire format ([`codec`]) and its
//! verification ([`verify()`]). All of it is pure: no clock, no network, no storage. The caller
//! passes `now` and a [`KeyResolver`] that answers "which key did NAME hold at time T", so the
//! same code serves the node, peers, tests and the golden vectors.
//!
//! The wire format is specified in README.md, "Wire formats"; `data/vectors/cartes.json` pins it.

pub mod codec;
pub mod keys;
pub mod verify;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::name::Name;
use crate::scope::Scope;

pub use codec::{decode, DecodedCarte, MAX_WIRE_LEN};
pub use keys::{key_in_history, KeyEntry, KeyTable};
pub use verify::{verify, Expectations, KeyAt, KeyResolver, VerifiedCarte};

/// The only wire format version this code reads and writes.
pub const VERSION: u64 = 1;

/// The `kind` field: it keeps a carte payload from being read as any other CBOR object.
pub const KIND: &str = "carte";

/// Signatures are made over this prefix followed by the payload bytes, so a carte signature
/// can never be mistaken for a signature over any other object signed with the same key.
pub const SIGNATURE_PREFIX: &[u8] = b"grant-node carte v1\0";

/// A grant request bound into a grant carte: the `/grant` URL must carry exactly these values,
/// so the URL cannot be altered without breaking the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub scope: Scope,
    pub redirect_uri: String,
    pub state: String,
}

/// The signed content of a carte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carte {
    /// The signer: the application (or node, or controller) whose registered key signed it.
    pub owner: Name,
    /// The node name this carte is for; `None` only for cartes without admin scope.
    pub audience: Option<Name>,
    /// The name this carte acts on behalf of (controlled accounts).
    pub subject: Option<Name>,
    /// Unix seconds; the carte is not valid before (minus the allowed skew).
    pub beginning: u64,
    /// Unix seconds; the carte is not valid after (plus the allowed skew).
    pub deadline: u64,
    pub client_scope: Scope,
    pub admin_scope: Scope,
    /// When set, the carte is only accepted from one of these peer addresses.
    pub addresses: Option<Vec<IpAddr>>,
    pub request: Option<GrantRequest>,
    /// Makes every carte unique, so a replay can be told from a new carte.
    pub nonce: [u8; 16],
}

impl Carte {
    /// A carte from `owner` valid from `beginning` to `deadline`, with no scopes, no audience
    /// and the given nonce; set the other fields directly.
    pub fn new(owner: Name, beginning: u64, deadline: u64, nonce: [u8; 16]) -> Carte {
        Carte {
            owner,
            audience: None,
            subject: None,
            beginning,
            deadline,
            client_scope: Scope::NONE,
            admin_scope: Scope::NONE,
            addresses: None,
            request: None,
            nonce,
        }
    }

    /// Signs this carte with `key` and returns its wire form.
    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> String {
        codec::sign(self, key)
    }
}

/// Why a carte was refused. Each variant has a stable code (`carte.expired`); the HTTP layer
/// maps codes to statuses in one table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CarteError {
    #[error("carte is malformed: {0}")]
    Malformed(&'static str),
    #[error("carte version {0} is not supported (this node reads version 1)")]
    UnsupportedVersion(u64),
    #[error("carte is not valid yet")]
    NotBegun,
    #[error("carte has expired")]
    Expired,
    #[error("carte lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
    #[error("carte is addressed to another node")]
    WrongNode,
    #[error("carte may not be used from this address")]
    AddressMismatch,
    #[error("carte signer is not a registered name")]
    UnknownSigner,
    #[error("signer held no valid key at the carte's beginning")]
    KeyNotValid,
    #[error("carte signature does not verify")]
    BadSignature,
    #[error("the registry cannot be reached to identify the signer")]
    RegistryUnavailable,
}

impl CarteError {
    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            CarteError::Malformed(_) => "carte.malformed",
            CarteError::UnsupportedVersion(_) => "carte.unsupported-version",
            CarteError::NotBegun => "carte.not-begun",
            CarteError::Expired => "carte.expired",
            CarteError::LifetimeTooLong => "carte.lifetime-too-long",
            CarteError::WrongNode => "carte.wrong-node",
            CarteError::AddressMismatch => "carte.address-mismatch",
            CarteError::UnknownSigner => "carte.unknown-signer",
            CarteError::KeyNotValid => "carte.key-not-valid",
            CarteError::BadSignature => "carte.bad-signature",
            CarteError::RegistryUnavailable => "registry.unavailable",
        }
    }
}

/// The blake3 hash of a carte's wire form: the key of the verified-carte cache.
pub fn fingerprint(wire: &str) -> [u8; 32] {
    *blake3::hash(wire.as_bytes()).as_bytes()
}

/// Domain separation for [`replay_id`].
const REPLAY_PREFIX: &[u8] = b"grant-node carte replay id v1\0";

/// The identity of a carte for single-use marks: blake3 over the signed payload, not the wire
/// form, so a second valid signature over the same payload is the same carte. (Under
/// `verify_strict` no one but the key holder can make one: S must be canonical and is then
/// fixed by R, and R must be the canonical encoding the equation gives. The key holder can,
/// with another nonce; this keying makes that a replay too.) `None` for a wire form that does
/// not decode.
pub fn replay_id(wire: &str) -> Option<[u8; 32]> {
    let decoded = decode(wire).ok()?;
    let mut h = blake3::Hasher::new();
    h.update(REPLAY_PREFIX);
    h.update(&decoded.payload);
    Some(*h.finalize().as_bytes())
}
