//! Key files: Ed25519 seeds on disk, created with mode 0600 and refused if others can read them.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;

/// Loads the signing key at `path`, creating a fresh random one (mode 0600) if it is missing.
pub fn load_or_create(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return load(path);
    }
    let key = generate()?;
    save(path, &key)?;
    Ok(key)
}

/// A fresh random signing key from the operating system's generator.
pub fn generate() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| anyhow::anyhow!("reading the system random generator: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A 32-byte Ed25519 public key in hex.
pub fn parse_public(hex_key: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("expected 64 hex digits (a 32-byte Ed25519 public key)")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")
}

/// Loads a key file: the 32-byte seed in hex.
pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{} does not hold a 32-byte hex key", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Creates a file only its owner may read (mode 0600), never replacing an existing one: for
/// keys, recovery words and backups alike.
pub fn create_private(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes a key file with mode 0600, never replacing an existing file.
pub fn save(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = create_private(path)?;
    file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())?;
    file.sync_all()?;
    Ok(())
}
