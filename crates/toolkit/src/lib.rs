//! grant-toolkit, the application developer's library: one [`App`] that talks to many nodes.
//!
//! An application holds one signing key (the one `grant-node name register` wrote) and signs
//! what it needs: a grant carte to ask a user's node for a grant, and short-lived admin cartes
//! to call the nodes that granted it. It learns names from the registry, each record proven
//! against a signed (and, if asked, witnessed) checkpoint, to find a user's home node and to
//! check receipts and notifications against owners' keys; and it keeps a grant book in one
//! file the caller chooses ([`book`]). Nothing here blocks one node on another: every call is
//! async and no lock is held across the network.
//!
//! This crate links no database and no HTTP server: only the wire formats ([`grant_wire`]) and
//! an HTTP client ([`outbound`]). An application that wants a full verified mirror of the
//! registry instead of proven look-ups plugs one in as a [`Directory`] (`grant-node` has one).
//!
//! ```no_run
//! # async fn demo() -> Result<(), grant_toolkit::ClientError> {
//! use grant_toolkit::{App, AppConfig};
//! use grant_toolkit::wire::name::Name;
//! use grant_toolkit::wire::scope::Catalogue;
//!
//! let app = App::open(AppConfig::from_key_dir(
//!     "photo-app",
//!     "/home/dev/.grant-node/keys".as_ref(),
//!     "http://127.0.0.1:8650",
//!     None,
//!     "/var/lib/photo-app/grants.book".as_ref(),
//! )?)
//! .await?;
//! let alice = Name::parse("alice").expect("a valid name");
//! let scope = Catalogue::builtin().parse("view-profile").expect("a known scope");
//! // 1. Send the user's browser to this URL.
//! let start = app.start_grant(&alice, scope, "https://photo.example/cb").await?;
//! println!("{}", start.url);
//! // 2. When the browser comes back to the redirect URI:
//! let granted = app.finish_grant("https://photo.example/cb?state=…&node=alice&scope=…&receipt=…").await?;
//! // 3. Call the user's node; cartes are signed and renewed as needed.
//! let profile = app.get(&granted.owner, "/api/profile", scope).await?;
//! # let _ = profile; Ok(()) }
//! ```

pub mod book;
mod call;
pub mod notify;
pub mod outbound;
mod records;
pub mod registry_client;

/// The wire formats this library speaks, shared with the node.
pub use grant_wire as wire;

pub use records::{Answer, Directory, DirectoryMaker, LightMode, LIGHT_TTL};
use records::{Light, Records};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::outbound::HttpClient;
use book::{Book, BookEntry, BookError, PendingGrant};
use grant_wire::carte::{Carte, GrantRequest, KeyAt};
use grant_wire::clock::Clock;
use grant_wire::grant::statement::Receipt;
use grant_wire::name::Name;
use grant_wire::scope::Scope;

/// The protocol versions this library speaks.
pub const SUPPORTED_VERSIONS: &[u64] = &[1];
/// Default lifetime of the admin cartes the library signs, seconds.
pub const DEFAULT_TTL: u64 = 300;
/// A cached carte is re-signed when fewer than this many seconds remain.
const RENEW_BEFORE: u64 = 60;
/// The most entries each of the library's caches holds (signed cartes, verified records,
/// nodes' clock offsets); a full cache starts over, so memory stays bounded however many
/// users an application serves.
const MAX_CACHED: usize = 100_000;

/// What went wrong, typed so an application can act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("registry: {0}")]
    Registry(String),
    #[error("{0} is not a registered name")]
    UnknownUser(Name),
    #[error("the node at {url} speaks protocol version {version}, which this library does not (it speaks 1)")]
    UnsupportedNode { url: String, version: String },
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("the user did not grant access ({0})")]
    Denied(String),
    #[error("the redirect's state matches no grant request this application sent")]
    WrongState,
    #[error("the receipt is not valid: {0}")]
    BadReceipt(String),
    #[error("the grant is missing scope {}", .0.join(", "))]
    MissingScope(Vec<String>),
    #[error("no grant from {0} in the grant book")]
    NoGrant(Name),
    #[error("the node refused: {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("grant book: {0}")]
    Storage(String),
    #[error("{0}")]
    Config(String),
}

