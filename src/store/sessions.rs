//! What the owner's console shows about sessions and grant use: each session's browser,
//! address and last activity, and when each grant was last used.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::StoreError;
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
    conn: &Connection,
    id_hash: &[u8; 32],
    address: Option<&str>,
    user_agent: Option<&str>,
    now: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET address = ?2, user_agent = ?3, last_seen = ?4 WHERE id_hash = ?1",
        params![&id_hash[..], address, user_agent, now as i64],
    )?;
    Ok(())
}

/// Notes activity on a session; at most once a minute, so reading pages costs few writes.
pub fn touch(conn: &Connection, id_hash: &[u8; 32], now: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE sessions SET last_seen = ?2
         WHERE id_hash = ?1 AND (last_seen IS NULL OR last_seen < ?2 - 60)",
    )?
    .execute(params![&id_hash[..], now as i64])?;
    Ok(())
}

/// The owner's live sessions, newest first.
pub fn list(conn: &Connection, owner: &Name, now: u64) -> Result<Vec<SessionInfo>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id_hash, created, last_seen, address, user_agent, expires FROM sessions
         WHERE owner = ?1 AND expires >= ?2 ORDER BY created DESC",
    )?;
    let rows = stmt.query_map(params![owner.as_str(), now as i64], |r| {
        let id: Vec<u8> = r.get(0)?;
        Ok((
            id,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
            r.get(3)?,
            r.get(4)?,
            r.get::<_, i64>(5)? as u64,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, created, last_seen, address, user_agent, expires) = row?;
        out.push(SessionInfo {
            id_hash: id
                .try_into()
                .map_err(|_| StoreError::Corrupt("a session id is not 32 bytes"))?,
            created,
            last_seen,
            address,
            user_agent,
            expires,
        });
    }
    Ok(out)
}

/// Ends every session of `owner` but `keep`; returns how many ended.
pub fn end_others(conn: &Connection, owner: &Name, keep: &[u8; 32]) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE owner = ?1 AND id_hash != ?2",
        params![owner.as_str(), &keep[..]],
    )?)
}

/// Ends one session of `owner`; false if it was not theirs or not there.
pub fn end(conn: &Connection, owner: &Name, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE owner = ?1 AND id_hash = ?2",
        params![owner.as_str(), &id_hash[..]],
    )? == 1)
}

/// Writes a batch of grant uses; a time never goes backwards.
pub fn record_usage(conn: &Connection, uses: &[(Name, Name, u64)]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO grant_usage (owner, app, last_used) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, app) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
    )?;
    for (owner, app, at) in uses {
        stmt.execute(params![owner.as_str(), app.as_str(), *at as i64])?;
    }
    Ok(())
}

/// When each of `owner`'s grants was last used, by application name.
pub fn usage(conn: &Connection, owner: &Name) -> Result<HashMap<String, u64>, StoreError> {
    let mut stmt = conn.prepare("SELECT app, last_used FROM grant_usage WHERE owner = ?1")?;
    let rows = stmt.query_map([owner.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn usage_never_goes_backwards() {
        let db = Db::in_memory().unwrap();
        let c = db.lock();
        let (a, b) = (Name::parse("alice").unwrap(), Name::parse("app").unwrap());
        record_usage(&c, &[(a.clone(), b.clone(), 200)]).unwrap();
        record_usage(&c, &[(a.clone(), b.clone(), 100)]).unwrap();
        assert_eq!(usage(&c, &a).unwrap()["app"], 200);
    }
}
