//! The login limiter's counts in the shared database (PostgreSQL): with several node
//! processes behind one proxy, "5 password checks per name and per address in 15 minutes"
//! holds whichever process answers. A single process on SQLite keeps its counts in memory
//! (`auth::LoginLimiter`); the rules are the same.
//!
//! A reservation is one transaction: both counters are bumped by an atomic upsert (the
//! row lock serialises processes), and if either is then over budget the transaction rolls
//! back, so a refused attempt counts for nothing, as in memory.

use super::{Conn, StoreError};
use crate::auth::{FAILURE_WINDOW, MAX_FAILURES};

/// What one reserved check counted: the start of each window it was counted in.
#[derive(Debug, Clone)]
pub struct Counted {
    pub name: String,
    pub addr: String,
    pub name_start: i64,
    pub addr_start: i64,
}

fn bump(conn: &Conn, kind: &str, key: &str, now: i64) -> Result<(i64, i64), StoreError> {
    conn.query_one(
        "INSERT INTO login_budget (kind, key, start, count) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (kind, key) DO UPDATE SET
             start = CASE WHEN login_budget.start + ?4 <= ?3 THEN ?3 ELSE login_budget.start END,
             count = CASE WHEN login_budget.start + ?4 <= ?3 THEN 1 ELSE login_budget.count + 1 END
         RETURNING start, count",
        &[&kind, &key, &now, &(FAILURE_WINDOW as i64)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .ok_or(StoreError::Corrupt("an upsert returned no row"))
}

/// Reserves one password check for `name` from `addr`: `Ok` with what was counted, or
/// `Err(seconds)` until either may try again.
pub fn reserve(
    conn: &Conn,
    name: &str,
    addr: &str,
    now: u64,
) -> Result<Result<Counted, u64>, StoreError> {
    let now = now as i64;
    let tx = conn.transaction()?;
    let (n_start, n_count) = bump(&tx, "name", name, now)?;
    let (a_start, a_count) = bump(&tx, "addr", addr, now)?;
    let wait = |start: i64, count: i64| {
        (count > i64::from(MAX_FAILURES))
            .then(|| (start + FAILURE_WINDOW as i64 - now).max(1) as u64)
    };
    if let Some(w) = wait(n_start, n_count).max(wait(a_start, a_count)) {
        drop(tx); // rolls back: a refused attempt is not counted
        return Ok(Err(w));
    }
    tx.commit()?;
    Ok(Ok(Counted {
        name: name.to_owned(),
        addr: addr.to_owned(),
        name_start: n_start,
        addr_start: a_start,
    }))
}

/// Gives a reservation back (the check never ran, or the password was right); on success the
/// name's count is cleared as well.
pub fn give_back(conn: &Conn, c: &Counted, succeeded: bool) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    // Only within the window it was counted in.
    let dec = "UPDATE login_budget SET count = count - 1
               WHERE kind = ?1 AND key = ?2 AND start = ?3 AND count > 0";
    tx.execute(dec, &[&"addr", &c.addr.as_str(), &c.addr_start])?;
    if succeeded {
        tx.execute(
            "DELETE FROM login_budget WHERE kind = 'name' AND key = ?1",
            &[&c.name.as_str()],
        )?;
    } else {
        tx.execute(dec, &[&"name", &c.name.as_str(), &c.name_start])?;
    }
    tx.commit()
}

/// Drops counters whose window has ended.
pub fn sweep(conn: &Conn, now: u64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM login_budget WHERE start + ?1 <= ?2",
        &[&(FAILURE_WINDOW as i64), &(now as i64)],
    )
}
