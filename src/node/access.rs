//! Carte-authenticated access: verify a carte (through the verified-carte cache), find the
//! owner's grant to the application (through the grant cache), and compute what the request
//! may do: `carte.admin_scope ∩ grant`.
//!
//! The verified-carte cache is keyed by the blake3 hash of the carte's wire form and holds a
//! carte only until its deadline. A hit skips the key look-up and the signature, never the
//! claims: time, audience and address are re-checked on every use. Entries are also tagged
//! with the mirror's epoch, so a key rotation or a compromised mark makes every cached carte
//! go through the full check again. The grant cache is invalidated by every grant write, so a
//! revocation takes effect on the very next request.
//!
//! Threading: a hit answers from memory on the async worker. Everything that needs the
//! database (a miss, a process cut off from the others' announcements, a controller's rows)
//! runs on the blocking pool through [`store::Db::run`], so a stalled database holds only the
//! requests that need it, never a worker and the requests scheduled behind it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use super::NodeState;
use crate::carte::{self, CarteError, Expectations, VerifiedCarte};
use crate::name::Name;
use crate::scope::Scope;
use crate::store::{self, grants::Grant, StoreError};

/// How many verified cartes the cache holds at most.
pub const DEFAULT_CARTE_CACHE: usize = 100_000;

/// A cached carte and the mirror epoch it was verified in.
type CachedCarte = (Arc<VerifiedCarte>, u64);

/// Verified cartes by fingerprint.
pub struct CarteCache {
    max: usize,
    /// Shared, so a hit costs a reference count, not a copy of the carte.
    map: Mutex<HashMap<[u8; 32], CachedCarte>>,
}

impl CarteCache {
    pub fn new(max: usize) -> CarteCache {
        CarteCache {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &[u8; 32], epoch: u64) -> Option<Arc<VerifiedCarte>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((v, e)) if *e == epoch => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&self, key: [u8; 32], verified: Arc<VerifiedCarte>, epoch: u64, now: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            // Drop what has expired; if the cache is still full, start over. Either way the
            // bound holds and the cost is spread over `max` insertions.
            map.retain(|_, (v, _)| v.carte().deadline >= now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key, (verified, epoch));
    }
}

/// Grants by (owner, application); `None` caches "no grant".
///
/// Each entry also holds when its grant was last used by a carte, as a plain atomic stored on
/// the hit path (no lock beyond the read lock already held, no allocation): the console's
/// "last used" costs the hot path one relaxed store. [`GrantCache::take_usage`] collects and
/// resets those times for a batched write (once a minute); an entry dropped in between hands
/// its time over first, so no use is lost.
#[derive(Default)]
pub struct GrantCache {
    map: RwLock<HashMap<(Name, Name), CachedGrant>>,
    /// Bumped by every invalidation. A reader that missed the cache fills it only if no
    /// invalidation happened while it was reading the database, so a value read just before a
    /// revocation committed can never be cached after it.
    generation: std::sync::atomic::AtomicU64,
    /// Uses of entries that were dropped before their time was collected.
    dropped: Mutex<Vec<(Name, Name, u64)>>,
    /// With several processes: whether this one may answer from the cache now.
    pub(crate) coherence: std::sync::OnceLock<Arc<super::coherence::Coherence>>,
}

struct CachedGrant {
    grant: Option<Grant>,
    /// Unix seconds of the last use not yet collected; 0 for none.
    last_used: std::sync::atomic::AtomicU64,
}

/// Grants kept in memory before the cache starts over.
const MAX_CACHED_GRANTS: usize = 1_000_000;
/// Uses of dropped cache entries kept between two flushes.
const MAX_DROPPED_USES: usize = 100_000;

impl GrantCache {
    /// The grant of `owner` to `app`, from the cache or the database.
    pub async fn get(
        &self,
        db: &store::Db,
        owner: &Name,
        app: &Name,
    ) -> Result<Option<Grant>, StoreError> {
        self.lookup(db, owner, app, 0).await
    }

