//! Shared set-up for the benchmarks: a node opened in-process (as `grant-node serve` opens
//! it, minus the listener) with an application registered in its embedded registry.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use grant_node::carte::Carte;
use grant_node::config::{Config, RegistrySetting};
use grant_node::name::Name;
use grant_node::node::NodeState;
use grant_node::registry::op::{Operation, Register};
use grant_node::scope::Scope;

/// Whether criterion was started by `cargo bench` (full sizes) rather than `cargo test`
/// (one quick pass with small sizes).
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn now() -> u64 {
    grant_node::clock::Clock::system().now()
}

pub fn nonce(i: u64) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&i.to_le_bytes());
    n[8..].copy_from_slice(&now().to_le_bytes());
    n
}

pub struct Bench {
    pub runtime: tokio::runtime::Runtime,
    pub state: Arc<NodeState>,
    pub app: Name,
    pub key: SigningKey,
    pub peer: SocketAddr,
    pub _dir: tempfile::TempDir,
}

/// A node whose name (and only audience) is `alice`, with `photo-app` registered.
pub fn node() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("an address"),
        dir.path().to_path_buf(),
    );
    config.registry = RegistrySetting::Embedded { pow_bits: 0 };
    config.node_name = Some(Name::parse("alice").expect("a name"));
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let key = SigningKey::from_bytes(&[7; 32]);
    let app = Name::parse("photo-app").expect("a name");
    let state = runtime.block_on(async {
        let state = grant_node::server::open(config, peer)
            .await
            .expect("the node opens");
        let op = Operation::Register(Register {
            name: app.clone(),
            updating_key: key.verifying_key(),
            signing_key: key.verifying_key(),
            valid_from: now() - 100,
            node_uri: "https://app.example/".into(),
            redirect_uris: vec![],
            pow_nonce: [0; 8],
        })
        .sign(&key);
        state
            .authority
            .as_ref()
            .expect("embedded")
            .submit(op)
            .await
            .expect("registered");
        state.mirror.sync().await.expect("synced");
        Arc::new(state)
    });
    Bench {
        runtime,
        state,
        app,
        key,
        peer,
        _dir: dir,
    }
}

impl Bench {
    /// A fresh carte from the app to alice.
    pub fn carte(&self, i: u64, scope: u64) -> String {
        let mut c = Carte::new(self.app.clone(), now() - 5, now() + 600, nonce(i));
        c.audience = Some(Name::parse("alice").expect("a name"));
        c.admin_scope = Scope::from_bits(scope);
        c.sign(&self.key)
    }
}

/// Resident memory of this process, in MiB (Linux).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}
