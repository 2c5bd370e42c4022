//! Registry tables: the log, the records it produces, the latest checkpoint, and evidence of
//! misbehaviour. Used by the authority (registry-stub, or embedded) and by a node's mirror,
//! which keep the same tables.

use ed25519_dalek::VerifyingKey;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::carte::KeyEntry;
use crate::name::{Name, SkeletonRules};
use crate::registry::map::MapEntry;
use crate::registry::NameRecord;

/// Number of entries in the log.
pub fn log_size(conn: &Connection) -> Result<u64, StoreError> {
    // Entries are numbered from 0 without gaps: the last one's number, found in the primary
    // key, not a count of every row.
    let n: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM registry_log")?
        .query_row([], |r| r.get(0))?;
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

/// Starts work that [`undo_tentative`] can take back without ending the caller's transaction.
pub fn begin_tentative(conn: &Connection) -> Result<(), StoreError> {
    Ok(conn.execute_batch("SAVEPOINT tentative")?)
}

/// Keeps the work since [`begin_tentative`] (in the caller's transaction).
pub fn keep_tentative(conn: &Connection) -> Result<(), StoreError> {
    Ok(conn.execute_batch("RELEASE SAVEPOINT tentative")?)
}

/// Undoes the work since [`begin_tentative`]; the caller's transaction goes on.
pub fn undo_tentative(conn: &Connection) -> Result<(), StoreError> {
    Ok(conn.execute_batch("ROLLBACK TO SAVEPOINT tentative; RELEASE SAVEPOINT tentative")?)
}

pub fn append_entry(
    conn: &Connection,
    seq: u64,
    entry: &[u8],
    hash: &[u8; 32],
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO registry_log (seq, entry, hash) VALUES (?1, ?2, ?3)")?
        .execute(params![seq as i64, entry, &hash[..]])?;
    append_tree_hashes(conn, seq, entry)?;
    store_full_tiles(conn, seq, seq + 1)
}

/// Stores the RFC 6962 tree hashes that entry `seq` completes (tlog's stored-hash layout:
/// index `stored_hash_index(0, seq)` onwards), so roots and proofs of any size up to the log
/// are a few look-ups.
fn append_tree_hashes(conn: &Connection, seq: u64, entry: &[u8]) -> Result<(), StoreError> {
    let hashes = tlog_tiles::stored_hashes(seq, entry, &TreeHashes(conn)).map_err(tree_error)?;
    let first = tlog_tiles::stored_hash_index(0, seq);
    let mut insert =
        conn.prepare_cached("INSERT INTO registry_tree (idx, hash) VALUES (?1, ?2)")?;
    for (i, h) in hashes.iter().enumerate() {
        insert.execute(params![(first + i as u64) as i64, &h.0[..]])?;
    }
    Ok(())
}

/// Stores the hash tiles that became full when the log grew from `old` to `new` entries: a
/// full tile never changes, so it is computed once and served as stored.
fn store_full_tiles(conn: &Connection, old: u64, new: u64) -> Result<(), StoreError> {
    for tile in tlog_tiles::Tile::new_tiles(8, old, new) {
        if tile.width() != 256 {
            continue;
        }
        let data = tile.read_data(&TreeHashes(conn)).map_err(tree_error)?;
        conn.prepare_cached(
            "INSERT INTO registry_tiles (level, idx, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (level, idx) DO NOTHING",
        )?
        .execute(params![
            i64::from(tile.level()),
            tile.level_index() as i64,
            data
        ])?;
    }
    Ok(())
}

/// Migration: the full tiles of a log written before tiles were stored.
pub fn backfill_tiles(conn: &Connection) -> Result<(), StoreError> {
    store_full_tiles(conn, 0, log_size(conn)?)
}

/// The log's stored tree hashes, as `tlog_tiles` reads them.
pub struct TreeHashes<'a>(pub &'a Connection);

impl tlog_tiles::HashReader for TreeHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT hash FROM registry_tree WHERE idx = ?1")
            .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
        indexes
            .iter()
            .map(|i| {
                let h: Vec<u8> = stmt
                    .query_row([*i as i64], |r| r.get(0))
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
                h.try_into()
                    .map(tlog_tiles::Hash)
                    .map_err(|_| tlog_tiles::Error::MalformedHash)
            })
            .collect()
    }
}