    /// [`GrantCache::get`] for a carte that is using the grant at `now`: also notes the use
    /// (the console's "last used").
    pub async fn use_grant(
        &self,
        db: &store::Db,
        owner: &Name,
        app: &Name,
        now: u64,
    ) -> Result<Option<Grant>, StoreError> {
        self.lookup(db, owner, app, now).await
    }

    async fn lookup(
        &self,
        db: &store::Db,
        owner: &Name,
        app: &Name,
        used_at: u64,
    ) -> Result<Option<Grant>, StoreError> {
        use std::sync::atomic::Ordering;
        if self.coherence.get().is_some_and(|c| !c.trusted()) {
            // Cut off from the other processes' announcements: the database decides.
            return read_grant(db, owner, app).await;
        }
        let key = (owner.clone(), app.clone());
        if let Some(g) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if used_at != 0 {
                g.last_used.store(used_at, Ordering::Relaxed);
            }
            return Ok(g.grant);
        }
        // A miss reads the database on the blocking pool: one primary-key look-up.
        let before = self.generation.load(Ordering::Acquire);
        let grant = read_grant(db, owner, app).await?;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == before {
            if map.len() >= MAX_CACHED_GRANTS {
                let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
                for ((o, a), g) in map.drain() {
                    let t = g.last_used.load(Ordering::Relaxed);
                    if t != 0 && dropped.len() < MAX_DROPPED_USES {
                        dropped.push((o, a, t));
                    }
                }
            }
            map.insert(
                key,
                CachedGrant {
                    grant,
                    last_used: std::sync::atomic::AtomicU64::new(used_at),
                },
            );
        } else if used_at != 0 {
            let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
            if dropped.len() < MAX_DROPPED_USES {
                dropped.push((key.0, key.1, used_at));
            }
        }
        Ok(grant)
    }

    /// Every use noted since the last call: (owner, application, Unix seconds).
    pub fn take_usage(&self) -> Vec<(Name, Name, u64)> {
        use std::sync::atomic::Ordering;
        let mut out = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()));
        for ((o, a), g) in self.map.read().unwrap_or_else(|p| p.into_inner()).iter() {
            let t = g.last_used.swap(0, Ordering::Relaxed);
            if t != 0 {
                out.push((o.clone(), a.clone(), t));
            }
        }
        out
    }

    fn drop_entry(&self, key: (Name, Name), g: CachedGrant) {
        let t = g.last_used.load(std::sync::atomic::Ordering::Relaxed);
        if t != 0 {
            let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded between flushes: past the bound a use is forgotten ("last used" is a
            // hint for people, never an access decision).
            if dropped.len() < MAX_DROPPED_USES {
                dropped.push((key.0, key.1, t));
            }
        }
    }

    /// Forgets a grant after it changed (called after the change committed).
    pub fn invalidate(&self, owner: &Name, app: &Name) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let key = (owner.clone(), app.clone());
        if let Some(g) = map.remove(&key) {
            self.drop_entry(key, g);
        }
    }

    /// Forgets every grant.
    pub fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let keys: Vec<(Name, Name)> = map.keys().cloned().collect();
        for key in keys {
            if let Some(g) = map.remove(&key) {
                self.drop_entry(key, g);
            }
        }
    }

    /// Forgets every grant of `owner`.
    pub fn invalidate_owner(&self, owner: &Name) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let keys: Vec<(Name, Name)> = map.keys().filter(|(o, _)| o == owner).cloned().collect();
        for key in keys {
            if let Some(g) = map.remove(&key) {
                self.drop_entry(key, g);
            }
        }
    }
}

/// One grant from the database, on the blocking pool.
async fn read_grant(db: &store::Db, owner: &Name, app: &Name) -> Result<Option<Grant>, StoreError> {
    let (o, a) = (owner.clone(), app.clone());
    db.run(move |c| store::grants::grant(c, &o, &a)).await
}

/// Who is calling, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The application (the carte's signer).
    pub app: Name,
    /// The owner whose resources are addressed (the carte's audience).
    pub owner: Name,
    pub subject: Option<Name>,
    pub client_scope: Scope,
    /// What the carte asks to exercise.
    pub requested: Scope,
    /// What it may exercise: `requested ∩ grant` (everything requested when the owner signs
    /// for itself; `requested ∩ the controller's maximum` for a controller acting on behalf).
    pub allowed: Scope,
    /// Whether `app` is a controller acting on behalf of `owner` (`subject`).
    pub controller: bool,
}

