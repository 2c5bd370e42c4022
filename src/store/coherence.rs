//! The statements of the cache-coherence protocol between node processes on one shared
//! database (see `node::coherence` for the protocol itself): announcing a change inside the
//! writing transaction, listening for announcements, and each process's row in
//! `node_processes` (when it joined, what it has seen, its heartbeat), all timed by the
//! database's own clock in microseconds. On a database only one process uses (SQLite) there
//! is nothing to announce: [`announce`] returns `None`.

use super::{Conn, Db, StoreError};

/// The database's clock, in microseconds: the one clock all processes' leases are read by.
const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";
/// The channel announcements go out on.
const CHANNEL: &str = "gn_cache";

/// Announces `payload` inside the caller's transaction, so that it goes out if and only if
/// the transaction commits; returns its version (from one sequence, so versions order the
/// announcements). `None` on a database no other process shares.
pub fn announce(conn: &Conn, payload: &str) -> Result<Option<i64>, StoreError> {
    if !conn.is_postgres() {
        return Ok(None);
    }
    conn.query_one(
        &format!(
            "SELECT v, pg_notify('{CHANNEL}', v || ' ' || ?1) FROM
                 (SELECT nextval('cache_version') AS v) s"
        ),
        &[&payload],
        |r| r.get::<i64>(0),
    )?
    .ok_or(StoreError::Corrupt("nextval returned nothing"))
    .map(Some)
}

/// Whether several processes may share this database (and so announce their changes).
pub fn shared(db: &Db) -> bool {
    db.postgres().is_some()
}

/// A connection that hears announcements: `ended` resolves when it is lost.
pub use super::pg::Listener;

/// Starts listening for announcements; each payload goes to `on_payload`, on the database
/// driver's runtime. Blocking. An error on a database with no announcements.
pub fn listen(db: &Db, on_payload: impl Fn(&str) + Send + 'static) -> Result<Listener, StoreError> {
    let pool = db
        .postgres()
        .ok_or_else(|| StoreError::Config("announcements need a shared database".into()))?;
    pool.listen(CHANNEL, on_payload)
}

/// Records that process `id` has applied every announcement up to `version`.
pub fn mark_seen(conn: &Conn, id: &str, version: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE node_processes SET seen = GREATEST(seen, ?2) WHERE id = ?1",
        &[&id, &version],
    )?;
    Ok(())
}

/// (Re)joins process `id`: a fresh row, joined and heartbeating now.
pub fn join(conn: &Conn, id: &str, seen: i64) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO node_processes (id, seen, heartbeat, joined)
             VALUES (?1, ?2, {NOW_US}, {NOW_US})
             ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat,
                 joined = excluded.joined,
                 seen = GREATEST(node_processes.seen, excluded.seen)"
        ),
        &[&id, &seen],
    )?;
    Ok(())
}

/// Heartbeats process `id`; `false` if its row is gone (removed as dead meanwhile).
pub fn heartbeat(conn: &Conn, id: &str, seen: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        &format!(
            "UPDATE node_processes SET heartbeat = {NOW_US},
                 seen = GREATEST(seen, ?2) WHERE id = ?1"
        ),
        &[&id, &seen],
    )? == 1)
}

/// Removes process `id` (it stops).
pub fn leave(conn: &Conn, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM node_processes WHERE id = ?1", &[&id])?;
    Ok(())
}

/// The database's time now, in microseconds.
pub fn now_us(conn: &Conn) -> Result<i64, StoreError> {
    Ok(conn
        .query_one(&format!("SELECT {NOW_US}"), &[], |r| r.get::<i64>(0))?
        .unwrap_or(0))
}

/// The database's time, and each process live within `lease_us` of it: (seen, joined).
pub fn live(conn: &Conn, lease_us: i64) -> Result<(i64, Vec<(i64, i64)>), StoreError> {
    let at = now_us(conn)?;
    let rows = conn.query_all(
        "SELECT seen, joined FROM node_processes WHERE heartbeat > ?1",
        &[&(at - lease_us)],
        |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
    )?;
    Ok((at, rows))
}
