//! What this node, as a witness, last cosigned for a log: the size and root it will never
//! contradict, and the note it cosigned (served to anyone comparing views).

use super::{Conn, StoreError};

/// What a witness holds for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub size: u64,
    pub root: [u8; 32],
    /// The checkpoint note it cosigned, with its cosignature.
    pub note: Vec<u8>,
}

/// The witness's state for `origin`.
pub fn get(conn: &Conn, origin: &str) -> Result<Option<Held>, StoreError> {
    conn.query_one(
        "SELECT size, root, note FROM witness_state WHERE origin = ?1",
        &[&origin],
        |r| {
            Ok(Held {
                size: r.get(0)?,
                root: r.get(1)?,
                note: r.get(2)?,
            })
        },
    )
}

/// Moves the state from `old` (size, or none yet when 0 and no row) to `new`, only if it is
/// still at `old`: two requests racing from the same old size cannot both win, so one size is
/// never cosigned with two roots. Returns whether this call moved it.
pub fn advance(
    conn: &Conn,
    origin: &str,
    old: u64,
    new: (u64, &[u8; 32], &[u8]),
) -> Result<bool, StoreError> {
    let (size, root, note) = new;
    let changed = conn.execute(
        "UPDATE witness_state SET size = ?2, root = ?3, note = ?4
         WHERE origin = ?1 AND size = ?5 AND (size < ?2 OR root = ?3)",
        &[&origin, &(size as i64), &&root[..], &note, &(old as i64)],
    )?;
    if changed == 1 {
        return Ok(true);
    }
    if old != 0 {
        return Ok(false);
    }
    let inserted = conn.execute(
        "INSERT INTO witness_state (origin, size, root, note) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (origin) DO NOTHING",
        &[&origin, &(size as i64), &&root[..], &note],
    )?;
    Ok(inserted == 1)
}
