//! The PostgreSQL backend: a small pool of `tokio-postgres` connections, driven by a runtime
//! of their own.
//!
//! Why this shape: the node's query functions are synchronous (they were written for
//! SQLite, and the group-commit writer runs on its own thread). Each call here is sent to
//! the pool's runtime and waited for with a deadline, so a caller anywhere (a blocking
//! thread, the writer, an async worker) gets an answer or `store.unavailable` within
//! [`CALL_TIMEOUT`], never a hang. tokio-postgres is the plain driver under the `postgres`
//! crate and sqlx: no macros, no ORM, a dozen small dependencies.
//!
//! A connection that fails is dropped and made again on the next lease, so the processes
//! reconnect by themselves after PostgreSQL restarts. Statements are prepared once per
//! connection.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio_postgres::types::{private::BytesMut, to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conn::{Cell, Params, Row, Value};
use super::StoreError;

/// The longest a single statement (or a wait for a free connection) may take before the
/// caller gets `store.unavailable`: well inside a request's deadline.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A pool of connections to one database.
pub struct Pool {
    /// Always `Some` until dropped (taken out to shut down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    /// TLS to the database: used when the server offers it (`sslmode=prefer`, the default)
    /// and required with `sslmode=require`; the server's certificate is always verified
    /// against the system's roots and the node's `ca_file`.
    tls: MakeRustlsConnect,
    /// Free connections; `None` is a slot with no connection yet (or a dropped one).
    free: Mutex<Vec<Option<Arc<Conn>>>>,
    available: Condvar,
    /// After a connection failed: until when new connections are not even tried, so that
    /// while the database is down each request fails at once instead of waiting out its
    /// own time-out.
    down_until: Mutex<Option<std::time::Instant>>,
}

/// How long a failed connection keeps the pool from trying again.
const BACKOFF: Duration = Duration::from_millis(250);

struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

/// One connection, held for one unit of work.
pub struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Arc<Conn>>,
    broken: std::cell::Cell<bool>,
}