/// Why a carte-authenticated request is refused.
#[derive(Debug)]
pub enum AccessError {
    Carte(CarteError),
    /// The carte is fine but the grant lacks these scopes.
    Missing(Scope),
    /// The carte is fine but its signer may not do this at all (code, message).
    Forbidden(&'static str, String),
    /// The carte is for an owner that moved to another node: (owner, its new node's URI).
    Moved(Name, String),
    Store(StoreError),
}

impl From<CarteError> for AccessError {
    fn from(e: CarteError) -> AccessError {
        AccessError::Carte(e)
    }
}

impl NodeState {
    /// Verifies a carte, through the cache. A signer the mirror does not know triggers a sync
    /// first; if the registry cannot be reached then, the answer is `registry.unavailable`.
    pub async fn verify_carte(
        &self,
        wire: &str,
        peer: SocketAddr,
    ) -> Result<Arc<VerifiedCarte>, CarteError> {
        let also = self.newly_hosted(wire).await;
        let accepts = |n: &Name| self.accepts_audience(n) || also.as_ref() == Some(n);
        self.verify_carte_for(wire, peer, &accepts).await
    }

    /// When this process is cut off from the others' announcements: the carte's audience if
    /// the database hosts it though this process did not know (another process created it).
    /// Only then does checking a carte wait for the database; an audience known here answers
    /// from memory, so a stalled database does not stall carte checks.
    async fn newly_hosted(&self, wire: &str) -> Option<Name> {
        if !self.cut_off() {
            return None;
        }
        let audience = carte::decode(wire).ok()?.carte.audience?;
        if self.accepts_audience(&audience) {
            return None;
        }
        let n = audience.clone();
        self.db
            .run(move |c| store::owners::owner(c, &n))
            .await
            .ok()??;
        Some(audience)
    }

    /// [`NodeState::verify_carte`] with the caller's own rule for acceptable audiences: the
    /// `/grant` page checks a grant carte addressed to an owner of another node before it
    /// sends the browser there.
    pub async fn verify_carte_for(
        &self,
        wire: &str,
        peer: SocketAddr,
        accepts: &(dyn Fn(&Name) -> bool + Sync),
    ) -> Result<Arc<VerifiedCarte>, CarteError> {
        let expect = Expectations {
            accepts_audience: accepts,
            peer: Some(peer.ip()),
            skew: self.config.carte_skew,
            max_lifetime: self.config.carte_max_lifetime,
        };
        let now = self.config.clock.now();
        if wire.len() > carte::MAX_WIRE_LEN {
            return Err(CarteError::Malformed("longer than 4096 bytes"));
        }
        let key = carte::fingerprint(wire);
        let epoch = self.mirror.epoch();
        if let Some(hit) = self.cartes.get(&key, epoch) {
            self.metrics.carte_cache_hit();
            carte::verify::check_claims(hit.carte(), now, &expect)?;
            return Ok(hit);
        }
        let keys = self.mirror.keys();
        let result = match carte::verify(wire, now, &expect, &keys.cached()) {
            Err(CarteError::UnknownSigner) => {
                // Not in memory: loaded from the mirror on the blocking pool, and the registry
                // asked when the mirror does not know the name either.
                let owner = carte::decode(wire)?.carte.owner;
                match self.mirror.ensure_known(&owner).await {
                    Ok(true) => carte::verify(wire, now, &expect, &keys.cached()),
                    Ok(false) => Err(CarteError::UnknownSigner),
                    Err(_) => Err(CarteError::RegistryUnavailable),
                }
            }
            other => other,
        };
        self.metrics.carte_verified(result.as_ref().err());
        let verified = Arc::new(result?);
        self.cartes.put(key, verified.clone(), epoch, now);
        Ok(verified)
    }

