//! The registry's name map in its database: the leaves (`SHA-256(name)` → the record's value)
//! and, for every subtree with two or more names, its children's hashes. Written in the same
//! transaction as the log entry and the checkpoint that commits to the map, so the map is
//! never rebuilt at start and a proof reads one row per level ([`crate::registry::map`] has
//! the algorithm; this is its store).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::registry::map::{self, Children, MapProof, MapStore, NodeId, Occupants};

/// The map over a connection (inside the caller's transaction).
struct Stored<'a>(&'a Connection);

fn hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a name map row does not decode"))
}

impl MapStore for Stored<'_> {
    type Error = StoreError;

    fn occupants(&mut self, lo: &[u8; 32], hi: &[u8; 32]) -> Result<Occupants, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT key, value FROM registry_map_leaves WHERE key BETWEEN ?1 AND ?2 LIMIT 2",
        )?;
        let mut rows = stmt.query(params![&lo[..], &hi[..]])?;
        let Some(first) = rows.next()? else {
            return Ok(Occupants::None);
        };
        let (k, v) = (hash(first.get(0)?)?, hash(first.get(1)?)?);
        Ok(if rows.next()?.is_some() {
            Occupants::Many
        } else {
            Occupants::One(k, v)
        })
    }

    fn node(&mut self, id: &NodeId) -> Result<Option<Children>, StoreError> {
        let row: Option<Vec<u8>> = self
            .0
            .prepare_cached("SELECT children FROM registry_map_nodes WHERE id = ?1")?
            .query_row([id.as_bytes()], |r| r.get(0))
            .optional()?;
        row.map(|c| {
            let c: [u8; 64] = c
                .try_into()
                .map_err(|_| StoreError::Corrupt("a name map row does not decode"))?;
            let (l, r) = c.split_at(32);
            Ok((l.try_into().expect("32"), r.try_into().expect("32")))
        })
        .transpose()
    }

    fn put_node(&mut self, id: &NodeId, children: &Children) -> Result<(), StoreError> {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&children.0);
        both[32..].copy_from_slice(&children.1);
        self.0
            .prepare_cached(
                "INSERT INTO registry_map_nodes (id, children) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET children = excluded.children",
            )?
            .execute(params![id.as_bytes(), &both[..]])?;
        Ok(())
    }

    fn drop_node(&mut self, id: &NodeId) -> Result<(), StoreError> {
        self.0
            .prepare_cached("DELETE FROM registry_map_nodes WHERE id = ?1")?
            .execute([id.as_bytes()])?;
        Ok(())
    }

    fn inconsistent() -> StoreError {
        StoreError::Corrupt("the name map's subtrees do not match its leaves")
    }
}

/// Sets a name's leaf; [`refresh`] then brings the subtrees above it up to date.
pub fn put_leaf(conn: &Connection, key: &[u8; 32], value: &[u8; 32]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO registry_map_leaves (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![&key[..], &value[..]])?;
    Ok(())
}

/// Brings the subtrees above the `changed` leaves up to date; the new root.
pub fn refresh(conn: &Connection, changed: Vec<[u8; 32]>) -> Result<[u8; 32], StoreError> {
    map::refresh(&mut Stored(conn), changed)
}

/// Recomputes every subtree from the leaves (a map written in bulk); the root.
pub fn rebuild(conn: &Connection) -> Result<[u8; 32], StoreError> {
    map::rebuild(&mut Stored(conn))
}

/// The root of the map as stored.
pub fn root(conn: &Connection) -> Result<[u8; 32], StoreError> {
    map::root_of(&mut Stored(conn))
}

/// A proof of `key`'s value or absence in the map as stored.
pub fn prove(conn: &Connection, key: &[u8; 32]) -> Result<MapProof, StoreError> {
    map::prove_in(&mut Stored(conn), key)
}

/// The number of leaves (for reports; a full scan).
pub fn leaf_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM registry_map_leaves", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Migration: the map of a registry written before the map was stored, from its records.
pub fn fill(conn: &Connection) -> Result<(), StoreError> {
    for (key, value) in super::registry::map_entries(conn)? {
        put_leaf(conn, &key, &value)?;
    }
    rebuild(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::map::NameMap;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_stored_map_answers_as_the_in_memory_one() {
        let db = crate::store::Local::in_memory().unwrap();
        let conn = db.lock();
        let mut memory = NameMap::new();
        let k = |i: u32| map::key_of(&format!("name{i}"));
        let v = |i: u32| -> [u8; 32] { Sha256::digest(i.to_be_bytes()).into() };
        assert_eq!(root(&conn).unwrap(), map::EMPTY);
        for page in 0..4u32 {
            let mut changed = Vec::new();
            for i in page * 50..page * 50 + 50 {
                let key = if i % 9 == 8 { k(i / 3) } else { k(i) };
                put_leaf(&conn, &key, &v(i)).unwrap();
                memory.set(key, v(i));
                changed.push(key);
            }
            assert_eq!(refresh(&conn, changed).unwrap(), memory.root());
            assert_eq!(root(&conn).unwrap(), memory.root());
        }
        for i in [0, 3, 149, 199, 1000] {
            assert_eq!(prove(&conn, &k(i)).unwrap(), memory.prove(&k(i)));
        }
        let before = root(&conn).unwrap();
        conn.execute("DELETE FROM registry_map_nodes", []).unwrap();
        assert_eq!(rebuild(&conn).unwrap(), before);
        assert_eq!(prove(&conn, &k(7)).unwrap(), memory.prove(&k(7)));
    }
}
