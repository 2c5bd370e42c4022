//! Changing grants durably: the grant, its audit entry and its grant-updated notification are
//! written in one database transaction (on SQLite: WAL, `synchronous = FULL`), so when the
//! caller is told "done" all three are on disk, and a crash can leave none of them
//! half-written.
//!
//! A change is an [`Edit`] (add these scopes, remove those, set this, revoke), never a scope
//! computed by the caller from what it read earlier: the writer reads the grant, computes the
//! new one and writes it in the same transaction, so two changes that arrive together both
//! take effect, as if one ran after the other. On PostgreSQL, where several processes write,
//! each grant's row is guarded by a transaction-scoped advisory lock taken before it is read
//! (READ COMMITTED then reads the latest committed row), and a group takes its locks in one
//! sorted order so two processes' groups cannot deadlock.
//!
//! Group commit: changes go to one writer thread, which takes every change waiting in its queue
//! (up to [`MAX_GROUP`]) and writes them in a single transaction as one set of statements
//! (see [`write_all`]): each grant read once, the changes computed in arrival order, then the
//! grants, the audit entries and the notifications written in a few multi-row statements.
//! A change refused by the rules writes nothing and does not undo the others. One fsync then
//! covers the whole group, and nobody is answered before the commit that holds their change
//! returned: durability is the same as one transaction per change, throughput is not; and on
//! PostgreSQL a group costs a handful of round trips, not a dozen per change.

use std::collections::HashMap;
use std::sync::mpsc;

use ed25519_dalek::SigningKey;
use tokio::sync::oneshot;

use super::NodeState;
use crate::grant::statement::Notification;
use crate::name::Name;
use crate::scope::Scope;
use crate::store::{self, grants::AuditEntry, grants::Grant, Conn, StoreError};

/// What a change does to the grant the writer finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Replace the scope.
    Set { scope: Scope, expires: Expiry },
    /// Add and remove scopes from the scope in force now (an expired grant holds nothing).
    Delta {
        add: Scope,
        remove: Scope,
        expires: Expiry,
    },
    /// The owner approved a request: the chosen scopes join what is held, with no expiry.
    Consent { add: Scope },
    /// Revoke; with `must_exist`, a missing grant is [`ChangeError::NoGrant`].
    Revoke { must_exist: bool },
}

/// What a change does to the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Keep the expiry in force (a past one is dropped with the scope it ended).
    Keep,
    /// Unix seconds, or `None` for never.
    Set(Option<u64>),
}

/// A change to one grant.
#[derive(Debug, Clone)]
pub struct Change {
    pub owner: Name,
    pub app: Name,
    pub edit: Edit,
    /// Who made the change: `owner`, `owner-carte`, `controller:NAME`.
    pub actor: String,
    /// The client address it came from.
    pub address: Option<String>,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// A revoke that must find a grant found none.
    #[error("this application holds no grant")]
    NoGrant,
    /// The owner is no longer hosted here (it moved to another node as the change came in).
    #[error("{0} is not hosted here")]
    NoOwner(Name),
}

/// The grant before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub before: Option<Grant>,
    pub after: Option<Grant>,
    /// The announcement to the other processes (PostgreSQL), for the barrier.
    pub version: Option<i64>,
}

impl Outcome {
    /// The scope in force right after the change.
    pub fn scope(&self) -> Scope {
        self.after.map(|g| g.scope).unwrap_or(Scope::NONE)
    }
}

/// Most changes committed in one transaction.
pub const MAX_GROUP: usize = 256;

struct Job {
    change: Change,
    node_uri: Option<String>,
    key: SigningKey,
    now: u64,
    reply: oneshot::Sender<Result<Outcome, Failure>>,
}

