//! The registry authority: accepts operations, appends them to the log and signs checkpoints.
//! `registry-stub` serves it over HTTP; `grant-node serve` can embed it.
//!
//! Every accepted operation is one SQLite transaction: the log entry and its tree hashes, the
//! new record and the new signed checkpoint commit together, so the log, the records and the
//! checkpoint never disagree, even across a crash. The name map ([`crate::registry::map`]) is
//! kept in the same database ([`store::name_map`]) and updated in the same transaction, so a
//! checkpoint's map root is always the map of its log, and nothing is rebuilt at start: opening
//! a registry of ten million names reads a few pages. Reads (proofs, tiles, the log) run on
//! read-only connections and never wait for the writer.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use std::sync::Arc;

use crate::clock::Clock;
use crate::keyfile;
use crate::registry::light::NameProof;
use crate::registry::log::LogEntry;
use crate::registry::map;
use crate::registry::note::{self, Checkpoint, SignedCheckpoint};
use crate::registry::op::SignedOp;
use crate::registry::rules::{self, Params};
use crate::registry::{NameRecord, RegistryError};
use crate::store::{self, Local, StoreError};

pub use crate::registry::op::DEFAULT_POW_BITS;

/// Registry settings.
#[derive(Debug, Clone, Copy)]
pub struct AuthorityConfig {
    pub pow_bits: u32,
    pub params: Params,
}

impl Default for AuthorityConfig {
    fn default() -> AuthorityConfig {
        AuthorityConfig {
            pow_bits: DEFAULT_POW_BITS,
            params: Params::default(),
        }
    }
}

/// A running registry.
#[derive(Clone)]
pub struct Authority {
    db: Local,
    /// The last checkpoint note verified (proofs and the checkpoint endpoint serve it).
    notes: Arc<super::VerifiedNote>,
    /// Woken on every new checkpoint (the cosignature gatherer waits on it).
    changed: Arc<tokio::sync::Notify>,
    key: SigningKey,
    config: AuthorityConfig,
    clock: Clock,
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> RegistryError {
        tracing::error!(error = %e, "registry storage failed");
        RegistryError::Unavailable("registry storage failed".into())
    }
}

impl Authority {
    /// Opens the registry in `data_dir` (`registry.sqlite3`, and `registry.key`, created with
    /// mode 0600 on first start).
    pub fn open(
        data_dir: &Path,
        config: AuthorityConfig,
        clock: Clock,
    ) -> anyhow::Result<Authority> {
        std::fs::create_dir_all(data_dir)?;
        let key = keyfile::load_or_create(&data_dir.join("registry.key"))?;
        let db = Local::open(&data_dir.join("registry.sqlite3"))?;
        let authority = Authority {
            db,
            notes: Arc::default(),
            changed: Arc::new(tokio::sync::Notify::new()),
            key,
            config,
            clock,
        };
        authority.ensure_checkpoint()?;
        Ok(authority)
    }

    /// A checkpoint note of this registry, verified (once per distinct note).
    pub fn verify_note(&self, note: &[u8]) -> Result<SignedCheckpoint, RegistryError> {
        self.notes.verify(note, &self.public_key())
    }

