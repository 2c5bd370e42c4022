//! Owners: creating them (keys, registry, database) and holding their signing keys.
//!
//! The node holds each owner's keys in `DATA_DIR/owners/NAME/` (`updating.key`, `signing.key`,
//! mode 0600): it signs receipts and notifications as the owner. Creating an owner is
//! restartable: keys first, then the registry (an existing registration with our own updating
//! key counts as done), then the database row.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;

use super::NodeState;
use crate::auth;
use crate::keyfile;
use crate::name::Name;
use crate::registry::op::{solve_pow, Operation, Register};
use crate::registry::RegistryError;
use crate::store::{self, owners::Owner};

/// How long the one-time password set-up link stays valid.
pub const SETUP_TOKEN_TTL: u64 = 24 * 3600;

/// The owners' keys: in files in the data directory (SQLite), or sealed in the shared
/// database (PostgreSQL, where every process must sign as every owner). Loaded once.
pub struct OwnerKeys {
    home: KeyHome,
    cache: RwLock<HashMap<Name, SigningKey>>,
}

enum KeyHome {
    Files(PathBuf),
    Database(store::Db, store::owner_keys::Sealer),
}

impl OwnerKeys {
    /// Keys in `DATA_DIR/owners/NAME/`.
    pub fn in_files(dir: PathBuf) -> OwnerKeys {
        OwnerKeys {
            home: KeyHome::Files(dir),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Keys sealed in the shared database with the 32-byte `key`.
    pub fn in_database(db: store::Db, key: &[u8; 32]) -> OwnerKeys {
        OwnerKeys {
            home: KeyHome::Database(db, store::owner_keys::Sealer::new(key)),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Stores keys brought from another node (an owner moving here); refuses to replace
    /// keys already stored for `owner`.
    pub fn install(
        &self,
        owner: &Name,
        updating: &SigningKey,
        signing: &SigningKey,
    ) -> anyhow::Result<()> {
        self.forget(owner);
        match &self.home {
            KeyHome::Files(dir) => {
                let dir = dir.join(owner.as_str());
                for (file, key) in [("updating.key", updating), ("signing.key", signing)] {
                    let path = dir.join(file);
                    if path.exists() {
                        // Left by an earlier import that did not finish: the same key is fine.
                        if keyfile::load(&path)?.to_bytes() == key.to_bytes() {
                            continue;
                        }
                        bail!("{} holds another key; move it away first", path.display());
                    }
                    keyfile::save(&path, key)?;
                }
                Ok(())
            }
            KeyHome::Database(db, sealer) => {
                let conn = db.lock()?;
                for (kind, key) in [("updating", updating), ("signing", signing)] {
                    let stored = store::owner_keys::put_if_absent(
                        &conn,
                        sealer,
                        owner,
                        kind,
                        &key.to_bytes(),
                    )?;
                    if stored != key.to_bytes() {
                        bail!("another {kind} key is stored for {owner}");
                    }
                }
                Ok(())
            }
        }
    }

    /// Deletes `owner`'s key files (an owner that moved away; with PostgreSQL the sealed keys
    /// go with its rows, in the same transaction).
    pub fn discard_files(&self, owner: &Name) -> anyhow::Result<()> {
        self.forget(owner);
        if let KeyHome::Files(dir) = &self.home {
            let dir = dir.join(owner.as_str());
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// Drops `owner`'s cached key (it moved away, or moved here again).
    pub fn forget(&self, owner: &Name) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
    }

    /// Drops every cached key.
    pub fn forget_all(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The owner's signing key if it is loaded already.
    pub fn loaded(&self, owner: &Name) -> Option<SigningKey> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .cloned()
    }

    /// The owner's current signing key (may read a file or the database: blocking).
    pub fn signing(&self, owner: &Name) -> anyhow::Result<SigningKey> {
        if let Some(k) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
        {
            return Ok(k.clone());
        }
        let key = match &self.home {
            KeyHome::Files(dir) => keyfile::load(&dir.join(owner.as_str()).join("signing.key"))?,
            KeyHome::Database(db, sealer) => SigningKey::from_bytes(
                &store::owner_keys::get(&db.lock()?, sealer, owner, "signing")?
                    .with_context(|| format!("no signing key stored for {owner}"))?,
            ),
        };
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.clone(), key.clone());
        Ok(key)
    }

    /// The owner's updating key.
    pub fn updating(&self, owner: &Name) -> anyhow::Result<SigningKey> {
        match &self.home {
            KeyHome::Files(dir) => keyfile::load(&dir.join(owner.as_str()).join("updating.key")),
            KeyHome::Database(db, sealer) => Ok(SigningKey::from_bytes(
                &store::owner_keys::get(&db.lock()?, sealer, owner, "updating")?
                    .with_context(|| format!("no updating key stored for {owner}"))?,
            )),
        }
    }

    /// Keeps `key` as the owner's next updating key (before the registry is asked to switch),
    /// or, with `installed`, as its updating key (after).
    fn keep_updating(&self, owner: &Name, key: &SigningKey, installed: bool) -> anyhow::Result<()> {
        let kind = if installed {
            "updating"
        } else {
            "updating.next"
        };
        match &self.home {
            KeyHome::Files(dir) => {
                let dir = dir.join(owner.as_str());
                let next = dir.join("updating.next.key");
                if installed {
                    std::fs::rename(&next, dir.join("updating.key"))
                        .context("installing the new updating key")?;
                    Ok(())
                } else {
                    let _ = std::fs::remove_file(&next);
                    keyfile::save(&next, key)
                }
            }
            KeyHome::Database(db, sealer) => {
                store::owner_keys::put(&db.lock()?, sealer, owner, kind, &key.to_bytes())?;
                Ok(())
            }
        }
    }

    /// The owner's keys, created if missing: (updating, signing).
    fn ensure(&self, owner: &Name) -> anyhow::Result<(SigningKey, SigningKey)> {
        match &self.home {
            KeyHome::Files(dir) => {
                let dir = dir.join(owner.as_str());
                let updating = keyfile::load_or_create(&dir.join("updating.key"))?;
                let signing = keyfile::load_or_create(&dir.join("signing.key"))?;
                Ok((updating, signing))
            }
            KeyHome::Database(db, sealer) => {
                let conn = db.lock()?;
                let mut keys = Vec::new();
                for kind in ["updating", "signing"] {
                    let fresh = keyfile::generate()?.to_bytes();
                    let stored =
                        store::owner_keys::put_if_absent(&conn, sealer, owner, kind, &fresh)?;
                    keys.push(SigningKey::from_bytes(&stored));
                }
                let signing = keys.pop().expect("two keys");
                let updating = keys.pop().expect("two keys");
                Ok((updating, signing))
            }
        }
    }
}

/// Why an owner could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    #[error("{0} is already an owner on this node")]
    Exists(Name),
    #[error("{0} is registered to someone else")]
    Taken(Name),
    #[error("{0}")]
    Registry(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl OwnerError {
    pub fn code(&self) -> &'static str {
        match self {
            OwnerError::Exists(_) => "owner.exists",
            OwnerError::Taken(_) => "name.taken",
            OwnerError::Registry(_) => "registry.unavailable",
            OwnerError::Other(_) => "internal",
        }
    }
}

/// Creates an owner: keys, registration with this node's URL, database row.
pub async fn create_owner(
    state: &NodeState,
    name: &Name,
    controller: Option<Name>,
    email: Option<String>,
) -> Result<Owner, OwnerError> {
    if state
        .hosts_now(name)
        .await
        .map_err(|e| OwnerError::Other(e.into()))?
    {
        return Err(OwnerError::Exists(name.clone()));
    }
    let n = name.clone();
    let (updating, signing) = state.with_keys(move |k| k.ensure(&n)).await?;
    register(state, name, &updating, &signing).await?;
    let owner = Owner {
        name: name.clone(),
        password_hash: None,
        controller,
        email,
        created: state.config.clock.now(),
    };
    let row = owner.clone();
    let added = state
        .write_announced(
            super::coherence::Change::Owner(name.to_string()),
            move |c| store::owners::insert_owner(c, &row),
        )
        .await
        .map_err(anyhow::Error::from)?;
    if !added {
        return Err(OwnerError::Exists(name.clone()));
    }
    state
        .owners
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone());
    Ok(owner)
}

async fn register(
    state: &NodeState,
    name: &Name,
    updating: &SigningKey,
    signing: &SigningKey,
) -> Result<(), OwnerError> {
    // Already registered? With our key that is a restart after a crash; otherwise taken.
    let ours = hex::encode(updating.verifying_key().as_bytes());
    let existing = match (
        state.mirror.record_or_sync(name).await,
        &state.registry_client,
    ) {
        (Ok(record), _) => record.map(|r| hex::encode(r.updating_key.as_bytes())),
        // The mirror cannot verify the registry yet (its checkpoint still waits for
        // witnesses): ask the registry itself. Its answer only decides whether to submit; the
        // registry checks the submission, and the mirror checks the result when it syncs.
        (Err(RegistryError::Untrusted(_)), Some(client)) => client
            .record(name)
            .await
            .map_err(|e| OwnerError::Registry(e.to_string()))?
            .map(|r| r.updating_key),
        (Err(e), _) => return Err(OwnerError::Registry(e.to_string())),
    };
    if let Some(key) = existing {
        if key == ours {
            return Ok(());
        }
        return Err(OwnerError::Taken(name.clone()));
    }
    let pow_bits = match (&state.authority, &state.registry_client) {
        (Some(a), _) => a.config().pow_bits,
        (None, Some(client)) => {
            client
                .metadata()
                .await
                .map_err(|e| OwnerError::Registry(e.to_string()))?
                .pow_bits
        }
        (None, None) => return Err(OwnerError::Registry("no registry configured".into())),
    };
    let mut op = Register {
        name: name.clone(),
        updating_key: updating.verifying_key(),
        signing_key: signing.verifying_key(),
        // A little earlier than now, so cartes and receipts signed in the first seconds
        // verify even when the registry's clock is slightly behind.
        valid_from: state.config.clock.now().saturating_sub(60),
        node_uri: format!("{}/", state.public_url),
        redirect_uris: Vec::new(),
        pow_nonce: [0; 8],
    };
    let op = tokio::task::spawn_blocking(move || {
        solve_pow(&mut op, pow_bits, |_| {});
        op
    })
    .await
    .context("solving the proof of work")?;
    let envelope = Operation::Register(op).sign(updating);
    let outcome = match (&state.authority, &state.registry_client) {
        (Some(a), _) => a
            .submit(envelope)
            .await
            .map(|_| ())
            .map_err(|e| (e.code().to_owned(), e.to_string())),
        (None, Some(client)) => client
            .submit(envelope)
            .await
            .map(|_| ())
            .map_err(|e| (e.code().to_owned(), e.to_string())),
        (None, None) => unreachable!("checked above"),
    };
    match outcome {
        Ok(()) => {}
        Err((code, _)) if code == "name.taken" || code == "name.confusable" => {
            return Err(OwnerError::Taken(name.clone()))
        }
        Err((_, message)) => return Err(OwnerError::Registry(message)),
    }
    // The registry accepted the name: failing now would leave it registered with no owner
    // here (and a retry would meet `name.taken`). A mirror that cannot sync yet (a registry
    // whose checkpoint still waits for its witnesses' cosignatures) catches up in the
    // background, and the sync error shows on `/healthz` meanwhile.
    if let Err(e) = state.mirror.sync().await {
        tracing::warn!(owner = %name, error = %e, "registered; the mirror will catch up");
    }
    Ok(())
}

/// On first start (no owners yet): creates the configured owner and prints a one-time link
/// to set its password.
pub async fn ensure_first_owner(state: &NodeState) -> anyhow::Result<()> {
    if !state
        .owners
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        return Ok(());
    }
    let name = state.config.owner.clone();
    if let Some(uri) = state.moved_to(&name) {
        // Moved away with `grant-node owner export`: made again here, it would be a second
        // owner under one name.
        tracing::warn!(owner = %name, to = %uri, "the configured owner moved to another node; this node hosts no owners");
        return Ok(());
    }
    match create_owner(state, &name, None, None).await {
        Ok(_) => {}
        // Another process of this node made it at the same moment.
        Err(OwnerError::Exists(_)) => return Ok(()),
        Err(OwnerError::Taken(n)) => bail!(
            "the owner name {n} is registered to someone else in the registry; choose another with --owner"
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("creating the first owner")),
    }
    let link = setup_link(state, &name).await?;
    println!("grant-node: created owner {name}; set its password at {link}");
    tracing::info!(owner = %name, "created the first owner");
    Ok(())
}

/// Creates a one-time password set-up link for `owner`.
pub async fn setup_link(state: &NodeState, owner: &Name) -> anyhow::Result<String> {
    let (token, hash) = auth::new_token();
    let expires = state.config.clock.now() + SETUP_TOKEN_TTL;
    let who = owner.clone();
    state
        .db
        .run(move |c| store::owners::insert_setup_token(c, &hash, &who, expires))
        .await?;
    Ok(format!("{}/setup?token={token}", state.public_url))
}

/// Replaces `owner`'s updating key with one derived from fresh recovery words, and returns the
/// words to show the owner once (they are kept nowhere). The new key is kept aside first, then
/// the registry switches to it (signed with the old key), then it is installed: a crash in
/// between leaves both keys, and the words work either way once the registry has switched.
pub async fn rekey_with_words(
    state: &NodeState,
    owner: &Name,
) -> anyhow::Result<crate::recovery::RecoveryWords> {
    let words = crate::recovery::RecoveryWords::generate()?;
    let new = words.updating_key();
    let o = owner.clone();
    let old = state.with_keys(move |k| k.updating(&o)).await?;
    let record = state
        .mirror
        .record_or_sync(owner)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("{owner} is not in the registry"))?;
    let (o, n) = (owner.clone(), new.clone());
    state
        .with_keys(move |k| k.keep_updating(&o, &n, false))
        .await?;
    let update = crate::registry::op::Update {
        name: owner.clone(),
        previous_digest: record.digest,
        new_signing_key: None,
        node_uri: None,
        redirect_uris: None,
        new_updating_key: Some(new.verifying_key()),
        compromised_key: None,
        compromised_since: None,
    };
    let envelope = Operation::Update(update).sign(&old);
    match (&state.authority, &state.registry_client) {
        (Some(a), _) => a
            .submit(envelope)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}")),
        (None, Some(client)) => client
            .submit(envelope)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}")),
        (None, None) => bail!("no registry configured"),
    }
    .context("the registry refused the new updating key")?;
    let (o, n) = (owner.clone(), new.clone());
    state
        .with_keys(move |k| k.keep_updating(&o, &n, true))
        .await?;
    if let Err(e) = state.mirror.sync().await {
        tracing::warn!(owner = %owner, error = %e, "re-keyed; the mirror will catch up");
    }
    Ok(words)
}
