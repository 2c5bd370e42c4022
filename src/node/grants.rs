//! Changing grants durably: the grant, its audit entry and its grant-updated notification are
//! written in one SQLite transaction (WAL, `synchronous = FULL`), so when the caller is told
//! "done" all three are on disk, and a crash can leave none of them half-written.
//!
//! Group commit: changes go to one writer thread, which takes every change waiting in its queue
//! (up to [`MAX_GROUP`]) and writes them in a single transaction, each inside its own savepoint
//! so one failing change does not undo the others. One fsync then covers the whole group, and
//! nobody is answered before the commit that holds their change returned: durability is the
//! same as one transaction per change, throughput is not.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::NodeState;
use crate::grant::statement::Notification;
use crate::name::Name;
use crate::scope::Scope;
use crate::store::{self, grants::AuditEntry, grants::Grant, Conn, StoreError};

/// A change to one grant.
#[derive(Debug, Clone)]
pub struct Change {
    pub owner: Name,
    pub app: Name,
    /// The new scope (empty revokes the grant).
    pub scope: Scope,
    pub expires: Option<u64>,
    /// Who made the change: `owner`, `owner-carte`, `controller:NAME`.
    pub actor: String,
    /// What kind of change: `consent`, `update`, `revoke`.
    pub action: &'static str,
    /// The client address it came from.
    pub address: Option<String>,
}

/// The grant before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub before: Option<Grant>,
    pub after: Option<Grant>,
    /// The announcement to the other processes (PostgreSQL), for the barrier.
    pub version: Option<i64>,
}

/// Most changes committed in one transaction.
pub const MAX_GROUP: usize = 256;

struct Job {
    change: Change,
    node_uri: Option<String>,
    notification: Vec<u8>,
    now: u64,
    reply: oneshot::Sender<Result<Outcome, String>>,
}

/// The handle to the writer thread.
pub struct GrantWriter {
    queue: mpsc::Sender<Job>,
}

impl GrantWriter {
    /// Starts the writer thread on `db`. It stops when the last handle is dropped.
    pub fn start(db: crate::store::Db) -> std::io::Result<GrantWriter> {
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("grant-writer".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    write_group(&db, group);
                }
            })?;
        Ok(GrantWriter { queue })
    }
}

fn write_group(db: &crate::store::Db, group: Vec<Job>) {
    let outcome = (|| -> Result<Vec<Result<Outcome, String>>, StoreError> {
        let conn = db.lock()?;
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(group.len());
        for job in &group {
            let sp = tx.savepoint()?;
            match write(
                &sp,
                &job.change,
                job.node_uri.as_deref(),
                &job.notification,
                job.now,
            ) {
                Ok(o) => {
                    sp.commit()?;
                    results.push(Ok(o));
                }
                Err(e) => {
                    drop(sp);
                    results.push(Err(e.to_string()));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            for (job, result) in group.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            // The whole group failed (the database out of reach, or the commit refused):
            // nothing of it committed, and each caller hears why.
            let unavailable = matches!(e, StoreError::Unavailable(_));
            let message = e.to_string();
            for job in group {
                let _ = job.reply.send(Err(if unavailable {
                    format!("{UNAVAILABLE}{message}")
                } else {
                    message.clone()
                }));
            }
        }
    }
}

/// Applies `change`: grant, audit, notification in one transaction; then invalidates the
/// grant cache and wakes the outbox. `node_uri` is the application's registered node URI.
pub async fn apply(
    state: &NodeState,
    change: Change,
    node_uri: Option<String>,
) -> anyhow::Result<Outcome> {
    let key = state.owner_keys.signing(&change.owner)?;
    let now = state.config.clock.now();
    let notification = Notification {
        owner: change.owner.clone(),
        application: change.app.clone(),
        scope: change.scope,
        expires: change.expires,
        time: now,
    }
    .sign(&key);
    let (reply, answer) = oneshot::channel();
    state
        .writer
        .queue
        .send(Job {
            change: change.clone(),
            node_uri,
            notification,
            now,
            reply,
        })
        .map_err(|_| anyhow::anyhow!("the grant writer has stopped"))?;
    let outcome = answer
        .await
        .map_err(|_| anyhow::anyhow!("the grant writer dropped a change"))?
        .map_err(|m| match m.strip_prefix(UNAVAILABLE) {
            Some(detail) => anyhow::Error::new(StoreError::Unavailable(detail.to_owned())),
            None => anyhow::Error::msg(m),
        })?;
    state.grants.invalidate(&change.owner, &change.app);
    if let (Some(c), Some(v)) = (&state.coherence, outcome.version) {
        // Acknowledged only once every process enforces it.
        c.barrier(v).await?;
    }
    state.metrics.grant_changed();
    state.outbox_wake.notify_one();
    Ok(outcome)
}

/// Marks a group failure that was the database out of reach (see `apply`).
const UNAVAILABLE: &str = "unavailable: ";

fn write(
    tx: &Conn,
    c: &Change,
    node_uri: Option<&str>,
    notification: &[u8],
    now: u64,
) -> Result<Outcome, StoreError> {
    let before = store::grants::grant(tx, &c.owner, &c.app)?;
    store::grants::put_grant(tx, &c.owner, &c.app, c.scope, c.expires, now)?;
    store::grants::insert_audit(
        tx,
        &c.owner,
        &AuditEntry {
            app: c.app.to_string(),
            actor: c.actor.clone(),
            action: c.action.to_owned(),
            old_scope: before.map(|g| g.scope.bits()).unwrap_or(0),
            new_scope: c.scope.bits(),
            expires: c.expires,
            address: c.address.clone(),
            at: now,
        },
    )?;
    if let Some(uri) = node_uri {
        store::grants::enqueue(tx, uri, notification, now)?;
    }
    let after = store::grants::grant(tx, &c.owner, &c.app)?;
    let version = match tx.is_postgres() {
        true => Some(super::coherence::announce(
            tx,
            &super::coherence::Change::Grant(c.owner.to_string(), c.app.to_string()),
        )?),
        false => None,
    };
    Ok(Outcome {
        before,
        after,
        version,
    })
}
