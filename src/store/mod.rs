//! Storage: opening the databases, their schemas and migrations. All SQL lives under
//! `store/`; other modules call the named query functions here.
//!
//! Two handles. [`Local`] is a SQLite file of this process: the registry (the authority's
//! log, or the node's verified mirror of it) and an application's grant book. [`Db`] holds
//! what node processes share: owners, sessions, grants, the outbox. It is the same SQLite
//! file by default, or PostgreSQL when several processes serve one node (see [`pg`]); the
//! query functions take a [`Conn`] and do not know which.
//!
//! Durability: WAL mode with `synchronous = FULL`, so a transaction is on disk when `COMMIT`
//! returns and an acknowledged write survives a crash or power loss. (`NORMAL` would be faster
//! but can lose the last transactions on power loss, which an authorization server must not.)
//!
//! Threading: rusqlite blocks. Callers on the async runtime run store calls inside
//! `tokio::task::spawn_blocking` (see [`Db::run`]), so a slow disk never stalls the workers that
//! serve other requests; the connection sits behind a mutex, one writer at a time, as SQLite
//! allows anyway.

pub mod audit;
pub mod coherence;
pub mod conn;
pub mod controllers;
pub mod copy;
pub mod grants;
pub mod login_budget;
pub mod moves;
pub mod name_map;
pub mod owner_keys;
pub mod owners;
pub mod pg;
mod pg_schema;
pub mod registry;
pub mod sessions;
pub mod snapshot;
pub mod witness;

pub use conn::{Conn, Row};

/// A connection to a process's own SQLite file (the registry mirror, the authority's log, a
/// grant book), for the code that works on one inside its own transactions.
pub type LocalConn = rusqlite::Connection;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

