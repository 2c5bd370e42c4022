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
//!
//! [`VerifiedNote`] keeps the last checkpoint note checked, so serving it again costs a
//! comparison, not a signature check.

pub mod authority;
pub mod cosigning;
pub mod directory;
pub mod mirror;
pub mod replay;
pub mod resolver;
pub mod source;

use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;

use crate::registry::note::SignedCheckpoint;
use crate::registry::RegistryError;

/// The last checkpoint note verified under one registry key.
#[derive(Debug, Default)]
pub struct VerifiedNote(Mutex<Option<(Vec<u8>, SignedCheckpoint)>>);

impl VerifiedNote {
    /// `note` verified with `key`; a note byte-equal to the last one verified is not checked
    /// again.
    pub fn verify(
        &self,
        note: &[u8],
        key: &VerifyingKey,
    ) -> Result<SignedCheckpoint, RegistryError> {
        if let Some((last, signed)) = &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            if last == note {
                return Ok(signed.clone());
            }
        }
        let signed = SignedCheckpoint::verify(note, key)?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((note.to_vec(), signed.clone()));
        Ok(signed)
    }
}
