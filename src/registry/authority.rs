//! The registry authority: accepts operations, appends them to the log and signs checkpoints.
//! `registry-stub` serves it over HTTP; `grant-node serve` can embed it.
//!
//! Every accepted operation is one SQLite transaction: the log entry, the new record and the
//! new signed checkpoint commit together, so the log, the records and the checkpoint never
//! disagree, even across a crash.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::log::{Checkpoint, LogEntry};
use super::op::SignedOp;
use super::rules::{self, Params};
use super::{NameRecord, RegistryError};
use crate::clock::Clock;
use crate::keyfile;
use crate::store::{self, Local, StoreError};

/// Default proof-of-work difficulty, in leading zero bits of blake3: about a second of one core.
pub const DEFAULT_POW_BITS: u32 = 20;

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
            key,
            config,
            clock,
        };
        authority.ensure_checkpoint()?;
        Ok(authority)
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

    fn ensure_checkpoint(&self) -> Result<(), StoreError> {
        let conn = self.db.lock();
        if store::registry::checkpoint(&conn)?.is_none() {
            let cp = Checkpoint {
                size: store::registry::log_size(&conn)?,
                head_hash: store::registry::head_hash(&conn)?,
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
        let holder = store::registry::skeleton_holder(&tx, &name.skeleton())?;
        let time = self.clock.now();
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
        let hash = super::log::entry_hash(&encoded);
        store::registry::append_entry(&tx, seq, &encoded, &hash)?;
        store::registry::put_record(&tx, &record)?;
        let cp = Checkpoint {
            size: seq + 1,
            head_hash: hash,
            time,
        };
        store::registry::put_checkpoint(&tx, cp.size, &cp.sign(&self.key))?;
        tx.commit().map_err(StoreError::from)?;
        tracing::info!(name = %record.name, seq, "registry accepted an operation");
        Ok(record)
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
