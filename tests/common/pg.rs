//! PostgreSQL for the tests: a throw-away cluster (`scripts/pg.sh`, Debian's packages, run
//! as an unprivileged user), fresh databases in it, and node processes (the real binary) on
//! one database.
//!
//! `scripts/test.sh` installs PostgreSQL and sets `GRANT_NODE_REQUIRE_POSTGRES`; without
//! it, a machine with no PostgreSQL skips these tests and says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use grant_node::name::Name;
use grant_node::outbound::HttpClient;

/// A PostgreSQL cluster: the one `scripts/test.sh` started for the whole run
/// (`GRANT_NODE_PG_URL`), or one of this test's own in a temporary folder, stopped on drop.
pub struct Cluster {
    /// `None` for the run's shared cluster (not this test's to stop or restart).
    dir: Option<tempfile::TempDir>,
    /// The superuser URL (database `postgres`).
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

impl Cluster {
    /// The run's shared cluster when there is one, else a cluster of this test's own.
    pub fn shared() -> Option<Cluster> {
        match std::env::var("GRANT_NODE_PG_URL") {
            Ok(url) => Some(Cluster { dir: None, url }),
            Err(_) => Cluster::start(),
        }
    }

    /// Starts a cluster of this test's own, or `None` (with a note) when PostgreSQL is not
    /// installed and the test run does not require it.
    pub fn start() -> Option<Cluster> {
        let installed =
            std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some());
        if !installed {
            if std::env::var_os("GRANT_NODE_REQUIRE_POSTGRES").is_some() {
                panic!("PostgreSQL is required (scripts/test.sh installs it) but missing");
            }
            eprintln!("PostgreSQL is not installed: skipping (scripts/test.sh installs it)");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("gn-pg").tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(Cluster {
            dir: Some(dir),
            url,
        })
    }

    /// `pg_ctl restart -m immediate`: a crash and a restart.
    pub fn restart_immediate(&self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a test's own cluster is restarted");
        let out = Command::new("bash")
            .arg(script())
            .arg("restart")
            .arg(dir.path().join("pg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restarting PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `signal` (`STOP`, `CONT`) to every process of this test's own cluster: the
    /// postmaster and each backend serving a connection.
    pub fn signal(&self, signal: &str) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a test's own cluster is paused");
        let pid_file = dir.path().join("pg/data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap();
        let postmaster = text.lines().next().unwrap().trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8(children.stdout)
                .unwrap()
                .split_whitespace()
                .map(str::to_owned),
        );
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pids:?}");
    }

    /// Serves TLS with this certificate chain and key (files), restarting the cluster.
    pub fn serve_tls(&self, cert: &Path, key: &Path) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a test's own cluster is reconfigured");
        let out = Command::new("bash")
            .arg(script())
            .arg("tls")
            .arg(dir.path().join("pg"))
            .arg(cert)
            .arg(key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "turning TLS on: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new, empty database (named `name` and a random suffix); its URL.
    pub async fn database(&self, name: &str) -> String {
        let name = format!(
            "{name}_{}",
            hex::encode(&grant_node::auth::random_bytes()[..6])
        );
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        self.url.replace("/postgres", &format!("/{name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new("bash")
                .arg(script())
                .arg("stop")
                .arg(dir.path().join("pg"))
                .output();
        }
    }
}

/// Runs one SQL query against `url`; rows of text columns.
pub async fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let rows = client.simple_query(sql).await.unwrap();
    drop(client);
    let _ = task.await;
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The node binary: `GRANT_NODE_BIN` (a release build, from scripts/test.sh) or cargo's.
pub fn node_bin() -> String {
    std::env::var("GRANT_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_grant-node").to_owned())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process on a shared database, killed on drop.
pub struct Process {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
}

impl Process {
    /// Starts `grant-node serve` on `database`, mirroring `registry`, in `dir`, with the
    /// database key `key_file` (every process of one node shares it).
    pub async fn start(
        dir: &Path,
        database: &str,
        key_file: &Path,
        registry: &str,
        registry_key: &str,
    ) -> Process {
        Process::start_with(dir, database, key_file, registry, registry_key, "").await
    }

    /// [`Process::start`] with more configuration (TOML).
    pub async fn start_with(
        dir: &Path,
        database: &str,
        key_file: &Path,
        registry: &str,
        registry_key: &str,
        toml: &str,
    ) -> Process {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("node.toml"), toml).unwrap();
        let args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            dir.join("node.toml").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--owner".into(),
            "alice".into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--database".into(),
            database.into(),
            "--database-key".into(),
            key_file.display().to_string(),
            "--registry".into(),
            registry.into(),
            "--registry-key".into(),
            registry_key.into(),
            "--sync-interval".into(),
            "1".into(),
            "--allow-private-targets".into(),
        ];
        let mut p = Process {
            child: spawn(&args, dir),
            port,
            dir: dir.to_path_buf(),
            args,
        };
        p.wait_ready().await;
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Ok(r) = HttpClient::new()
                .get(&format!("{}/healthz", self.url()))
                .await
            {
                if r.status == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("the node exited ({status}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the node did not come up");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.args, &self.dir);
        self.wait_ready().await;
    }
}

fn spawn(args: &[String], dir: &Path) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    Command::new(node_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An owner's signing key, as the node sealed it in the database.
pub async fn owner_key(database: &str, key_file: &Path, owner: &str) -> SigningKey {
    let rows = query(
        database,
        &format!("SELECT encode(sealed, 'hex') FROM owner_keys WHERE owner = '{owner}' AND kind = 'signing'"),
    )
    .await;
    let sealed = hex::decode(rows[0][0].as_ref().unwrap()).unwrap();
    let key = grant_node::keyfile::load(key_file).unwrap().to_bytes();
    let secret = grant_node::store::owner_keys::Sealer::new(&key)
        .open(&Name::parse(owner).unwrap(), "signing", &sealed)
        .unwrap();
    SigningKey::from_bytes(&secret)
}

/// `owner`'s own carte for the grant API (admin scope `grant`, valid for 50 minutes), signed
/// with the key the node sealed in `database`.
pub async fn owner_carte(database: &str, key_file: &Path, owner: &str) -> String {
    let key = owner_key(database, key_file, owner).await;
    let name = Name::parse(owner).unwrap();
    let now = super::now();
    let mut c =
        grant_node::carte::Carte::new(name.clone(), now - 5, now + 3000, super::random_nonce());
    c.audience = Some(name);
    c.admin_scope = grant_node::scope::Scope::GRANT;
    c.sign(&key)
}
