//! On the internet: HTTPS everywhere, over real TLS on loopback.
//!
//! A test CA is made at test time (rcgen); it issues certificates for `registry.test`,
//! `node-a.test`, `node-b.test` and `app.test`. Every client pins those names to loopback ports
//! with the `resolve` option (like curl's `--resolve`) and trusts the CA through `ca_file`, as
//! an operator with a private CA would. Nothing here leaves the loopback interface.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{location, text, Browser, Identity};
use grant_node::client::{App, AppConfig};
use grant_node::clock::Clock;
use grant_node::config::{Config, RegistrySetting};
use grant_node::http::tls::{CertStore, TlsFiles};
use grant_node::ledger::authority::{Authority, AuthorityConfig};
use grant_node::name::Name;
use grant_node::outbound::{Cidr, Guard, HttpClient, Options, Resolve, ResolveOverride};
use grant_node::scope::Scope;
use hyper::Method;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const VIEW_PROFILE: Scope = Scope::from_bits(0x80000);

/// The test CA and the certificates it issues.
struct Pki {
    dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "grant-node test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `name` (chain: leaf, then the CA), written to NAME.pem / NAME.key.
    fn issue(&self, name: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        self.issue_to(name, &files);
        files
    }

    fn issue_to(&self, name: &str, files: &TlsFiles) -> Vec<u8> {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let chain = format!("{}{}", cert.pem(), self.ca_cert.pem());
        // Key first, then the chain: a reload that sees the new chain sees its key too.
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(&files.cert, chain).unwrap();
        cert.der().to_vec()
    }
}

/// Names pinned to loopback ports, and the CA trusted.
#[derive(Clone, Default)]
struct Net {
    pins: Vec<ResolveOverride>,
    ca: Option<PathBuf>,
}

impl Net {
    fn pin(&mut self, name: &str, addr: SocketAddr) {
        self.pins.push(ResolveOverride {
            host: name.to_owned(),
            port: addr.port(),
            addr: addr.ip(),
        });
    }

    fn options(&self) -> Options {
        Options {
            ca_file: self.ca.clone(),
            resolve: self.pins.clone(),
            ..Options::default()
        }
    }

    fn client(&self) -> HttpClient {
        HttpClient::with(self.options()).unwrap()
    }
}

/// A test CA in `dir`, and a network view that trusts it (names get pinned as servers start).
fn pki_and_net(dir: &Path) -> (Pki, Net) {
    let pki = Pki::new(dir);
    let net = Net {
        ca: Some(pki.ca_file()),
        ..Net::default()
    };
    (pki, net)
}

async fn listen(ip: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A server task that stops on drop.
struct Running(
    Option<oneshot::Sender<()>>,
    #[allow(dead_code)] Option<tokio::task::JoinHandle<()>>,
);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.send(());
        }
    }
}

fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(
    f: impl FnOnce(oneshot::Receiver<()>) -> F,
) -> Running {
    let (tx, rx) = oneshot::channel();
    Running(Some(tx), Some(tokio::spawn(f(rx))))
}

/// The registry stub, over TLS, as `registry-stub --tls-cert --tls-key` runs it.
async fn registry(dir: &Path, files: TlsFiles) -> (Running, Authority, SocketAddr) {
    let authority = Authority::open(
        &dir.join("registry"),
        AuthorityConfig {
            pow_bits: 0,
            ..AuthorityConfig::default()
        },
        Clock::system(),
    )
    .unwrap();
    let (l, addr) = listen("127.0.0.1").await;
    let store = CertStore::open(files).unwrap();
    let tls = store.server_config();
    let a = authority.clone();
    let running = spawn(move |stop| async move {
        grant_node::http::api::registry::serve_standalone_tls(
            l,
            a,
            async {
                let _ = stop.await;
            },
            Some(tls),
        )
        .await
        .unwrap();
    });
    (running, authority, addr)
}

