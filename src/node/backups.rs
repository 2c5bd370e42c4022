//! Scheduled backups (`backup_every`): a backup into `backup_dir` at each interval, the
//! oldest beyond `backup_keep` removed, and the outcome kept for `/metrics` and `/healthz`.
//!
//! The work (the database snapshot, encryption, fsync) blocks, so it runs on the blocking
//! pool. A failure is logged and reported; the next attempt comes at the next interval.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::NodeState;
use crate::backup::Key;
use crate::config::backups::{KeySetting, Schedule};

/// What the last scheduled backups did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    /// When the last good backup finished (Unix seconds).
    pub last_ok: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// The status, shared with the HTTP side.
#[derive(Default)]
pub struct Tracker(Mutex<Status>);

impl Tracker {
    pub fn get(&self) -> Status {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, s: Status) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// Whether `/healthz` should say degraded, and why: the last attempt failed, or the last good
/// backup is older than twice the interval (or none was made in that long since start).
pub fn degraded(schedule: &Schedule, status: &Status, started: u64, now: u64) -> Option<String> {
    if let Some(e) = &status.last_error {
        return Some(format!("the last scheduled backup failed: {e}"));
    }
    let since = status.last_ok.unwrap_or(started);
    let limit = 2 * schedule.every.as_secs();
    (now.saturating_sub(since) > limit).then(|| {
        format!(
            "no good backup for {} s (backup_every is {} s)",
            now.saturating_sub(since),
            schedule.every.as_secs()
        )
    })
}

/// Runs scheduled backups until `stop` resolves.
pub async fn run(state: std::sync::Arc<NodeState>, stop: impl std::future::Future<Output = ()>) {
    let Some(schedule) = state.config.backups.clone() else {
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(schedule.every) => {}
        }
        let (config, schedule2) = (state.config.clone(), schedule.clone());
        let now = state.config.clock.now();
        let outcome = tokio::task::spawn_blocking(move || once(&config, &schedule2, now)).await;
        let outcome = match outcome {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("the backup task failed: {e}")),
        };
        let mut status = state.backups.get();
        match outcome {
            Ok(path) => {
                tracing::info!(path = %path.display(), "scheduled backup written");
                status.last_ok = Some(state.config.clock.now());
                status.last_error = None;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "scheduled backup failed");
                status.last_error = Some(format!("{e:#}"));
            }
        }
        state.backups.set(status);
    }
}

/// One backup into the schedule's directory, then pruning; the new file's path.
pub fn once(
    config: &crate::config::Config,
    schedule: &Schedule,
    now: u64,
) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let key = match &schedule.key {
        KeySetting::Recipient(r) => Key::Age(r.clone()),
        KeySetting::PassphraseFile(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading backup_passphrase_file {}", f.display()))?;
            Key::Passphrase(text.lines().next().unwrap_or("").to_owned())
        }
    };
    std::fs::create_dir_all(&schedule.dir)
        .with_context(|| format!("creating backup_dir {}", schedule.dir.display()))?;
    let files = crate::backup::files::collect(config)?;
    let path = schedule.dir.join(format!("grant-node-{now:011}.age"));
    crate::backup::files::write_file(&path, &key, now, &files)?;
    prune(&schedule.dir, schedule.keep)?;
    Ok(path)
}

/// Removes the oldest `grant-node-*.age` files beyond `keep` (their names sort by time).
fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("grant-node-") && n.ends_with(".age"))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    for old in ours.into_iter().take(excess) {
        std::fs::remove_file(&old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            every: std::time::Duration::from_secs(3600),
            dir: PathBuf::from("/nonexistent"),
            keep: 2,
            key: KeySetting::Recipient("age1x".into()),
        }
    }

    #[test]
    fn health_degrades_on_failure_or_a_stale_backup() {
        let s = schedule();
        let ok = Status {
            last_ok: Some(10_000),
            last_error: None,
        };
        assert_eq!(degraded(&s, &ok, 0, 10_000 + 7200), None);
        assert!(degraded(&s, &ok, 0, 10_000 + 7201).is_some());
        let failed = Status {
            last_ok: Some(10_000),
            last_error: Some("disk full".into()),
        };
        assert!(degraded(&s, &failed, 0, 10_001)
            .unwrap()
            .contains("disk full"));
        // None yet: counted from start.
        assert_eq!(degraded(&s, &Status::default(), 100, 7300), None);
        assert!(degraded(&s, &Status::default(), 100, 7301).is_some());
    }
}