    /// Authenticates a carte addressed to an owner hosted here and computes what it may do.
    /// `needed` scopes must all be allowed.
    pub async fn authorize(
        &self,
        wire: &str,
        peer: SocketAddr,
        needed: Scope,
    ) -> Result<Principal, AccessError> {
        let verified = match self.verify_carte(wire, peer).await {
            Err(CarteError::WrongNode) => return Err(self.wrong_node(wire)),
            other => other?,
        };
        let c = verified.carte();
        if let Some(subject) = &c.subject {
            return self.on_behalf(&verified, subject, needed).await;
        }
        let owner = match &c.audience {
            Some(a) if self.hosts_now(a).await.map_err(AccessError::Store)? => a.clone(),
            // Addressed to the node's own name, or to nobody: not an owner's resources.
            _ => return Err(self.wrong_node(wire)),
        };
        let allowed = if c.owner == owner {
            // The owner signing for itself holds every right over its own resources.
            c.admin_scope
        } else {
            let now = self.config.clock.now();
            let grant = self
                .grants
                .use_grant(&self.db, &owner, &c.owner, now)
                .await
                .map_err(AccessError::Store)?;
            let granted = grant.map(|g| g.effective(now)).unwrap_or(Scope::NONE);
            c.admin_scope.intersection(granted)
        };
        let principal = Principal {
            app: c.owner.clone(),
            owner,
            subject: c.subject.clone(),
            client_scope: c.client_scope,
            requested: c.admin_scope,
            allowed,
            controller: false,
        };
        let missing = needed.difference(allowed);
        if !missing.is_empty() {
            return Err(AccessError::Missing(missing));
        }
        Ok(principal)
    }

    /// A carte not for this node: `owner.moved` when it names an owner that moved away from
    /// here (its subject, else its audience), `carte.wrong-node` otherwise.
    fn wrong_node(&self, wire: &str) -> AccessError {
        let named = carte::decode(wire)
            .ok()
            .and_then(|d| d.carte.subject.or(d.carte.audience));
        match named.and_then(|n| self.moved_to(&n).map(|uri| (n, uri))) {
            Some((owner, uri)) => AccessError::Moved(owner, uri),
            None => AccessError::Carte(CarteError::WrongNode),
        }
    }

    /// A controller's carte with `subject = OWNER`: accepted as that owner, limited to the
    /// controller's maximum scope, and only for owners this controller created.
    async fn on_behalf(
        &self,
        verified: &VerifiedCarte,
        subject: &Name,
        needed: Scope,
    ) -> Result<Principal, AccessError> {
        let c = verified.carte();
        let node = self.node_name();
        if c.audience.is_none() || (c.audience != node && c.audience.as_ref() != Some(subject)) {
            return Err(AccessError::Carte(CarteError::WrongNode));
        }
        let (signer, s) = (c.owner.clone(), subject.clone());
        let (controller, owner) = self
            .db
            .run(move |conn| {
                Ok::<_, StoreError>((
                    store::controllers::get(conn, &signer)?,
                    store::owners::owner(conn, &s)?,
                ))
            })
            .await
            .map_err(AccessError::Store)?;
        let controller = controller.ok_or_else(|| {
            AccessError::Forbidden(
                "controller.unknown",
                format!("{} is not a controller on this node", c.owner),
            )
        })?;
        if owner.is_none() {
            if let Some(uri) = self.moved_to(subject) {
                return Err(AccessError::Moved(subject.clone(), uri));
            }
        }
        if owner.and_then(|o| o.controller).as_ref() != Some(&c.owner) {
            return Err(AccessError::Forbidden(
                "controller.not-yours",
                format!("{subject} was not created by {}", c.owner),
            ));
        }
        let allowed = c.admin_scope.intersection(controller.max_scope);
        let missing = needed.difference(allowed);
        if !missing.is_empty() {
            return Err(AccessError::Missing(missing));
        }
        Ok(Principal {
            app: c.owner.clone(),
            owner: subject.clone(),
            subject: Some(subject.clone()),
            client_scope: c.client_scope,
            requested: c.admin_scope,
            allowed,
            controller: true,
        })
    }
}
