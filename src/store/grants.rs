//! Grant tables: the grants themselves, their audit log, the outbox of grant-updated
//! notifications, grant cartes already used, and consent requests awaiting an answer.
//!
//! A grant change, its audit entry and its outbox entry are written by the caller in one
//! transaction, so a notification is never lost and never sent for a change that did not
//! commit.

pub use super::audit::{audit, insert_audit, insert_audits, AuditEntry};
use super::audit::{multi_insert, ROWS_PER_INSERT};
use super::conn::ToValue;
use super::{Conn, Row, StoreError};
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

fn grant_row(r: &Row, at: usize) -> Result<Grant, StoreError> {
    Ok(Grant {
        scope: Scope::from_bits(r.get(at)?),
        expires: r.get(at + 1)?,
        created: r.get(at + 2)?,
        updated: r.get(at + 3)?,
    })
}

pub fn grant(conn: &Conn, owner: &Name, app: &Name) -> Result<Option<Grant>, StoreError> {
    conn.query_one(
        "SELECT scope, expires, created, updated FROM grants WHERE owner = ?1 AND app = ?2",
        &[&owner.as_str(), &app.as_str()],
        |r| grant_row(r, 0),
    )
}

/// For a change: `None` if `owner` is not hosted here, else its grant for `app` (if any), in
/// one statement. On PostgreSQL the owner's row is held `FOR SHARE` until the transaction
/// ends, so the owner cannot move away (see [`super::moves::take_owner`]) before the change
/// commits; SQLite's `BEGIN IMMEDIATE` already admits one writer at a time.
pub fn grant_for_change(
    conn: &Conn,
    owner: &Name,
    app: &Name,
) -> Result<Option<Option<Grant>>, StoreError> {
    let lock = if conn.is_postgres() {
        " FOR SHARE OF o"
    } else {
        ""
    };
    conn.query_one(
        &format!(
            "SELECT g.scope, g.expires, g.created, g.updated FROM owners o
             LEFT JOIN grants g ON g.owner = o.name AND g.app = ?2
             WHERE o.name = ?1{lock}"
        ),
        &[&owner.as_str(), &app.as_str()],
        |r| match r.get::<Option<i64>>(0)? {
            None => Ok(None),
            Some(_) => grant_row(r, 0).map(Some),
        },
    )
}

/// The advisory-lock key of one grant (PostgreSQL): 64 bits of a keyed hash of the pair,
/// so distinct grants rarely share a lock, and sharing one only serialises them.
pub fn lock_key(owner: &Name, app: &Name) -> i64 {
    let mut h = blake3::Hasher::new_derive_key("grant-node grant lock v1");
    h.update(owner.as_str().as_bytes());
    h.update(&[0]);
    h.update(app.as_str().as_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8]
        .try_into()
        .expect("a hash has 8 bytes");
    i64::from_be_bytes(bytes)
}

/// Takes the grant's lock until the transaction ends (PostgreSQL; SQLite's `BEGIN
/// IMMEDIATE` already admits one writer at a time, so there it does nothing).
pub fn lock_grant(conn: &Conn, key: i64) -> Result<(), StoreError> {
    if conn.is_postgres() {
        conn.execute("SELECT pg_advisory_xact_lock(?1)", &[&key])?;
    }
    Ok(())
}

/// Takes the locks of every (owner, application) grant in `grants`, in one sorted order, so
/// two processes' groups cannot deadlock (nothing on SQLite, see [`lock_grant`]).
pub fn lock_grants(conn: &Conn, grants: &[(&Name, &Name)]) -> Result<(), StoreError> {
    if !conn.is_postgres() {
        return Ok(());
    }
    let mut keys: Vec<i64> = grants.iter().map(|(o, a)| lock_key(o, a)).collect();
    keys.sort_unstable();
    keys.dedup();
    for k in keys {
        lock_grant(conn, k)?;
    }
    Ok(())
}

/// Every grant of `owner`, by application name.
pub fn grants(conn: &Conn, owner: &Name) -> Result<Vec<(Name, Grant)>, StoreError> {
    conn.query_all(
        "SELECT app, scope, expires, created, updated FROM grants WHERE owner = ?1 ORDER BY app",
        &[&owner.as_str()],
        |r| Ok((name(r.get(0)?)?, grant_row(r, 1)?)),
    )
}

