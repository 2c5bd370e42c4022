//! The audit log: who changed which grant, how, when and from where; written in the same
//! transaction as the change it records.

use serde::Serialize;

use super::conn::ToValue;
use super::{Conn, Row, StoreError};
use crate::name::Name;

/// One audit-log entry: who changed what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub app: String,
    pub actor: String,
    pub action: String,
    pub old_scope: u64,
    pub new_scope: u64,
    pub expires: Option<u64>,
    pub address: Option<String>,
    pub at: u64,
}

pub fn insert_audit(conn: &Conn, owner: &Name, e: &AuditEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit (owner, app, actor, action, old_scope, new_scope, expires, address, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            &owner.as_str(),
            &e.app,
            &e.actor,
            &e.action,
            &(e.old_scope as i64),
            &(e.new_scope as i64),
            &e.expires.map(|x| x as i64),
            &e.address,
            &(e.at as i64),
        ],
    )?;
    Ok(())
}

/// The audit log of `owner`, for one application or all, oldest first.
pub fn audit(conn: &Conn, owner: &Name, app: Option<&Name>) -> Result<Vec<AuditEntry>, StoreError> {
    let row = |r: &Row| {
        Ok(AuditEntry {
            app: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            old_scope: r.get(3)?,
            new_scope: r.get(4)?,
            expires: r.get(5)?,
            address: r.get(6)?,
            at: r.get(7)?,
        })
    };
    match app {
        Some(app) => conn.query_all(
            "SELECT app, actor, action, old_scope, new_scope, expires, address, at FROM audit
             WHERE owner = ?1 AND app = ?2 ORDER BY id",
            &[&owner.as_str(), &app.as_str()],
            row,
        ),
        None => conn.query_all(
            "SELECT app, actor, action, old_scope, new_scope, expires, address, at FROM audit
             WHERE owner = ?1 ORDER BY id",
            &[&owner.as_str()],
            row,
        ),
    }
}

/// Rows per multi-row `INSERT`: few statement texts to prepare, few round trips.
pub(super) const ROWS_PER_INSERT: usize = 16;

/// `INSERT INTO table (columns) VALUES (?1, …), (…), …` for `rows` rows of `width` values.
pub(super) fn multi_insert(head: &str, width: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " VALUES (" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Several audit entries, in order, in as few statements as [`ROWS_PER_INSERT`] allows.
pub fn insert_audits(conn: &Conn, entries: &[(&Name, AuditEntry)]) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let numbers: Vec<[i64; 3]> = chunk
            .iter()
            .map(|(_, e)| [e.old_scope as i64, e.new_scope as i64, e.at as i64])
            .collect();
        let expires: Vec<Option<i64>> = chunk
            .iter()
            .map(|(_, e)| e.expires.map(|x| x as i64))
            .collect();
        let owners: Vec<&str> = chunk.iter().map(|(o, _)| o.as_str()).collect();
        let mut params: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 9);
        for (i, (_, e)) in chunk.iter().enumerate() {
            params.extend([
                &owners[i] as &dyn ToValue,
                &e.app,
                &e.actor,
                &e.action,
                &numbers[i][0],
                &numbers[i][1],
                &expires[i],
                &e.address,
                &numbers[i][2],
            ]);
        }
        conn.execute(
            &multi_insert(
                "INSERT INTO audit (owner, app, actor, action, old_scope, new_scope, expires, address, at)",
                9,
                chunk.len(),
            ),
            &params,
        )?;
    }
    Ok(())
}