/// How a job failed, sent back from the writer thread.
enum Failure {
    NoGrant,
    NoOwner,
    /// The database failed (the error as it was raised, whichever thread raised it).
    Store(StoreError),
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
    let outcome = (|| -> Result<Vec<Result<Outcome, Failure>>, StoreError> {
        let conn = db.lock()?;
        let tx = conn.transaction()?;
        // Every grant this group touches, locked up front in one order (see the module
        // comment): another process's change to the same grant waits for our commit.
        let grants: Vec<(&Name, &Name)> = group
            .iter()
            .map(|j| (&j.change.owner, &j.change.app))
            .collect();
        store::grants::lock_grants(&tx, &grants)?;
        let results = write_all(&tx, &group)?;
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
            for job in group {
                let _ = job.reply.send(Err(Failure::Store(e.clone())));
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
    let key = state.signing_key(&change.owner).await?;
    let now = state.config.clock.now();
    let (owner, app) = (change.owner.clone(), change.app.clone());
    let (reply, answer) = oneshot::channel();
    state
        .writer
        .queue
        .send(Job {
            change,
            node_uri,
            key,
            now,
            reply,
        })
        .map_err(|_| anyhow::anyhow!("the grant writer has stopped"))?;
    let outcome = answer
        .await
        .map_err(|_| anyhow::anyhow!("the grant writer dropped a change"))?
        .map_err(|f| match f {
            Failure::NoGrant => anyhow::Error::new(ChangeError::NoGrant),
            Failure::NoOwner => anyhow::Error::new(ChangeError::NoOwner(owner.clone())),
            Failure::Store(e) => anyhow::Error::new(e),
        })?;
    state.grants.invalidate(&owner, &app);
    if let (Some(c), Some(v)) = (&state.coherence, outcome.version) {
        // Acknowledged only once every process enforces it.
        c.barrier(v).await?;
    }
    state.metrics.grant_changed();
    state.outbox_wake.notify_one();
    Ok(outcome)
}

/// Applies `edit` to `owner`'s grant for `app`, made by `actor` (`owner`, or a controller's
/// label) from `address`, notifying the application at its registered node URI: the one
/// operation behind the grant API and the owner's console.
pub async fn change(
    state: &NodeState,
    owner: &Name,
    app: &Name,
    edit: Edit,
    actor: &str,
    address: Option<String>,
) -> anyhow::Result<Outcome> {
    let node_uri = state
        .mirror
        .record(app)
        .await
        .ok()
        .flatten()
        .map(|r| r.node_uri);
    apply(
        state,
        Change {
            owner: owner.clone(),
            app: app.clone(),
            edit,
            actor: actor.to_owned(),
            address,
        },
        node_uri,
    )
    .await
}

/// The scope, expiry and audit action `edit` makes of `before` at `now`. Pure, and called
/// only inside the writer's transaction, on the row it just read.
fn compute(
    edit: Edit,
    before: Option<&Grant>,
    now: u64,
) -> Result<(Scope, Option<u64>, &'static str), Failure> {
    let held = before.map(|g| g.effective(now)).unwrap_or(Scope::NONE);
    let kept = || before.and_then(|g| g.expires).filter(|e| *e > now);
    let expiry = |e: Expiry| match e {
        Expiry::Keep => kept(),
        Expiry::Set(e) => e,
    };
    let (scope, expires, action) = match edit {
        Edit::Set { scope, expires } => (scope, expiry(expires), "update"),
        Edit::Delta {
            add,
            remove,
            expires,
        } => (
            held.union(add).difference(remove),
            expiry(expires),
            "update",
        ),
        Edit::Consent { add } => return Ok((held.union(add), None, "consent")),
        Edit::Revoke { must_exist } => {
            if must_exist && before.is_none() {
                return Err(Failure::NoGrant);
            }
            return Ok((Scope::NONE, None, "revoke"));
        }
    };
    let action = if scope.is_empty() { "revoke" } else { action };
    Ok((scope, expires, action))
}

/// The group's changes, as one set of statements: each grant it touches is read once (with
/// its owner's presence), every change is computed in arrival order on the state the changes
/// before it left (so two changes to one grant in one group compose exactly as if they ran
/// one after the other), and then each grant's final state, every audit entry and every
/// notification are written, and each grant's change announced once. A change refused here
/// (no owner, no grant) writes nothing; a database error fails the whole group, before
/// anyone is told anything.
fn write_all(tx: &Conn, group: &[Job]) -> Result<Vec<Result<Outcome, Failure>>, StoreError> {
    type Key = (Name, Name);
    // `None`: the owner is not hosted here; else the grant as the changes so far left it.
    let mut state: HashMap<Key, Option<Option<Grant>>> = HashMap::new();
    let mut touched: Vec<Key> = Vec::new();
    let mut results = Vec::with_capacity(group.len());
    let mut audits = Vec::new();
    let mut notifications = Vec::new();
    for job in group {
        let c = &job.change;
        let key = (c.owner.clone(), c.app.clone());
        if !state.contains_key(&key) {
            // The owner must still be here, and stay so until the commit: an owner moving
            // away takes its rows as of one instant, and no change may be acknowledged after.
            let read = store::grants::grant_for_change(tx, &c.owner, &c.app)?;
            state.insert(key.clone(), read);
        }
        let Some(before) = state[&key] else {
            results.push(Err(Failure::NoOwner));
            continue;
        };
        let now = job.now;
        let (scope, expires, action) = match compute(c.edit, before.as_ref(), now) {
            Ok(v) => v,
            Err(f) => {
                results.push(Err(f));
                continue;
            }
        };
        let after = (!scope.is_empty()).then(|| Grant {
            scope,
            expires,
            created: before.map_or(now, |g| g.created),
            updated: now,
        });
        audits.push((
            &c.owner,
            AuditEntry {
                app: c.app.to_string(),
                actor: c.actor.clone(),
                action: action.to_owned(),
                old_scope: before.map(|g| g.scope.bits()).unwrap_or(0),
                new_scope: scope.bits(),
                expires,
                address: c.address.clone(),
                at: now,
            },
        ));
        if let Some(uri) = &job.node_uri {
            // Signed here, from the scope this transaction computed: the notification always
            // says what was written.
            let notification = Notification {
                owner: c.owner.clone(),
                application: c.app.clone(),
                scope,
                expires,
                time: now,
            }
            .sign(&job.key);
            notifications.push((uri.as_str(), notification, now));
        }
        if !touched.contains(&key) {
            touched.push(key.clone());
        }
        state.insert(key, Some(after));
        results.push(Ok(Outcome {
            before,
            after,
            version: None,
        }));
    }
    let mut versions = HashMap::new();
    for key in &touched {
        let after = state[key].flatten();
        store::grants::put_grant_at(tx, &key.0, &key.1, after.as_ref())?;
    }
    store::grants::insert_audits(tx, &audits)?;
    store::grants::enqueue_many(tx, &notifications)?;
    for key in &touched {
        let change = super::coherence::Change::Grant(key.0.to_string(), key.1.to_string());
        versions.insert(key.clone(), super::coherence::announce(tx, &change)?);
    }
    for (job, result) in group.iter().zip(results.iter_mut()) {
        if let Ok(outcome) = result {
            let key = (job.change.owner.clone(), job.change.app.clone());
            outcome.version = versions.get(&key).copied().flatten();
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(bits: u64, expires: Option<u64>) -> Grant {
        Grant {
            scope: Scope::from_bits(bits),
            expires,
            created: 1,
            updated: 1,
        }
    }

    #[test]
    fn a_delta_applies_to_what_is_held_and_an_expired_grant_holds_nothing() {
        let edit = Edit::Delta {
            add: Scope::from_bits(0b100),
            remove: Scope::from_bits(0b001),
            expires: Expiry::Keep,
        };
        let (s, e, a) = compute(edit, Some(&grant(0b011, Some(50))), 10)
            .ok()
            .unwrap();
        assert_eq!((s.bits(), e, a), (0b110, Some(50), "update"));
        let (s, e, _) = compute(edit, Some(&grant(0b011, Some(5))), 10)
            .ok()
            .unwrap();
        assert_eq!((s.bits(), e), (0b100, None));
    }

    #[test]
    fn removing_everything_is_a_revoke_and_a_missing_grant_can_be_required() {
        let edit = Edit::Delta {
            add: Scope::NONE,
            remove: Scope::from_bits(0b1),
            expires: Expiry::Set(Some(99)),
        };
        let (s, _, a) = compute(edit, Some(&grant(0b1, None)), 10).ok().unwrap();
        assert_eq!((s.bits(), a), (0, "revoke"));
        assert!(matches!(
            compute(Edit::Revoke { must_exist: true }, None, 10),
            Err(Failure::NoGrant)
        ));
        assert!(compute(Edit::Revoke { must_exist: false }, None, 10).is_ok());
    }
}
