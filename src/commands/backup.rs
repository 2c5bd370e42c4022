//! `grant-node backup` and `grant-node restore`: flags to [`crate::backup::files`].

use std::path::Path;

use anyhow::{bail, Context};

use crate::backup::files::{collect, restore_into, write_file};
use crate::backup::Key;
use crate::cli::{BackupArgs, OpenArgs, RestoreArgs, SealArgs, ServeArgs};
use crate::clock::Clock;
use crate::config::Config;

/// `grant-node backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = Config::build(ServeArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        ..ServeArgs::default()
    })?;
    let key = seal_key(&args.seal)?;
    let started = std::time::Instant::now();
    let files = collect(&config)?;
    write_file(&args.to, &key, Clock::system().now(), &files)?;
    eprintln!(
        "backed up {} files ({} bytes before encryption) to {} in {:.1?}",
        files.len(),
        files.iter().map(|f| f.bytes.len()).sum::<usize>(),
        args.to.display(),
        started.elapsed()
    );
    Ok(())
}

/// The key `--passphrase-file` or `--recipient` names.
pub(crate) fn seal_key(args: &SealArgs) -> anyhow::Result<Key> {
    Ok(match (&args.passphrase_file, &args.recipient) {
        (Some(f), _) => Key::Passphrase(passphrase(f)?),
        (None, Some(r)) => Key::Age(r.clone()),
        (None, None) => bail!("give --passphrase-file or --recipient"),
    })
}

/// The key `--passphrase-file` or `--identity` names.
pub(crate) fn open_key(args: &OpenArgs) -> anyhow::Result<Key> {
    Ok(match (&args.passphrase_file, &args.identity) {
        (Some(f), _) => Key::Passphrase(passphrase(f)?),
        (None, Some(i)) => Key::Age(
            std::fs::read_to_string(i).with_context(|| format!("reading {}", i.display()))?,
        ),
        (None, None) => bail!("give --passphrase-file or --identity"),
    })
}

fn passphrase(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the passphrase from {}", file.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        bail!("{} holds no passphrase on its first line", file.display());
    }
    Ok(line)
}

/// `grant-node restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let key = open_key(&args.open)?;
    let started = std::time::Instant::now();
    let n = restore_into(&args.from, &args.data_dir, &key)?;
    eprintln!(
        "restored {n} files into {} in {:.1?}; start the node on it",
        args.data_dir.display(),
        started.elapsed()
    );
    Ok(())
}