/// One migration step: SQL, or code for what SQL cannot compute.
enum Migration {
    Sql(&'static str),
    Code(fn(&Connection) -> Result<(), StoreError>),
}
use Migration::{Code, Sql};

/// Ordered migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[Migration] = &[
    // 1: the registry (the authority's log, or a node's verified mirror of it).
    Sql("CREATE TABLE registry_log (
         seq   INTEGER PRIMARY KEY,
         entry BLOB NOT NULL,
         hash  BLOB NOT NULL
     );
     CREATE TABLE registry_names (
         name          TEXT PRIMARY KEY,
         skeleton      TEXT NOT NULL UNIQUE,
         updating_key  BLOB NOT NULL,
         node_uri      TEXT NOT NULL,
         redirect_uris TEXT NOT NULL,
         created       INTEGER NOT NULL,
         updated       INTEGER NOT NULL,
         digest        BLOB NOT NULL
     );
     CREATE TABLE registry_keys (
         name        TEXT NOT NULL REFERENCES registry_names(name),
         valid_from  INTEGER NOT NULL,
         key         BLOB NOT NULL,
         compromised INTEGER NOT NULL,
         PRIMARY KEY (name, valid_from)
     );
     CREATE TABLE registry_checkpoint (
         id       INTEGER PRIMARY KEY CHECK (id = 1),
         size     INTEGER NOT NULL,
         envelope BLOB NOT NULL
     );
     CREATE TABLE registry_faults (
         id       INTEGER PRIMARY KEY,
         time     INTEGER NOT NULL,
         reason   TEXT NOT NULL,
         evidence BLOB NOT NULL
     );"),
    // 2: the node: owners, sessions, grants with their audit log, the notification outbox,
    // one-use grant cartes and consent requests waiting for an answer.
    Sql("CREATE TABLE owners (
         name          TEXT PRIMARY KEY,
         password_hash TEXT,
         profile       TEXT NOT NULL DEFAULT '{}',
         settings      TEXT NOT NULL DEFAULT '{}',
         controller    TEXT,
         email         TEXT,
         created       INTEGER NOT NULL
     );
     CREATE TABLE setup_tokens (
         token_hash BLOB PRIMARY KEY,
         owner      TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         expires    INTEGER NOT NULL
     );
     CREATE TABLE sessions (
         id_hash     BLOB PRIMARY KEY,
         owner       TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         csrf_secret BLOB NOT NULL,
         created     INTEGER NOT NULL,
         expires     INTEGER NOT NULL
     );
     CREATE INDEX sessions_owner ON sessions(owner);
     CREATE TABLE grants (
         owner   TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         app     TEXT NOT NULL,
         scope   INTEGER NOT NULL,
         expires INTEGER,
         created INTEGER NOT NULL,
         updated INTEGER NOT NULL,
         PRIMARY KEY (owner, app)
     );
     CREATE TABLE audit (
         id        INTEGER PRIMARY KEY,
         owner     TEXT NOT NULL,
         app       TEXT NOT NULL,
         actor     TEXT NOT NULL,
         action    TEXT NOT NULL,
         old_scope INTEGER NOT NULL,
         new_scope INTEGER NOT NULL,
         expires   INTEGER,
         address   TEXT,
         at        INTEGER NOT NULL
     );
     CREATE INDEX audit_owner_app ON audit(owner, app, id);
     CREATE TABLE outbox (
         id           INTEGER PRIMARY KEY,
         target       TEXT NOT NULL,
         body         BLOB NOT NULL,
         attempts     INTEGER NOT NULL DEFAULT 0,
         next_attempt INTEGER NOT NULL,
         created      INTEGER NOT NULL,
         last_error   TEXT
     );
     CREATE TABLE used_cartes (
         fingerprint BLOB PRIMARY KEY,
         deadline    INTEGER NOT NULL,
         pending_id  BLOB
     );
     CREATE TABLE pending_grants (
         id           BLOB PRIMARY KEY,
         session_hash BLOB NOT NULL,
         owner        TEXT NOT NULL,
         app          TEXT NOT NULL,
         scope        INTEGER NOT NULL,
         redirect_uri TEXT NOT NULL,
         state        TEXT NOT NULL,
         expires      INTEGER NOT NULL
     );"),
    // 3: controllers: platforms that create and drive owners (controlled accounts).
    Sql("CREATE TABLE controllers (
         name      TEXT PRIMARY KEY,
         max_scope INTEGER NOT NULL,
         created   INTEGER NOT NULL
     );"),
    // 4: an application's grant book (the client library keeps it in its own database).
    Sql("CREATE TABLE book_grants (
         owner    TEXT PRIMARY KEY,
         node_url TEXT NOT NULL,
         scope    INTEGER NOT NULL,
         expires  INTEGER,
         updated  INTEGER NOT NULL
     );
     CREATE TABLE book_pending (
         state        TEXT PRIMARY KEY,
         owner        TEXT NOT NULL,
         node_url     TEXT NOT NULL,
         scope        INTEGER NOT NULL,
         redirect_uri TEXT NOT NULL,
         created      INTEGER NOT NULL
     );
     CREATE TABLE book_meta (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );"),
    // 5: skeletons of version 2 (case-folded, with the look-alike pairs): recomputed.
    Code(registry::recompute_skeletons),
    // 6: one-time login links a platform hands its owner's browser (`POST /auth/login`).
    Sql("CREATE TABLE login_tokens (
         token_hash BLOB PRIMARY KEY,
         owner      TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         redirect   TEXT NOT NULL,
         expires    INTEGER NOT NULL
     );"),
    // 7: the owner's console: what each session is, and when each grant was last used.
    Sql("ALTER TABLE sessions ADD COLUMN last_seen INTEGER;
     ALTER TABLE sessions ADD COLUMN address TEXT;
     ALTER TABLE sessions ADD COLUMN user_agent TEXT;
     CREATE TABLE grant_usage (
         owner     TEXT NOT NULL,
         app       TEXT NOT NULL,
         last_used INTEGER NOT NULL,
         PRIMARY KEY (owner, app)
     );"),
    // 8: the registry log as an RFC 6962 tree (tlog's stored-hash layout), filled in for
    //    logs written before; and what this node, as a witness, last cosigned.
    Sql("CREATE TABLE registry_tree (
         idx  INTEGER PRIMARY KEY,
         hash BLOB NOT NULL
     );
     CREATE TABLE witness_state (
         origin TEXT PRIMARY KEY,
         size   INTEGER NOT NULL,
         root   BLOB NOT NULL,
         note   BLOB NOT NULL
     );"),
    Code(registry::backfill_tree),
    // 9: skeletons under rules v1 beside the current ones: each log entry is judged by the
    //    rules in force at its registry time (see `registry::rules::SKELETON_V2_FROM`).
    Sql("ALTER TABLE registry_names ADD COLUMN skeleton_v1 TEXT;
     CREATE INDEX registry_names_skeleton_v1 ON registry_names (skeleton_v1);"),
    Code(registry::fill_skeletons_v1),
    // 10: owners that moved to another node, and where (see `store::moves`).
    Sql("CREATE TABLE moved_owners (
         name     TEXT PRIMARY KEY,
         node_uri TEXT NOT NULL,
         moved_at INTEGER NOT NULL
     );"),
    // 11: the name map kept in the database (leaves, and the children's hashes of every
    //     subtree with two or more names; see `store::name_map`), filled in for registries
    //     written before; and the log's full hash tiles, each stored once as the bytes served.
    Sql("CREATE TABLE registry_map_leaves (
         key   BLOB PRIMARY KEY,
         value BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE registry_map_nodes (
         id       BLOB PRIMARY KEY,
         children BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE registry_tiles (
         level INTEGER NOT NULL,
         idx   INTEGER NOT NULL,
         data  BLOB NOT NULL,
         PRIMARY KEY (level, idx)
     ) WITHOUT ROWID;"),
    Code(name_map::fill),
    Code(registry::backfill_tiles),
];

/// Why storage failed. `Unavailable` is the database out of reach (a 503 with
/// `store.unavailable`, worth retrying); the others are internal errors to clients, with the
/// detail in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Shared, so that one failed group commit can tell each of its callers why.
    #[error("storage: {0}")]
    Sqlite(std::sync::Arc<rusqlite::Error>),
    #[error("storage: {0}")]
    Postgres(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Config(String),
    #[error("storage: corrupt data: {0}")]
    Corrupt(&'static str),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(std::sync::Arc::new(e))
    }
}

/// The database node processes share: SQLite (one process) or PostgreSQL (several).
#[derive(Clone)]
pub struct Db {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Local),
    Pg(Arc<pg::Pool>),
}

/// Connections each node process keeps to PostgreSQL.
pub const PG_POOL: usize = 8;

impl Db {
    /// The node's SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            backend: Backend::Sqlite(Local::open(path)?),
        })
    }

