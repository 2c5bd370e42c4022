//! A node's verified mirror of the registry: the only registry I/O a node does.
//!
//! The mirror syncs the log from a [`Source`], re-checks every operation with the same
//! [`crate::registry::rules`] the registry applies, checks the hash chain, and accepts the new entries only if
//! the RFC 6962 tree of the log it holds extended by them has exactly the root of a checkpoint
//! signed by the registry key in the node's config (so the new checkpoint is consistent with
//! every one before it), and, when witnesses are configured, cosigned by a quorum of them. A
//! sync is one SQLite transaction: either the mirror moves to a signed checkpoint or it stays
//! where it was. A checkpoint that contradicts entries already verified (a fork), a log that
//! does not match its checkpoint (a forged entry), or a witness's checkpoint that contradicts
//! ours (a split view) is refused, recorded as evidence, and reported as degraded on
//! `/healthz`; the verified state keeps serving look-ups.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::LocalConn;
use ed25519_dalek::VerifyingKey;

use super::replay::{replay, ReplayError};
use super::resolver::DbKeys;
use super::source::{Source, MAX_LOG_PAGE};
use crate::clock::Clock;
use crate::name::Name;
use crate::registry::map;
use crate::registry::note::SignedCheckpoint;
use crate::registry::rules::Params;
use crate::registry::{NameRecord, RegistryError};
use crate::store::{self, Local, StoreError};

/// Changed names a sync tracks one by one (to forget their cached keys, and to refresh the
/// map over their paths); a sync of more entries forgets every cached name and recomputes the
/// map from its leaves, so a first sync of ten million names holds no set of them.
const MAX_TRACKED: u64 = 100_000;

/// What `/healthz` and `/metrics` report about the mirror.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MirrorStatus {
    /// Verified log size.
    pub size: u64,
    /// Size of the latest signed checkpoint seen.
    pub registry_size: u64,
    /// Unix time of the last successful sync.
    pub last_sync: Option<u64>,
    /// The last sync error (cleared by a successful sync).
    pub last_error: Option<String>,
    /// Evidence of registry misbehaviour; once set, stays set.
    pub degraded: Option<String>,
    /// What proves it: for a split view, the two registry-signed checkpoints that cannot both
    /// be true (signed notes, as received).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// How many of the configured witnesses cosigned the checkpoint the mirror holds.
    pub cosigned_by: usize,
}

pub use crate::registry::witness::WitnessPolicy;

/// The mirror.
pub struct Mirror {
    db: Local,
    registry_key: VerifyingKey,
    source: Source,
    clock: Clock,
    params: Params,
    keys: Arc<DbKeys>,
    policy: WitnessPolicy,
    status: Mutex<MirrorStatus>,
    /// Bumped whenever verified state changes, so caches of verification results can tell
    /// they are stale (a key marked compromised must take effect on the next request).
    epoch: AtomicU64,
    /// The last checkpoint note verified, for the read-only registry API.
    notes: super::VerifiedNote,
    /// Held while syncing; holds when the last sync started.
    sync_lock: tokio::sync::Mutex<Option<Instant>>,
}

impl Mirror {
    pub fn new(
        db: Local,
        registry_key: VerifyingKey,
        source: Source,
        clock: Clock,
    ) -> Result<Mirror, StoreError> {
        let (size, fault) = {
            let conn = db.lock();
            let size = store::registry::log_size(&conn)?;
            let fault = store::registry::latest_fault(&conn)?;
            (size, fault)
        };
        let (degraded, evidence) = match fault {
            Some((_, reason, evidence)) => (Some(reason), Some(evidence_text(&evidence))),
            None => (None, None),
        };
        Ok(Mirror {
            keys: Arc::new(DbKeys::new(db.clone())),
            db,
            registry_key,
            source,
            clock,
            params: Params::default(),
            policy: WitnessPolicy::default(),
            status: Mutex::new(MirrorStatus {
                size,
                degraded,
                evidence,
                ..MirrorStatus::default()
            }),
            sync_lock: tokio::sync::Mutex::new(None),
            notes: super::VerifiedNote::default(),
            epoch: AtomicU64::new(0),
        })
    }

    /// Requires checkpoints cosigned by `policy.quorum` of `policy.witnesses`.
    pub fn with_witnesses(mut self, policy: WitnessPolicy) -> Mirror {
        self.policy = policy;
        self
    }

    /// The key resolver backed by this mirror.
    pub fn keys(&self) -> &Arc<DbKeys> {
        &self.keys
    }

    pub fn db(&self) -> &Local {
        &self.db
    }

    /// A checkpoint note of the mirrored registry, verified (once per distinct note).
    pub fn verify_note(&self, note: &[u8]) -> Result<SignedCheckpoint, RegistryError> {
        self.notes.verify(note, &self.registry_key)
    }

    pub fn registry_key(&self) -> VerifyingKey {
        self.registry_key
    }

