//! Light verification of single names: no mirror, no replay. A look-up answer carries the
//! record, a map proof, the checkpoint note the proof leads to, and a consistency proof from
//! the last checkpoint this client trusted. [`LightVerifier::check`] accepts the record only if
//! the registry signed the checkpoint, a quorum of the configured witnesses cosigned it, the
//! checkpoint extends every checkpoint this client saw before, and the map proof leads from
//! the record (or its absence) to the checkpoint's map root. Pure: the caller does the I/O.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// What a light client needs to trust one name: the record (or its absence), the map proof,
/// the checkpoint it leads to, and a consistency proof from the size the client knew.
#[derive(Debug, Clone)]
pub struct NameProof {
    pub record: Option<NameRecord>,
    pub proof: MapProof,
    pub checkpoint: SignedCheckpoint,
    pub consistency: Vec<[u8; 32]>,
}

use super::map::{self, MapProof};
use super::note::{SignedCheckpoint, Witness};
use super::{NameRecord, RecordJson, RegistryError};
use crate::carte::KeyEntry;
use crate::name::Name;

/// `GET /registry/names/{name}/proof`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameProofJson {
    /// The record, or null when the name is not registered.
    pub record: Option<RecordJson>,
    /// The map proof in its compact form ([`MapProof::encode`]), base64url.
    pub proof: String,
    /// The checkpoint note (body, registry signature, cosignatures).
    pub checkpoint: String,
    /// Consistency proof from the `known` size to the checkpoint, standard base64 hashes.
    pub consistency: Vec<String>,
}

impl From<&NameProof> for NameProofJson {
    fn from(p: &NameProof) -> NameProofJson {
        NameProofJson {
            record: p.record.as_ref().map(NameRecord::to_json),
            proof: URL_SAFE_NO_PAD.encode(p.proof.encode()),
            checkpoint: String::from_utf8_lossy(&p.checkpoint.note).into_owned(),
            consistency: p.consistency.iter().map(|h| STANDARD.encode(h)).collect(),
        }
    }
}

/// Turns a record's JSON form back into the record (every field checked).
pub fn record_from_json(j: &RecordJson) -> Result<NameRecord, RegistryError> {
    let bad = |what: &'static str| RegistryError::Untrusted(format!("record field {what}"));
    let key = |h: &str| -> Result<VerifyingKey, RegistryError> {
        let b: [u8; 32] = hex::decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("key"))?;
        VerifyingKey::from_bytes(&b).map_err(|_| bad("key"))
    };
    Ok(NameRecord {
        name: Name::parse(&j.name).map_err(|_| bad("name"))?,
        keys: j
            .keys
            .iter()
            .map(|k| {
                Ok(KeyEntry {
                    key: key(&k.key)?,
                    valid_from: k.valid_from,
                    compromised: k.compromised_at(),
                })
            })
            .collect::<Result<_, RegistryError>>()?,
        updating_key: key(&j.updating_key)?,
        node_uri: j.node_uri.clone(),
        redirect_uris: j.redirect_uris.clone(),
        created: j.created,
        updated: j.updated,
        digest: hex::decode(&j.digest)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("digest"))?,
    })
}

/// The checkpoint a light client trusts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trusted {
    pub size: u64,
    pub root: [u8; 32],
}

/// What a light client checks answers against.
#[derive(Debug, Clone)]
pub struct LightVerifier {
    pub registry_key: VerifyingKey,
    pub witnesses: Vec<Witness>,
    pub quorum: usize,
}

impl LightVerifier {
    /// Checks a look-up answer for `name` given the checkpoint trusted so far; returns the
    /// verified record (or `None`: proven absent) and the checkpoint to trust from now on.
    pub fn check(
        &self,
        name: &Name,
        answer: &NameProofJson,
        trusted: Option<Trusted>,
    ) -> Result<(Option<NameRecord>, Trusted), RegistryError> {
        let untrusted = |m: String| RegistryError::Untrusted(m);
        let signed = SignedCheckpoint::verify(answer.checkpoint.as_bytes(), &self.registry_key)?;
        let cosigned = signed.cosigned_by(&self.witnesses).len();
        if cosigned < self.quorum {
            return Err(untrusted(format!(
                "the checkpoint is cosigned by {cosigned} of the {} witnesses required",
                self.quorum
            )));
        }
        let cp = &signed.checkpoint;
        let now = Trusted {
            size: cp.size,
            root: cp.root,
        };
        if let Some(old) = trusted {
            check_consistency(old, now, &answer.consistency)?;
        }
        let proof = URL_SAFE_NO_PAD
            .decode(&answer.proof)
            .ok()
            .and_then(|b| MapProof::decode(&b).ok())
            .ok_or_else(|| untrusted("malformed map proof".into()))?;
        let value = proof
            .verify(&cp.map_root, &map::key_of(name.as_str()))
            .map_err(|e| untrusted(e.to_string()))?;
        let record = match (value, &answer.record) {
            (None, None) => None,
            (Some(v), Some(j)) => {
                let record = record_from_json(j)?;
                if record.name != *name || map::value_of(&record) != v {
                    return Err(untrusted(
                        "the record is not the one the checkpoint commits to".into(),
                    ));
                }
                Some(record)
            }
            (None, Some(_)) => return Err(untrusted("a record the map proves absent".into())),
            (Some(_), None) => return Err(untrusted("the map holds a record not sent".into())),
        };
        let keep = match trusted {
            Some(old) if old.size > now.size => old,
            _ => now,
        };
        Ok((record, keep))
    }
}

/// Checks that the tree `new` extends the tree `old` (or, when smaller, that `old` extends it)
/// with an RFC 6962 consistency proof, checked by `tlog_tiles`.
pub fn check_consistency(
    old: Trusted,
    new: Trusted,
    proof: &[String],
) -> Result<(), RegistryError> {
    let untrusted = |m: &str| RegistryError::Untrusted(m.to_owned());
    if old.size == new.size {
        return if old.root == new.root {
            Ok(())
        } else {
            Err(untrusted("two different trees of one size: a split view"))
        };
    }
    if old.size == 0 {
        return Ok(());
    }
    let hashes: Vec<tlog_tiles::Hash> = proof
        .iter()
        .map(|h| {
            STANDARD
                .decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(tlog_tiles::Hash)
                .ok_or_else(|| untrusted("malformed consistency proof"))
        })
        .collect::<Result<_, _>>()?;
    let (small, large) = if old.size < new.size {
        (old, new)
    } else {
        (new, old)
    };
    tlog_tiles::check_tree(
        &hashes,
        large.size,
        tlog_tiles::Hash(large.root),
        small.size,
        tlog_tiles::Hash(small.root),
    )
    .map_err(|_| untrusted("the checkpoint is not consistent with the one trusted before"))
}
