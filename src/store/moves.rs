//! Moving an owner between nodes: taking every row of one owner out of this database (and
//! leaving a forwarding address), and putting such rows into another.
//!
//! What moves: the owner's row (password hash, profile, settings, controller, email), its
//! grants, their history (the audit rows, in order) and when each grant was last used.
//! What stays: sessions, one-time links and consent requests waiting for an answer (the owner
//! logs in again at the new node), and notifications already queued (this node still
//! delivers them: they were signed before the move).
//!
//! [`take_owner`] runs inside the caller's transaction. On PostgreSQL it first locks the
//! owner's row: a grant change in flight (which holds it `FOR SHARE`, see
//! [`super::grants::grant_for_change`]) commits before the rows are read, and one that comes after
//! finds no owner. So every change acknowledged before the move is in what was taken, and none
//! is acknowledged after it.

use serde::{Deserialize, Serialize};

use super::conn::Cell;
use super::{Conn, StoreError};
use crate::name::Name;

/// The tables that move, the column naming the owner, and the columns carried (the audit's
/// own ids are not: the receiving database numbers the rows anew, in the same order).
const TABLES: &[(&str, &str, &str, &str)] = &[
    (
        "owners",
        "name",
        "name, password_hash, profile, settings, controller, email, created",
        "name",
    ),
    (
        "grants",
        "owner",
        "owner, app, scope, expires, created, updated",
        "app",
    ),
    (
        "audit",
        "owner",
        "owner, app, actor, action, old_scope, new_scope, expires, address, at",
        "id",
    ),
    ("grant_usage", "owner", "owner, app, last_used", "app"),
];

/// One table's rows of one owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRows {
    pub table: String,
    pub columns: Vec<String>,
    /// Each cell: `null`, an integer or a string (these tables hold no bytes).
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Every row of one owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerRows {
    pub owner: String,
    pub tables: Vec<TableRows>,
}

impl OwnerRows {
    /// How many rows of `table` there are.
    pub fn count(&self, table: &str) -> usize {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.rows.len())
    }
}

/// Where a moved owner went, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub name: Name,
    pub node_uri: String,
    pub moved_at: u64,
}

fn to_json(cell: &Cell) -> Result<serde_json::Value, StoreError> {
    Ok(match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Int(v) => (*v).into(),
        Cell::Text(t) => t.clone().into(),
        Cell::Blob(_) => return Err(StoreError::Corrupt("a moving table holds bytes")),
    })
}

fn from_json(value: &serde_json::Value) -> Result<Cell, StoreError> {
    Ok(match value {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Number(n) => Cell::Int(
            n.as_i64()
                .ok_or(StoreError::Corrupt("a moved cell is not a 64-bit integer"))?,
        ),
        serde_json::Value::String(s) => Cell::Text(s.clone()),
        _ => {
            return Err(StoreError::Corrupt(
                "a moved cell is not null, integer or text",
            ))
        }
    })
}

/// Reads every row of `owner`, deletes them (and its sealed keys, on PostgreSQL), and records
/// that it moved to `node_uri`. `None` if no such owner is hosted here. Call inside a
/// transaction; commit only once the rows are safe elsewhere.
pub fn take_owner(
    conn: &Conn,
    owner: &Name,
    node_uri: &str,
    now: u64,
) -> Result<Option<OwnerRows>, StoreError> {
    let lock = if conn.is_postgres() {
        " FOR UPDATE"
    } else {
        ""
    };
    let present = conn.query_one(
        &format!("SELECT 1 FROM owners WHERE name = ?1{lock}"),
        &[&owner.as_str()],
        |r| r.get::<i64>(0),
    )?;
    if present.is_none() {
        return Ok(None);
    }
    let mut tables = Vec::new();
    for (table, key, columns, order) in TABLES {
        let rows = conn.query_all(
            &format!("SELECT {columns} FROM {table} WHERE {key} = ?1 ORDER BY {order}"),
            &[&owner.as_str()],
            |r| r.cells().iter().map(to_json).collect::<Result<Vec<_>, _>>(),
        )?;
        tables.push(TableRows {
            table: (*table).to_owned(),
            columns: columns.split(", ").map(str::to_owned).collect(),
            rows,
        });
    }
    drop_owner(conn, owner)?;
    conn.execute(
        "INSERT INTO moved_owners (name, node_uri, moved_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET node_uri = excluded.node_uri,
                                          moved_at = excluded.moved_at",
        &[&owner.as_str(), &node_uri, &(now as i64)],
    )?;
    Ok(Some(OwnerRows {
        owner: owner.to_string(),
        tables,
    }))
}

