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
const MIRROR_TABLES: [&str; 6] = [
    "registry_log",
    "registry_tree",
    "registry_keys",
    "registry_names",
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