    /// Changes whenever the verified registry state changes.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn status(&self) -> MirrorStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A verified record.
    pub async fn record(&self, name: &Name) -> Result<Option<NameRecord>, RegistryError> {
        let name = name.clone();
        self.db
            .read(move |c| store::registry::record(c, &name).map_err(RegistryError::from))
            .await
    }

    /// A record, syncing first if the name is not known yet.
    pub async fn record_or_sync(
        self: &Arc<Self>,
        name: &Name,
    ) -> Result<Option<NameRecord>, RegistryError> {
        if let Some(r) = self.record(name).await? {
            return Ok(Some(r));
        }
        self.sync_for_unknown().await?;
        self.record(name).await
    }

    /// Makes sure `name` is known if the registry knows it: syncs when it is not known
    /// locally. Returns whether it is known afterwards.
    pub async fn ensure_known(self: &Arc<Self>, name: &Name) -> Result<bool, RegistryError> {
        if self.keys.load(name).await {
            return Ok(true);
        }
        self.sync_for_unknown().await?;
        Ok(self.keys.load(name).await)
    }

    /// A sync on behalf of an unknown name, coalesced: a caller that queued behind a sync
    /// which *started* after the caller asked shares that sync's result instead of starting
    /// another, so a burst of look-ups costs at most one sync in flight and one queued.
    async fn sync_for_unknown(self: &Arc<Self>) -> Result<(), RegistryError> {
        let asked = Instant::now();
        let last_started = self.sync_lock.lock().await;
        if last_started.is_some_and(|at| at >= asked) {
            return Ok(());
        }
        self.sync_holding(last_started).await.map(|_| ())
    }

    /// Brings the mirror up to the registry's latest signed checkpoint. Returns the number of
    /// entries applied.
    pub async fn sync(self: &Arc<Self>) -> Result<u64, RegistryError> {
        let guard = self.sync_lock.lock().await;
        self.sync_holding(guard).await
    }

