//! The signed name registry's formats and rules: records, operations, the log, checkpoints,
//! the name map and its proofs. Pure (no storage): the places that hold a registry are in
//! [`crate::ledger`].
//!
//! The registry maps a name to its signing-key history, its updating key, its node URI and its
//! redirect URIs. Every accepted operation is appended to one global hash-chained log whose
//! checkpoints the registry signs, so anyone with the registry's public key can replay the log
//! and arrive at the same records, and can tell when a registry lies or forks.
//!
//! - [`op`]: operations and their wire format (pure);
//! - [`rules`]: what an operation may do to a record (pure, time injected);
//! - [`log`]: log entries, the hash chain and checkpoints (pure);
//! - [`map`], [`note`], [`light`], [`witness`]: the name map, signed checkpoints, light
//!   look-ups and witnesses' cosignatures;
//! - [`client`]: a client for a registry's HTTP API.

pub mod light;
pub mod log;
pub mod map;
pub mod note;
pub mod op;
pub mod points;
pub mod rules;
pub mod witness;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::carte::KeyEntry;
use crate::name::{Name, NameError};
use crate::uri::UriError;

/// Everything the registry knows about one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    pub name: Name,
    /// Signing keys ordered by `valid_from`.
    pub keys: Vec<KeyEntry>,
    pub updating_key: VerifyingKey,
    pub node_uri: String,
    pub redirect_uris: Vec<String>,
    /// Registry time of the `register` operation.
    pub created: u64,
    /// Registry time of the latest operation.
    pub updated: u64,
    /// blake3 chain over every operation on this name; an update must quote it.
    pub digest: [u8; 32],
}

/// The JSON form of a record, as `GET /registry/names/{name}` serves it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RecordJson {
    pub name: String,
    pub keys: Vec<KeyJson>,
    pub updating_key: String,
    pub node_uri: String,
    pub redirect_uris: Vec<String>,
    pub created: u64,
    pub updated: u64,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KeyJson {
    pub key: String,
    pub valid_from: u64,
    pub compromised: bool,
    /// When the compromise began, if after `valid_from` (signatures before it still count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_from: Option<u64>,
}

impl KeyJson {
    /// The time from which the key's signatures do not count, if it is compromised.
    pub fn compromised_at(&self) -> Option<u64> {
        self.compromised
            .then(|| self.compromised_from.unwrap_or(self.valid_from))
    }
}

/// `compromised_from` as records carry it: only a compromise that began after `valid_from`.
pub fn compromised_from(valid_from: u64, compromised: Option<u64>) -> Option<u64> {
    compromised.filter(|t| *t > valid_from)
}

impl NameRecord {
    pub fn to_json(&self) -> RecordJson {
        RecordJson {
            name: self.name.to_string(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyJson {
                    key: hex::encode(k.key.as_bytes()),
                    valid_from: k.valid_from,
                    compromised: k.compromised.is_some(),
                    compromised_from: compromised_from(k.valid_from, k.compromised),
                })
                .collect(),
            updating_key: hex::encode(self.updating_key.as_bytes()),
            node_uri: self.node_uri.clone(),
            redirect_uris: self.redirect_uris.clone(),
            created: self.created,
            updated: self.updated,
            digest: hex::encode(self.digest),
        }
    }
}

/// Why the registry refused an operation, or could not answer. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Not `#[non_exhaustive]`: the node's one error table matches every variant, so a new one
// cannot reach a client without a status chosen for it.
pub enum RegistryError {
    #[error("{0}")]
    NameInvalid(NameError),
    #[error("the name is already registered")]
    NameTaken,
    #[error("the name looks like the registered name {0:?}")]
    NameConfusable(String),
    #[error("the name is not registered")]
    NameUnknown,
    #[error("malformed operation: {0}")]
    Malformed(&'static str),
    #[error("malformed operation: {0}")]
    BadUri(UriError),
    #[error("the operation's signature does not verify with the name's updating key")]
    BadSignature,
    #[error("the name changed since this update was made; fetch the record and retry")]
    StaleDigest,
    #[error("proof of work too weak: {got} leading zero bits, {need} required")]
    PowInsufficient { need: u32, got: u32 },
    #[error("a key may not be back-dated: valid_from is before the registry's time minus skew")]
    ValidFromInPast,
    #[error("the key can never verify a strict signature: {0}")]
    WeakKey(&'static str),
    #[error("operation larger than {} bytes", op::MAX_OP_BYTES)]
    TooLarge,
    #[error("the registry cannot be reached: {0}")]
    Unavailable(String),
    #[error("the registry's answer failed verification: {0}")]
    Untrusted(String),
}

impl RegistryError {
    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::NameInvalid(_) => "name.invalid",
            RegistryError::NameTaken => "name.taken",
            RegistryError::NameConfusable(_) => "name.confusable",
            RegistryError::NameUnknown => "name.unknown",
            RegistryError::Malformed(_) | RegistryError::BadUri(_) => "op.malformed",
            RegistryError::BadSignature => "op.bad-signature",
            RegistryError::StaleDigest => "op.stale-digest",
            RegistryError::PowInsufficient { .. } => "op.pow-insufficient",
            RegistryError::ValidFromInPast => "op.valid-from-in-past",
            RegistryError::WeakKey(_) => "op.weak-key",
            RegistryError::TooLarge => "op.too-large",
            RegistryError::Unavailable(_) => "registry.unavailable",
            RegistryError::Untrusted(_) => "registry.untrusted",
        }
    }
}
