//! `grant-node migrate --from sqlite:PATH --to postgres://…`: moves a node from its SQLite
//! file to PostgreSQL, for running several processes.
//!
//! Everything is copied in one PostgreSQL transaction, owners' key files are sealed into
//! the database with the database key, and then both databases are compared: each table's
//! row count and checksum must agree, or nothing is committed. The target must hold no
//! owners (a migration never merges two nodes).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::cli::MigrateArgs;
use crate::config::{redact, Database};
use crate::keyfile;
use crate::store::{self, copy, owner_keys, Db};

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let Some(path) = args.from.strip_prefix("sqlite:") else {
        bail!("--from: expected sqlite:PATH, got {:?}", args.from);
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("--from: no SQLite database at {}", path.display());
    }
    let Database::Postgres { url, .. } = Database::parse(&args.to).context("--to")? else {
        bail!("--to: expected postgres://…");
    };
    let data_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let key_file = args
        .database_key
        .unwrap_or_else(|| data_dir.join("database.key"));
    let sealer = owner_keys::Sealer::new(
        &keyfile::load_or_create(&key_file)
            .with_context(|| format!("the database key {}", key_file.display()))?
            .to_bytes(),
    );

    let from = Db::open(&path).context("opening the SQLite database")?;
    let to = Db::connect(&url, 1).with_context(|| format!("connecting to {}", redact(&url)))?;
    let source = from.lock()?;
    let target = to.lock()?;
    let owners: i64 = target
        .query_one("SELECT COUNT(*) FROM owners", &[], |r| r.get(0))?
        .unwrap_or(0);
    if owners > 0 {
        bail!(
            "{} already holds {owners} owners: migrate into an empty database",
            redact(&url)
        );
    }
    let tx = target.transaction()?;
    let copied = copy::copy(&source, &tx)?;
    let mut keys = 0;
    for name in store::owners::owner_names(&source)? {
        for kind in ["updating", "signing"] {
            let file = data_dir
                .join("owners")
                .join(name.as_str())
                .join(format!("{kind}.key"));
            if !file.exists() {
                continue;
            }
            let secret = keyfile::load(&file)?.to_bytes();
            owner_keys::put_if_absent(&tx, &sealer, &name, kind, &secret)?;
            keys += 1;
        }
    }
    let (a, b) = (copy::summary(&source)?, copy::summary(&tx)?);
    for ((table, n, sum), (_, m, other)) in a.iter().zip(&b) {
        if (n, sum) != (m, other) {
            bail!(
                "{table}: {n} rows (checksum {}) in SQLite, {m} rows (checksum {}) copied; \
                 nothing was committed",
                hex::encode(&sum[..8]),
                hex::encode(&other[..8])
            );
        }
    }
    tx.commit()?;
    for ((table, n), (_, _, sum)) in copied.iter().zip(&a) {
        println!(
            "{table:<15} {n:>9} rows  checksum {}  ok",
            hex::encode(&sum[..8])
        );
    }
    println!(
        "{keys} owner keys sealed with {}; start every node process with --database {} \
         --database-key {}",
        key_file.display(),
        redact(&url),
        key_file.display()
    );
    Ok(())
}