    async fn sync_holding(
        self: &Arc<Self>,
        mut last_started: tokio::sync::MutexGuard<'_, Option<Instant>>,
    ) -> Result<u64, RegistryError> {
        *last_started = Some(Instant::now());
        let result = self.sync_locked().await;
        drop(last_started);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
                status.last_sync = Some(self.clock.now());
                status.last_error = None;
            }
            Err(e) => status.last_error = Some(e.to_string()),
        }
        result
    }

    async fn sync_locked(self: &Arc<Self>) -> Result<u64, RegistryError> {
        let note = self.source.checkpoint().await?;
        let signed = match SignedCheckpoint::verify(&note, &self.registry_key) {
            Ok(cp) => cp,
            Err(e @ RegistryError::Untrusted(_)) => {
                self.fault("checkpoint signature does not verify", &note)
                    .await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let cosigned = signed.cosigned_by(&self.policy.witnesses).len();
        if cosigned < self.policy.quorum {
            return Err(RegistryError::Untrusted(format!(
                "the registry's checkpoint of size {} is cosigned by {cosigned} of the {} witnesses required",
                signed.checkpoint.size, self.policy.quorum
            )));
        }
        self.set_registry_size(signed.checkpoint.size);
        let this = self.clone();
        let handle = tokio::runtime::Handle::current();
        let (outcome, size) = tokio::task::spawn_blocking(move || {
            let mut conn = this.db.lock();
            let outcome = this.apply_up_to(&mut conn, &signed, &handle);
            (outcome, store::registry::log_size(&conn))
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        let applied = match outcome {
            Ok((applied, touched)) => {
                match &touched {
                    Some(names) => self.keys.invalidate(names.iter()),
                    None => self.keys.forget_all(),
                }
                if applied > 0 {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
                let size = size?;
                {
                    let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.size = size;
                    status.cosigned_by = cosigned;
                }
                if applied > 0 {
                    tracing::info!(applied, size, "registry mirror synced");
                }
                applied
            }
            Err(Refusal::Fault(reason, evidence)) => {
                self.fault(&reason, &evidence).await?;
                return Err(RegistryError::Untrusted(reason));
            }
            Err(Refusal::Error(e)) => return Err(e),
        };
        self.compare_with_witnesses().await?;
        Ok(applied)
    }

    /// Asks each witness with a URL for the latest checkpoint it cosigned and compares it with
    /// the verified log: a registry-signed checkpoint that our log contradicts is proof that the
    /// registry shows different trees to different parties.
    async fn compare_with_witnesses(self: &Arc<Self>) -> Result<(), RegistryError> {
        for url in &self.policy.urls {
            let Some(theirs) = super::source::witness_latest(&self.source.client(), url).await
            else {
                continue;
            };
            let Ok(theirs) = SignedCheckpoint::verify(&theirs, &self.registry_key) else {
                continue;
            };
            let size = theirs.checkpoint.size;
            let root = theirs.checkpoint.root;
            let contradicted = self
                .db
                .run(move |conn| {
                    Ok::<_, RegistryError>(
                        if size > store::registry::log_size(conn)?
                            || store::registry::tree_root(conn, size)? == root
                        {
                            None
                        } else {
                            Some(store::registry::checkpoint(conn)?.unwrap_or_default())
                        },
                    )
                })
                .await?;
            if let Some(mut evidence) = contradicted {
                // Two signed notes, ours first, separated by a line `---` (no note has one).
                evidence.extend_from_slice(b"---\n");
                evidence.extend_from_slice(&theirs.note);
                let reason = format!(
                    "split view: the witness at {url} holds a registry-signed checkpoint of size {size} that contradicts the verified log"
                );
                self.fault(&reason, &evidence).await?;
                return Err(RegistryError::Untrusted(reason));
            }
        }
        Ok(())
    }

    fn set_registry_size(&self, size: u64) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry_size = size;
    }

    async fn fault(&self, reason: &str, evidence: &[u8]) -> Result<(), RegistryError> {
        tracing::error!(
            reason,
            "registry misbehaved; the mirror keeps its verified state"
        );
        let (now, r, e) = (self.clock.now(), reason.to_owned(), evidence.to_vec());
        self.db
            .run(move |c| {
                store::registry::record_fault(c, now, &r, &e).map_err(RegistryError::from)
            })
            .await?;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.degraded = Some(reason.to_owned());
        status.evidence = Some(evidence_text(evidence));
        Ok(())
    }

    /// The blocking part of a sync: one transaction from the local head to `checkpoint`.
    fn apply_up_to(
        &self,
        conn: &mut LocalConn,
        signed: &SignedCheckpoint,
        handle: &tokio::runtime::Handle,
    ) -> Result<(u64, Option<HashSet<Name>>), Refusal> {
        let checkpoint = &signed.checkpoint;
        let envelope = &signed.note;
        let local = store::registry::log_size(conn)?;
        if checkpoint.size <= local {
            // Nothing new; but the checkpoint must agree with what we verified.
            if store::registry::tree_root(conn, checkpoint.size)? != checkpoint.root {
                return Err(Refusal::Fault(
                    format!(
                        "fork: the registry's signed checkpoint at size {} contradicts the verified log",
                        checkpoint.size
                    ),
                    envelope.to_vec(),
                ));
            }
            return Ok((0, Some(HashSet::new())));
        }
        let tx = conn.transaction().map_err(StoreError::from)?;
        let mut prev = store::registry::head_hash(&tx)?;
        let mut seq = local;
        // The names changed, or `None` once there are more than are worth tracking (a first
        // sync of a big registry): then every cached name is forgotten.
        let mut touched = (checkpoint.size - local <= MAX_TRACKED).then(HashSet::new);
        while seq < checkpoint.size {
            let want = (checkpoint.size - seq).min(MAX_LOG_PAGE);
            let page = handle
                .block_on(self.source.entries(seq, want))
                .map_err(Refusal::Error)?;
            if page.is_empty() || page.len() as u64 > want {
                return Err(Refusal::Fault(
                    format!("the registry log does not match its checkpoint near entry {seq}"),
                    envelope.to_vec(),
                ));
            }
            let done = replay(&tx, seq, prev, page, self.params, true).map_err(|e| match e {
                ReplayError::Forged(reason, evidence) => Refusal::Fault(reason, evidence),
                ReplayError::Store(e) => Refusal::from(e),
            })?;
            prev = done.head;
            seq = done.next_seq;
            if let Some(t) = touched.as_mut() {
                t.extend(done.touched);
            }
        }
        if store::registry::tree_root(&tx, checkpoint.size)? != checkpoint.root {
            return Err(Refusal::Fault(
                "the registry log does not end at its signed checkpoint".into(),
                envelope.to_vec(),
            ));
        }
        // The name map light clients trust must be the map of this log: bring its stored
        // subtrees up to date over the names this sync changed (or, for a sync of more names
        // than are worth tracking one by one, recompute them all from the leaves).
        let map_root = match &touched {
            Some(names) => store::name_map::refresh(
                &tx,
                names.iter().map(|n| map::key_of(n.as_str())).collect(),
            )?,
            None => store::name_map::rebuild(&tx)?,
        };
        if map_root != checkpoint.map_root {
            return Err(Refusal::Fault(
                "the checkpoint's name map does not match its log".into(),
                envelope.to_vec(),
            ));
        }
        store::registry::put_checkpoint(&tx, checkpoint.size, envelope)?;
        tx.commit().map_err(StoreError::from)?;
        Ok((checkpoint.size - local, touched))
    }

    /// Syncs every `every` until `stop` resolves. Errors are logged and reported in status.
    pub async fn run_background(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "registry sync failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

enum Refusal {
    /// The registry misbehaved: record the evidence.
    Fault(String, Vec<u8>),
    /// Something else went wrong (network, storage): try again later.
    Error(RegistryError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal::Error(e.into())
    }
}

/// Evidence as `/healthz` shows it: text as it is (signed notes), anything else base64url.
fn evidence_text(evidence: &[u8]) -> String {
    match std::str::from_utf8(evidence) {
        Ok(t) => t.to_owned(),
        Err(_) => {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(evidence)
        }
    }
}
