//! One connection interface over two databases: the node's query functions are written once
//! against [`Conn`], and run on SQLite (the embedded default) or PostgreSQL (many node
//! processes on one database, see [`super::pg`]).
//!
//! The interface is deliberately small: `execute`, `query_one`, `query_all`, transactions
//! and savepoints. SQL is written once in the dialect both databases share: numbered
//! placeholders `?1` (rewritten to `$1` for PostgreSQL), `ON CONFLICT … DO …`, `RETURNING`,
//! `CASE` instead of two-argument `max`. Values cross it as [`Value`] (parameters) and
//! [`Cell`] (results): integers, text, bytes and NULL, the four types the node stores, so
//! no query function knows which database it runs on.

use std::sync::MutexGuard;

use rusqlite::types::ValueRef;

use super::{pg, StoreError};

/// A parameter value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Anything a query takes as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for &str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for &[u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// A result value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl ToValue for Cell {
    fn to_value(&self) -> Value<'_> {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(v) => Value::Int(*v),
            Cell::Text(v) => Value::Text(v),
            Cell::Blob(v) => Value::Blob(v),
        }
    }
}

/// What a result cell can be read as.
pub trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> Result<Self, StoreError>;
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Result<i64, StoreError> {
        match cell {
            Cell::Int(v) => Ok(*v),
            _ => Err(StoreError::Corrupt(
                "an integer column holds something else",
            )),
        }
    }
}
impl FromCell for u64 {
    fn from_cell(cell: &Cell) -> Result<u64, StoreError> {
        // Times and scope bits are stored as i64 and read back as the u64 they were.
        Ok(i64::from_cell(cell)? as u64)
    }
}
impl FromCell for u32 {
    fn from_cell(cell: &Cell) -> Result<u32, StoreError> {
        u32::try_from(i64::from_cell(cell)?)
            .map_err(|_| StoreError::Corrupt("a counter is out of range"))
    }
}
impl FromCell for String {
    fn from_cell(cell: &Cell) -> Result<String, StoreError> {
        match cell {
            Cell::Text(v) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt("a text column holds something else")),
        }
    }
}
impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Result<Vec<u8>, StoreError> {
        match cell {
            Cell::Blob(v) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt("a bytes column holds something else")),
        }
    }
}
impl FromCell for [u8; 32] {
    fn from_cell(cell: &Cell) -> Result<[u8; 32], StoreError> {
        Vec::<u8>::from_cell(cell)?
            .try_into()
            .map_err(|_| StoreError::Corrupt("a 32-byte column holds another length"))
    }
}
impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Result<Option<T>, StoreError> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row {
    pub(super) cells: Vec<Cell>,
}

impl Row {
    /// Every cell, in column order.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// Column `i`, as `T`.
    pub fn get<T: FromCell>(&self, i: usize) -> Result<T, StoreError> {
        T::from_cell(
            self.cells
                .get(i)
                .ok_or(StoreError::Corrupt("a query returned too few columns"))?,
        )
    }
}

/// The parameters of one statement.
pub type Params<'p> = &'p [&'p dyn ToValue];

/// A connection to the node's database, on either backend, held for one unit of work.
pub enum Conn<'a> {
    Sqlite(MutexGuard<'a, rusqlite::Connection>),
    Pg(pg::Lease<'a>),
}

impl Conn<'_> {
    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                bind(&mut stmt, params)?;
                Ok(stmt.raw_execute()?)
            }
            Conn::Pg(c) => c.execute(sql, params),
        }
    }

    /// Every row of a query, each turned into a `T` by `f`.
    pub fn query_all<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                bind(&mut stmt, params)?;
                let width = stmt.column_count();
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut cells = Vec::with_capacity(width);
                    for i in 0..width {
                        cells.push(match r.get_ref(i)? {
                            ValueRef::Null => Cell::Null,
                            ValueRef::Integer(v) => Cell::Int(v),
                            ValueRef::Real(_) => {
                                return Err(StoreError::Corrupt("a column holds a real number"))
                            }
                            ValueRef::Text(t) => Cell::Text(
                                std::str::from_utf8(t)
                                    .map_err(|_| StoreError::Corrupt("text is not UTF-8"))?
                                    .to_owned(),
                            ),
                            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row { cells });
                }
                out
            }
            Conn::Pg(c) => c.query(sql, params)?,
        };
        rows.iter().map(&mut f).collect()
    }

    /// The first row of a query, if there is one.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        let mut rows = self.query_all(sql, params, |r| Ok(r.clone()))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let first = rows.swap_remove(0);
        (f.take().expect("called once"))(&first).map(Some)
    }

    /// Runs SQL text with no parameters and no results (schema, transaction control).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => c.batch(sql),
        }
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// Starts a transaction. It rolls back when dropped without [`Tx::commit`].
    ///
    /// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): every transaction here
    /// writes, and one that read first and upgraded later would fail with SQLITE_BUSY when
    /// another connection wrote in between.
    pub fn transaction(&self) -> Result<Tx<'_, '_>, StoreError> {
        self.batch(match self {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Pg(_) => "BEGIN",
        })?;
        Ok(Tx {
            conn: self,
            done: false,
        })
    }
}

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: Params<'_>) -> Result<(), StoreError> {
    for (i, p) in params.iter().enumerate() {
        let i = i + 1;
        match p.to_value() {
            Value::Null => stmt.raw_bind_parameter(i, rusqlite::types::Null)?,
            Value::Int(v) => stmt.raw_bind_parameter(i, v)?,
            Value::Text(v) => stmt.raw_bind_parameter(i, v)?,
            Value::Blob(v) => stmt.raw_bind_parameter(i, v)?,
        }
    }
    Ok(())
}

/// An open transaction: derefs to the connection it runs on.
pub struct Tx<'c, 'a> {
    conn: &'c Conn<'a>,
    done: bool,
}

impl<'a> Tx<'_, 'a> {
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.conn.batch("COMMIT")
    }

    /// A savepoint inside this transaction: its work is undone alone when it is dropped
    /// without [`Savepoint::commit`], and the transaction goes on.
    pub fn savepoint(&self) -> Result<Savepoint<'_, 'a>, StoreError> {
        self.conn.batch("SAVEPOINT sp")?;
        Ok(Savepoint {
            conn: self.conn,
            done: false,
        })
    }
}

impl<'a> std::ops::Deref for Tx<'_, 'a> {
    type Target = Conn<'a>;
    fn deref(&self) -> &Conn<'a> {
        self.conn
    }
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.conn.batch("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back failed");
            }
        }
    }
}

/// A savepoint inside a [`Tx`].
pub struct Savepoint<'c, 'a> {
    conn: &'c Conn<'a>,
    done: bool,
}

impl<'a> Savepoint<'_, 'a> {
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.conn.batch("RELEASE SAVEPOINT sp")
    }
}

impl<'a> std::ops::Deref for Savepoint<'_, 'a> {
    type Target = Conn<'a>;
    fn deref(&self) -> &Conn<'a> {
        self.conn
    }
}

impl Drop for Savepoint<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self
                .conn
                .batch("ROLLBACK TO SAVEPOINT sp; RELEASE SAVEPOINT sp")
            {
                tracing::warn!(error = %e, "rolling back a savepoint failed");
            }
        }
    }
}
