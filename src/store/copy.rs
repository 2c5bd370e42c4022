//! Copying a node's shared data between databases (`grant-node migrate`), and the
//! comparison that proves the copy: row counts and a checksum of every table.
//!
//! The checksum is order-free (the sorted blake3 hashes of the rows, hashed), so it does
//! not depend on how each database sorts text; each cell is hashed with its type, so an
//! integer never equals the text of its digits.

use super::{Conn, Row, StoreError};

/// The node tables, parents before children, with their columns.
pub const TABLES: &[(&str, &str)] = &[
    (
        "owners",
        "name, password_hash, profile, settings, controller, email, created",
    ),
    ("setup_tokens", "token_hash, owner, expires"),
    ("login_tokens", "token_hash, owner, redirect, expires"),
    (
        "sessions",
        "id_hash, owner, csrf_secret, created, expires, last_seen, address, user_agent",
    ),
    ("grants", "owner, app, scope, expires, created, updated"),
    (
        "audit",
        "id, owner, app, actor, action, old_scope, new_scope, expires, address, at",
    ),
    (
        "outbox",
        "id, target, body, attempts, next_attempt, created, last_error",
    ),
    ("used_cartes", "fingerprint, deadline, pending_id"),
    ("witness_state", "origin, size, root, note"),
    (
        "pending_grants",
        "id, session_hash, owner, app, scope, redirect_uri, state, expires",
    ),
    ("controllers", "name, max_scope, created"),
    ("grant_usage", "owner, app, last_used"),
    ("moved_owners", "name, node_uri, moved_at"),
];

/// Tables whose `id` PostgreSQL generates: copied ids need `OVERRIDING SYSTEM VALUE`, and
/// the generator moved past them.
const IDENTITY: &[&str] = &["audit", "outbox"];

fn rows(conn: &Conn, table: &str, columns: &str) -> Result<Vec<Row>, StoreError> {
    conn.query_all(&format!("SELECT {columns} FROM {table}"), &[], |r| {
        Ok(r.clone())
    })
}

/// Copies every node table from `from` into `to` (inside the caller's transaction on
/// `to`); returns the rows copied per table.
pub fn copy(from: &Conn, to: &Conn) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let mut copied = Vec::new();
    for (table, columns) in TABLES {
        let width = columns.split(',').count();
        let placeholders: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
        let overriding = if IDENTITY.contains(table) && to.is_postgres() {
            "OVERRIDING SYSTEM VALUE "
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {table} ({columns}) {overriding}VALUES ({})",
            placeholders.join(", ")
        );
        let source = rows(from, table, columns)?;
        for row in &source {
            let params: Vec<&dyn super::conn::ToValue> = row
                .cells()
                .iter()
                .map(|c| c as &dyn super::conn::ToValue)
                .collect();
            to.execute(&sql, &params)?;
        }
        if IDENTITY.contains(table) && to.is_postgres() {
            to.batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            ))?;
        }
        copied.push((*table, source.len()));
    }
    Ok(copied)
}

/// A table's name, row count and checksum.
pub type TableSummary = (&'static str, usize, [u8; 32]);

/// Each table's row count and checksum.
pub fn summary(conn: &Conn) -> Result<Vec<TableSummary>, StoreError> {
    let mut out = Vec::new();
    for (table, columns) in TABLES {
        let mut hashes: Vec<[u8; 32]> = rows(conn, table, columns)?
            .iter()
            .map(|row| {
                let mut h = blake3::Hasher::new();
                for cell in row.cells() {
                    match cell {
                        super::conn::Cell::Null => h.update(b"n"),
                        super::conn::Cell::Int(v) => h.update(b"i").update(&v.to_le_bytes()),
                        super::conn::Cell::Text(t) => h
                            .update(b"t")
                            .update(&(t.len() as u64).to_le_bytes())
                            .update(t.as_bytes()),
                        super::conn::Cell::Blob(b) => h
                            .update(b"b")
                            .update(&(b.len() as u64).to_le_bytes())
                            .update(b),
                    };
                }
                *h.finalize().as_bytes()
            })
            .collect();
        hashes.sort_unstable();
        let mut all = blake3::Hasher::new();
        for h in &hashes {
            all.update(h);
        }
        out.push((*table, hashes.len(), *all.finalize().as_bytes()));
    }
    Ok(out)
}