impl From<BookError> for ClientError {
    fn from(e: BookError) -> ClientError {
        ClientError::Storage(e.to_string())
    }
}

/// What [`App::open`] needs.
#[derive(Clone)]
pub struct AppConfig {
    pub name: Name,
    pub key: SigningKey,
    pub registry_url: String,
    /// The registry's public key. `None`: fetch it from the registry on first use and pin it
    /// in the grant book (trust on first use); later runs use the pinned key.
    pub registry_key: Option<VerifyingKey>,
    /// The grant book's file ([`book`]).
    pub book: PathBuf,
    /// How calls reach the registry and nodes: trust roots, pinned names, and the address
    /// guard for node URLs read from the registry (off by default: the library trusts the
    /// registry it is pointed at; an application that runs beside private services it must
    /// not reach sets `Guard::PublicOnly`).
    pub outbound: crate::outbound::Options,
    /// Which witnesses must have cosigned the checkpoints names are proven against (none by
    /// default: the registry's signature alone, and every checkpoint consistent with the last).
    pub light: LightMode,
    /// Where names come from instead of proven look-ups, e.g. a full verified mirror of the
    /// registry (`grant_node::ledger::mirror::Mirror`). `None`: proven look-ups.
    pub directory: Option<DirectoryMaker>,
}

impl AppConfig {
    /// Reads the signing key from `KEY_DIR/NAME/signing.key`, where `grant-node name
    /// register` wrote it.
    pub fn from_key_dir(
        name: &str,
        key_dir: &Path,
        registry_url: &str,
        registry_key: Option<VerifyingKey>,
        book: &Path,
    ) -> Result<AppConfig, ClientError> {
        let name = Name::parse(name).map_err(|e| ClientError::Config(e.to_string()))?;
        let key = grant_wire::keyfile::load(&key_dir.join(name.as_str()).join("signing.key"))
            .map_err(|e| ClientError::Config(format!("{e:#}")))?;
        Ok(AppConfig {
            name,
            key,
            registry_url: registry_url.to_owned(),
            registry_key,
            book: book.to_path_buf(),
            outbound: crate::outbound::Options::default(),
            light: LightMode::default(),
            directory: None,
        })
    }
}

/// A user's home node, as discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Base URL, without a trailing slash.
    pub url: String,
    pub protocol_version: u64,
    pub node_name: Option<String>,
}

/// A grant request to send a browser to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantStart {
    pub url: String,
    pub state: String,
}

/// A finished grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub owner: Name,
    pub scope: Scope,
    pub node_url: String,
}

/// The application.
pub struct App {
    name: Name,
    key: SigningKey,
    records: Records,
    book: Book,
    http: HttpClient,
    clock: Clock,
    ttl: u64,
    cartes: Mutex<HashMap<(Name, u64), (String, u64)>>,
    /// Learned clock differences per node URL (node minus us), seconds.
    offsets: Mutex<HashMap<String, i64>>,
}