/// Deletes every row of `owner` (and its sealed keys, on PostgreSQL), leaving no forwarding
/// address.
pub fn drop_owner(conn: &Conn, owner: &Name) -> Result<(), StoreError> {
    // Children first where nothing cascades; the owner's row takes its sessions, links and
    // grants with it.
    for sql in [
        "DELETE FROM audit WHERE owner = ?1",
        "DELETE FROM grant_usage WHERE owner = ?1",
        "DELETE FROM pending_grants WHERE owner = ?1",
        "DELETE FROM owners WHERE name = ?1",
    ] {
        conn.execute(sql, &[&owner.as_str()])?;
    }
    if conn.is_postgres() {
        conn.execute(
            "DELETE FROM owner_keys WHERE owner = ?1",
            &[&owner.as_str()],
        )?;
    }
    Ok(())
}

/// Why rows could not be put in.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{0} is already hosted here")]
    Exists(Name),
    #[error("the moved rows are not what this node writes: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `rows` against the tables this node moves: every table once, in order, with exactly
/// the expected columns, one owner row, and every row naming `owner`.
pub fn check(rows: &OwnerRows, owner: &Name) -> Result<(), String> {
    if rows.owner != owner.as_str() {
        return Err(format!("the rows are of {}, not {owner}", rows.owner));
    }
    if rows.tables.len() != TABLES.len() {
        return Err(format!(
            "{} tables, not {}",
            rows.tables.len(),
            TABLES.len()
        ));
    }
    for (t, (table, key, columns, _)) in rows.tables.iter().zip(TABLES) {
        let expected: Vec<&str> = columns.split(", ").collect();
        if t.table != *table || t.columns != expected {
            return Err(format!("table {:?} has unexpected columns", t.table));
        }
        let at = expected
            .iter()
            .position(|c| c == key)
            .expect("the key is one of the columns");
        for row in &t.rows {
            if row.len() != expected.len() {
                return Err(format!("a row of {table} has {} cells", row.len()));
            }
            if row[at].as_str() != Some(owner.as_str()) {
                return Err(format!("a row of {table} is not {owner}'s"));
            }
        }
    }
    if rows.count("owners") != 1 {
        return Err("there must be exactly one owner row".into());
    }
    Ok(())
}

/// Puts an owner's rows into this database (inside the caller's transaction) and forgets any
/// forwarding address it had here.
pub fn put_owner(conn: &Conn, rows: &OwnerRows) -> Result<(), PutError> {
    let owner = Name::parse_canonical(&rows.owner)
        .map_err(|_| PutError::Invalid(format!("{:?} is not a canonical name", rows.owner)))?;
    check(rows, &owner).map_err(PutError::Invalid)?;
    let exists = conn.query_one(
        "SELECT 1 FROM owners WHERE name = ?1",
        &[&owner.as_str()],
        |r| r.get::<i64>(0),
    )?;
    if exists.is_some() {
        return Err(PutError::Exists(owner));
    }
    for (t, (table, _, columns, _)) in rows.tables.iter().zip(TABLES) {
        let width = t.columns.len();
        let placeholders: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
        // A usage row the old node wrote for this owner long ago is replaced.
        let conflict = if *table == "grant_usage" {
            " ON CONFLICT (owner, app) DO UPDATE SET last_used = excluded.last_used"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES ({}){conflict}",
            placeholders.join(", ")
        );
        for row in &t.rows {
            let cells = row.iter().map(from_json).collect::<Result<Vec<_>, _>>()?;
            let params: Vec<&dyn super::conn::ToValue> = cells
                .iter()
                .map(|c| c as &dyn super::conn::ToValue)
                .collect();
            conn.execute(&sql, &params)?;
        }
    }
    conn.execute(
        "DELETE FROM moved_owners WHERE name = ?1",
        &[&owner.as_str()],
    )?;
    Ok(())
}

/// Every owner that moved away from this node.
pub fn moved(conn: &Conn) -> Result<Vec<Moved>, StoreError> {
    conn.query_all(
        "SELECT name, node_uri, moved_at FROM moved_owners ORDER BY name",
        &[],
        |r| {
            Ok(Moved {
                name: Name::parse_canonical(&r.get::<String>(0)?)
                    .map_err(|_| StoreError::Corrupt("a stored name is not canonical"))?,
                node_uri: r.get(1)?,
                moved_at: r.get(2)?,
            })
        },
    )
}