/// A node over TLS at `https://NAME:PORT`, mirroring the registry.
// Each argument is one thing a test varies; a struct for them would only be read here.
#[allow(clippy::too_many_arguments)]
async fn node(
    dir: &Path,
    name: &str,
    owner: &str,
    files: TlsFiles,
    net: &Net,
    registry: &str,
    registry_key: &str,
    tweak: impl FnOnce(&mut Config),
    l: TcpListener,
) -> Running {
    let addr = l.local_addr().unwrap();
    let mut config = Config::new(addr, dir.join(name));
    config.registry = RegistrySetting::Remote {
        url: registry.to_owned(),
        key: grant_node::config::parse_key(registry_key).unwrap(),
    };
    config.owner = Name::parse(owner).unwrap();
    config.public_url = Some(format!("https://{name}:{}", addr.port()));
    config.tls = Some(files);
    config.outbound = net.options();
    config.allow_private_targets = true;
    config.sync_interval = Duration::from_secs(1);
    tweak(&mut config);
    let running = spawn(move |stop| async move {
        grant_node::server::serve(config, l, async {
            let _ = stop.await;
        })
        .await
        .unwrap();
    });
    let client = net.client();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(&format!("https://{name}:{}/healthz", addr.port()))
            .await
        {
            if r.status == 200 {
                return running;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} did not come up over TLS");
}

/// Sets `owner`'s password from a one-time link, over https, and returns the logged-in browser.
async fn set_password(dir: &Path, base: &str, owner: &str, net: &Net) -> Browser {
    let db = grant_node::store::Db::open(&dir.join("node.sqlite3")).unwrap();
    let (token, hash) = grant_node::auth::new_token();
    grant_node::store::owners::insert_setup_token(
        &db.lock().unwrap(),
        &hash,
        &Name::parse(owner).unwrap(),
        common::now() + 600,
    )
    .unwrap();
    let mut b = Browser::with_client(base, net.client());
    assert_eq!(
        b.get(&format!("{base}/setup?token={token}")).await.status,
        200
    );
    let r = b
        .post_form(
            &format!("{base}/setup"),
            &[("token", &token), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(r.headers.get("strict-transport-security").is_some());
    let r = common::confirm_words(&mut b, base, &r).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    b
}

/// The application's notification receiver over TLS: counts what it accepted.
async fn receiver(
    l: TcpListener,
    files: TlsFiles,
    app: Arc<tokio::sync::OnceCell<Arc<App>>>,
    hits: Arc<AtomicUsize>,
) -> Running {
    let tls = CertStore::open(files).unwrap().server_config();
    spawn(move |stop| async move {
        grant_node::http::serve(
            l,
            move |req, _| {
                let app = app.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    match app.get() {
                        Some(app) => grant_node::client::notify::handle(app, req).await,
                        None => hyper::Response::new(Default::default()),
                    }
                }
            },
            async {
                let _ = stop.await;
            },
            grant_node::http::Limits::from_descriptors(),
            Some(tls),
        )
        .await
        .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_flow_over_https() {
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (_registry, authority, raddr) = registry(dir.path(), pki.issue("registry.test")).await;
    net.pin("registry.test", raddr);
    let (la, aaddr) = listen("127.0.0.1").await;
    let (lb, baddr) = listen("127.0.0.1").await;
    let (lapp, appaddr) = listen("127.0.0.1").await;
    net.pin("node-a.test", aaddr);
    net.pin("node-b.test", baddr);
    net.pin("app.test", appaddr);
    let registry_url = format!("https://registry.test:{}", raddr.port());
    let key = hex::encode(authority.public_key().as_bytes());
    let _a = node(
        dir.path(),
        "node-a.test",
        "alice",
        pki.issue("node-a.test"),
        &net,
        &registry_url,
        &key,
        |_| {},
        la,
    )
    .await;
    let _b = node(
        dir.path(),
        "node-b.test",
        "bob",
        pki.issue("node-b.test"),
        &net,
        &registry_url,
        &key,
        |_| {},
        lb,
    )
    .await;
    let a_url = format!("https://node-a.test:{}", aaddr.port());
    let b_url = format!("https://node-b.test:{}", baddr.port());
    let app_url = format!("https://app.test:{}", appaddr.port());

    // The application registers over https, and receives notifications over https.
    let id = Identity::new("photo-app", 1);
    let redirect = format!("{app_url}/cb");
    let registry_client =
        grant_node::registry::client::RegistryClient::with_client(&registry_url, net.client());
    registry_client
        .submit(id.register_op(&format!("{app_url}/"), &[&redirect], 0))
        .await
        .unwrap();
    let slot = Arc::new(tokio::sync::OnceCell::new());
    let hits = Arc::new(AtomicUsize::new(0));
    let _receiver = receiver(lapp, pki.issue("app.test"), slot.clone(), hits.clone()).await;
    let app = Arc::new(
        App::open(AppConfig {
            name: id.name.clone(),
            key: id.signing.clone(),
            registry_url: registry_url.clone(),
            registry_key: None,
            book: dir.path().join("grants.book"),
            outbound: net.options(),
            light: Default::default(),
            directory: None,
        })
        .await
        .unwrap(),
    );
    slot.set(app.clone()).ok().unwrap();

    // alice grants on her node, over https.
    let mut alice = set_password(&dir.path().join("node-a.test"), &a_url, "alice", &net).await;
    let start = app
        .start_grant(&Name::parse("alice").unwrap(), VIEW_PROFILE, &redirect)
        .await
        .unwrap();
    assert!(
        start.url.starts_with(&format!("{a_url}/grant?")),
        "{}",
        start.url
    );
    let consent = alice.get(&start.url).await;
    assert_eq!(consent.status, 200, "{}", text(&consent));
    let back = alice.allow(&a_url, &text(&consent), "view-profile").await;
    assert_eq!(back.status, 303);
    let granted = app.finish_grant(&location(&back)).await.unwrap();
    assert_eq!(granted.scope, VIEW_PROFILE);
    let profile = app
        .get(&Name::parse("alice").unwrap(), "/api/profile", VIEW_PROFILE)
        .await
        .unwrap();
    assert_eq!(profile["owner"], "alice");

    // bob, sent to node A, is sent home to node B over https.
    let start = app
        .start_grant(&Name::parse("bob").unwrap(), VIEW_PROFILE, &redirect)
        .await
        .unwrap();
    assert!(start.url.starts_with(&format!("{b_url}/grant?")));
    let on_a = start.url.replacen(&b_url, &a_url, 1);
    let mut stranger = Browser::with_client(&a_url, net.client());
    let r = stranger.get(&on_a).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(location(&r), start.url);

    // alice widens the grant from her API: node A notifies the application over https.
    let r = alice
        .json(
            Method::PUT,
            &format!("{a_url}/api/grants/photo-app"),
            Some(serde_json::json!({"add": ["view-settings"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let mut seen = 0;
    for _ in 0..400 {
        seen = app.grants().await.unwrap().first().map_or(0, |e| e.scope);
        if seen == 0x80000 | 0x400000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        seen,
        0x80000 | 0x400000,
        "the notification arrived over https"
    );
    assert!(hits.load(Ordering::SeqCst) >= 1);
}

/// The certificate a fresh TLS connection to `addr` is shown (leaf, DER).
async fn presented(addr: SocketAddr, name: &str, ca: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (_registry, authority, raddr) = registry(dir.path(), pki.issue("registry.test")).await;
    net.pin("registry.test", raddr);
    let (la, aaddr) = listen("127.0.0.1").await;
    net.pin("node-a.test", aaddr);
    let files = TlsFiles {
        cert: dir.path().join("a-live.pem"),
        key: dir.path().join("a-live.key"),
    };
    let first = pki.issue_to("node-a.test", &files);
    let _a = node(
        dir.path(),
        "node-a.test",
        "alice",
        files.clone(),
        &net,
        &format!("https://registry.test:{}", raddr.port()),
        &hex::encode(authority.public_key().as_bytes()),
        |_| {},
        la,
    )
    .await;
    let url = format!("https://node-a.test:{}/healthz", aaddr.port());
    // A client holding a keep-alive connection.
    let client = net.client();
    assert_eq!(client.get(&url).await.unwrap().status, 200);
    assert_eq!(presented(aaddr, "node-a.test", &pki.ca_file()).await, first);

    // certbot renews: the files change, the node picks the new pair up by itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = pki.issue_to("node-a.test", &files);
    assert_ne!(first, second);
    let mut now_serving = Vec::new();
    for _ in 0..100 {
        now_serving = presented(aaddr, "node-a.test", &pki.ca_file()).await;
        if now_serving == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        now_serving, second,
        "new handshakes get the renewed certificate"
    );
    // The client that was connected all along is still served.
    assert_eq!(client.get(&url).await.unwrap().status, 200);

    // A broken renewal is refused and the last good certificate stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        presented(aaddr, "node-a.test", &pki.ca_file()).await,
        second
    );
    assert_eq!(client.get(&url).await.unwrap().status, 200);
}

/// A node (over TLS) with the guard as `tweak` sets it, one app registered whose node URI is
/// `https://app.test:PORT/`, and alice logged in; returns what the guard tests need.
struct GuardWorld {
    _dir: tempfile::TempDir,
    _registry: Running,
    _node: Running,
    net: Net,
    a_url: String,
    alice: Browser,
    pki: Pki,
}

async fn guard_world(
    apps: &[(&str, SocketAddr)],
    pins: &[(&str, SocketAddr)],
    tweak: impl FnOnce(&mut Config),
    resolver: Option<Arc<dyn Resolve>>,
) -> GuardWorld {
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (registry, authority, raddr) = registry(dir.path(), pki.issue("registry.test")).await;
    net.pin("registry.test", raddr);
    let (la, aaddr) = listen("127.0.0.1").await;
    net.pin("node-a.test", aaddr);
    let registry_url = format!("https://registry.test:{}", raddr.port());
    let rc = grant_node::registry::client::RegistryClient::with_client(&registry_url, net.client());
    for (i, (app, addr)) in apps.iter().enumerate() {
        let id = Identity::new(app, 10 + i as u8);
        rc.submit(id.register_op(
            &format!("https://{app}.test:{}/", addr.port()),
            &["https://app.example/cb"],
            0,
        ))
        .await
        .unwrap();
    }
    for (name, addr) in pins {
        net.pin(name, *addr);
    }
    let node_net = net.clone();
    let node = node(
        dir.path(),
        "node-a.test",
        "alice",
        pki.issue("node-a.test"),
        &net,
        &registry_url,
        &hex::encode(authority.public_key().as_bytes()),
        move |c| {
            c.outbound = node_net.options();
            if let Some(r) = resolver {
                c.outbound.resolver = r;
            }
            tweak(c)
        },
        la,
    )
    .await;
    let a_url = format!("https://node-a.test:{}", aaddr.port());
    let alice = set_password(&dir.path().join("node-a.test"), &a_url, "alice", &net).await;
    GuardWorld {
        _dir: dir,
        _registry: registry,
        _node: node,
        net,
        a_url,
        alice,
        pki,
    }
}

async fn grant_to(w: &mut GuardWorld, app: &str) {
    let r = w
        .alice
        .json(
            Method::PUT,
            &format!("{}/api/grants/{app}", w.a_url),
            Some(serde_json::json!({"add": ["view-profile"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", text(&r));
}

async fn history(w: &mut GuardWorld, app: &str) -> Vec<String> {
    let r = w
        .alice
        .json(
            Method::GET,
            &format!("{}/api/grants/{app}/history", w.a_url),
            None,
        )
        .await;
    r.json::<serde_json::Value>().unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn metric(w: &GuardWorld, line: &str) -> bool {
    let m = w
        .net
        .client()
        .get(&format!("{}/metrics", w.a_url))
        .await
        .unwrap();
    text(&m).contains(line)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_notification_target_is_refused_while_the_guard_is_on() {
    let (lapp, appaddr) = listen("127.0.0.1").await;
    // The application "registered" a name that points at loopback.
    let mut w = guard_world(
        &[("app", appaddr)],
        &[("app.test", appaddr)],
        |c| c.allow_private_targets = false,
        None,
    )
    .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let _receiver = receiver(
        lapp,
        w.pki.issue("app.test"),
        Arc::new(tokio::sync::OnceCell::new()),
        hits.clone(),
    )
    .await;
    grant_to(&mut w, "app").await;
    let mut actions = Vec::new();
    for _ in 0..200 {
        actions = history(&mut w, "app").await;
        if actions
            .iter()
            .any(|a| a.starts_with("notification refused"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("notification refused")),
        "{actions:?}"
    );
    assert!(metric(&w, "grant_node_notifications_total{result=\"refused\"} 1").await);
    assert!(metric(&w, "grant_node_outbox_pending 0").await);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the private target"
    );
}

/// Answers the first resolution with `first`, every later one with `then`: a rebinding DNS.
struct Rebinding {
    calls: AtomicUsize,
    first: std::net::IpAddr,
    then: std::net::IpAddr,
}

impl Resolve for Rebinding {
    fn resolve(&self, _host: &str, port: u16) -> grant_node::outbound::connector::Resolving {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 { self.first } else { self.then };
        Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_rebinding_cannot_move_a_checked_target() {
    // Two receivers on one port: 127.0.0.2 stands for the public address the guard allows,
    // 127.0.0.3 for the internal one the rebinding DNS switches to.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let allowed: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let internal: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let resolver = Arc::new(Rebinding {
        calls: AtomicUsize::new(0),
        first: allowed.ip(),
        then: internal.ip(),
    });
    let mut w = guard_world(
        &[("app", allowed)],
        &[],
        |c| {
            c.allow_private_targets = false;
            c.allowed_targets = vec![Cidr::parse("127.0.0.2/32").unwrap()];
        },
        Some(resolver.clone()),
    )
    .await;
    let good_hits = Arc::new(AtomicUsize::new(0));
    let bad_hits = Arc::new(AtomicUsize::new(0));
    let _good = receiver(
        TcpListener::bind(allowed).await.unwrap(),
        w.pki.issue("app.test"),
        Arc::new(tokio::sync::OnceCell::new()),
        good_hits.clone(),
    )
    .await;
    let _bad = receiver(
        TcpListener::bind(internal).await.unwrap(),
        w.pki.issue("app.test"),
        Arc::new(tokio::sync::OnceCell::new()),
        bad_hits.clone(),
    )
    .await;
    grant_to(&mut w, "app").await;
    for _ in 0..200 {
        if good_hits.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        good_hits.load(Ordering::SeqCst),
        1,
        "delivered to the checked address"
    );
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        0,
        "never to the rebound one"
    );
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1, "resolved once");
    // And a target that resolves only to the internal address is refused outright.
    let internal_only = Arc::new(Rebinding {
        calls: AtomicUsize::new(0),
        first: internal.ip(),
        then: internal.ip(),
    });
    let client = HttpClient::with(Options {
        guard: Guard::PublicOnly {
            allow: vec![Cidr::parse("127.0.0.2/32").unwrap()],
        },
        resolver: internal_only,
        ca_file: Some(w.pki.ca_file()),
        ..Options::default()
    })
    .unwrap();
    let r = client
        .get(&format!("https://app.test:{port}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(r, grant_node::outbound::ClientError::Refused { .. }),
        "{r:?}"
    );
    assert_eq!(bad_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_never_answers_delays_no_one_else() {
    // slow.test accepts connections and never says a word; app.test answers.
    let (lapp, appaddr) = listen("127.0.0.1").await;
    let (lslow, slowaddr) = listen("127.0.0.4").await;
    let _tarpit = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = lslow.accept().await {
                held.push(s);
            }
        }
    });
    let mut w = guard_world(
        &[("app", appaddr), ("slow", slowaddr)],
        &[("app.test", appaddr), ("slow.test", slowaddr)],
        |_| {},
        None,
    )
    .await;
    let hits = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(tokio::sync::OnceCell::new());
    let _receiver = receiver(lapp, w.pki.issue("app.test"), slot, hits.clone()).await;
    // First the slow target's notification, then app's.
    grant_to(&mut w, "slow").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    grant_to(&mut w, "app").await;
    for _ in 0..200 {
        if hits.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "app's notification arrived");
    // …while the slow target's delivery is still waiting for its answer.
    assert!(metric(&w, "grant_node_outbox_pending 1").await);
    assert!(!metric(&w, "grant_node_notifications_total{result=\"failed\"}").await);
}

/// A request to `node` from the local address `from`, with these headers.
async fn from_address(
    from: &str,
    node: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(node).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    let code = reply
        .split("\"error\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_owned();
    (status, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    let dir = common::tempdir();
    let mut config = common::Node::embedded_config(dir.path(), "alice");
    config.trusted_proxies = vec![Cidr::parse("127.0.0.2/32").unwrap()];
    let node = common::Node::start(config).await;
    let mut browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    let r = browser
        .json(
            Method::PUT,
            &format!("{}/api/grants/app", node.url()),
            Some(serde_json::json!({"add": ["view-profile"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    // A carte that may be used only from 198.51.100.7 (the client behind the proxy).
    let mut c = app.carte("alice", VIEW_PROFILE.bits(), 0);
    c.addresses = Some(vec!["198.51.100.7".parse().unwrap()]);
    let auth = format!("Carte {}", c.sign(&app.signing));
    let path = "/auth/check?scope=view-profile";
    let xff = ("x-forwarded-for", "198.51.100.7");
    let a = ("authorization", auth.as_str());
    let addr = node.server.addr;
    // From an untrusted peer the header is ignored: the peer's own address counts.
    assert_eq!(
        from_address("127.0.0.1", addr, path, &[a, xff]).await,
        (401, "carte.address-mismatch".into())
    );
    // From the trusted proxy it names the client.
    assert_eq!(
        from_address("127.0.0.2", addr, path, &[a, xff]).await,
        (200, String::new())
    );
    assert_eq!(
        from_address(
            "127.0.0.2",
            addr,
            path,
            &[a, ("forwarded", "for=198.51.100.7;proto=https")]
        )
        .await,
        (200, String::new())
    );
    // A client-written entry further left proves nothing: the proxy appended the real one.
    assert_eq!(
        from_address(
            "127.0.0.2",
            addr,
            path,
            &[a, ("x-forwarded-for", "198.51.100.7, 127.0.0.9")]
        )
        .await,
        (401, "carte.address-mismatch".into())
    );
    // The proxy's two headers disagree: refused.
    assert_eq!(
        from_address(
            "127.0.0.2",
            addr,
            path,
            &[a, xff, ("forwarded", "for=192.0.2.1")]
        )
        .await,
        (400, "request.forwarded-conflict".into())
    );
    // The audit log records the forwarded address of a change made through the proxy.
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let body = r#"{"add": ["view-settings"]}"#;
    s.write_all(
        format!(
            "PUT /api/grants/app HTTP/1.1\r\nHost: node\r\nConnection: close\r\nCookie: {cookie}\r\n\
             Origin: {}\r\nX-Forwarded-For: 198.51.100.7\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            node.url(),
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let h = browser
        .json(
            Method::GET,
            &format!("{}/api/grants/app/history", node.url()),
            None,
        )
        .await;
    let entries = h.json::<serde_json::Value>().unwrap()["entries"].clone();
    let last = entries.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["address"], "198.51.100.7", "{entries}");
}

/// Runs the real `grant-node` binary with `args`; its stdout, or a panic with its stderr.
fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grant-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_works_against_https() {
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (_registry, authority, raddr) = registry(dir.path(), pki.issue("registry.test")).await;
    net.pin("registry.test", raddr);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let node_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    net.pin("node-a.test", node_addr);
    let registry_url = format!("https://registry.test:{}", raddr.port());
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let pin_registry = format!("registry.test:{}:127.0.0.1", raddr.port());
    let pin_node = format!("node-a.test:{port}:127.0.0.1");
    let key_dir = dir.path().join("keys");
    let key_dir = key_dir.to_str().unwrap();
    let tls = pki.issue("node-a.test");

    // name register | show, against the https registry.
    let out = cli(&[
        "name",
        "register",
        "photo-app",
        "--node-uri",
        "https://app.test/",
        "--redirect-uri",
        "https://app.test/cb",
        "--registry",
        &registry_url,
        "--ca-file",
        ca,
        "--resolve",
        &pin_registry,
        "--key-dir",
        key_dir,
    ]);
    assert!(out.contains("photo-app"), "{out}");
    let out = cli(&[
        "name",
        "show",
        "photo-app",
        "--registry",
        &registry_url,
        "--ca-file",
        ca,
        "--resolve",
        &pin_registry,
    ]);
    assert!(out.contains("https://app.test/cb"), "{out}");

    // serve --registry https://… with its own certificate.
    let data = dir.path().join("node");
    let node = std::process::Command::new(env!("CARGO_BIN_EXE_grant-node"))
        .args([
            "serve",
            "--listen",
            &node_addr.to_string(),
            "--public-url",
            &format!("https://node-a.test:{port}"),
            "--registry",
            &registry_url,
            "--registry-key",
            &hex::encode(authority.public_key().as_bytes()),
            "--tls-cert",
            tls.cert.to_str().unwrap(),
            "--tls-key",
            tls.key.to_str().unwrap(),
            "--ca-file",
            ca,
            "--resolve",
            &pin_registry,
            "--owner",
            "alice",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    let _node = common::Killed(node);
    let client = net.client();
    let health = format!("https://node-a.test:{port}/healthz");
    let mut up = None;
    for _ in 0..400 {
        if let Ok(r) = client.get(&health).await {
            let h: serde_json::Value = r.json().unwrap();
            if h["registry"]["last_sync"].is_u64() {
                up = Some(h);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let up = up.expect("the node came up over https and synced from the https registry");
    assert_eq!(up["status"], "ok");

    // app …: the toolkit from the shell, through the https registry to the https node.
    let url = cli(&[
        "app",
        "grant-url",
        "--name",
        "photo-app",
        "--key-dir",
        key_dir,
        "--user",
        "alice",
        "--scope",
        "view-profile",
        "--redirect-uri",
        "https://app.test/cb",
        "--registry",
        &registry_url,
        "--ca-file",
        ca,
        "--resolve",
        &pin_registry,
        "--resolve",
        &pin_node,
    ]);
    assert!(
        url.trim()
            .starts_with(&format!("https://node-a.test:{port}/grant?")),
        "{url}"
    );
}

// ---- Real browsers over HTTPS ---------------------------------------------------------------

const CERTUTIL: &str = "/usr/bin/certutil";

/// Headless Chromium that trusts the test CA (through the NSS database in its own HOME, as a
/// person would import a CA) and resolves every `*.test` name to loopback.
async fn chromium(dir: &Path, pki: &Pki) -> (common::ChromeDriver, fantoccini::Client) {
    let home = dir.join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let run = |args: &[&str]| {
        let ok = std::process::Command::new(CERTUTIL)
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "certutil {args:?}");
    };
    run(&["-d", &db, "-N", "--empty-password"]);
    run(&[
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "grant-node-test-ca",
        "-i",
        pki.ca_file().to_str().unwrap(),
    ]);
    common::chromium(
        dir,
        &["--host-resolver-rules=MAP *.test 127.0.0.1"],
        Some(&home),
    )
    .await
}

/// A TLS server that answers every request with this HTML (and the query, escaped, for a
/// landing page).
async fn page_server(l: TcpListener, files: TlsFiles, html: String) -> Running {
    let tls = CertStore::open(files).unwrap().server_config();
    spawn(move |stop| async move {
        grant_node::http::serve(
            l,
            move |req: grant_node::http::Request, _| {
                let html = html.clone();
                async move {
                    let q =
                        grant_node::http::pages::html::html! { (req.uri().query().unwrap_or("")) }
                            .into_string();
                    let body = html.replace("{query}", &q);
                    let mut r = hyper::Response::new(http_body_util::Full::new(
                        hyper::body::Bytes::from(body),
                    ));
                    r.headers_mut()
                        .insert("content-type", "text/html".parse().unwrap());
                    r
                }
            },
            async {
                let _ = stop.await;
            },
            grant_node::http::Limits::from_descriptors(),
            Some(tls),
        )
        .await
        .unwrap();
    })
}

/// The embedded-registry node over TLS, for the browser tests.
async fn browser_node(
    dir: &Path,
    pki: &Pki,
    net: &Net,
    l: TcpListener,
    tweak: impl FnOnce(&mut Config),
) -> (Running, String) {
    let addr = l.local_addr().unwrap();
    let mut config = common::Node::embedded_config(&dir.join("node"), "alice");
    config.listen = addr;
    config.public_url = Some(format!("https://node-a.test:{}", addr.port()));
    config.tls = Some(pki.issue("node-a.test"));
    config.outbound = net.options();
    tweak(&mut config);
    let running = spawn(move |stop| async move {
        grant_node::server::serve(config, l, async {
            let _ = stop.await;
        })
        .await
        .unwrap();
    });
    let url = format!("https://node-a.test:{}", addr.port());
    let client = net.client();
    for _ in 0..200 {
        if client.get(&format!("{url}/healthz")).await.is_ok() {
            return (running, url);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node did not come up");
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_completes_the_consent_flow_over_https() {
    if !common::have_chromium(&[CERTUTIL]) {
        return;
    }
    use fantoccini::Locator;
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (l, addr) = listen("127.0.0.1").await;
    let (lapp, appaddr) = listen("127.0.0.1").await;
    net.pin("node-a.test", addr);
    net.pin("app.test", appaddr);
    let (_node, base) = browser_node(dir.path(), &pki, &net, l, |_| {}).await;
    set_password(&dir.path().join("node"), &base, "alice", &net).await;
    let redirect = format!("https://app.test:{}/cb", appaddr.port());
    let _app = page_server(
        lapp,
        pki.issue("app.test"),
        "<!doctype html><title>photo-app</title><h1>Back at photo-app</h1><p id=\"query\">{query}</p>".into(),
    )
    .await;
    let app = Identity::new("photo-app", 1);
    let r = net
        .client()
        .send(
            Method::POST,
            &format!("{base}/registry/ops"),
            &[("content-type", "application/cbor")],
            app.register_op("https://app.test/", &[&redirect], 0).into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let carte = app.grant_carte(0x80000, &redirect, "tls-state");
    let start = common::grant_url(
        &base,
        "photo-app",
        &carte,
        "view-profile",
        &redirect,
        "tls-state",
        None,
    );

    let (_driver, c) = chromium(dir.path(), &pki).await;
    common::through_prompt_to_consent(
        &c,
        &start,
        "alice",
        "correct horse battery",
        "https-stuck.png",
    )
    .await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .starts_with("https://node-a.test:"));
    common::artifact("consent-https.png", &c.screenshot().await.unwrap());
    common::click(&c, "button[value=allow]").await;
    c.wait().for_element(Locator::Id("query")).await.unwrap();
    let landed = c.current_url().await.unwrap();
    assert!(landed.as_str().starts_with(&redirect), "{landed}");
    let query = c
        .find(Locator::Id("query"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        query.contains("state=tls-state") && query.contains("receipt="),
        "{query}"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_logs_its_owner_in_from_another_site_over_https() {
    if !common::have_chromium(&[CERTUTIL]) {
        return;
    }
    let dir = common::tempdir();
    let (pki, mut net) = pki_and_net(dir.path());
    let (l, addr) = listen("127.0.0.1").await;
    let (lp, paddr) = listen("127.0.0.1").await;
    net.pin("node-a.test", addr);
    let platform_origin = format!("https://platform.test:{}", paddr.port());
    let origin = platform_origin.clone();
    let (_node, base) = browser_node(dir.path(), &pki, &net, l, move |c| {
        c.controllers = vec![(Name::parse("platform").unwrap(), VIEW_PROFILE)];
        c.cors_origins = vec![origin];
    })
    .await;
    let platform = Identity::new("platform", 7);
    let client = net.client();
    let r = client
        .send(
            Method::POST,
            &format!("{base}/registry/ops"),
            &[("content-type", "application/cbor")],
            platform
                .register_op("https://platform.test/", &[], 0)
                .into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    // The platform creates carol…
    let make = format!(
        "Carte {}",
        platform.carte("alice", 0, 0).sign(&platform.signing)
    );
    let r = client
        .send(
            Method::POST,
            &format!("{base}/api/owners"),
            &[
                ("authorization", &make),
                ("content-type", "application/json"),
            ],
            r#"{"name": "carol"}"#.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", text(&r));
    // …and its own page logs her in at the node, from another site, with credentials.
    let mut login = platform.carte("alice", 0, 0);
    login.subject = Some(Name::parse("carol").unwrap());
    let login = login.sign(&platform.signing);
    let page = format!(
        r#"<!doctype html><title>platform</title><p id="status">working</p>
<script>
fetch("{base}/auth/login", {{
  method: "POST", credentials: "include",
  headers: {{ "Authorization": "Carte {login}", "Content-Type": "application/json" }},
  body: "{{}}"
}}).then(r => r.json().then(j => {{
    document.getElementById("status").textContent = "done " + r.status + " " + j.owner;
    location.href = j.login_url;
  }}))
  .catch(e => document.getElementById("status").textContent = "failed " + e);
</script>"#
    );
    let _platform = page_server(lp, pki.issue("platform.test"), page).await;
    let (_driver, c) = chromium(dir.path(), &pki).await;
    c.goto(&format!("{platform_origin}/")).await.unwrap();
    // The platform's page called /auth/login from its own origin, with credentials, then sent
    // the browser through the login link; the node's own first-party cookie logs carol in.
    let mut landed = String::new();
    for _ in 0..100 {
        landed = c.current_url().await.unwrap().to_string();
        if landed.starts_with(&base) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(landed, format!("{base}/"));
    let home = c.source().await.unwrap();
    common::artifact("platform-login-https.png", &c.screenshot().await.unwrap());
    assert!(home.contains("Logged in as carol"), "{home}");
    c.close().await.unwrap();
}
