//! Moving an owner to another node (Moera's "transfer name"): the export file, taking an
//! owner out of this node, putting one in, and how a running node learns of either.
//!
//! `grant-node owner export` and `owner import` work on the node's database directly, as
//! `backup` does, while the node serves. A running node learns of the change at once:
//! - with PostgreSQL, the change is announced in its transaction (see [`super::coherence`]),
//!   and the command waits until every live process has applied it;
//! - with SQLite (one process), the command then replaces the file `DATA_DIR/owners.changed`,
//!   which the node looks at (one `stat`) before it answers for any owner; when it changed,
//!   the node rereads its owners and forgets what it cached of them.
//!
//! The export file is a backup file (see [`crate::backup`]: age-encrypted, every byte
//! checked) holding one entry, [`EXPORT_ENTRY`]: the owner's rows and its two keys.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::coherence::{self, Change};
use super::owners::OwnerKeys;
use crate::backup::{Key, Source};
use crate::config::Config;
use crate::name::Name;
use crate::store::{self, moves::OwnerRows, Db};

/// The one entry of an export file.
pub const EXPORT_ENTRY: &str = "owner-export.json";
const FORMAT: &str = "grant-node owner export v1";
/// The file whose replacement tells a running SQLite node that owners changed.
const CHANGED_FILE: &str = "owners.changed";

/// What an export file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub owner: String,
    /// The node it left, and the one it was sent to (as the exporting operator said).
    pub from_node: String,
    pub to_node: String,
    pub exported: u64,
    /// The updating and signing keys' seeds, in hex.
    pub updating_key: String,
    pub signing_key: String,
    pub rows: OwnerRows,
}

impl Export {
    pub fn owner(&self) -> anyhow::Result<Name> {
        Name::parse_canonical(&self.owner)
            .map_err(|_| anyhow::anyhow!("the export names {:?}, not a canonical name", self.owner))
    }

    pub fn keys(&self) -> anyhow::Result<(SigningKey, SigningKey)> {
        let key = |hex_seed: &str| -> anyhow::Result<SigningKey> {
            let bytes: [u8; 32] = hex::decode(hex_seed)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("the export holds a malformed key")?;
            Ok(SigningKey::from_bytes(&bytes))
        };
        Ok((key(&self.updating_key)?, key(&self.signing_key)?))
    }
}

/// How often, at most, a node looks at `owners.changed`; a command that replaces it waits
/// twice this long before it returns, so every request that starts after it sees the change.
pub const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(2);

/// Notices owners changed by another process (SQLite): a cheap signature of
/// `DATA_DIR/owners.changed` (inode, size, modification time), compared at most every
/// [`LOOK_EVERY`] (one `stat`, not one per request).
pub struct Outside {
    path: PathBuf,
    seen: AtomicU64,
    started: std::time::Instant,
    /// When the file was last looked at, in microseconds since `started`.
    looked: AtomicU64,
}

impl Outside {
    pub fn new(data_dir: &Path) -> Outside {
        let path = data_dir.join(CHANGED_FILE);
        let seen = AtomicU64::new(signature(&path));
        Outside {
            path,
            seen,
            started: std::time::Instant::now(),
            looked: AtomicU64::new(0),
        }
    }

    /// Whether the file changed since the last look (and remembers it).
    pub fn changed(&self) -> bool {
        let now = self.started.elapsed().as_micros() as u64;
        let last = self.looked.load(Ordering::Acquire);
        if now.saturating_sub(last) < LOOK_EVERY.as_micros() as u64
            || self
                .looked
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let signature = signature(&self.path);
        self.seen.swap(signature, Ordering::AcqRel) != signature
    }
}