    /// An in-memory SQLite database, for unit tests and benchmarks.
    pub fn in_memory() -> Result<Db, StoreError> {
        Ok(Db {
            backend: Backend::Sqlite(Local::in_memory()?),
        })
    }

    /// PostgreSQL at `url` (`postgres://…`), with `pool` connections; migrates the schema
    /// first, under an advisory lock so that processes starting together do not race.
    pub fn connect(url: &str, pool: usize) -> Result<Db, StoreError> {
        Db::connect_trusting(url, pool, None)
    }

    /// [`Db::connect`], trusting the certificates in `ca_file` besides the system's roots
    /// for a TLS connection (`?sslmode=require`).
    pub fn connect_trusting(
        url: &str,
        pool: usize,
        ca_file: Option<&Path>,
    ) -> Result<Db, StoreError> {
        let mut tls = crate::outbound::tls::client_config(ca_file)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        // PostgreSQL's protocol name, not HTTP's.
        tls.alpn_protocols = vec![b"postgresql".to_vec()];
        let pool = pg::Pool::new(url, pool, tls)?;
        pg_schema::migrate(&pool)?;
        Ok(Db {
            backend: Backend::Pg(Arc::new(pool)),
        })
    }

    /// The SQLite handle when this is the SQLite backend (the registry mirror then shares
    /// the node's file, as it always has).
    pub fn local(&self) -> Option<Local> {
        match &self.backend {
            Backend::Sqlite(l) => Some(l.clone()),
            Backend::Pg(_) => None,
        }
    }