fn tree_error(e: tlog_tiles::Error) -> StoreError {
    tracing::error!(error = %e, "registry tree hashes");
    StoreError::Corrupt("the registry's tree hashes are incomplete")
}

/// The RFC 6962 root of the first `size` entries.
pub fn tree_root(conn: &Connection, size: u64) -> Result<[u8; 32], StoreError> {
    Ok(tlog_tiles::tree_hash(size, &TreeHashes(conn))
        .map_err(tree_error)?
        .0)
}

/// A consistency proof from size `from` to size `to` (RFC 6962, as tlog computes it).
pub fn consistency_proof(
    conn: &Connection,
    from: u64,
    to: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    Ok(tlog_tiles::prove_tree(to, from, &TreeHashes(conn))
        .map_err(tree_error)?
        .iter()
        .map(|h| h.0)
        .collect())
}

/// An inclusion proof of entry `index` in the tree of size `size`.
pub fn inclusion_proof(
    conn: &Connection,
    index: u64,
    size: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    Ok(tlog_tiles::prove_record(size, index, &TreeHashes(conn))
        .map_err(tree_error)?
        .iter()
        .map(|h| h.0)
        .collect())
}

/// The data of a hash tile (C2SP tlog-tiles, height 8) of the tree.
pub fn tile(conn: &Connection, tile: &tlog_tiles::Tile) -> Result<Vec<u8>, StoreError> {
    if tile.width() == 256 {
        if let Some(data) = stored_tile(conn, tile)? {
            return Ok(data);
        }
    }
    tile.read_data(&TreeHashes(conn)).map_err(tree_error)
}

