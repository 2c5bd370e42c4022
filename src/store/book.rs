//! The application side's grant book: which owners granted what, on which node, and the grant
//! requests still waiting for their redirect. Kept by the client library in a database file
//! the application chooses.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::name::Name;
use crate::scope::Scope;

/// One owner's grant, as the application knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BookEntry {
    pub owner: String,
    pub node_url: String,
    pub scope: u64,
    pub expires: Option<u64>,
    pub updated: u64,
}

/// A grant request sent out and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGrant {
    pub state: String,
    pub owner: Name,
    pub node_url: String,
    pub scope: Scope,
    pub redirect_uri: String,
    pub created: u64,
}

/// Records a grant; an empty scope revokes it. Older news never overwrites newer.
///
/// A revocation leaves its row as a tombstone (scope 0) holding the time of the news, so a
/// replayed older notification cannot bring the grant back. Statements carry whole seconds, so
/// two can share a time: a revocation wins such a tie (nothing of the same second brings the
/// grant back), while between two grants the later arrival wins, so a grant widened in the
/// second it was made is recorded. The node, not the book, enforces grants either way.
pub fn put(
    conn: &Connection,
    owner: &Name,
    node_url: &str,
    scope: Scope,
    expires: Option<u64>,
    time: u64,
) -> Result<(), StoreError> {
    let held: Option<(i64, i64)> = conn
        .query_row(
            "SELECT updated, scope FROM book_grants WHERE owner = ?1",
            [owner.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match held {
        Some((updated, _)) if updated as u64 > time => return Ok(()),
        Some((updated, 0)) if updated as u64 == time => return Ok(()),
        _ => {}
    }
    conn.execute(
        "INSERT INTO book_grants (owner, node_url, scope, expires, updated) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (owner) DO UPDATE SET node_url = excluded.node_url, scope = excluded.scope,
             expires = excluded.expires, updated = excluded.updated",
        params![owner.as_str(), node_url, scope.bits() as i64, expires.map(|e| e as i64), time as i64],
    )?;
    Ok(())
}

/// The grant `owner` gave, if it is not revoked.
/// Records that `owner`'s node is now `node_url` (it moved); `false` if no grant is booked.
pub fn set_node(conn: &Connection, owner: &Name, node_url: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE book_grants SET node_url = ?2 WHERE owner = ?1",
        params![owner.as_str(), node_url],
    )? == 1)
}

pub fn get(conn: &Connection, owner: &Name) -> Result<Option<BookEntry>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT owner, node_url, scope, expires, updated FROM book_grants
             WHERE owner = ?1 AND scope != 0",
            [owner.as_str()],
            row,
        )
        .optional()?)
}

pub fn all(conn: &Connection) -> Result<Vec<BookEntry>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT owner, node_url, scope, expires, updated FROM book_grants
         WHERE scope != 0 ORDER BY owner",
    )?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BookEntry> {
    Ok(BookEntry {
        owner: r.get(0)?,
        node_url: r.get(1)?,
        scope: r.get::<_, i64>(2)? as u64,
        expires: r.get::<_, Option<i64>>(3)?.map(|e| e as u64),
        updated: r.get::<_, i64>(4)? as u64,
    })
}

pub fn put_pending(conn: &Connection, p: &PendingGrant) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO book_pending (state, owner, node_url, scope, redirect_uri, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            p.state,
            p.owner.as_str(),
            p.node_url,
            p.scope.bits() as i64,
            p.redirect_uri,
            p.created as i64
        ],
    )?;
    Ok(())
}

/// The pending request with this state, left in place.
pub fn peek_pending(conn: &Connection, state: &str) -> Result<Option<PendingGrant>, StoreError> {
    pending(
        conn,
        "SELECT owner, node_url, scope, redirect_uri, created FROM book_pending WHERE state = ?1",
        state,
    )
}

/// Takes (removes and returns) the pending request with this state.
pub fn take_pending(conn: &Connection, state: &str) -> Result<Option<PendingGrant>, StoreError> {
    pending(
        conn,
        "DELETE FROM book_pending WHERE state = ?1
         RETURNING owner, node_url, scope, redirect_uri, created",
        state,
    )
}

fn pending(conn: &Connection, sql: &str, state: &str) -> Result<Option<PendingGrant>, StoreError> {
    let row: Option<(String, String, i64, String, i64)> = conn
        .query_row(sql, [state], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    row.map(|(owner, node_url, scope, redirect_uri, created)| {
        Ok(PendingGrant {
            state: state.to_owned(),
            owner: Name::parse_canonical(&owner)
                .map_err(|_| StoreError::Corrupt("a stored name is not canonical"))?,
            node_url,
            scope: Scope::from_bits(scope as u64),
            redirect_uri,
            created: created as u64,
        })
    })
    .transpose()
}

pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM book_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO book_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Local;

    #[test]
    fn a_revocation_cannot_be_rolled_back_by_older_news() {
        let db = Local::in_memory().unwrap();
        let c = db.lock();
        let alice = Name::parse("alice").unwrap();
        let both = Scope::from_bits(0b11);
        put(&c, &alice, "https://a.example", both, None, 100).unwrap();
        put(&c, &alice, "https://a.example", Scope::NONE, None, 200).unwrap();
        assert_eq!(get(&c, &alice).unwrap(), None);
        // The grant's own notification, replayed after the revocation.
        put(&c, &alice, "https://a.example", both, None, 100).unwrap();
        assert_eq!(get(&c, &alice).unwrap(), None);
        assert!(all(&c).unwrap().is_empty());
        // Newer news is applied.
        put(&c, &alice, "https://a.example", both, None, 300).unwrap();
        assert_eq!(get(&c, &alice).unwrap().unwrap().scope, 0b11);
    }

    #[test]
    fn a_revocation_wins_a_tie_and_a_widening_of_the_same_second_is_kept() {
        let db = Local::in_memory().unwrap();
        let c = db.lock();
        let alice = Name::parse("alice").unwrap();
        put(&c, &alice, "u", Scope::from_bits(0b01), None, 100).unwrap();
        put(&c, &alice, "u", Scope::from_bits(0b11), None, 100).unwrap();
        assert_eq!(get(&c, &alice).unwrap().unwrap().scope, 0b11);
        put(&c, &alice, "u", Scope::NONE, None, 100).unwrap();
        put(&c, &alice, "u", Scope::from_bits(0b11), None, 100).unwrap();
        assert_eq!(get(&c, &alice).unwrap(), None);
    }
}
