//! Scheduled backups: `backup_every`, `backup_dir`, `backup_keep`, and the key they are
//! encrypted to (`backup_recipient`, an age X25519 public key, or `backup_passphrase_file`:
//! key material stays in files, never in the configuration).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

/// How often, where, how many, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub dir: PathBuf,
    pub keep: usize,
    pub key: KeySetting,
}

/// What scheduled backups are encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetting {
    Recipient(String),
    PassphraseFile(PathBuf),
}

/// Backups kept by default.
pub const DEFAULT_KEEP: usize = 7;

/// The schedule from the file's keys; `None` without `backup_every`.
pub fn schedule(
    every: Option<&str>,
    dir: Option<PathBuf>,
    keep: Option<usize>,
    recipient: Option<String>,
    passphrase_file: Option<PathBuf>,
) -> anyhow::Result<Option<Schedule>> {
    let Some(every) = every else {
        if dir.is_some() || keep.is_some() || recipient.is_some() || passphrase_file.is_some() {
            bail!("backup_dir, backup_keep, backup_recipient and backup_passphrase_file need backup_every");
        }
        return Ok(None);
    };
    let every = humantime::parse_duration(every)
        .with_context(|| format!("backup_every {every:?}: a duration such as 6h or 30m"))?;
    if every < Duration::from_secs(60) {
        bail!("backup_every: at least one minute");
    }
    let dir = dir.context("backup_every needs backup_dir")?;
    let keep = keep.unwrap_or(DEFAULT_KEEP);
    if keep == 0 {
        bail!("backup_keep: at least 1");
    }
    let key = match (recipient, passphrase_file) {
        (Some(r), None) => {
            if !r.trim().starts_with("age1") {
                bail!("backup_recipient {r:?}: an age X25519 recipient (age1…)");
            }
            KeySetting::Recipient(r.trim().to_owned())
        }
        (None, Some(f)) => KeySetting::PassphraseFile(f),
        (Some(_), Some(_)) => bail!("give backup_recipient or backup_passphrase_file, not both"),
        (None, None) => bail!("backup_every needs backup_recipient or backup_passphrase_file"),
    };
    Ok(Some(Schedule {
        every,
        dir,
        keep,
        key,
    }))
}