/// A full hash tile as stored when the log completed it, if it has.
pub fn stored_tile(
    conn: &Connection,
    tile: &tlog_tiles::Tile,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT data FROM registry_tiles WHERE level = ?1 AND idx = ?2")?
        .query_row(
            params![i64::from(tile.level()), tile.level_index() as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// The name map's entries for every record (to rebuild the map): two ordered scans merged,
/// keys left as stored bytes.
pub fn map_entries(conn: &Connection) -> Result<Vec<MapEntry>, StoreError> {
    use crate::registry::map::{key_of, value_of_parts, RawKey, RawRecord};
    let mut keys_stmt = conn.prepare(
        "SELECT name, key, valid_from, compromised FROM registry_keys ORDER BY name, valid_from",
    )?;
    let mut keys = keys_stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .peekable();
    let mut names = conn.prepare(
        "SELECT name, updating_key, node_uri, redirect_uris, created, updated, digest
         FROM registry_names ORDER BY name",
    )?;
    let rows = names.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Vec<u8>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, updating, node_uri, uris, created, updated, digest) = row?;
        let mut history: Vec<RawKey> = Vec::new();
        while let Some(Ok((n, _, _, _))) = keys.peek() {
            if *n != name {
                break;
            }
            let (_, key, valid_from, compromised) = keys.next().expect("peeked")?;
            history.push((
                key.try_into().map_err(|_| corrupt())?,
                valid_from as u64,
                compromised_as_of(valid_from, compromised),
            ));
        }
        if matches!(keys.peek(), Some(Err(_))) {
            keys.next().expect("peeked")?;
        }
        let uris: Vec<String> = serde_json::from_str(&uris).map_err(|_| corrupt())?;
        let value = value_of_parts(&RawRecord {
            name: &name,
            keys: &history,
            updating_key: &updating.try_into().map_err(|_| corrupt())?,
            node_uri: &node_uri,
            redirect_uris: &uris,
            created: created as u64,
            updated: updated as u64,
            digest: &digest.try_into().map_err(|_| corrupt())?,
        });
        out.push((key_of(&name), value));
    }
    Ok(out)
}

/// Migration: tree hashes for a log written before they were stored.
pub fn backfill_tree(conn: &Connection) -> Result<(), StoreError> {
    let size = log_size(conn)?;
    for seq in 0..size {
        let e = entries(conn, seq, 1)?;
        append_tree_hashes(conn, seq, &e[0])?;
    }
    // Checkpoints of the old form can no longer be read: the authority signs a new one at
    // start, and a mirror fetches the registry's.
    conn.execute("DELETE FROM registry_checkpoint", [])?;
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

/// `registry_keys.compromised`: 0 for a key not compromised, else the time from which its
/// signatures do not count (1, as rows written before partial compromises say, or any time
/// not after `valid_from`: every signature).
fn compromised_as_of(valid_from: i64, stored: i64) -> Option<u64> {
    (stored != 0).then(|| stored.max(valid_from) as u64)
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
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, valid_from, compromised) = row?;
        out.push(KeyEntry {
            key: verifying_key(&key)?,
            valid_from: valid_from as u64,
            compromised: compromised_as_of(valid_from, compromised),
        });
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The registered name whose confusable skeleton is `skeleton` (current rules).
pub fn skeleton_holder(conn: &Connection, skeleton: &str) -> Result<Option<Name>, StoreError> {
    let name: Option<String> = conn
        .prepare_cached("SELECT name FROM registry_names WHERE skeleton = ?1")?
        .query_row([skeleton], |r| r.get(0))
        .optional()?;
    name.map(|n| Name::parse_canonical(&n).map_err(|_| corrupt()))
        .transpose()
}

/// A registered name other than `name` that looks like it under the skeleton rules in force
/// at registry `time` (the rules are versioned by time: see `registry::rules`).
pub fn look_alike_at(
    conn: &Connection,
    name: &Name,
    time: u64,
) -> Result<Option<Name>, StoreError> {
    let found: Option<String> = match crate::registry::rules::skeleton_rules_at(time) {
        SkeletonRules::V1 => conn
            .prepare_cached(
                "SELECT name FROM registry_names WHERE skeleton_v1 = ?1 AND name <> ?2
                 ORDER BY created, name LIMIT 1",
            )?
            .query_row(
                params![name.skeleton_of(SkeletonRules::V1), name.as_str()],
                |r| r.get(0),
            )
            .optional()?,
        SkeletonRules::V2 => skeleton_holder(conn, &name.skeleton())?
            .filter(|h| h != name)
            .map(|h| h.as_str().to_owned()),
    };
    found
        .map(|n| Name::parse_canonical(&n).map_err(|_| corrupt()))
        .transpose()
}

/// Fills the rules-v1 skeleton of every registered name (migration).
pub fn fill_skeletons_v1(conn: &Connection) -> Result<(), StoreError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM registry_names")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for n in names {
        let name = Name::parse_canonical(&n).map_err(|_| corrupt())?;
        conn.execute(
            "UPDATE registry_names SET skeleton_v1 = ?1 WHERE name = ?2",
            params![name.skeleton_of(SkeletonRules::V1), n],
        )?;
    }
    Ok(())
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

/// Writes a record (insert or replace), with its whole key history and its name map leaf (the
/// caller refreshes the map: [`super::name_map::refresh`]).
pub fn put_record(conn: &Connection, rec: &NameRecord) -> Result<(), StoreError> {
    let uris = serde_json::to_string(&rec.redirect_uris).map_err(|_| corrupt())?;
    // The current rules' skeleton is unique. A name accepted under earlier rules may share it
    // with an older name; it then keeps one of its own (its skeleton, a NUL and the name, which
    // no real skeleton contains), so the older name holds the look-alike space.
    let mut skeleton = rec.name.skeleton();
    if skeleton_holder(conn, &skeleton)?.is_some_and(|h| h != rec.name) {
        skeleton = format!("{skeleton}\u{0}{}", rec.name.as_str());
    }
    conn.prepare_cached(
        "INSERT INTO registry_names
             (name, skeleton, updating_key, node_uri, redirect_uris, created, updated, digest,
              skeleton_v1)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (name) DO UPDATE SET
             updating_key = excluded.updating_key, node_uri = excluded.node_uri,
             redirect_uris = excluded.redirect_uris, updated = excluded.updated,
             digest = excluded.digest",
    )?
    .execute(params![
        rec.name.as_str(),
        skeleton,
        &rec.updating_key.as_bytes()[..],
        rec.node_uri,
        uris,
        rec.created as i64,
        rec.updated as i64,
        &rec.digest[..],
        rec.name.skeleton_of(SkeletonRules::V1),
    ])?;
    super::name_map::put_leaf(
        conn,
        &crate::registry::map::key_of(rec.name.as_str()),
        &crate::registry::map::value_of(rec),
    )?;
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
            k.compromised.map_or(0, |t| t.max(1) as i64)
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
pub fn latest_fault(conn: &Connection) -> Result<Option<(u64, String, Vec<u8>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT time, reason, evidence FROM registry_faults ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)),
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
