//! Where the node's shared data lives: the SQLite file of one process, or PostgreSQL for
//! several; and the one way a database URL is shown (without its password).

use std::path::PathBuf;

use anyhow::bail;

/// Where the node's shared data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `DATA_DIR/node.sqlite3`: one process.
    Sqlite,
    /// PostgreSQL: several processes. Owners' signing keys are kept there sealed with the
    /// key in `key_file` (made on first start if missing; every process needs the same one).
    Postgres { url: String, key_file: PathBuf },
}

impl Database {
    /// Whether the node's data lives in its data directory (one file), rather than in a
    /// database server several processes share.
    pub fn in_data_dir(&self) -> bool {
        matches!(self, Database::Sqlite)
    }

    /// `postgres://…` (or `postgresql://…`); `sqlite` for the default.
    pub fn parse(url: &str) -> anyhow::Result<Database> {
        if url == "sqlite" {
            return Ok(Database::Sqlite);
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "database: expected postgres://… or sqlite, got {:?}",
                redact(url)
            );
        }
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| anyhow::anyhow!("database {:?}: {e}", redact(url)))?;
        Ok(Database::Postgres {
            url: url.to_owned(),
            key_file: PathBuf::new(),
        })
    }
}

/// A database URL without its password (in the user part or as a `password=` parameter),
/// for messages and `Debug`.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s && base[s + 3..at].contains(':') => {
            let user = base[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &base[..s + 3], &base[at..])
        }
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("Sqlite"),
            Database::Postgres { url, key_file } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .field("key_file", key_file)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_never_reach_messages_or_debug() {
        assert_eq!(
            redact("postgres://gn:s3cret@db.internal/node?sslmode=require"),
            "postgres://gn:***@db.internal/node?sslmode=require"
        );
        assert_eq!(
            redact("postgres://gn@db/node?password=s3cret&sslmode=require"),
            "postgres://gn@db/node?password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://gn@db/node"), "postgres://gn@db/node");
        let db = Database::parse("postgres://gn:s3cret@db/node").unwrap();
        assert!(!format!("{db:?}").contains("s3cret"));
    }
}
