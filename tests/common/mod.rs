//! Test harness: real servers on `127.0.0.1:0`, real SQLite files in temporary folders.
//!
//! `Stub` runs the registry exactly as `registry-stub` does (the binary is a thin wrapper over
//! `registry_api::serve_standalone`), `Node` runs `grant_node::server::serve` as `grant-node serve`
//! does. Both stop on drop and can be restarted on the same data directory.

#![allow(dead_code, clippy::unwrap_used)]

pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use grant_node::carte::Carte;
use grant_node::clock::Clock;
use grant_node::config::{Config, RegistrySetting};
use grant_node::http::api::registry as registry_api;
use grant_node::ledger::authority::{Authority, AuthorityConfig};
use grant_node::name::Name;
use grant_node::outbound::{HttpClient, Reply};
use grant_node::registry::client::RegistryClient;
use grant_node::registry::op::{solve_pow, Operation, Register};
use grant_node::registry::RecordJson;
use hyper::body::Bytes;
use hyper::Method;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server task and the means to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has let go of its port and files.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `handler` on `listener` in a task, as the real servers do.
pub fn serve_task<H, F>(listener: tokio::net::TcpListener, handler: H) -> Running
where
    H: Fn(grant_node::http::Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<grant_node::http::Body>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        grant_node::http::run(listener, handler, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

pub async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A registry stub in a temporary folder.
pub struct Stub {
    pub dir: PathBuf,
    pub pow_bits: u32,
    pub server: Running,
    pub authority: Authority,
}

impl Stub {
    pub async fn start(dir: &Path, pow_bits: u32) -> Stub {
        Stub::start_at(dir, pow_bits, "127.0.0.1:0").await
    }

    /// Starts on a given address (a restart on the same port).
    pub async fn start_at(dir: &Path, pow_bits: u32, addr: &str) -> Stub {
        let authority = Authority::open(
            dir,
            AuthorityConfig {
                pow_bits,
                ..AuthorityConfig::default()
            },
            Clock::system(),
        )
        .unwrap();
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let a = authority.clone();
        let task = tokio::spawn(async move {
            registry_api::serve_standalone(l, a, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Stub {
            dir: dir.to_path_buf(),
            pow_bits,
            server: Running {
                addr,
                stop: Some(tx),
                task: Some(task),
            },
            authority,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.url())
    }

    /// The toolkit for application `id`, pinned to this registry, its grant book in `dir`.
    pub async fn open_app(&self, id: &Identity, dir: &Path) -> grant_node::client::App {
        grant_node::client::App::open(grant_node::client::AppConfig {
            name: id.name.clone(),
            key: id.signing.clone(),
            registry_url: self.url(),
            registry_key: Some(self.authority.public_key()),
            book: dir.join("grants.book"),
            outbound: Default::default(),
            light: Default::default(),
            directory: None,
        })
        .await
        .unwrap()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.authority.public_key().as_bytes())
    }

    /// The registry's own signing key, for tests that play a lying registry.
    pub fn signing_key(&self) -> SigningKey {
        grant_node::keyfile::load(&self.dir.join("registry.key")).unwrap()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// An application's or owner's keys, as the CLI keeps them.
pub struct Identity {
    pub name: Name,
    pub updating: SigningKey,
    pub signing: SigningKey,
}

impl Identity {
    pub fn new(name: &str, seed: u8) -> Identity {
        Identity {
            name: Name::parse(name).unwrap(),
            updating: SigningKey::from_bytes(&[seed; 32]),
            signing: SigningKey::from_bytes(&[seed.wrapping_add(100); 32]),
        }
    }

    /// The signed `register` envelope, with the proof of work solved.
    pub fn register_op(&self, node_uri: &str, redirect_uris: &[&str], pow_bits: u32) -> Vec<u8> {
        let mut r = Register {
            name: self.name.clone(),
            updating_key: self.updating.verifying_key(),
            signing_key: self.signing.verifying_key(),
            // Well in the past (within the registry's 300 s skew), as for an application registered
            // before it is used; tests with skewed clocks rely on it.
            valid_from: now() - 250,
            node_uri: node_uri.into(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            pow_nonce: [0; 8],
        };
        solve_pow(&mut r, pow_bits, |_| {});
        Operation::Register(r).sign(&self.updating)
    }

    pub async fn register(&self, registry: &RegistryClient, pow_bits: u32) -> RecordJson {
        registry
            .submit(self.register_op(
                "https://node.example/",
                &["https://app.example/cb"],
                pow_bits,
            ))
            .await
            .unwrap()
    }

    /// A carte for `audience` with `admin_scope`, beginning `begin_offset` seconds from now.
    pub fn carte(&self, audience: &str, admin_scope: u64, begin_offset: i64) -> Carte {
        let beginning = now().saturating_add_signed(begin_offset);
        let mut c = Carte::new(
            self.name.clone(),
            beginning,
            beginning + 300,
            random_nonce(),
        );
        c.audience = Some(Name::parse(audience).unwrap());
        c.admin_scope = grant_node::scope::Scope::from_bits(admin_scope);
        c
    }
}

pub fn now() -> u64 {
    Clock::system().now()
}

pub fn random_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::getrandom(&mut n).unwrap();
    n
}

/// A node in a temporary folder.
///
/// With `GRANT_NODE_TEST_BACKEND=postgres` (scripts/test.sh runs the grant, API and
/// controlled-account suites a second time so), a node keeps its shared data in a fresh
/// PostgreSQL database instead of its SQLite file, and a node configured with the embedded
/// registry gets a registry stub instead (PostgreSQL deployments run one). The tests do not
/// change: they reach the registry through [`Node::registry`] and the database through
/// [`Node::db`].
pub struct Node {
    pub dir: PathBuf,
    pub server: Running,
    /// Where registry operations go: the node itself, or its stub.
    pub registry: String,
    /// The PostgreSQL database, when on PostgreSQL.
    pub database: Option<String>,
    stub: Option<Stub>,
}

/// Whether this run puts nodes on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("GRANT_NODE_TEST_BACKEND").as_deref() == Ok("postgres")
}

impl Node {
    /// A node mirroring `registry` (with its public key), whose first owner is `owner`.
    pub async fn start_remote(dir: &Path, registry: &str, key_hex: &str, owner: &str) -> Node {
        Node::start(Node::remote_config(dir, registry, key_hex, owner)).await
    }

    pub fn remote_config(dir: &Path, registry: &str, key_hex: &str, owner: &str) -> Config {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
        config.registry = RegistrySetting::Remote {
            url: registry.into(),
            key: grant_node::config::parse_key(key_hex).unwrap(),
        };
        config.owner = Name::parse(owner).unwrap();
        config.sync_interval = Duration::from_secs(1);
        // Every test application listens on loopback.
        config.allow_private_targets = true;
        config
    }

    /// A node with its embedded registry (proof of work off), whose first owner is `owner`.
    pub async fn start_embedded(dir: &Path, owner: &str) -> Node {
        Node::start(Node::embedded_config(dir, owner)).await
    }

    pub fn embedded_config(dir: &Path, owner: &str) -> Config {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
        config.registry = RegistrySetting::Embedded { pow_bits: 0 };
        config.owner = Name::parse(owner).unwrap();
        config.sync_interval = Duration::from_secs(1);
        // Every test application listens on loopback.
        config.allow_private_targets = true;
        config
    }

    pub async fn start(config: Config) -> Node {
        let l = listener().await;
        Node::start_on(config, l).await
    }

    /// Starts on a given listener (a restart on the same address).
    pub async fn start_on(mut config: Config, l: tokio::net::TcpListener) -> Node {
        let dir = config.data_dir.clone();
        let addr = l.local_addr().unwrap();
        let (mut stub, mut database) = (None, None);
        if on_postgres() {
            std::fs::create_dir_all(&dir).unwrap();
            if let RegistrySetting::Embedded { pow_bits } = config.registry {
                let s = Stub::start(&dir.join("registry"), pow_bits).await;
                config.registry = RegistrySetting::Remote {
                    url: s.url(),
                    key: s.authority.public_key(),
                };
                stub = Some(s);
            }
            // The same database across restarts on one folder.
            let remembered = dir.join("test-database-url");
            let url = match std::fs::read_to_string(&remembered) {
                Ok(url) => url,
                Err(_) => {
                    let cluster = pg::Cluster::shared().expect("PostgreSQL for this run");
                    let url = cluster.database("node").await;
                    std::fs::write(&remembered, &url).unwrap();
                    url
                }
            };
            config.database = grant_node::config::Database::Postgres {
                url: url.clone(),
                key_file: dir.join("database.key"),
            };
            database = Some(url);
        }
        let registry = stub
            .as_ref()
            .map_or_else(|| format!("http://{addr}"), Stub::url);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            grant_node::server::serve(config, l, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let node = Node {
            dir,
            server: Running {
                addr,
                stop: Some(tx),
                task: Some(task),
            },
            registry,
            database,
            stub,
        };
        node.wait_ready().await;
        node
    }

    /// The node's shared database, as the node opens it.
    pub fn db(&self) -> grant_node::store::Db {
        match &self.database {
            Some(url) => grant_node::store::Db::connect(url, 1).unwrap(),
            None => grant_node::store::Db::open(&self.dir.join("node.sqlite3")).unwrap(),
        }
    }

    /// Environment for the `grant-node` CLI to find this node's database.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        match &self.database {
            Some(url) => vec![("GRANT_NODE_DATABASE", url.clone())],
            None => Vec::new(),
        }
    }

    /// An owner's signing key, from its file or (PostgreSQL) sealed in the database.
    pub async fn owner_key(&self, owner: &str) -> SigningKey {
        match &self.database {
            Some(url) => pg::owner_key(url, &self.dir.join("database.key"), owner).await,
            None => {
                grant_node::keyfile::load(&self.dir.join("owners").join(owner).join("signing.key"))
                    .unwrap()
            }
        }
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = HttpClient::new()
                .get(&format!("{}/healthz", self.url()))
                .await
            {
                if r.status.is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("node did not become ready");
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn get(&self, path: &str) -> Reply {
        HttpClient::new()
            .get(&format!("{}{}", self.url(), path))
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> Reply {
        HttpClient::new()
            .send(
                Method::POST,
                &format!("{}{}", self.url(), path),
                &[("content-type", "application/json")],
                Bytes::from(body.to_string()),
            )
            .await
            .unwrap()
    }

    /// `POST /api/cartes/verify`: the principal, or the error code.
    pub async fn verify(&self, carte: &str) -> (u16, String) {
        let r = self
            .post_json("/api/cartes/verify", serde_json::json!({ "carte": carte }))
            .await;
        let v: serde_json::Value = r.json().unwrap();
        let what = v
            .get("principal")
            .or_else(|| v.get("error"))
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_owned();
        (r.status.as_u16(), what)
    }

    /// The mirror's status from `/healthz`.
    pub async fn health(&self) -> serde_json::Value {
        self.get("/healthz").await.json().unwrap()
    }

    /// Waits until the mirror has caught up with the stub's current checkpoint.
    pub async fn wait_synced_to(&self, stub: &Stub) {
        let cp: serde_json::Value = HttpClient::new()
            .get(&format!("{}/registry/checkpoint", stub.url()))
            .await
            .unwrap()
            .json()
            .unwrap();
        self.wait_synced(cp["size"].as_u64().unwrap()).await;
    }

    /// Waits until the mirror has verified `size` entries.
    pub async fn wait_synced(&self, size: u64) {
        for _ in 0..400 {
            if self.health().await["registry"]["size"].as_u64() == Some(size) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mirror did not reach size {size}: {}", self.health().await);
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("grant-node-test")
        .tempdir()
        .unwrap()
}

/// Posts raw bytes to a registry's `/registry/ops`.
pub async fn post_op(registry: &str, body: Vec<u8>) -> Reply {
    HttpClient::new()
        .send(
            Method::POST,
            &format!("{registry}/registry/ops"),
            &[("content-type", "application/cbor")],
            Bytes::from(body),
        )
        .await
        .unwrap()
}

/// A browser: a cookie jar, an `Origin` for its form posts, and no automatic redirects, so
/// tests see every hop.
pub struct Browser {
    client: HttpClient,
    pub cookies: std::collections::BTreeMap<String, String>,
    /// Sent as `Origin` on POSTs; `None` sends none.
    pub origin: Option<String>,
}

impl Browser {
    pub fn new(origin: &str) -> Browser {
        Browser::with_client(origin, HttpClient::new())
    }

    /// A browser whose requests go through `client` (its trust roots and pinned names).
    pub fn with_client(origin: &str, client: HttpClient) -> Browser {
        Browser {
            client,
            cookies: Default::default(),
            origin: Some(origin.to_owned()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, reply: &Reply) {
        for value in reply.headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let first = text.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        let cookie = self.cookie_header();
        let reply = self
            .client
            .send(Method::GET, url, &[("cookie", &cookie)], Bytes::new())
            .await
            .unwrap();
        self.remember(&reply);
        reply
    }

    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Reply {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            body.append_pair(k, v);
        }
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        if let Some(o) = &self.origin {
            headers.push(("origin", o.as_str()));
        }
        let reply = self
            .client
            .send(Method::POST, url, &headers, Bytes::from(body.finish()))
            .await
            .unwrap();
        self.remember(&reply);
        reply
    }

    /// Opens the login page of the node at `base` and submits it, as a person would.
    pub async fn log_in(&mut self, base: &str, name: &str, password: &str, next: &str) -> Reply {
        let page = self.get(&format!("{base}/login")).await;
        let html = text(&page);
        self.post_form(
            &format!("{base}/login"),
            &[
                ("name", name),
                ("password", password),
                ("login_csrf", &hidden(&html, "login_csrf")),
                ("next", next),
            ],
        )
        .await
    }

    /// Answers a consent page (its HTML) with Allow for `scope`.
    pub async fn allow(&mut self, base: &str, consent: &str, scope: &str) -> Reply {
        self.post_form(
            &format!("{base}/grant"),
            &[
                ("request_id", &hidden(consent, "request_id")),
                ("csrf", &hidden(consent, "csrf")),
                ("scope", scope),
                ("decision", "allow"),
            ],
        )
        .await
    }

    /// A request with a JSON body (or none), the cookies and `Origin`.
    pub async fn json(
        &mut self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(o) = &self.origin {
            headers.push(("origin", o.as_str()));
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let reply = self.client.send(method, url, &headers, body).await.unwrap();
        self.remember(&reply);
        reply
    }
}

/// The `Location` of a redirect.
pub fn location(reply: &Reply) -> String {
    reply
        .headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} reply: {}", reply.status, text(reply)))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// The stable error code shown on an error page.
pub fn page_code(reply: &Reply) -> String {
    let html = text(reply);
    let marker = "error: ";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no error code in {html}"))
        + marker.len();
    let end = html[start..].find('<').unwrap() + start;
    html[start..end].to_owned()
}

impl Node {
    /// Sets `owner`'s password through a one-time link, as the owner would; returns the
    /// logged-in browser.
    pub async fn set_password(&self, owner: &str, password: &str) -> Browser {
        let db = self.db();
        let (token, hash) = grant_node::auth::new_token();
        let name = Name::parse(owner).unwrap();
        grant_node::store::owners::insert_setup_token(
            &db.lock().unwrap(),
            &hash,
            &name,
            now() + 600,
        )
        .unwrap();
        let mut browser = Browser::new(&self.url());
        let form = browser
            .get(&format!("{}/setup?token={token}", self.url()))
            .await;
        assert_eq!(form.status, 200, "{}", text(&form));
        let done = browser
            .post_form(
                &format!("{}/setup", self.url()),
                &[("token", &token), ("password", password)],
            )
            .await;
        let done = confirm_words(&mut browser, &self.url(), &done).await;
        assert_eq!(done.status, 303, "{}", text(&done));
        assert!(browser.cookies.contains_key("gn_session"));
        browser
    }

    /// Registers an application in this node's registry (embedded, or its stub), and
    /// waits until the node's mirror knows it.
    pub async fn register_app(&self, app: &Identity, redirect_uris: &[&str]) -> RecordJson {
        let r = post_op(
            &self.registry,
            app.register_op("https://app.example/", redirect_uris, 0),
        )
        .await;
        assert_eq!(r.status, 201, "{}", text(&r));
        if self.stub.is_some() {
            let known = self.get(&format!("/registry/names/{}", app.name)).await;
            assert_eq!(known.status, 200, "{}", text(&known));
        }
        r.json().unwrap()
    }
}

impl Identity {
    /// A grant carte for `scope`, bound to `redirect_uri` and `state`.
    pub fn grant_carte(&self, scope: u64, redirect_uri: &str, state: &str) -> String {
        let mut c = Carte::new(self.name.clone(), now() - 5, now() + 600, random_nonce());
        c.client_scope = grant_node::scope::Scope::GRANT;
        c.request = Some(grant_node::carte::GrantRequest {
            scope: grant_node::scope::Scope::from_bits(scope),
            redirect_uri: redirect_uri.into(),
            state: state.into(),
        });
        c.sign(&self.signing)
    }
}

/// The `/grant` URL for a request.
pub fn grant_url(
    node: &str,
    app: &str,
    carte: &str,
    scope: &str,
    redirect: &str,
    state: &str,
    owner: Option<&str>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", app)
        .append_pair("client_secret", carte)
        .append_pair("scope", scope)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", state);
    if let Some(o) = owner {
        q.append_pair("owner", o);
    }
    format!("{node}/grant?{}", q.finish())
}

// ---- Headless Chromium over WebDriver, for the browser tests ----------------------------------

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium and its driver are here; without them a browser test says so and passes,
/// unless `GRANT_NODE_REQUIRE_CHROMIUM` is set (scripts/test.sh sets it), where it fails.
pub fn have_chromium(also: &[&str]) -> bool {
    let present = [CHROMIUM, CHROMEDRIVER]
        .iter()
        .chain(also)
        .all(|p| Path::new(p).exists());
    if !present {
        assert!(
            std::env::var_os("GRANT_NODE_REQUIRE_CHROMIUM").is_none(),
            "Chromium is required here but missing (scripts/test.sh installs it)"
        );
        eprintln!("chromium is not installed; skipping (scripts/test.sh installs it)");
    }
    present
}

/// chromedriver, stopped on drop.
pub struct ChromeDriver(std::process::Child);

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver (with `home` as its HOME, when given) and a headless Chromium session
/// with a profile in `dir` and these extra arguments.
pub async fn chromium(
    dir: &Path,
    extra: &[&str],
    home: Option<&Path>,
) -> (ChromeDriver, fantoccini::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(CHROMEDRIVER);
    cmd.arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(h) = home {
        cmd.env("HOME", h);
    }
    let driver = ChromeDriver(cmd.spawn().unwrap());
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1000",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", dir.join("chrome").display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    for _ in 0..100 {
        if let Ok(c) = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps.clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        {
            return (driver, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

/// Keeps a screenshot in `target/test-artifacts/`.
pub fn artifact(name: &str, png: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// The `registry-stub` binary beside the node's, built through cargo first (quick when up to
/// date) in the profile these tests were built in: a stub left from an older build would speak
/// an older format, or lack a flag, than the node under test.
pub fn registry_stub_bin() -> std::path::PathBuf {
    let mut args = vec!["build", "-p", "registry-stub", "--quiet"];
    if !cfg!(debug_assertions) {
        args.push("--release");
    }
    let built = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(built.success(), "registry-stub builds");
    std::path::Path::new(env!("CARGO_BIN_EXE_grant-node"))
        .parent()
        .expect("the binary is in a folder")
        .join("registry-stub")
}

/// A child process killed (and reaped) on drop, however the test ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Types `text` into the element with this id.
pub async fn type_into(c: &fantoccini::Client, id: &str, text: &str) {
    c.find(fantoccini::Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element this CSS selector finds.
pub async fn click(c: &fantoccini::Client, css: &str) {
    c.find(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// From a `/grant` URL, as a person would: type the name at the prompt, log in, and wait for
/// the consent page (a screenshot named `stuck` and a panic if it never comes).
pub async fn through_prompt_to_consent(
    c: &fantoccini::Client,
    grant_url: &str,
    owner: &str,
    password: &str,
    stuck: &str,
) {
    use fantoccini::Locator;
    c.goto(grant_url).await.unwrap();
    type_into(c, "owner", owner).await;
    click(c, "button[type=submit]").await;
    c.wait().for_element(Locator::Id("password")).await.unwrap();
    type_into(c, "password", password).await;
    click(c, "button[type=submit]").await;
    if c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("button[value=allow]"))
        .await
        .is_err()
    {
        artifact(stuck, &c.screenshot().await.unwrap());
        panic!(
            "no consent page at {}: {}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
    }
}

/// PEM files of a CA made at test time and of one certificate it issued.
pub struct TestCertificate {
    /// The CA's certificate: what a client trusts (`ca_file`).
    pub ca_file: PathBuf,
    /// The certificate for the names, followed by the CA's (what a server presents).
    pub chain: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// A fresh CA and a certificate for `name` (a DNS name or an IP address), written to `dir`.
pub fn test_certificate(dir: &Path, name: &str) -> TestCertificate {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let write = |file: &str, text: String| {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p
    };
    TestCertificate {
        ca_file: write("ca.pem", ca.pem()),
        chain: write("chain.pem", format!("{}{}", leaf.pem(), ca.pem())),
        key: write("leaf.key", leaf_key.serialize_pem()),
    }
}

/// The recovery words a set-up page shows (`POST /setup`'s answer).
pub fn shown_words(page: &Reply) -> Vec<String> {
    let html = text(page);
    let list = &html[html
        .find("<ol class=\"words\">")
        .unwrap_or_else(|| panic!("no words in {html}"))..];
    let list = &list[..list.find("</ol>").unwrap()];
    list.split("<code>")
        .skip(1)
        .map(|w| w[..w.find("</code>").unwrap()].to_owned())
        .collect()
}

/// Answers a set-up page's recovery-word check as an owner who wrote the words down: the
/// words at the positions the form asks for. Returns the answer (303 to `/`).
pub async fn confirm_words(b: &mut Browser, base: &str, page: &Reply) -> Reply {
    assert_eq!(page.status, 200, "{}", text(page));
    let words = shown_words(page);
    assert_eq!(words.len(), 24);
    let html = text(page);
    let form = &html[html.find("action=\"/setup/words\"").unwrap()..];
    let positions = hidden(form, "positions");
    let check = hidden(form, "csrf");
    let mac = hidden(form, "check");
    let answers: Vec<String> = positions
        .split(',')
        .map(|p| words[p.parse::<usize>().unwrap() - 1].clone())
        .collect();
    let mut fields: Vec<(&str, &str)> =
        vec![("csrf", &check), ("positions", &positions), ("check", &mac)];
    let names = ["w0", "w1", "w2"];
    for (n, a) in names.iter().zip(&answers) {
        fields.push((n, a));
    }
    b.post_form(&format!("{base}/setup/words"), &fields).await
}