impl Pool {
    /// A pool of `size` connections to `url` (connected lazily), verifying a TLS server with
    /// `tls`.
    pub fn new(url: &str, size: usize, tls: rustls::ClientConfig) -> Result<Pool, StoreError> {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| StoreError::Config(format!("database URL: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("starting the database runtime: {e}")))?;
        Ok(Pool {
            runtime: Some(runtime),
            url: url.to_owned(),
            tls: MakeRustlsConnect::new(tls),
            free: Mutex::new(vec![None; size.max(1)]),
            available: Condvar::new(),
            down_until: Mutex::new(None),
        })
    }

    /// Takes a connection, connecting if the slot has none.
    pub fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let slot = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = std::time::Instant::now() + CALL_TIMEOUT;
            loop {
                if let Some(slot) = free.pop() {
                    break slot;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Unavailable(
                        "no free database connection".into(),
                    ));
                }
                free = self
                    .available
                    .wait_timeout(free, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let mut lease = Lease {
            pool: self,
            conn: slot.filter(|c| !c.client.is_closed()),
            broken: std::cell::Cell::new(false),
        };
        if lease.conn.is_none() {
            let down = *self.down_until.lock().unwrap_or_else(|p| p.into_inner());
            if down.is_some_and(|until| std::time::Instant::now() < until) {
                lease.broken.set(true);
                return Err(StoreError::Unavailable("the database is down".into()));
            }
            match self.connect() {
                Ok(conn) => lease.conn = Some(conn),
                Err(e) => {
                    if matches!(e, StoreError::Unavailable(_)) {
                        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(std::time::Instant::now() + BACKOFF);
                    }
                    lease.broken.set(true);
                    return Err(e);
                }
            }
        }
        Ok(lease)
    }

    fn connect(&self) -> Result<Arc<Conn>, StoreError> {
        let (url, tls) = (self.url.clone(), self.tls.clone());
        self.block(CONNECT_TIMEOUT, async move {
            let (client, connection) = tokio_postgres::connect(&url, tls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "database connection ended");
                }
            });
            Ok(Arc::new(Conn {
                client,
                statements: Mutex::new(HashMap::new()),
            }))
        })
    }

    /// Runs `fut` on the pool's runtime and waits for it, at most `timeout`.
    fn block<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the pool")
            .spawn(async move {
                let result = tokio::time::timeout(timeout, fut).await;
                let _ = tx.send(result);
            });
        match rx.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(Ok(result)) => result.map_err(StoreError::from),
            Ok(Err(_)) | Err(_) => Err(StoreError::Unavailable(
                "the database did not answer in time".into(),
            )),
        }
    }

    /// Opens a dedicated connection outside the pool and `LISTEN`s on `channel`: each
    /// notification's payload goes to `on_message`; [`Listener::ended`] fires when the
    /// connection ends.
    pub fn listen(
        &self,
        channel: &'static str,
        on_message: impl Fn(&str) + Send + 'static,
    ) -> Result<Listener, StoreError> {
        let (url, tls) = (self.url.clone(), self.tls.clone());
        self.block(CONNECT_TIMEOUT, async move {
            let (client, mut connection) = tokio_postgres::connect(&url, tls).await?;
            let (ended_tx, ended) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                            on_message(n.payload())
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
                let _ = ended_tx.send(());
            });
            client.batch_execute(&format!("LISTEN {channel}")).await?;
            Ok(Listener {
                _client: client,
                ended,
            })
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A pool may be dropped on an async worker (the node's state at shutdown); a
        // runtime must not block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A `LISTEN`ing connection; dropping it ends the connection.
pub struct Listener {
    _client: Client,
    /// Fires (or is dropped) when the connection has ended.
    pub ended: tokio::sync::oneshot::Receiver<()>,
}

impl Lease<'_> {
    fn conn(&self) -> &Arc<Conn> {
        self.conn.as_ref().expect("a lease holds a connection")
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let result = self.pool.block(CALL_TIMEOUT, fut);
        if let Err(StoreError::Unavailable(_)) = &result {
            self.broken.set(true);
        }
        result
    }

    fn prepared(&self, sql: &str, params: Params<'_>) -> (Arc<Conn>, String, Vec<Owned>) {
        let owned = params.iter().map(|p| Owned::from(p.to_value())).collect();
        (self.conn().clone(), placeholders(sql), owned)
    }

    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize, StoreError> {
        let (conn, sql, owned) = self.prepared(sql, params);
        self.run(async move {
            let stmt = conn.statement(&sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|v| v as _).collect();
            Ok(conn.client.execute(&stmt, &refs).await? as usize)
        })
    }

    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let (conn, sql, owned) = self.prepared(sql, params);
        self.run(async move {
            let stmt = conn.statement(&sql).await?;
            let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|v| v as _).collect();
            let rows = conn.client.query(&stmt, &refs).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut cells = Vec::with_capacity(r.len());
                for i in 0..r.len() {
                    cells.push(r.try_get::<_, Cell>(i)?);
                }
                out.push(Row { cells });
            }
            Ok(out)
        })
    }

    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        let conn = self.conn().clone();
        let sql = sql.to_owned();
        self.run(async move { conn.client.batch_execute(&sql).await })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let conn = self
            .conn
            .take()
            .filter(|c| !self.broken.get() && !c.client.is_closed());
        self.pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.pool.available.notify_one();
    }
}

impl Conn {
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned();
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// `?1` → `$1`: the one placeholder difference between the two dialects.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A parameter moved onto the pool's runtime.
#[derive(Debug)]
enum Owned {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<Value<'_>> for Owned {
    fn from(v: Value<'_>) -> Owned {
        match v {
            Value::Null => Owned::Null,
            Value::Int(i) => Owned::Int(i),
            Value::Text(t) => Owned::Text(t.to_owned()),
            Value::Blob(b) => Owned::Blob(b.to_vec()),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Owned {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Owned::Null => Ok(IsNull::Yes),
            Owned::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer for a {ty} parameter").into()),
            },
            Owned::Text(t) => t.to_sql(ty, out),
            Owned::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxError> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Cell::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            Type::VOID => Cell::Null,
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Cell, BoxError> {
        Ok(Cell::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::BYTEA | Type::VOID
        ) || <String as FromSql>::accepts(ty)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // Connection-class failures (the server gone, restarting, refusing connections)
        // are "unavailable": the request gets a 503 and the connection is made again. Any
        // other database error is a bug or corrupt data: internal.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let unavailable = e.is_closed()
            || io
            || e.as_db_error().is_some_and(|db| {
                let code = db.code().code();
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            });
        // The whole chain: "error performing TLS handshake: invalid peer certificate: …".
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = s.source();
        }
        if unavailable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Postgres(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_for_postgres() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND (?2 IS NULL OR c = ?2) LIMIT ?10"),
            "SELECT a FROM t WHERE b = $1 AND ($2 IS NULL OR c = $2) LIMIT $10"
        );
    }
}