    /// The registry's public key: what mirrors verify checkpoints with.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn config(&self) -> AuthorityConfig {
        self.config
    }

    /// The database (for read-only endpoints).
    pub fn db(&self) -> &Local {
        &self.db
    }

    /// Notified on every new checkpoint.
    pub fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    /// The origin line of this registry's checkpoints.
    pub fn origin(&self) -> String {
        note::origin_for(&self.public_key())
    }

    fn ensure_checkpoint(&self) -> Result<(), StoreError> {
        let conn = self.db.lock();
        if store::registry::checkpoint(&conn)?.is_none() {
            let size = store::registry::log_size(&conn)?;
            let cp = Checkpoint {
                origin: self.origin(),
                size,
                root: store::registry::tree_root(&conn, size)?,
                map_root: store::name_map::root(&conn)?,
                time: self.clock.now(),
            };
            store::registry::put_checkpoint(&conn, cp.size, &cp.sign(&self.key))?;
        }
        Ok(())
    }

    /// Checks and applies one operation envelope; blocking (call off the async workers).
    pub fn submit_blocking(&self, bytes: &[u8]) -> Result<NameRecord, RegistryError> {
        let signed = SignedOp::decode(bytes)?;
        let name = signed.op.name().clone();
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(StoreError::from)?;
        let current = store::registry::record(&tx, &name)?;
        let time = self.clock.now();
        let holder = store::registry::look_alike_at(&tx, &name, time)?;
        let record = rules::apply(
            &signed,
            time,
            self.config.pow_bits,
            current.as_ref(),
            holder.as_ref(),
            self.config.params,
        )?;
        let seq = store::registry::log_size(&tx)?;
        let entry = LogEntry {
            seq,
            time,
            prev_hash: store::registry::head_hash(&tx)?,
            difficulty: self.config.pow_bits,
            op: signed.bytes,
        };
        let encoded = entry.encode();
        let hash = crate::registry::log::entry_hash(&encoded);
        store::registry::append_entry(&tx, seq, &encoded, &hash)?;
        store::registry::put_record(&tx, &record)?;
        let map_root = store::name_map::refresh(&tx, vec![map::key_of(record.name.as_str())])?;
        let cp = Checkpoint {
            origin: self.origin(),
            size: seq + 1,
            root: store::registry::tree_root(&tx, seq + 1)?,
            map_root,
            time,
        };
        store::registry::put_checkpoint(&tx, cp.size, &cp.sign(&self.key))?;
        tx.commit().map_err(StoreError::from)?;
        self.changed.notify_one();
        tracing::info!(name = %record.name, seq, "registry accepted an operation");
        Ok(record)
    }

    /// The latest checkpoint, with the cosignatures gathered so far.
    pub fn checkpoint_blocking(&self) -> Result<SignedCheckpoint, RegistryError> {
        let note = store::registry::checkpoint(&self.db.reader())?
            .ok_or_else(|| RegistryError::Unavailable("no checkpoint yet".into()))?;
        self.verify_note(&note)
    }

    /// Adds witnesses' cosignature lines to the latest checkpoint if it is still the one they
    /// cosigned (`size`); a cosignature for an older checkpoint is of no use and dropped.
    pub fn add_cosignatures_blocking(
        &self,
        size: u64,
        lines: &[u8],
    ) -> Result<bool, RegistryError> {
        let conn = self.db.lock();
        let Some(note) = store::registry::checkpoint(&conn)? else {
            return Ok(false);
        };
        let current = SignedCheckpoint::verify(&note, &self.public_key())?;
        if current.checkpoint.size != size {
            return Ok(false);
        }
        let updated = current.with_cosignatures(lines)?;
        store::registry::put_checkpoint(&conn, size, &updated.note)?;
        Ok(true)
    }

    /// A name's record with a proof against the latest checkpoint, and a consistency proof
    /// from `known` (a size the client already trusts) when given.
    pub fn prove_blocking(
        &self,
        name: &crate::name::Name,
        known: Option<u64>,
    ) -> Result<NameProof, RegistryError> {
        // One read transaction: the checkpoint, the record and the map as of one commit.
        let mut reader = self.db.reader();
        let conn = reader.transaction().map_err(StoreError::from)?;
        let note = store::registry::checkpoint(&conn)?
            .ok_or_else(|| RegistryError::Unavailable("no checkpoint yet".into()))?;
        let signed = self.verify_note(&note)?;
        let size = signed.checkpoint.size;
        let consistency = match known {
            Some(k) if k > size => {
                return Err(RegistryError::Malformed(
                    "known is larger than the registry's log",
                ))
            }
            Some(k) if k > 0 => store::registry::consistency_proof(&conn, k, size)?,
            _ => Vec::new(),
        };
        Ok(NameProof {
            record: store::registry::record(&conn, name)?,
            proof: store::name_map::prove(&conn, &map::key_of(name.as_str()))?,
            checkpoint: signed,
            consistency,
        })
    }

    /// [`Authority::submit_blocking`] on the blocking pool.
    pub async fn submit(&self, bytes: Vec<u8>) -> Result<NameRecord, RegistryError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.submit_blocking(&bytes)).await {
            Ok(r) => r,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}
