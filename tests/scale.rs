//! The registry at scale: a registry of 100,000 names (written by the `gen_registry` bench
//! tool, every entry real) restarts without reading its names, and its map goes on from where
//! it was. `scripts/bench-registry.sh` measures the same at one and ten million names.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{registry_stub_bin, tempdir, Identity, Killed};
use ed25519_dalek::VerifyingKey;
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::registry::client::RegistryClient;
use grant_node::registry::light::{LightVerifier, NameProofJson};

/// The `gen_registry` example: `GEN_REGISTRY_BIN` (a release build, from scripts/test.sh), or
/// built through cargo in this test's profile.
fn gen_registry_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("GEN_REGISTRY_BIN") {
        return bin.into();
    }
    let mut args = vec!["build", "--example", "gen_registry", "--quiet"];
    if !cfg!(debug_assertions) {
        args.push("--release");
    }
    let built = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(built.success(), "gen_registry builds");
    Path::new(env!("CARGO_BIN_EXE_grant-node"))
        .parent()
        .unwrap()
        .join("examples/gen_registry")
}

fn generate(dir: &Path, names: u64) -> u64 {
    let out = Command::new(gen_registry_bin())
        .arg(dir)
        .arg(names.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen_registry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(dir.join("registry.sqlite3"))
        .unwrap()
        .len()
}

/// A running `registry-stub`: its URL, key, and the bytes it had read (`rchar` of
/// `/proc/PID/io`: every `read` and `pread`, SQLite's page reads among them) when it began to
/// listen, that is, when opening the registry was done.
struct Started {
    _process: Killed,
    url: String,
    key: VerifyingKey,
    read_at_start: u64,
}

/// `REGISTRY_STUB_BIN` (a release build, from scripts/test.sh), or cargo's.
fn stub_bin() -> PathBuf {
    std::env::var("REGISTRY_STUB_BIN").map_or_else(|_| registry_stub_bin(), PathBuf::from)
}

fn start(dir: &Path) -> Started {
    let mut child = Command::new(stub_bin())
        .args(["--listen", "127.0.0.1:0", "--pow-bits", "0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let read_at_start = rchar(child.id());
    let url = first
        .strip_prefix("registry-stub listening on ")
        .unwrap()
        .to_owned();
    let key_line = lines.next().unwrap().unwrap();
    let hex_key = key_line.strip_prefix("registry public key ").unwrap();
    let key: [u8; 32] = hex::decode(hex_key).unwrap().try_into().unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    Started {
        _process: Killed(child),
        url,
        key: VerifyingKey::from_bytes(&key).unwrap(),
        read_at_start,
    }
}

fn rchar(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

async fn checkpoint(url: &str) -> serde_json::Value {
    HttpClient::new()
        .get(&format!("{url}/registry/checkpoint"))
        .await
        .unwrap()
        .json()
        .unwrap()
}

/// Looks `name` up as a light client does: the checkpoint's signature, the map proof, the
/// record's value.
async fn light(started: &Started, name: &str) -> Option<grant_node::registry::NameRecord> {
    let name = Name::parse(name).unwrap();
    let answer: NameProofJson = HttpClient::new()
        .get(&format!("{}/registry/names/{name}/proof", started.url))
        .await
        .unwrap()
        .json()
        .unwrap();
    let verifier = LightVerifier {
        registry_key: started.key,
        witnesses: vec![],
        quorum: 0,
    };
    verifier.check(&name, &answer, None).unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_of_100000_names_restarts_without_reading_its_names() {
    let (small, big) = (tempdir(), tempdir());
    let small_bytes = generate(small.path(), 100);
    let big_bytes = generate(big.path(), 100_000);
    assert!(
        big_bytes > small_bytes + 50_000_000,
        "{big_bytes} and {small_bytes} bytes"
    );

    let baseline = start(small.path()).read_at_start;
    let first = start(big.path());
    let generated = checkpoint(&first.url).await;
    assert_eq!(generated["size"], 100_000);
    let n = light(&first, "n99999").await.expect("a generated name");
    assert_eq!(n.node_uri, "https://node999.example/");
    assert!(light(&first, "nobody").await.is_none(), "proven absent");

    // The map goes on from the stored one: a new name, then a restart.
    let newcomer = Identity::new("newcomer", 7);
    newcomer.register(&RegistryClient::new(&first.url), 0).await;
    let grown = checkpoint(&first.url).await;
    assert_eq!(grown["size"], 100_001);
    assert_ne!(grown["map_root"], generated["map_root"]);
    let first_read = first.read_at_start;
    drop(first);

    let again = start(big.path());
    let after = checkpoint(&again.url).await;
    assert_eq!(after["map_root"], grown["map_root"]);
    assert_eq!(after["root_hash"], grown["root_hash"]);
    assert!(light(&again, "newcomer").await.is_some());
    assert!(light(&again, "n12345").await.is_some());

    // A node's mirror syncs the whole log from scratch: more entries than it tracks one by
    // one, so it recomputes the map from the leaves it wrote, and must reach the registry's
    // map root (or it refuses the checkpoint and records a fault).
    // (The node is a process of its own: the release binary under scripts/test.sh, so that
    // checking 100,000 signatures does not take an unoptimised build's minutes.)
    let node_dir = tempdir();
    let port = common::pg::free_port();
    let node_url = format!("http://127.0.0.1:{port}");
    let _node = Killed(
        Command::new(common::pg::node_bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--owner",
                "owner",
            ])
            .arg("--data-dir")
            .arg(node_dir.path())
            .args(["--registry", &again.url, "--registry-key"])
            .arg(hex::encode(again.key.as_bytes()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let get = |path: &str| {
        let url = format!("{node_url}{path}");
        async move { HttpClient::new().get(&url).await }
    };
    // The node answers once its first sync is done; it then registers its owner, so the
    // registry has grown by one more.
    let (mut synced, mut latest) = (serde_json::Value::Null, serde_json::Value::Null);
    for _ in 0..3000 {
        if let Ok(reply) = get("/registry/checkpoint").await {
            if reply.status == 200 {
                latest = checkpoint(&again.url).await;
                synced = reply.json().unwrap();
                if synced["size"] == latest["size"] && latest["size"] == 100_002 {
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(latest["size"], 100_002);
    assert_eq!(synced["size"], 100_002, "the mirror synced");
    assert_eq!(synced["map_root"], latest["map_root"]);
    let record: serde_json::Value = get("/registry/names/n4242").await.unwrap().json().unwrap();
    assert_eq!(record["node_uri"], "https://node242.example/");

    // Opening 100,000 names reads what opening 100 does, give or take a few pages of deeper
    // B-trees: nothing per name. (The map rebuilt from the records, as before, read every
    // record: the whole file, 90 MB here.)
    eprintln!(
        "bytes read while opening: 100 names {baseline}; 100,000 names {first_read}, then \
         after a registration {} ({big_bytes} bytes on disk)",
        again.read_at_start
    );
    for read in [first_read, again.read_at_start] {
        assert!(
            read < baseline + 512 * 1024,
            "opening 100,000 names read {read} bytes, 100 names {baseline}"
        );
    }
}