fn signature(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    let mut h = blake3::Hasher::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        h.update(&meta.ino().to_le_bytes());
        h.update(&meta.mtime().to_le_bytes());
        h.update(&meta.mtime_nsec().to_le_bytes());
    }
    h.update(&meta.len().to_le_bytes());
    if let Ok(m) = meta.modified() {
        if let Ok(d) = m.duration_since(std::time::UNIX_EPOCH) {
            h.update(&d.as_nanos().to_le_bytes());
        }
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Tells a running node that owners changed: replaces `owners.changed` (a new inode, so the
/// signature changes however coarse the clock).
pub fn announce_outside(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(CHANGED_FILE);
    let tmp = data_dir.join(format!(".{CHANGED_FILE}.{}", std::process::id()));
    let stamp = format!(
        "{}\n",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    std::fs::write(&tmp, stamp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    // A running node looks at most every LOOK_EVERY: once this returns, it has looked since.
    std::thread::sleep(2 * LOOK_EVERY);
    Ok(())
}

/// The node's databases and owners' keys, as a command outside the node opens them.
pub struct Opened {
    pub config: Config,
    pub db: Db,
    pub keys: OwnerKeys,
}

impl Opened {
    /// `db` and `keys` as the composition root opens them for `config`.
    pub fn new(config: Config, db: Db, keys: OwnerKeys) -> Opened {
        Opened { config, db, keys }
    }

    /// Runs `f` in one transaction that, on PostgreSQL, also announces that `owner` changed;
    /// after the commit, every running process of the node answers from the new state.
    fn change_owner<T>(
        &self,
        owner: &Name,
        f: impl FnOnce(&store::Conn) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let conn = self.db.lock()?;
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        let version = coherence::announce(&tx, &Change::Owner(owner.to_string()))?;
        tx.commit()?;
        drop(conn);
        match version {
            Some(v) => coherence::wait_applied(&self.db, v)?,
            None => announce_outside(&self.config.data_dir)?,
        }
        Ok(value)
    }

    /// Takes `owner` out of this node into `to` (encrypted with `key`); from the moment this
    /// returns, the node answers `owner.moved` for it, naming `to_node`. The file is written
    /// and synced before the rows are deleted, and renamed into place after.
    pub fn export(
        &self,
        owner: &Name,
        to_node: &str,
        to: &Path,
        key: &Key,
        now: u64,
    ) -> anyhow::Result<OwnerRows> {
        // The keys first, on their own connection (a pool of one would deadlock inside the
        // transaction below).
        let updating = self.keys.updating(owner);
        let signing = self.keys.signing(owner);
        let from_node = self.config.public_url.clone().unwrap_or_default();
        let rows = self.change_owner(owner, |tx| {
            let Some(rows) = store::moves::take_owner(tx, owner, to_node, now)? else {
                let moved = store::moves::moved(tx)?;
                match moved.iter().find(|m| &m.name == owner) {
                    Some(m) => bail!("{owner} has already moved to {}", m.node_uri),
                    None => bail!("{owner} is not an owner on this node"),
                }
            };
            let (updating, signing) = (updating?, signing?);
            let export = Export {
                format: FORMAT.into(),
                owner: owner.to_string(),
                from_node,
                to_node: to_node.to_owned(),
                exported: now,
                updating_key: hex::encode(updating.to_bytes()),
                signing_key: hex::encode(signing.to_bytes()),
                rows: rows.clone(),
            };
            let files = [Source {
                path: EXPORT_ENTRY.into(),
                bytes: serde_json::to_vec(&export).context("encoding the export")?,
            }];
            // Written and synced beside `to` while the rows are still ours; renamed into
            // place only once they are gone from here (a failed commit leaves no file).
            let pending = crate::backup::files::write_pending(to, key, now, &files)?;
            Ok((rows, pending))
        })?;
        let (rows, pending) = rows;
        pending.finish()?;
        self.keys.discard_files(owner)?;
        Ok(rows)
    }

    /// Puts an exported owner into this node (keys, then rows). Nothing of the registry.
    pub fn import(&self, export: &Export) -> anyhow::Result<()> {
        let owner = export.owner()?;
        let (updating, signing) = export.keys()?;
        store::moves::check(&export.rows, &owner)
            .map_err(|e| anyhow::anyhow!("the export's rows: {e}"))?;
        let present = store::owners::owner(&self.db.lock()?, &owner)?.is_some();
        if present {
            bail!("{owner} is already an owner on this node");
        }
        self.keys.install(&owner, &updating, &signing)?;
        self.change_owner(&owner, |tx| {
            store::moves::put_owner(tx, &export.rows).map_err(anyhow::Error::from)
        })
    }

    /// Undoes [`Opened::import`] (the registry refused to point the name here).
    pub fn unimport(&self, owner: &Name) -> anyhow::Result<()> {
        self.change_owner(owner, |tx| {
            store::moves::drop_owner(tx, owner)?;
            Ok(())
        })?;
        self.keys.discard_files(owner)
    }
}

/// Opens and checks an export file.
pub fn read_export(from: &Path, key: &Key) -> anyhow::Result<Export> {
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let opened = crate::backup::read(std::io::BufReader::new(file), key).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} ({}); nothing was imported",
            from.display(),
            e.code()
        )
    })?;
    let [(entry, bytes)] = opened.files.as_slice() else {
        bail!(
            "{} is not an owner export (a backup? restore it with `grant-node restore`)",
            from.display()
        );
    };
    if entry.path != EXPORT_ENTRY {
        bail!("{} is not an owner export", from.display());
    }
    let export: Export = serde_json::from_slice(bytes)
        .with_context(|| format!("{} holds a malformed export", from.display()))?;
    if export.format != FORMAT {
        bail!(
            "{} is an export of format {:?}",
            from.display(),
            export.format
        );
    }
    Ok(export)
}
