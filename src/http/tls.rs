//! HTTPS in: the certificate the server presents, reloaded without a restart.
//!
//! The chain and key are PEM files (certbot's `fullchain.pem` and `privkey.pem`). They are
//! read at start; afterwards a watcher re-reads them when either file's modification time
//! changes, and on SIGHUP. A new pair that does not load (half-written, mismatched, not PEM)
//! is refused with a log line and the old certificate stays: a bad renewal never takes the
//! node off the air. Connections already open keep the session they negotiated; new
//! handshakes get the new certificate. TLS 1.2 and 1.3 only (rustls speaks nothing older),
//! and ALPN offers `h2` and `http/1.1`.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

pub use crate::config::TlsFiles;

/// The certificate currently presented; swapped whole on reload.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl CertStore {
    /// Loads the pair, or says why it cannot be served.
    pub fn open(files: TlsFiles) -> anyhow::Result<Arc<CertStore>> {
        let key = load(&files)?;
        let stamp = stamp(&files);
        Ok(Arc::new(CertStore {
            files,
            current: RwLock::new(Arc::new(key)),
            stamp: RwLock::new(stamp),
        }))
    }

    /// Re-reads the files. On failure the old certificate stays and the reason is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamp = stamp(&self.files);
        *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = stamp;
        let key = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// Reloads if either file changed since the last look.
    fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        let before = *self.stamp.read().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now != before {
            self.log_reload("the certificate files changed");
        }
    }

    fn log_reload(&self, why: &str) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.files.cert.display(), why, "TLS certificate reloaded")
            }
            Err(e) => tracing::warn!(
                cert = %self.files.cert.display(),
                error = %format!("{e:#}"),
                "the new TLS certificate does not load; still serving the previous one"
            ),
        }
    }

    /// The rustls server configuration that presents this store's certificate.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Watches the files (every `every`) and SIGHUP until `stop` resolves.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                _ = &mut stop => return,
                _ = hangup => self.log_reload("SIGHUP"),
                _ = tokio::time::sleep(every) => self.reload_if_changed(),
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn stamp(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.cert)?, m(&files.key)?))
}

fn load(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the key {}", files.key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
        format!(
            "{} and {} do not match",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(certified)
}
