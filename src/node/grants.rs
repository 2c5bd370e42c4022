//! Changing grants durably: the grant, its audit entry and its grant-updated notification are
//! written in one SQLite transaction (WAL, `synchronous = FULL`), so when the caller is told
//! "done" all three are on disk, and a crash can leave none of them half-written.

use rusqlite::Connection;

use super::NodeState;
use crate::grant::statement::Notification;
use crate::name::Name;
use crate::scope::Scope;
use crate::store::{self, grants::AuditEntry, grants::Grant, StoreError};

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
    let c = change.clone();
    let outcome = state
        .db
        .run(move |conn| write(conn, &c, node_uri.as_deref(), &notification, now))
        .await?;
    state.grants.invalidate(&change.owner, &change.app);
    state.metrics.grant_changed();
    state.outbox_wake.notify_one();
    Ok(outcome)
}

fn write(
    conn: &mut Connection,
    c: &Change,
    node_uri: Option<&str>,
    notification: &[u8],
    now: u64,
) -> Result<Outcome, StoreError> {
    let tx = conn.transaction()?;
    let before = store::grants::grant(&tx, &c.owner, &c.app)?;
    store::grants::put_grant(&tx, &c.owner, &c.app, c.scope, c.expires, now)?;
    store::grants::insert_audit(
        &tx,
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
        store::grants::enqueue(&tx, uri, notification, now)?;
    }
    let after = store::grants::grant(&tx, &c.owner, &c.app)?;
    tx.commit()?;
    Ok(Outcome { before, after })
}
