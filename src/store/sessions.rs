//! What the owner's console shows about sessions and grant use: each session's browser,
//! address and last activity, and when each grant was last used.

use std::collections::HashMap;

use super::{Conn, StoreError};
use crate::name::Name;

/// One of an owner's sessions, as the sessions page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id_hash: [u8; 32],
    pub created: u64,
    pub last_seen: Option<u64>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub expires: u64,
}

/// Records where a new session came from.
pub fn describe(
    conn: &Conn,
    id_hash: &[u8; 32],
    address: Option<&str>,
    user_agent: Option<&str>,
    now: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET address = ?2, user_agent = ?3, last_seen = ?4 WHERE id_hash = ?1",
        &[&&id_hash[..], &address, &user_agent, &(now as i64)],
    )?;
    Ok(())
}

/// Notes activity on a session; at most once a minute, so reading pages costs few writes.
pub fn touch(conn: &Conn, id_hash: &[u8; 32], now: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET last_seen = ?2
         WHERE id_hash = ?1 AND (last_seen IS NULL OR last_seen < ?2 - 60)",
        &[&&id_hash[..], &(now as i64)],
    )?;
    Ok(())
}

/// The owner's live sessions, newest first.
pub fn list(conn: &Conn, owner: &Name, now: u64) -> Result<Vec<SessionInfo>, StoreError> {
    conn.query_all(
        "SELECT id_hash, created, last_seen, address, user_agent, expires FROM sessions
         WHERE owner = ?1 AND expires >= ?2 ORDER BY created DESC",
        &[&owner.as_str(), &(now as i64)],
        |r| {
            Ok(SessionInfo {
                id_hash: r.get(0)?,
                created: r.get(1)?,
                last_seen: r.get(2)?,
                address: r.get(3)?,
                user_agent: r.get(4)?,
                expires: r.get(5)?,
            })
        },
    )
}

/// Ends every session of `owner` but `keep`; returns how many ended.
pub fn end_others(conn: &Conn, owner: &Name, keep: &[u8; 32]) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM sessions WHERE owner = ?1 AND id_hash != ?2",
        &[&owner.as_str(), &&keep[..]],
    )
}

/// Ends one session of `owner`; false if it was not theirs or not there.
pub fn end(conn: &Conn, owner: &Name, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE owner = ?1 AND id_hash = ?2",
        &[&owner.as_str(), &&id_hash[..]],
    )? == 1)
}

/// Writes a batch of grant uses; a time never goes backwards.
pub fn record_usage(conn: &Conn, uses: &[(Name, Name, u64)]) -> Result<(), StoreError> {
    for (owner, app, at) in uses {
        conn.execute(
            // Only for an owner still here: a use noted just before it moved away is not
            // worth a row it no longer owns.
            "INSERT INTO grant_usage (owner, app, last_used)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM owners WHERE name = ?1)
             ON CONFLICT (owner, app) DO UPDATE SET last_used = CASE
                 WHEN excluded.last_used > grant_usage.last_used THEN excluded.last_used
                 ELSE grant_usage.last_used END",
            &[&owner.as_str(), &app.as_str(), &(*at as i64)],
        )?;
    }
    Ok(())
}

/// When each of `owner`'s grants was last used, by application name.
pub fn usage(conn: &Conn, owner: &Name) -> Result<HashMap<String, u64>, StoreError> {
    Ok(conn
        .query_all(
            "SELECT app, last_used FROM grant_usage WHERE owner = ?1",
            &[&owner.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn usage_never_goes_backwards() {
        let db = Db::in_memory().unwrap();
        let c = db.lock().unwrap();
        let (a, b) = (Name::parse("alice").unwrap(), Name::parse("app").unwrap());
        let owner = crate::store::owners::Owner {
            name: a.clone(),
            password_hash: None,
            controller: None,
            email: None,
            created: 1,
        };
        crate::store::owners::insert_owner(&c, &owner).unwrap();
        record_usage(&c, &[(a.clone(), b.clone(), 200)]).unwrap();
        record_usage(&c, &[(a.clone(), b.clone(), 100)]).unwrap();
        assert_eq!(usage(&c, &a).unwrap()["app"], 200);
        // An owner not (or no longer) here gets no row.
        let gone = Name::parse("bob").unwrap();
        record_usage(&c, &[(gone.clone(), b.clone(), 300)]).unwrap();
        assert!(usage(&c, &gone).unwrap().is_empty());
    }
}
