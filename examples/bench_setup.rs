//! Set-up for `scripts/bench.sh`: registers a benchmark application in a running node's
//! embedded registry, grants it `view-profile` as the owner `alice` (with a carte the owner's
//! own key signs), writes the cartes the load cases replay, and measures this machine's
//! single-core `verify_strict` rate as the baseline for the cold path.
//!
//! `bench_setup NODE_URL NODE_DATA_DIR OUT_DIR POOL_SIZE [GRANT_URLS]`: with GRANT_URLS, also
//! writes that many `/grant` URLs (fresh grant cartes) to `grants.txt`, for soak tests.
//!
//! A node on PostgreSQL: `BENCH_REGISTRY` names its registry (operations go there, not to
//! the node), and `BENCH_DATABASE` with `BENCH_DATABASE_KEY` where alice's sealed key is.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use grant_node::carte::Carte;
use grant_node::clock::Clock;
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::registry::op::{solve_pow, Operation, Register};
use grant_node::scope::Scope;
use hyper::Method;

const VIEW_PROFILE: u64 = 0x80000;
const REDIRECT: &str = "http://127.0.0.1:9/cb";

fn nonce(i: u64) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&i.to_le_bytes());
    n[8..].copy_from_slice(&Clock::system().now().to_le_bytes());
    n
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (node, data, out, pool, grant_urls) = match &args[..] {
        [_, node, data, out, pool] => (node, data, out, pool, 0u64),
        [_, node, data, out, pool, g] => (node, data, out, pool, g.parse().context("GRANT_URLS")?),
        _ => anyhow::bail!(
            "usage: bench_setup NODE_URL NODE_DATA_DIR OUT_DIR POOL_SIZE [GRANT_URLS]"
        ),
    };
    let pool: u64 = pool.parse().context("POOL_SIZE")?;
    let out = std::path::Path::new(out);
    let http = HttpClient::new();
    let now = Clock::system().now();
    let alice = Name::parse("alice")?;
    let app = Name::parse("bench-app")?;
    let key = SigningKey::from_bytes(&[42; 32]);

    let registry = std::env::var("BENCH_REGISTRY").unwrap_or_else(|_| node.clone());
    let meta: serde_json::Value = http
        .get(&format!("{registry}/registry/metadata"))
        .await?
        .json()
        .context("registry metadata")?;
    let mut op = Register {
        name: app.clone(),
        updating_key: key.verifying_key(),
        signing_key: key.verifying_key(),
        valid_from: now - 120,
        node_uri: "http://127.0.0.1:9/".into(),
        redirect_uris: vec![REDIRECT.into()],
        pow_nonce: [0; 8],
    };
    solve_pow(
        &mut op,
        meta["pow_bits"].as_u64().unwrap_or(0) as u32,
        |_| {},
    );
    let r = http
        .send(
            Method::POST,
            &format!("{registry}/registry/ops"),
            &[("content-type", "application/cbor")],
            Operation::Register(op).sign(&key).into(),
        )
        .await?;
    anyhow::ensure!(
        r.status.is_success() || r.error_code().as_deref() == Some("name.taken"),
        "register: {}",
        r.status
    );

    // The owner's own carte with the grant scope, for the grant API (and case e).
    let owner_key = match std::env::var("BENCH_DATABASE") {
        Ok(url) => {
            let key_file = std::env::var("BENCH_DATABASE_KEY").context("BENCH_DATABASE_KEY")?;
            let sealer = grant_node::store::owner_keys::Sealer::new(
                &grant_node::keyfile::load(std::path::Path::new(&key_file))?.to_bytes(),
            );
            let db = grant_node::store::Db::connect(&url, 1)?;
            let secret =
                grant_node::store::owner_keys::get(&db.lock()?, &sealer, &alice, "signing")?
                    .context("alice's key is not in the database")?;
            SigningKey::from_bytes(&secret)
        }
        Err(_) => {
            grant_node::keyfile::load(&std::path::Path::new(data).join("owners/alice/signing.key"))?
        }
    };
    let mut owner = Carte::new(alice.clone(), now, now + 3500, nonce(0));
    owner.audience = Some(alice.clone());
    owner.admin_scope = Scope::GRANT;
    let owner = owner.sign(&owner_key);
    let r = http
        .send(
            Method::PUT,
            &format!("{node}/api/grants/bench-app"),
            &[
                ("authorization", &format!("Carte {owner}")),
                ("content-type", "application/json"),
            ],
            serde_json::json!({"scope": ["view-profile"]})
                .to_string()
                .into(),
        )
        .await?;
    anyhow::ensure!(
        r.status.is_success(),
        "grant: {} {:?}",
        r.status,
        r.error_code()
    );
    std::fs::write(out.join("owner.txt"), format!("{owner}\n"))?;

    let carte = |i: u64| {
        let mut c = Carte::new(app.clone(), now, now + 3500, nonce(i));
        c.audience = Some(alice.clone());
        c.admin_scope = Scope::from_bits(VIEW_PROFILE);
        c.sign(&key)
    };
    std::fs::write(out.join("warm.txt"), format!("{}\n", carte(u64::MAX)))?;
    for (file, offset) in [("pool_c.txt", 0u64), ("pool_d.txt", 1 << 40)] {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join(file))?);
        for i in 0..pool {
            writeln!(f, "{}", carte(offset + i))?;
        }
    }

    if grant_urls > 0 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("grants.txt"))?);
        for i in 0..grant_urls {
            let state = format!("soak-{i}");
            let mut c = Carte::new(app.clone(), now, now + 3500, nonce((1 << 50) + i));
            c.client_scope = Scope::GRANT;
            c.request = Some(grant_node::carte::GrantRequest {
                scope: Scope::from_bits(VIEW_PROFILE),
                redirect_uri: REDIRECT.into(),
                state: state.clone(),
            });
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("client_id", app.as_str())
                .append_pair("client_secret", &c.sign(&key))
                .append_pair("scope", "view-profile")
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("state", &state)
                .append_pair("owner", "alice")
                .finish();
            writeln!(f, "{node}/grant?{q}")?;
        }
    }

    // The single-core verify_strict rate on the same payload size, for the cold-path ratio.
    let wire = carte(7);
    let decoded = grant_node::carte::decode(&wire)?;
    let message = grant_node::carte::codec::signed_message(&decoded.payload);
    let vk = key.verifying_key();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        for _ in 0..100 {
            vk.verify_strict(&message, &decoded.signature)?;
        }
        n += 100;
    }
    println!(
        "verify_rate {:.0}",
        n as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
