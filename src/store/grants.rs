//! Grant tables: the grants themselves, their audit log, the outbox of grant-updated
//! notifications, grant cartes already used, and consent requests awaiting an answer.
//!
//! A grant change, its audit entry and its outbox entry are written by the caller in one
//! transaction, so a notification is never lost and never sent for a change that did not
//! commit.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::name::Name;
use crate::scope::Scope;

/// A stored grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    /// Unix seconds after which the grant no longer counts.
    pub expires: Option<u64>,
    pub created: u64,
    pub updated: u64,
}

impl Grant {
    /// The scope in force at `now`: nothing once expired.
    pub fn effective(&self, now: u64) -> Scope {
        match self.expires {
            Some(e) if e <= now => Scope::NONE,
            _ => self.scope,
        }
    }
}

fn name(s: String) -> Result<Name, StoreError> {
    Name::parse_canonical(&s).map_err(|_| StoreError::Corrupt("a stored name is not canonical"))
}

pub fn grant(conn: &Connection, owner: &Name, app: &Name) -> Result<Option<Grant>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT scope, expires, created, updated FROM grants WHERE owner = ?1 AND app = ?2",
        )?
        .query_row([owner.as_str(), app.as_str()], |r| {
            Ok(Grant {
                scope: Scope::from_bits(r.get::<_, i64>(0)? as u64),
                expires: r.get::<_, Option<i64>>(1)?.map(|e| e as u64),
                created: r.get::<_, i64>(2)? as u64,
                updated: r.get::<_, i64>(3)? as u64,
            })
        })
        .optional()?)
}

/// Every grant of `owner`, by application name.
pub fn grants(conn: &Connection, owner: &Name) -> Result<Vec<(Name, Grant)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, scope, expires, created, updated FROM grants WHERE owner = ?1 ORDER BY app",
    )?;
    let rows = stmt.query_map([owner.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Grant {
                scope: Scope::from_bits(r.get::<_, i64>(1)? as u64),
                expires: r.get::<_, Option<i64>>(2)?.map(|e| e as u64),
                created: r.get::<_, i64>(3)? as u64,
                updated: r.get::<_, i64>(4)? as u64,
            },
        ))
    })?;
    rows.map(|r| {
        let (app, g) = r?;
        Ok((name(app)?, g))
    })
    .collect()
}

/// Writes a grant; an empty scope deletes it.
pub fn put_grant(
    conn: &Connection,
    owner: &Name,
    app: &Name,
    scope: Scope,
    expires: Option<u64>,
    now: u64,
) -> Result<(), StoreError> {
    if scope.is_empty() {
        conn.execute(
            "DELETE FROM grants WHERE owner = ?1 AND app = ?2",
            [owner.as_str(), app.as_str()],
        )?;
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO grants (owner, app, scope, expires, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (owner, app) DO UPDATE SET
             scope = excluded.scope, expires = excluded.expires, updated = excluded.updated",
    )?
    .execute(params![
        owner.as_str(),
        app.as_str(),
        scope.bits() as i64,
        expires.map(|e| e as i64),
        now as i64
    ])?;
    Ok(())
}

/// One audit-log entry: who changed what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub app: String,
    pub actor: String,
    pub action: String,
    pub old_scope: u64,
    pub new_scope: u64,
    pub expires: Option<u64>,
    pub address: Option<String>,
    pub at: u64,
}

pub fn insert_audit(conn: &Connection, owner: &Name, e: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit (owner, app, actor, action, old_scope, new_scope, expires, address, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        owner.as_str(),
        e.app,
        e.actor,
        e.action,
        e.old_scope as i64,
        e.new_scope as i64,
        e.expires.map(|x| x as i64),
        e.address,
        e.at as i64
    ])?;
    Ok(())
}

