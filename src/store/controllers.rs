//! The controllers table: which registered names may create and drive owners, and the most
//! they may do on an owner's behalf.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::name::Name;
use crate::scope::Scope;

/// A designated controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub name: Name,
    pub max_scope: Scope,
    pub created: u64,
}

/// Adds a controller or changes its maximum scope.
pub fn put(conn: &Connection, name: &Name, max_scope: Scope, now: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO controllers (name, max_scope, created) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET max_scope = excluded.max_scope",
        params![name.as_str(), max_scope.bits() as i64, now as i64],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, name: &Name) -> Result<Option<Controller>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT max_scope, created FROM controllers WHERE name = ?1")?
        .query_row([name.as_str()], |r| {
            Ok(Controller {
                name: name.clone(),
                max_scope: Scope::from_bits(r.get::<_, i64>(0)? as u64),
                created: r.get::<_, i64>(1)? as u64,
            })
        })
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Controller>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT name, max_scope, created FROM controllers ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    rows.map(|r| {
        let (name, max, created) = r?;
        Ok(Controller {
            name: Name::parse_canonical(&name)
                .map_err(|_| StoreError::Corrupt("a controller name is not canonical"))?,
            max_scope: Scope::from_bits(max as u64),
            created: created as u64,
        })
    })
    .collect()
}

/// Removes a controller; `false` if there was none.
pub fn remove(conn: &Connection, name: &Name) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM controllers WHERE name = ?1", [name.as_str()])? == 1)
}

/// Removes an owner a controller created (its sessions and grants go with it).
pub fn delete_owner(conn: &Connection, owner: &Name) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM owners WHERE name = ?1", [owner.as_str()])? == 1)
}
