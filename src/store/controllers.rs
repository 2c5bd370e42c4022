//! The controllers table: which registered names may create and drive owners, and the most
//! they may do on an owner's behalf.

use super::{Conn, StoreError};
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
pub fn put(conn: &Conn, name: &Name, max_scope: Scope, now: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO controllers (name, max_scope, created) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET max_scope = excluded.max_scope",
        &[&name.as_str(), &(max_scope.bits() as i64), &(now as i64)],
    )?;
    Ok(())
}

pub fn get(conn: &Conn, name: &Name) -> Result<Option<Controller>, StoreError> {
    conn.query_one(
        "SELECT max_scope, created FROM controllers WHERE name = ?1",
        &[&name.as_str()],
        |r| {
            Ok(Controller {
                name: name.clone(),
                max_scope: Scope::from_bits(r.get(0)?),
                created: r.get(1)?,
            })
        },
    )
}

pub fn list(conn: &Conn) -> Result<Vec<Controller>, StoreError> {
    conn.query_all(
        "SELECT name, max_scope, created FROM controllers ORDER BY name",
        &[],
        |r| {
            Ok(Controller {
                name: Name::parse_canonical(&r.get::<String>(0)?)
                    .map_err(|_| StoreError::Corrupt("a controller name is not canonical"))?,
                max_scope: Scope::from_bits(r.get(1)?),
                created: r.get(2)?,
            })
        },
    )
}

/// Removes a controller; `false` if there was none.
pub fn remove(conn: &Conn, name: &Name) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM controllers WHERE name = ?1", &[&name.as_str()])? == 1)
}

/// Removes an owner that `controller` created (its sessions and grants go with it); the
/// check and the delete are one statement. `false` if there was no such owner of its.
pub fn delete_owner(conn: &Conn, owner: &Name, controller: &Name) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM owners WHERE name = ?1 AND controller = ?2",
        &[&owner.as_str(), &controller.as_str()],
    )? == 1)
}
