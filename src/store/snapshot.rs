//! Consistent copies of a live SQLite database, for backups.
//!
//! `VACUUM INTO` runs in one read transaction on a connection of its own, so the copy is the
//! database as of one instant while the node goes on serving (WAL: readers never block the
//! writer). The copy is compacted and has no WAL of its own.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// The tables of the registry mirror: derived from the registry, which a restored node syncs
/// again, so a backup of a node leaves them empty.
const MIRROR_TABLES: [&str; 9] = [
    "registry_log",
    "registry_tree",
    "registry_tiles",
    "registry_keys",
    "registry_names",
    "registry_map_leaves",
    "registry_map_nodes",
    "registry_checkpoint",
    "registry_faults",
];

/// The database at `path` as of now, as bytes; with `without_mirror`, the registry mirror's
/// tables emptied. `scratch` is a path for the copy while it is made (removed after).
pub fn snapshot(path: &Path, scratch: &Path, without_mirror: bool) -> Result<Vec<u8>, StoreError> {
    let _ = std::fs::remove_file(scratch);
    let result = (|| {
        let live = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        live.busy_timeout(std::time::Duration::from_secs(30))?;
        live.execute("VACUUM INTO ?1", [scratch.to_string_lossy()])?;
        drop(live);
        if without_mirror {
            let copy = Connection::open(scratch)?;
            for t in MIRROR_TABLES {
                copy.execute(&format!("DELETE FROM {t}"), [])?;
            }
            copy.execute_batch("VACUUM")?;
        }
        std::fs::read(scratch).map_err(|e| StoreError::Config(format!("reading the copy: {e}")))
    })();
    let _ = std::fs::remove_file(scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table the registry mirror writes is emptied in a node's backup, including any
    /// added later: the list must name every `registry_` table the migrations create.
    #[test]
    fn a_backup_without_the_mirror_leaves_every_registry_table_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sqlite3");
        let db = super::super::Local::open(&path).unwrap();
        {
            let conn = db.lock();
            conn.execute(
                "INSERT INTO registry_map_leaves (key, value) VALUES (?1, ?2)",
                rusqlite::params![&[1u8; 32][..], &[2u8; 32][..]],
            )
            .unwrap();
            crate::store::name_map::refresh(&conn, vec![[1u8; 32]]).unwrap();
            conn.execute(
                "INSERT INTO registry_tiles (level, idx, data) VALUES (0, 0, x'00')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO registry_log (seq, entry, hash) VALUES (0, x'00', x'00')",
                [],
            )
            .unwrap();
        }
        let tables: Vec<String> = db
            .lock()
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'registry\\_%' ESCAPE '\\'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut listed: Vec<&str> = MIRROR_TABLES.to_vec();
        listed.sort_unstable();
        let mut found: Vec<&str> = tables.iter().map(String::as_str).collect();
        found.sort_unstable();
        assert_eq!(found, listed);
        drop(db);
        let bytes = snapshot(&path, &dir.path().join("copy"), true).unwrap();
        let copy = dir.path().join("restored.sqlite3");
        std::fs::write(&copy, bytes).unwrap();
        let conn = Connection::open(&copy).unwrap();
        for t in MIRROR_TABLES {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{t}");
        }
    }
}
