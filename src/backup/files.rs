//! A node's data directory into a backup file and back: what a backup holds, and writing
//! and restoring it without ever leaving a file or directory that looks whole but is not.
//!
//! A backup holds what cannot be made again: the node's database (owners, grants and their
//! history, controllers, the outbox, sessions) as of one instant, every key file in the data
//! directory (owners' keys, the embedded registry's key, a witness's key), and an embedded
//! registry's database, which is primary data. It leaves out the registry mirror (its tables
//! are emptied in the copy; a restored node syncs them again). It is written beside its
//! destination and renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{Key, Source};
use crate::config::Config;
use crate::store::snapshot::snapshot;

/// Everything a backup of this node holds.
pub fn collect(config: &Config) -> anyhow::Result<Vec<Source>> {
    if !config.database.in_data_dir() {
        bail!(
            "this node keeps its data in PostgreSQL: back it up with pg_dump and keep the \
             database_key file with it (see the README, Backups and recovery)"
        );
    }
    let dir = &config.data_dir;
    let scratch = dir.join(format!(".backup-{}.sqlite3", std::process::id()));
    let node_db = dir.join("node.sqlite3");
    if !node_db.exists() {
        bail!("{} holds no node database", dir.display());
    }
    // The database first, then the keys: a key made after the snapshot is harmless extra;
    // an owner in the snapshot always has its keys (they are made before its row).
    let mut files = vec![Source {
        path: "node.sqlite3".into(),
        bytes: snapshot(&node_db, &scratch, true).context("copying the node's database")?,
    }];
    let registry_db = dir.join("registry").join("registry.sqlite3");
    if registry_db.exists() {
        files.push(Source {
            path: "registry/registry.sqlite3".into(),
            bytes: snapshot(&registry_db, &scratch, false)
                .context("copying the embedded registry's database")?,
        });
    }
    let mut keys = Vec::new();
    key_files(dir, &mut keys)?;
    keys.sort();
    for path in keys {
        let rel = path
            .strip_prefix(dir)
            .expect("found under the data directory")
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push(Source { path: rel, bytes });
    }
    Ok(files)
}

fn key_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            key_files(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "key") {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes the backup beside `to`, syncs it, then renames it into place.
pub fn write_file(to: &Path, key: &Key, created: u64, files: &[Source]) -> anyhow::Result<()> {
    write_pending(to, key, created, files)?.finish()
}

/// A file written and synced beside its destination, not yet renamed into place; dropped
/// unfinished, it is deleted.
pub struct Pending {
    tmp: PathBuf,
    to: PathBuf,
    done: bool,
}

impl Pending {
    /// Renames the file into place.
    pub fn finish(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.tmp, &self.to)
            .with_context(|| format!("renaming into {}", self.to.display()))?;
        self.done = true;
        sync_dir(&parent_of(&self.to));
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes the backup beside `to` and syncs it; [`Pending::finish`] renames it into place.
pub fn write_pending(
    to: &Path,
    key: &Key,
    created: u64,
    files: &[Source],
) -> anyhow::Result<Pending> {
    let name = to
        .file_name()
        .context("--to must name a file")?
        .to_string_lossy()
        .into_owned();
    let pending = Pending {
        tmp: parent_of(to).join(format!(".{name}.partial-{}", std::process::id())),
        to: to.to_path_buf(),
        done: false,
    };
    let mut file = crate::keyfile::create_private(&pending.tmp)?;
    super::write(&mut file, key, created, files)
        .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
    file.sync_all()?;
    Ok(pending)
}

/// The directory `path` lies in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks the whole backup, then writes it into `dir` (which must not exist, or be empty):
/// into a sibling directory first, renamed into place at the end. A refused backup writes
/// nothing. Returns how many files were restored.
pub fn restore_into(from: &Path, dir: &Path, key: &Key) -> anyhow::Result<usize> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} is not empty: restore only into an empty data directory",
                dir.display()
            );
        }
    }
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let opened = super::read(std::io::BufReader::new(file), key).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} ({}); nothing was written",
            from.display(),
            e.code()
        )
    })?;
    let name = dir
        .file_name()
        .context("--data-dir must name a directory")?
        .to_string_lossy()
        .into_owned();
    let parent = parent_of(dir);
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let result = (|| {
        std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
        for (entry, bytes) in &opened.files {
            let path = staging.join(&entry.path);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
                }
            }
            let mut f = crate::keyfile::create_private(&path)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
        }
        if dir.exists() {
            std::fs::remove_dir(dir).with_context(|| format!("replacing {}", dir.display()))?;
        }
        std::fs::rename(&staging, dir)
            .with_context(|| format!("renaming into {}", dir.display()))?;
        sync_dir(&parent);
        Ok(opened.files.len())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