    /// The PostgreSQL pool, when this is the PostgreSQL backend.
    pub fn postgres(&self) -> Option<&Arc<pg::Pool>> {
        match &self.backend {
            Backend::Pg(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// A connection for a synchronous caller.
    pub fn lock(&self) -> Result<Conn<'_>, StoreError> {
        match &self.backend {
            Backend::Sqlite(l) => Ok(Conn::Sqlite(l.lock())),
            Backend::Pg(p) => Ok(Conn::Pg(p.lease()?)),
        }
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static + From<StoreError>,
    {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || f(&mut db.lock()?)).await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

/// A SQLite database of this process alone: one writer, and for a file a few read-only
/// connections, so that reads (proofs, tiles, look-ups) never wait for the writer's lock; WAL
/// gives each read a consistent snapshot of the last commit.
#[derive(Clone)]
pub struct Local {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

/// Read-only connections of a [`Local`] file.
const READERS: usize = 4;

impl Local {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Local, StoreError> {
        let conn = Connection::open(path)?;
        let mut local = Local::setup(conn)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path)?;
                reader.busy_timeout(std::time::Duration::from_secs(5))?;
                reader.pragma_update(None, "query_only", "ON")?;
                // 32 MiB of pages each: the upper levels of the big tables (the name map's
                // subtrees above all) stay in memory.
                reader.pragma_update(None, "cache_size", -32_000)?;
                reader.set_prepared_statement_cache_capacity(64);
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        local.readers = readers.into();
        Ok(local)
    }

    /// An in-memory database, for unit tests and benchmarks (reads go to the one connection).
    pub fn in_memory() -> Result<Local, StoreError> {
        Local::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Local, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        // Every transaction here writes. Taking the write lock at BEGIN (IMMEDIATE) lets a
        // second connection wait in the busy handler; a DEFERRED transaction that reads and
        // then upgrades would instead fail at once with SQLITE_BUSY when another connection
        // wrote in between (WAL snapshot rules). (`Conn::transaction` does the same.)
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        migrate(&mut conn)?;
        Ok(Local {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new([]),
            next_reader: Arc::default(),
        })
    }

    /// Locks the connection for a synchronous caller (already off the async workers).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (an open transaction is
        // rolled back when dropped), so a poisoned mutex is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read-only connection (a free one if any), or the writer's for an in-memory
    /// database. A caller that reads more than one statement and needs them to agree opens a
    /// (deferred) transaction on it.
    pub fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        if n == 0 {
            return self.lock();
        }
        let start = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.readers[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static + From<StoreError>,
    {
        self.on_blocking_pool(false, f).await
    }

    async fn on_blocking_pool<T, E, F>(&self, read_only: bool, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static + From<StoreError>,
    {
        let db = self.clone();
        let work = move || {
            let mut conn = if read_only { db.reader() } else { db.lock() };
            f(&mut conn)
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// Runs the point read `f` at once on the calling thread if a read-only connection is free
    /// this instant (`None` otherwise, and for an in-memory database: the caller then uses
    /// [`Local::read`]). Only for one primary-key read of a few pages, as a static file server
    /// reads a file: the hand-off to the blocking pool would cost more than the read.
    pub fn read_now<T>(&self, f: impl FnOnce(&Connection) -> T) -> Option<T> {
        let guard = self.readers.iter().find_map(|r| r.try_lock().ok())?;
        Some(f(&guard))
    }

    /// Runs the read `f` on a read-only connection ([`Local::reader`]) on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static + From<StoreError>,
    {
        self.on_blocking_pool(true, f).await
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        match step {
            Sql(sql) => tx.execute_batch(sql)?,
            Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once() {
        let dir = std::env::temp_dir().join(format!("gn-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sqlite3");
        let _ = std::fs::remove_file(&path);
        drop(Local::open(&path).unwrap());
        let db = Local::open(&path).unwrap();
        let v: usize = db
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
