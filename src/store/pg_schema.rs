//! The PostgreSQL schema: the node tables of the SQLite schema (same names, same columns,
//! `BIGINT` for integers and `BYTEA` for bytes), plus what only several processes need.
//! Registry and grant-book tables are not here: they stay in each process's SQLite file.
//!
//! Migrations run at start inside one transaction holding an advisory lock, so two
//! processes starting together apply each step once; `schema_version` records how many ran.

use super::pg::Pool;
use super::StoreError;

/// The advisory lock key migrations hold ("gn-schema").
const MIGRATION_LOCK: i64 = 0x676e_2d73_6368_656d;

const MIGRATIONS: &[&str] = &[
    // 1: the node tables as of SQLite migration 7.
    "CREATE TABLE owners (
         name          TEXT PRIMARY KEY,
         password_hash TEXT,
         profile       TEXT NOT NULL DEFAULT '{}',
         settings      TEXT NOT NULL DEFAULT '{}',
         controller    TEXT,
         email         TEXT,
         created       BIGINT NOT NULL
     );
     CREATE TABLE setup_tokens (
         token_hash BYTEA PRIMARY KEY,
         owner      TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         expires    BIGINT NOT NULL
     );
     CREATE TABLE login_tokens (
         token_hash BYTEA PRIMARY KEY,
         owner      TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         redirect   TEXT NOT NULL,
         expires    BIGINT NOT NULL
     );
     CREATE TABLE sessions (
         id_hash     BYTEA PRIMARY KEY,
         owner       TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         csrf_secret BYTEA NOT NULL,
         created     BIGINT NOT NULL,
         expires     BIGINT NOT NULL,
         last_seen   BIGINT,
         address     TEXT,
         user_agent  TEXT
     );
     CREATE INDEX sessions_owner ON sessions(owner);
     CREATE TABLE grants (
         owner   TEXT NOT NULL REFERENCES owners(name) ON DELETE CASCADE,
         app     TEXT NOT NULL,
         scope   BIGINT NOT NULL,
         expires BIGINT,
         created BIGINT NOT NULL,
         updated BIGINT NOT NULL,
         PRIMARY KEY (owner, app)
     );
     CREATE TABLE audit (
         id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         owner     TEXT NOT NULL,
         app       TEXT NOT NULL,
         actor     TEXT NOT NULL,
         action    TEXT NOT NULL,
         old_scope BIGINT NOT NULL,
         new_scope BIGINT NOT NULL,
         expires   BIGINT,
         address   TEXT,
         at        BIGINT NOT NULL
     );
     CREATE INDEX audit_owner_app ON audit(owner, app, id);
     CREATE TABLE outbox (
         id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         target       TEXT NOT NULL,
         body         BYTEA NOT NULL,
         attempts     BIGINT NOT NULL DEFAULT 0,
         next_attempt BIGINT NOT NULL,
         created      BIGINT NOT NULL,
         last_error   TEXT
     );
     CREATE INDEX outbox_due ON outbox(next_attempt, id);
     CREATE TABLE used_cartes (
         fingerprint BYTEA PRIMARY KEY,
         deadline    BIGINT NOT NULL,
         pending_id  BYTEA
     );
     CREATE TABLE pending_grants (
         id           BYTEA PRIMARY KEY,
         session_hash BYTEA NOT NULL,
         owner        TEXT NOT NULL,
         app          TEXT NOT NULL,
         scope        BIGINT NOT NULL,
         redirect_uri TEXT NOT NULL,
         state        TEXT NOT NULL,
         expires      BIGINT NOT NULL
     );
     CREATE TABLE controllers (
         name      TEXT PRIMARY KEY,
         max_scope BIGINT NOT NULL,
         created   BIGINT NOT NULL
     );
     CREATE TABLE grant_usage (
         owner     TEXT NOT NULL,
         app       TEXT NOT NULL,
         last_used BIGINT NOT NULL,
         PRIMARY KEY (owner, app)
     );",
    // 2: owners' keys, sealed with the node's key file (never in clear here), and what keeps
    // the processes' caches coherent (see `node::coherence`).
    "CREATE TABLE owner_keys (
         owner  TEXT NOT NULL,
         kind   TEXT NOT NULL,
         sealed BYTEA NOT NULL,
         PRIMARY KEY (owner, kind)
     );
     CREATE TABLE node_processes (
         id        TEXT PRIMARY KEY,
         seen      BIGINT NOT NULL,
         heartbeat BIGINT NOT NULL,
         joined    BIGINT NOT NULL
     );
     CREATE SEQUENCE cache_version;",
    // 3: what this node, as a witness, last cosigned (one row per log; see `node::witness`).
    "CREATE TABLE witness_state (
         origin TEXT PRIMARY KEY,
         size   BIGINT NOT NULL,
         root   BYTEA NOT NULL,
         note   BYTEA NOT NULL
     );",
    // 4: the login limiter's counts, shared by every process (see `store::login_budget`).
    "CREATE TABLE login_budget (
         kind  TEXT NOT NULL,
         key   TEXT NOT NULL,
         start BIGINT NOT NULL,
         count BIGINT NOT NULL,
         PRIMARY KEY (kind, key)
     );",
    // 5: owners that moved to another node, and where (see `store::moves`).
    "CREATE TABLE moved_owners (
         name     TEXT PRIMARY KEY,
         node_uri TEXT NOT NULL,
         moved_at BIGINT NOT NULL
     );",
];

/// Applies the migrations not yet applied.
pub fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let conn = pool.lease()?;
    conn.batch(&format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);"
    ))?;
    let done = conn
        .query("SELECT version FROM schema_version", &[])?
        .first()
        .map(|r| r.get::<i64>(0))
        .transpose()?;
    if done.is_none() {
        conn.batch("INSERT INTO schema_version (version) VALUES (0)")?;
    }
    let done = done.unwrap_or(0).max(0) as usize;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done) {
        if let Err(e) = conn.batch(step) {
            let _ = conn.batch("ROLLBACK");
            return Err(e);
        }
        conn.batch(&format!("UPDATE schema_version SET version = {}", i + 1))?;
    }
    conn.batch("COMMIT")
}