/// The audit log of `owner`, for one application or all, oldest first.
pub fn audit(
    conn: &Connection,
    owner: &Name,
    app: Option<&Name>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, actor, action, old_scope, new_scope, expires, address, at FROM audit
         WHERE owner = ?1 AND (?2 IS NULL OR app = ?2) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![owner.as_str(), app.map(Name::as_str)], |r| {
        Ok(AuditEntry {
            app: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            old_scope: r.get::<_, i64>(3)? as u64,
            new_scope: r.get::<_, i64>(4)? as u64,
            expires: r.get::<_, Option<i64>>(5)?.map(|x| x as u64),
            address: r.get(6)?,
            at: r.get::<_, i64>(7)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A notification waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub target: String,
    pub body: Vec<u8>,
    pub attempts: u32,
    pub created: u64,
}

pub fn enqueue(conn: &Connection, target: &str, body: &[u8], now: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbox (target, body, next_attempt, created) VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![target, body, now as i64])?;
    Ok(())
}

/// Entries due at `now`, oldest first.
pub fn due(conn: &Connection, now: u64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, target, body, attempts, created FROM outbox WHERE next_attempt <= ?1
         ORDER BY next_attempt, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now as i64, limit], |r| {
        Ok(OutboxEntry {
            id: r.get(0)?,
            target: r.get(1)?,
            body: r.get(2)?,
            attempts: r.get(3)?,
            created: r.get::<_, i64>(4)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delivered(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
    Ok(())
}

pub fn retry_later(
    conn: &Connection,
    id: i64,
    next_attempt: u64,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
        params![id, next_attempt as i64, error],
    )?;
    Ok(())
}

/// Removes every waiting notification for `target` (whose address the guard refused: they
/// would all be refused alike), returning their bodies for the history.
pub fn drop_target(conn: &Connection, target: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached("DELETE FROM outbox WHERE target = ?1 RETURNING body")?;
    let rows = stmt.query_map([target], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A waiting notification, as the console shows it.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub body: Vec<u8>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Every notification still waiting (the outbox is small: deliveries are retried for days at
/// most, and each owner's changes coalesce into few).
pub fn outbox_all(conn: &Connection) -> Result<Vec<Waiting>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT body, attempts, last_error FROM outbox ORDER BY id LIMIT 10000")?;
    let rows = stmt.query_map([], |r| {
        Ok(Waiting {
            body: r.get(0)?,
            attempts: r.get(1)?,
            last_error: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn outbox_len(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Records a grant carte as used. Returns `Err(pending_id)` if it was used already.
pub fn use_carte(
    conn: &Connection,
    fingerprint: &[u8; 32],
    forget_after: u64,
    pending_id: &[u8; 32],
) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
    let existing: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT pending_id FROM used_cartes WHERE fingerprint = ?1",
            [&fingerprint[..]],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(pending) = existing {
        return Ok(Err(pending));
    }
    conn.execute(
        "INSERT INTO used_cartes (fingerprint, deadline, pending_id) VALUES (?1, ?2, ?3)",
        params![&fingerprint[..], forget_after as i64, &pending_id[..]],
    )?;
    Ok(Ok(()))
}

/// A consent request shown to an owner and waiting for Allow or Deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: [u8; 32],
    pub session_hash: [u8; 32],
    pub owner: Name,
    pub app: Name,
    pub scope: Scope,
    pub redirect_uri: String,
    pub state: String,
    pub expires: u64,
}

pub fn insert_pending(conn: &Connection, p: &Pending) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO pending_grants (id, session_hash, owner, app, scope, redirect_uri, state, expires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            &p.id[..],
            &p.session_hash[..],
            p.owner.as_str(),
            p.app.as_str(),
            p.scope.bits() as i64,
            p.redirect_uri,
            p.state,
            p.expires as i64
        ],
    )?;
    Ok(())
}

/// A pending request by id (not consumed).
pub fn pending(conn: &Connection, id: &[u8]) -> Result<Option<Pending>, StoreError> {
    let row = conn
        .query_row(
            "SELECT id, session_hash, owner, app, scope, redirect_uri, state, expires
             FROM pending_grants WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((id, session, owner, app, scope, redirect_uri, state, expires)) = row else {
        return Ok(None);
    };
    let bad = |_| StoreError::Corrupt("a pending request id is not 32 bytes");
    Ok(Some(Pending {
        id: id.try_into().map_err(bad)?,
        session_hash: session.try_into().map_err(bad)?,
        owner: name(owner)?,
        app: name(app)?,
        scope: Scope::from_bits(scope as u64),
        redirect_uri,
        state,
        expires: expires as u64,
    }))
}

/// Consumes a pending request; `false` if it was already gone.
pub fn take_pending(conn: &Connection, id: &[u8; 32]) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM pending_grants WHERE id = ?1", [&id[..]])? == 1)
}
