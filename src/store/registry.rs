//! Registry tables: the log, the records it produces, the latest checkpoint, and evidence of
//! misbehaviour. Used by the authority (registry-stub, or embedded) and by a node's mirror,
//! which keep the same tables.

use ed25519_dalek::VerifyingKey;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::carte::KeyEntry;
use crate::name::Name;
use crate::registry::NameRecord;

/// Number of entries in the log.
pub fn log_size(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM registry_log", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// The hash of entry `seq`.
pub fn hash_at(conn: &Connection, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
    let h: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM registry_log WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(h.and_then(|h| h.try_into().ok()))
}

/// The hash of the last entry, or the genesis hash.
pub fn head_hash(conn: &Connection) -> Result<[u8; 32], StoreError> {
    let size = log_size(conn)?;
    if size == 0 {
        return Ok(crate::registry::log::GENESIS);
    }
    Ok(hash_at(conn, size - 1)?.unwrap_or(crate::registry::log::GENESIS))
}

pub fn append_entry(
    conn: &Connection,
    seq: u64,
    entry: &[u8],
    hash: &[u8; 32],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO registry_log (seq, entry, hash) VALUES (?1, ?2, ?3)",
        params![seq as i64, entry, &hash[..]],
    )?;
    Ok(())
}

/// Up to `limit` encoded entries from `from`.
pub fn entries(conn: &Connection, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT entry FROM registry_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![from as i64, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The record of `name`, if registered.
pub fn record(conn: &Connection, name: &Name) -> Result<Option<NameRecord>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT updating_key, node_uri, redirect_uris, created, updated, digest
             FROM registry_names WHERE name = ?1",
        )?
        .query_row([name.as_str()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })
        .optional()?;
    let Some((updating_key, node_uri, redirect_uris, created, updated, digest)) = row else {
        return Ok(None);
    };
    let keys = keys(conn, name)?.unwrap_or_default();
    Ok(Some(NameRecord {
        name: name.clone(),
        keys,
        updating_key: verifying_key(&updating_key)?,
        node_uri,
        redirect_uris: serde_json::from_str(&redirect_uris).map_err(|_| corrupt())?,
        created: created as u64,
        updated: updated as u64,
        digest: digest.try_into().map_err(|_| corrupt())?,
    }))
}

/// The key history of `name`, or `None` when it is not registered.
pub fn keys(conn: &Connection, name: &Name) -> Result<Option<Vec<KeyEntry>>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, valid_from, compromised FROM registry_keys WHERE name = ?1 ORDER BY valid_from",
    )?;
    let rows = stmt.query_map([name.as_str()], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, valid_from, compromised) = row?;
        out.push(KeyEntry {
            key: verifying_key(&key)?,
            valid_from: valid_from as u64,
            compromised,
        });
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The registered name whose confusable skeleton is `skeleton`.
pub fn skeleton_holder(conn: &Connection, skeleton: &str) -> Result<Option<Name>, StoreError> {
    let name: Option<String> = conn
        .prepare_cached("SELECT name FROM registry_names WHERE skeleton = ?1")?
        .query_row([skeleton], |r| r.get(0))
        .optional()?;
    name.map(|n| Name::parse_canonical(&n).map_err(|_| corrupt()))
        .transpose()
}

/// Recomputes every stored skeleton after [`Name::skeleton`] changed. Two names registered
/// under the old rules may now share a skeleton; the later one keeps a skeleton of its own
/// (its new skeleton, a NUL and the name, which no real skeleton contains), so both stay and
/// the older one holds the look-alike space for new registrations.
pub fn recompute_skeletons(conn: &Connection) -> Result<(), StoreError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM registry_names ORDER BY created, name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.execute("UPDATE registry_names SET skeleton = '\u{1}' || name", [])?;
    for n in names {
        let name = Name::parse_canonical(&n).map_err(|_| corrupt())?;
        let skeleton = name.skeleton();
        let taken = skeleton_holder(conn, &skeleton)?.is_some();
        let value = if taken {
            format!("{skeleton}\u{0}{n}")
        } else {
            skeleton
        };
        conn.execute(
            "UPDATE registry_names SET skeleton = ?1 WHERE name = ?2",
            params![value, n],
        )?;
    }
    Ok(())
}

/// Writes a record (insert or replace), with its whole key history.
pub fn put_record(conn: &Connection, rec: &NameRecord) -> Result<(), StoreError> {
    let uris = serde_json::to_string(&rec.redirect_uris).map_err(|_| corrupt())?;
    conn.prepare_cached(
        "INSERT INTO registry_names
             (name, skeleton, updating_key, node_uri, redirect_uris, created, updated, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (name) DO UPDATE SET
             updating_key = excluded.updating_key, node_uri = excluded.node_uri,
             redirect_uris = excluded.redirect_uris, updated = excluded.updated,
             digest = excluded.digest",
    )?
    .execute(params![
        rec.name.as_str(),
        rec.name.skeleton(),
        &rec.updating_key.as_bytes()[..],
        rec.node_uri,
        uris,
        rec.created as i64,
        rec.updated as i64,
        &rec.digest[..],
    ])?;
    conn.prepare_cached("DELETE FROM registry_keys WHERE name = ?1")?
        .execute([rec.name.as_str()])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO registry_keys (name, valid_from, key, compromised) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for k in &rec.keys {
        insert.execute(params![
            rec.name.as_str(),
            k.valid_from as i64,
            &k.key.as_bytes()[..],
            k.compromised
        ])?;
    }
    Ok(())
}

/// Stores the latest checkpoint envelope.
pub fn put_checkpoint(conn: &Connection, size: u64, envelope: &[u8]) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO registry_checkpoint (id, size, envelope) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET size = excluded.size, envelope = excluded.envelope",
        params![size as i64, envelope],
    )?;
    Ok(())
}

/// The latest checkpoint envelope.
pub fn checkpoint(conn: &Connection) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT envelope FROM registry_checkpoint WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records evidence that a registry misbehaved (a fork, a forged entry).
pub fn record_fault(
    conn: &Connection,
    time: u64,
    reason: &str,
    evidence: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO registry_faults (time, reason, evidence) VALUES (?1, ?2, ?3)",
        params![time as i64, reason, evidence],
    )?;
    Ok(())
}

/// The most recent recorded fault, if any.
pub fn latest_fault(conn: &Connection) -> Result<Option<(u64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT time, reason FROM registry_faults ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .optional()?)
}

fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, StoreError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| corrupt())?;
    VerifyingKey::from_bytes(&arr).map_err(|_| corrupt())
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("a registry row does not decode")
}
