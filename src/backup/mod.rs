//! The backup file: a node's state, encrypted and authenticated as a whole with age.
//!
//! Inside the age encryption (scrypt passphrase or X25519 recipient; age's STREAM format
//! authenticates every 64 KiB chunk and the end, so a changed, cut or extended file does not
//! decrypt) the payload is:
//!
//! ```text
//! "grant-node backup v1\n"
//! one line of JSON: {"created": unix seconds, "files": [{"path", "len", "blake3"}…]}
//! the files' bytes, one after another, in that order
//! "end " + BLAKE3 of every byte above, in hex, + "\n"
//! ```
//!
//! Paths are relative, `/`-separated, with no `..`, no leading `/` and no empty part: a
//! restore writes nothing outside its directory. Reading checks each file's hash and the
//! whole payload's before the caller may write anything.

pub mod files;

use std::io::{Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"grant-node backup v1\n";
/// Largest header line accepted.
const MAX_HEADER: usize = 1 << 20;
/// Most files in one backup.
const MAX_FILES: usize = 100_000;

/// One file in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub len: u64,
    pub blake3: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    created: u64,
    files: Vec<Entry>,
}

/// How a backup is encrypted, or opened.
pub enum Key {
    Passphrase(String),
    /// An age X25519 recipient (`age1…`) to encrypt; an identity (`AGE-SECRET-KEY-1…`) to
    /// decrypt.
    Age(String),
}

/// Why a backup was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("this is not an age-encrypted file: {0}")]
    NotAge(String),
    #[error("the backup does not open with this key: {0}")]
    WrongKey(String),
    #[error("the backup is damaged (changed, truncated or extended): {0}")]
    Damaged(String),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::NotAge(_) => "backup.not-age",
            BackupError::WrongKey(_) => "backup.wrong-key",
            BackupError::Damaged(_) => "backup.damaged",
            BackupError::Key(_) => "backup.bad-key",
            BackupError::Io(_) => "backup.io",
        }
    }
}

/// A file about to be written into a backup.
pub struct Source {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Whether `path` is a safe relative path for a backup entry.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.starts_with('/')
        && path.split('/').all(|p| {
            !p.is_empty() && p != "." && p != ".." && !p.contains('\\') && !p.contains('\0')
        })
}

/// Writes an encrypted backup of `files` to `out`.
pub fn write(
    out: impl Write,
    key: &Key,
    created: u64,
    files: &[Source],
) -> Result<(), BackupError> {
    let encryptor = match key {
        Key::Passphrase(p) => age::Encryptor::with_user_passphrase(SecretString::from(p.clone())),
        Key::Age(r) => {
            let recipient: age::x25519::Recipient = r
                .trim()
                .parse()
                .map_err(|e| BackupError::Key(format!("not an age recipient (age1…): {e}")))?;
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| BackupError::Key(e.to_string()))?
        }
    };
    let mut w = encryptor.wrap_output(out)?;
    let mut hasher = blake3::Hasher::new();
    let mut put = |w: &mut dyn Write, bytes: &[u8]| -> std::io::Result<()> {
        hasher.update(bytes);
        w.write_all(bytes)
    };
    let header = Header {
        created,
        files: files
            .iter()
            .map(|f| Entry {
                path: f.path.clone(),
                len: f.bytes.len() as u64,
                blake3: blake3::hash(&f.bytes).to_hex().to_string(),
            })
            .collect(),
    };
    let mut line = serde_json::to_vec(&header).map_err(|e| BackupError::Key(e.to_string()))?;
    line.push(b'\n');
    put(&mut w, MAGIC)?;
    put(&mut w, &line)?;
    for f in files {
        put(&mut w, &f.bytes)?;
    }
    let end = format!("end {}\n", hasher.finalize().to_hex());
    w.write_all(end.as_bytes())?;
    w.finish()?.flush()?;
    Ok(())
}

/// A backup read and checked whole: its creation time and files.
pub struct Opened {
    pub created: u64,
    pub files: Vec<(Entry, Vec<u8>)>,
}

