//! Owners' keys in the shared database (PostgreSQL only; with SQLite they stay in files in
//! the data directory). Each key is sealed (ChaCha20-Poly1305, a fresh nonce each, the owner
//! and key kind as associated data) with the node's database key, which lives in a file and
//! never in the database: a copy of the database alone signs nothing.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::{Conn, StoreError};
use crate::name::Name;

/// Seals and opens keys with the node's database key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    fn seal(&self, owner: &Name, kind: &str, secret: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce)
            .map_err(|_| StoreError::Config("the system random generator failed".into()))?;
        let aad = format!("{owner}/{kind}");
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: secret,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| StoreError::Corrupt("sealing a key failed"))?,
        );
        Ok(out)
    }

    pub fn open(&self, owner: &Name, kind: &str, sealed: &[u8]) -> Result<[u8; 32], StoreError> {
        if sealed.len() < 12 {
            return Err(StoreError::Corrupt("a sealed key is too short"));
        }
        let aad = format!("{owner}/{kind}");
        let clear = self
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Corrupt("a sealed key does not open with this node's database key")
            })?;
        clear
            .try_into()
            .map_err(|_| StoreError::Corrupt("a sealed key is not 32 bytes"))
    }
}

/// Opens one sealed key, if any is stored: a node started with another node's database key
/// is found here, at start, not at the first request that needs a key.
pub fn check_sealer(conn: &Conn, sealer: &Sealer) -> Result<(), StoreError> {
    let row = conn.query_one(
        "SELECT owner, kind, sealed FROM owner_keys ORDER BY owner, kind LIMIT 1",
        &[],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<Vec<u8>>(2)?,
            ))
        },
    )?;
    if let Some((owner, kind, sealed)) = row {
        let owner = Name::parse_canonical(&owner)
            .map_err(|_| StoreError::Corrupt("a stored owner name is not canonical"))?;
        sealer.open(&owner, &kind, &sealed)?;
    }
    Ok(())
}

/// The owner's key of `kind` (`updating` or `signing`), if stored.
pub fn get(
    conn: &Conn,
    sealer: &Sealer,
    owner: &Name,
    kind: &str,
) -> Result<Option<[u8; 32]>, StoreError> {
    conn.query_one(
        "SELECT sealed FROM owner_keys WHERE owner = ?1 AND kind = ?2",
        &[&owner.as_str(), &kind],
        |r| sealer.open(owner, kind, &r.get::<Vec<u8>>(0)?),
    )
}

/// Stores `secret` as the owner's key of `kind` unless one is stored already; returns the
/// key that is stored afterwards (two processes creating one owner agree on one key).
pub fn put_if_absent(
    conn: &Conn,
    sealer: &Sealer,
    owner: &Name,
    kind: &str,
    secret: &[u8; 32],
) -> Result<[u8; 32], StoreError> {
    conn.execute(
        "INSERT INTO owner_keys (owner, kind, sealed) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, kind) DO NOTHING",
        &[&owner.as_str(), &kind, &sealer.seal(owner, kind, secret)?],
    )?;
    get(conn, sealer, owner, kind)?.ok_or(StoreError::Corrupt("a stored key vanished"))
}

/// Stores `secret` as the owner's key of `kind`, replacing any.
pub fn put(
    conn: &Conn,
    sealer: &Sealer,
    owner: &Name,
    kind: &str,
    secret: &[u8; 32],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO owner_keys (owner, kind, sealed) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, kind) DO UPDATE SET sealed = excluded.sealed",
        &[&owner.as_str(), &kind, &sealer.seal(owner, kind, secret)?],
    )?;
    Ok(())
}