/// Writes a grant; an empty scope deletes it.
pub fn put_grant(
    conn: &Conn,
    owner: &Name,
    app: &Name,
    scope: Scope,
    expires: Option<u64>,
    now: u64,
) -> Result<(), StoreError> {
    let grant = Grant {
        scope,
        expires,
        created: now,
        updated: now,
    };
    put_grant_at(conn, owner, app, Some(&grant))
}

/// Writes a grant whose creation time is known (a change that may have created it earlier in
/// the same transaction); an empty scope deletes it.
pub fn put_grant_at(
    conn: &Conn,
    owner: &Name,
    app: &Name,
    grant: Option<&Grant>,
) -> Result<(), StoreError> {
    let Some(g) = grant.filter(|g| !g.scope.is_empty()) else {
        conn.execute(
            "DELETE FROM grants WHERE owner = ?1 AND app = ?2",
            &[&owner.as_str(), &app.as_str()],
        )?;
        return Ok(());
    };
    conn.execute(
        "INSERT INTO grants (owner, app, scope, expires, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (owner, app) DO UPDATE SET
             scope = excluded.scope, expires = excluded.expires, updated = excluded.updated",
        &[
            &owner.as_str(),
            &app.as_str(),
            &(g.scope.bits() as i64),
            &g.expires.map(|e| e as i64),
            &(g.created as i64),
            &(g.updated as i64),
        ],
    )?;
    Ok(())
}

/// Several notifications for delivery (target, body, queued at), in order, in as few
/// statements as possible.
pub fn enqueue_many(conn: &Conn, entries: &[(&str, Vec<u8>, u64)]) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let bodies: Vec<&[u8]> = chunk.iter().map(|(_, b, _)| b.as_slice()).collect();
        let times: Vec<i64> = chunk.iter().map(|(_, _, t)| *t as i64).collect();
        let mut params: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 4);
        for (i, (target, _, _)) in chunk.iter().enumerate() {
            params.extend([target as &dyn ToValue, &bodies[i], &times[i], &times[i]]);
        }
        conn.execute(
            &multi_insert(
                "INSERT INTO outbox (target, body, next_attempt, created)",
                4,
                chunk.len(),
            ),
            &params,
        )?;
    }
    Ok(())
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

fn outbox_row(r: &Row) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        id: r.get(0)?,
        target: r.get(1)?,
        body: r.get(2)?,
        attempts: r.get(3)?,
        created: r.get(4)?,
    })
}

/// Entries due at `now`, oldest first.
pub fn due(conn: &Conn, now: u64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
    conn.query_all(
        "SELECT id, target, body, attempts, created FROM outbox WHERE next_attempt <= ?1
         ORDER BY next_attempt, id LIMIT ?2",
        &[&(now as i64), &limit],
        outbox_row,
    )
}

/// Claims up to `limit` entries due at `now` for `lease` seconds: no other process picks
/// them up until then, and one that dies mid-delivery only delays them by the lease. On
/// PostgreSQL, rows another process is claiming at this moment are skipped (`FOR UPDATE
/// SKIP LOCKED`), so each delivery is claimed by exactly one process.
pub fn claim_due(
    conn: &Conn,
    now: u64,
    limit: u32,
    lease: u64,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let until = (now + lease) as i64;
    if conn.is_postgres() {
        conn.query_all(
            "UPDATE outbox SET next_attempt = ?3 WHERE id IN (
                 SELECT id FROM outbox WHERE next_attempt <= ?1
                 ORDER BY next_attempt, id LIMIT ?2 FOR UPDATE SKIP LOCKED)
             RETURNING id, target, body, attempts, created",
            &[&(now as i64), &limit, &until],
            outbox_row,
        )
    } else {
        // One SQLite writer at a time: the UPDATE itself is the claim.
        conn.query_all(
            "UPDATE outbox SET next_attempt = ?3 WHERE id IN (
                 SELECT id FROM outbox WHERE next_attempt <= ?1
                 ORDER BY next_attempt, id LIMIT ?2)
             RETURNING id, target, body, attempts, created",
            &[&(now as i64), &limit, &until],
            outbox_row,
        )
    }
}