/// Decrypts and checks a backup. Nothing is returned unless every byte checked out.
pub fn read(input: impl Read, key: &Key) -> Result<Opened, BackupError> {
    let decryptor = age::Decryptor::new(input).map_err(|e| match e {
        age::DecryptError::Io(io) => BackupError::Damaged(io.to_string()),
        other => BackupError::NotAge(other.to_string()),
    })?;
    let reader = match key {
        Key::Passphrase(p) => {
            let identity = age::scrypt::Identity::new(SecretString::from(p.clone()));
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
        Key::Age(i) => {
            let identity: age::x25519::Identity = i
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .ok_or_else(|| {
                    BackupError::Key("no AGE-SECRET-KEY-1… line in the identity".into())
                })?
                .parse()
                .map_err(|e| BackupError::Key(format!("not an age identity: {e}")))?;
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
    }
    .map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
            BackupError::WrongKey(e.to_string())
        }
        other => BackupError::Damaged(other.to_string()),
    })?;
    let mut payload = Vec::new();
    std::io::BufReader::new(reader)
        .read_to_end(&mut payload)
        .map_err(|e| BackupError::Damaged(e.to_string()))?;
    parse(&payload)
}

fn parse(payload: &[u8]) -> Result<Opened, BackupError> {
    let damaged = |m: &str| BackupError::Damaged(m.to_owned());
    let rest = payload
        .strip_prefix(MAGIC)
        .ok_or_else(|| damaged("not a grant-node backup"))?;
    let nl = rest
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or_else(|| damaged("no header"))?;
    let header: Header =
        serde_json::from_slice(&rest[..nl]).map_err(|e| damaged(&format!("header: {e}")))?;
    if header.files.len() > MAX_FILES {
        return Err(damaged("too many files"));
    }
    let mut at = nl + 1;
    let mut files = Vec::with_capacity(header.files.len());
    for e in header.files {
        if !safe_path(&e.path) {
            return Err(damaged(&format!("unsafe path {:?}", e.path)));
        }
        let len = usize::try_from(e.len).map_err(|_| damaged("a length is too large"))?;
        let end = at.checked_add(len).filter(|end| *end <= rest.len());
        let end = end.ok_or_else(|| damaged("a file is cut short"))?;
        let bytes = rest[at..end].to_vec();
        if blake3::hash(&bytes).to_hex().as_str() != e.blake3 {
            return Err(damaged(&format!("{} does not match its hash", e.path)));
        }
        at = end;
        files.push((e, bytes));
    }
    let body_len = MAGIC.len() + at;
    let trailer = std::str::from_utf8(&rest[at..]).map_err(|_| damaged("bad trailer"))?;
    let want = format!("end {}\n", blake3::hash(&payload[..body_len]).to_hex());
    if trailer != want {
        return Err(damaged("the end mark does not match the contents"));
    }
    Ok(Opened {
        created: header.created,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Source> {
        vec![
            Source {
                path: "node.sqlite3".into(),
                bytes: vec![1; 100_000],
            },
            Source {
                path: "owners/alice/signing.key".into(),
                bytes: b"secret".to_vec(),
            },
        ]
    }

    #[test]
    fn a_backup_round_trips_and_every_changed_byte_is_refused() {
        let identity = age::x25519::Identity::generate();
        let recipient = Key::Age(identity.to_public().to_string());
        let secret = {
            use age::secrecy::ExposeSecret;
            Key::Age(identity.to_string().expose_secret().to_owned())
        };
        let mut file = Vec::new();
        write(&mut file, &recipient, 7, &sample()).unwrap();
        let opened = read(&file[..], &secret).unwrap();
        assert_eq!(opened.created, 7);
        assert_eq!(opened.files[1].1, b"secret");
        // The key is not readable in the file.
        assert!(!file.windows(6).any(|w| w == b"secret"));
        // One byte changed anywhere (a sample of positions, first and last included).
        let step = (file.len() / 97).max(1);
        for i in (0..file.len()).step_by(step).chain([file.len() - 1]) {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(
                read(&bad[..], &secret).is_err(),
                "byte {i} changed was accepted"
            );
        }
        // Cut short, or extended.
        assert!(read(&file[..file.len() - 1], &secret).is_err());
        let mut longer = file.clone();
        longer.push(0);
        assert!(read(&longer[..], &secret).is_err());
        // Another key.
        let other = {
            use age::secrecy::ExposeSecret;
            Key::Age(
                age::x25519::Identity::generate()
                    .to_string()
                    .expose_secret()
                    .to_owned(),
            )
        };
        assert_eq!(
            read(&file[..], &other).err().map(|e| e.code()),
            Some("backup.wrong-key")
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a\\b"] {
            assert!(!safe_path(p), "{p}");
        }
        assert!(safe_path("owners/alice/signing.key"));
    }
}