impl App {
    /// Opens the grant book, and pins the registry's key in it on first use when none is given.
    pub async fn open(config: AppConfig) -> Result<App, ClientError> {
        let book = Book::open(&config.book)?;
        let http = HttpClient::with(config.outbound.clone())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let registry =
            crate::registry_client::RegistryClient::with_client(&config.registry_url, http.clone());
        let key = match config.registry_key {
            Some(k) => k,
            None => records::pinned_registry_key(&book, &registry).await?,
        };
        let records = match config.directory {
            Some(make) => Records::Directory(make(&config.registry_url, &key, &http)?),
            None => Records::Light(Light::open(
                grant_wire::registry::light::LightVerifier {
                    registry_key: key,
                    witnesses: config.light.witnesses,
                    quorum: config.light.quorum,
                },
                &config.registry_url,
                http.clone(),
                book.clone(),
            )),
        };
        Ok(App {
            name: config.name,
            key: config.key,
            records,
            book,
            http,
            clock: Clock::system(),
            ttl: DEFAULT_TTL,
            cartes: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the lifetime of the admin cartes this app signs (seconds).
    pub fn with_ttl(mut self, ttl: u64) -> App {
        self.ttl = ttl.max(10);
        self
    }

    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Signs a carte for `audience` with `admin_scope`, valid for `ttl` seconds from now.
    pub fn carte(&self, audience: &Name, admin_scope: Scope, ttl: u64) -> String {
        let now = self.clock.now();
        let mut c = Carte::new(self.name.clone(), now, now + ttl, nonce());
        c.audience = Some(audience.clone());
        c.admin_scope = admin_scope;
        c.sign(&self.key)
    }

    /// A name's verified record (`None`: not registered), from the mirror or, in light
    /// mode, proven against a witnessed checkpoint.
    pub async fn lookup(
        &self,
        name: &Name,
    ) -> Result<Option<grant_wire::registry::NameRecord>, ClientError> {
        self.records.record(name, false).await
    }

    /// `user`'s node URL as its verified record names it (`fresh`: asking the registry again).
    pub(crate) async fn node_url(&self, user: &Name, fresh: bool) -> Result<String, ClientError> {
        let record = self
            .records
            .record(user, fresh)
            .await?
            .ok_or_else(|| ClientError::UnknownUser(user.clone()))?;
        Ok(record.node_uri.trim_end_matches('/').to_owned())
    }

    /// Finds `user`'s home node through the verified registry and reads its discovery
    /// document; refuses a node whose protocol version this library does not speak.
    pub async fn discover(&self, user: &Name) -> Result<NodeInfo, ClientError> {
        let url = self.node_url(user, false).await?;
        let reply = self
            .http
            .get(&format!("{url}/.well-known/grant-node"))
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let doc: serde_json::Value = reply
            .json()
            .ok_or_else(|| ClientError::Unreachable(format!("{url} sent no discovery document")))?;
        let version = doc["protocol_version"].as_u64();
        match version {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(NodeInfo {
                url,
                protocol_version: v,
                node_name: doc["node_name"].as_str().map(str::to_owned),
            }),
            _ => Err(ClientError::UnsupportedNode {
                url,
                version: doc["protocol_version"].to_string(),
            }),
        }
    }

    /// Builds the `/grant` URL for `user`'s node, with a grant carte bound to `scope`,
    /// `redirect_uri` and a fresh random state, and remembers the request.
    pub async fn start_grant(
        &self,
        user: &Name,
        scope: Scope,
        redirect_uri: &str,
    ) -> Result<GrantStart, ClientError> {
        let node = self.discover(user).await?;
        let state = token();
        let now = self.clock.now();
        // Valid for half an hour: long enough for the user to log in at their node.
        let mut c = Carte::new(self.name.clone(), now, now + 1800, nonce());
        c.client_scope = Scope::GRANT;
        c.request = Some(GrantRequest {
            scope,
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
        });
        let carte = c.sign(&self.key);
        let scope_text = grant_wire::scope::Catalogue::builtin().format(scope);
        // Built before any await: the serializer is not Send.
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", self.name.as_str())
            .append_pair("client_secret", &carte)
            .append_pair("scope", &scope_text)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state)
            .append_pair("owner", user.as_str())
            .finish();
        let pending = PendingGrant {
            state: state.clone(),
            owner: user.clone(),
            node_url: node.url.clone(),
            scope,
            redirect_uri: redirect_uri.to_owned(),
            created: now,
        };
        self.book.put_pending(pending).await?;
        Ok(GrantStart {
            url: format!("{}/grant?{query}", node.url),
            state,
        })
    }

    /// Finishes a grant from the URL (or just the query) the browser was redirected to:
    /// matches the state, verifies the owner's receipt against the registry, records the grant.
    pub async fn finish_grant(&self, redirected: &str) -> Result<Granted, ClientError> {
        let query = redirected
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or(redirected);
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let state = params
            .get("state")
            .cloned()
            .ok_or(ClientError::WrongState)?;
        let pending = self
            .book
            .peek_pending(&state)
            .ok_or(ClientError::WrongState)?;
        if let Some(error) = params.get("error") {
            self.take_pending(&state).await?;
            return Err(ClientError::Denied(error.clone()));
        }
        let wire = params
            .get("receipt")
            .ok_or_else(|| ClientError::BadReceipt("no receipt".into()))?;
        let receipt = self.verify_receipt(wire).await?;
        if receipt.owner != pending.owner
            || params.get("node").map(String::as_str) != Some(pending.owner.as_str())
        {
            return Err(ClientError::BadReceipt(format!(
                "signed by {}, but the request went to {}",
                receipt.owner, pending.owner
            )));
        }
        if receipt.application != self.name {
            return Err(ClientError::BadReceipt(
                "issued to another application".into(),
            ));
        }
        if receipt.state != state {
            return Err(ClientError::BadReceipt("issued for another request".into()));
        }
        self.take_pending(&state).await?;
        self.book
            .put(
                &receipt.owner,
                &pending.node_url,
                receipt.scope,
                None,
                receipt.time,
            )
            .await?;
        Ok(Granted {
            owner: receipt.owner,
            scope: receipt.scope,
            node_url: pending.node_url,
        })
    }

    async fn take_pending(&self, state: &str) -> Result<(), ClientError> {
        self.book.take_pending(state).await?;
        Ok(())
    }

    /// The key `owner` held at `time`, syncing the mirror once if it does not know.
    pub(crate) async fn owner_key(
        &self,
        owner: &Name,
        time: u64,
    ) -> Result<VerifyingKey, ClientError> {
        for attempt in 0..2 {
            match self.records.key_at(owner, time, attempt > 0).await? {
                KeyAt::Valid(k) => return Ok(k),
                KeyAt::UnknownName | KeyAt::Unavailable if attempt == 0 => {}
                other => {
                    return Err(ClientError::BadReceipt(format!(
                        "{owner} held no valid key then ({other:?})"
                    )))
                }
            }
        }
        Err(ClientError::UnknownUser(owner.clone()))
    }

    async fn verify_receipt(&self, wire: &str) -> Result<Receipt, ClientError> {
        let (claimed, _) =
            Receipt::decode(wire).map_err(|e| ClientError::BadReceipt(e.to_string()))?;
        let key = self.owner_key(&claimed.owner, claimed.time).await?;
        match Receipt::verify(wire, &key) {
            Ok(r) => Ok(r),
            Err(_) => {
                // What we know may be behind a key change: ask again, once.
                let key = match self
                    .records
                    .key_at(&claimed.owner, claimed.time, true)
                    .await?
                {
                    KeyAt::Valid(k) => k,
                    other => {
                        return Err(ClientError::BadReceipt(format!(
                            "{} held no valid key then ({other:?})",
                            claimed.owner
                        )))
                    }
                };
                Receipt::verify(wire, &key).map_err(|e| ClientError::BadReceipt(e.to_string()))
            }
        }
    }

    /// The grant book.
    pub async fn grants(&self) -> Result<Vec<BookEntry>, ClientError> {
        Ok(self.book.all())
    }

    /// Applies a verified grant-updated notification to the grant book.
    pub async fn record_update(
        &self,
        owner: &Name,
        scope: Scope,
        expires: Option<u64>,
        time: u64,
    ) -> Result<(), ClientError> {
        let url = self.node_of(owner).await.unwrap_or_default();
        self.book.put(owner, &url, scope, expires, time).await?;
        Ok(())
    }
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    // The OS generator failing is not something a caller could continue past safely.
    getrandom::getrandom(&mut n).expect("the operating system's random generator works");
    n
}

/// A request's random state: 32 bytes, base64url.
fn token() -> String {
    use base64::Engine;
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).expect("the operating system's random generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}