/// Hands a claimed entry back, due at `at`.
pub fn release(conn: &Conn, id: i64, at: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET next_attempt = ?2 WHERE id = ?1",
        &[&id, &(at as i64)],
    )?;
    Ok(())
}

pub fn delivered(conn: &Conn, id: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM outbox WHERE id = ?1", &[&id])?;
    Ok(())
}

pub fn retry_later(conn: &Conn, id: i64, next_attempt: u64, error: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
        &[&id, &(next_attempt as i64), &error],
    )?;
    Ok(())
}

/// Removes every waiting notification for `target` (whose address the guard refused: they
/// would all be refused alike), returning their bodies for the history.
pub fn drop_target(conn: &Conn, target: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    conn.query_all(
        "DELETE FROM outbox WHERE target = ?1 RETURNING body",
        &[&target],
        |r| r.get(0),
    )
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
pub fn outbox_all(conn: &Conn) -> Result<Vec<Waiting>, StoreError> {
    conn.query_all(
        "SELECT body, attempts, last_error FROM outbox ORDER BY id LIMIT 10000",
        &[],
        |r| {
            Ok(Waiting {
                body: r.get(0)?,
                attempts: r.get(1)?,
                last_error: r.get(2)?,
            })
        },
    )
}

pub fn outbox_len(conn: &Conn) -> Result<u64, StoreError> {
    Ok(conn
        .query_one("SELECT COUNT(*) FROM outbox", &[], |r| r.get(0))?
        .unwrap_or(0))
}

/// Records a grant carte as used. Returns `Err(pending_id)` if it was used already.
pub fn use_carte(
    conn: &Conn,
    fingerprint: &[u8; 32],
    forget_after: u64,
    pending_id: &[u8; 32],
) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
    // Insert first, then look: two processes using one carte at the same moment cannot both
    // see "unused" (the primary key lets one insert through).
    let inserted = conn.execute(
        "INSERT INTO used_cartes (fingerprint, deadline, pending_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (fingerprint) DO NOTHING",
        &[&&fingerprint[..], &(forget_after as i64), &&pending_id[..]],
    )?;
    if inserted == 1 {
        return Ok(Ok(()));
    }
    Ok(Err(carte_mark(conn, fingerprint)?.flatten()))
}

/// The mark of a used carte, if any: `Some(pending id, if it showed a consent page)`.
pub fn carte_mark(
    conn: &Conn,
    fingerprint: &[u8; 32],
) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    conn.query_one(
        "SELECT pending_id FROM used_cartes WHERE fingerprint = ?1",
        &[&&fingerprint[..]],
        |r| r.get::<Option<Vec<u8>>>(0),
    )
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

pub fn insert_pending(conn: &Conn, p: &Pending) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO pending_grants (id, session_hash, owner, app, scope, redirect_uri, state, expires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            &&p.id[..],
            &&p.session_hash[..],
            &p.owner.as_str(),
            &p.app.as_str(),
            &(p.scope.bits() as i64),
            &p.redirect_uri,
            &p.state,
            &(p.expires as i64),
        ],
    )?;
    Ok(())
}

/// A pending request by id (not consumed).
pub fn pending(conn: &Conn, id: &[u8]) -> Result<Option<Pending>, StoreError> {
    conn.query_one(
        "SELECT id, session_hash, owner, app, scope, redirect_uri, state, expires
         FROM pending_grants WHERE id = ?1",
        &[&id],
        |r| {
            Ok(Pending {
                id: r.get(0)?,
                session_hash: r.get(1)?,
                owner: name(r.get(2)?)?,
                app: name(r.get(3)?)?,
                scope: Scope::from_bits(r.get(4)?),
                redirect_uri: r.get(5)?,
                state: r.get(6)?,
                expires: r.get(7)?,
            })
        },
    )
}

/// Consumes a pending request; `false` if it was already gone.
pub fn take_pending(conn: &Conn, id: &[u8; 32]) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM pending_grants WHERE id = ?1", &[&&id[..]])? == 1)
}
