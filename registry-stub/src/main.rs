//! `registry-stub`: the naming registry as a standalone HTTP server.
//!
//! A thin binary over the registry code in the `grant-node` library ([`Authority`] and the
//! `/registry/*` routes), the same code a node embeds. On first start it creates its signing
//! key (`registry.key`, mode 0600) in the data directory and prints the public key, which
//! nodes need to verify its checkpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use grant_node::clock::Clock;
use grant_node::http::api::registry as registry_api;
use grant_node::ledger::authority::{Authority, AuthorityConfig, DEFAULT_POW_BITS};
use grant_node::ledger::cosigning::{self, WitnessEndpoint};

#[derive(Debug, Parser)]
#[command(
    name = "registry-stub",
    version,
    about = "The grant-node naming registry"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_LISTEN", default_value = "127.0.0.1:8651")]
    listen: SocketAddr,
    /// Directory for the registry database and key.
    #[arg(long, env = "REGISTRY_DATA_DIR", default_value = "registry-data")]
    data_dir: PathBuf,
    /// Serve HTTPS with this certificate chain (PEM); reloaded when it changes or on SIGHUP.
    #[arg(long, env = "REGISTRY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "REGISTRY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Proof-of-work difficulty for registrations, in leading zero bits (0 disables it).
    #[arg(long, env = "REGISTRY_POW_BITS", default_value_t = DEFAULT_POW_BITS)]
    pow_bits: u32,
    /// A witness to gather cosignatures from, as `URL,VKEY` (the node's URL and its witness
    /// verifier key); repeat for several.
    #[arg(long = "witness", value_parser = parse_witness)]
    witnesses: Vec<WitnessEndpoint>,
    /// A PEM file of extra CA certificates to trust when calling witnesses over HTTPS.
    #[arg(long, env = "REGISTRY_CA_FILE")]
    ca_file: Option<PathBuf>,
}

fn parse_witness(s: &str) -> Result<WitnessEndpoint, String> {
    WitnessEndpoint::parse(s)
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-stub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.pow_bits > 40 {
        anyhow::bail!("--pow-bits {}: at most 40", args.pow_bits);
    }
    let authority = Authority::open(
        &args.data_dir,
        AuthorityConfig {
            pow_bits: args.pow_bits,
            ..AuthorityConfig::default()
        },
        Clock::system(),
    )
    .with_context(|| format!("opening the registry in {}", args.data_dir.display()))?;
    if let Err(e) = grant_node::http::raise_descriptor_limit() {
        tracing::warn!(error = %e, "cannot raise the descriptor limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let store =
                    grant_node::http::tls::CertStore::open(grant_node::http::tls::TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                    })
                    .context("loading the TLS certificate")?;
                let config = store.server_config();
                tokio::spawn(
                    store.watch(std::time::Duration::from_secs(2), std::future::pending()),
                );
                Some(config)
            }
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("registry-stub listening on {scheme}://{addr}");
        println!(
            "registry public key {}",
            hex_key(authority.public_key().as_bytes())
        );
        println!(
            "registry verifier key {}",
            grant_node::registry::note::registry_vkey(&authority.public_key())
        );
        if !args.witnesses.is_empty() {
            let client = grant_node::outbound::HttpClient::with(grant_node::outbound::Options {
                ca_file: args.ca_file.clone(),
                ..grant_node::outbound::Options::default()
            })
            .context("setting up the client for witnesses")?;
            tokio::spawn(cosigning::run(
                authority.clone(),
                args.witnesses.clone(),
                client,
                std::time::Duration::from_secs(2),
                std::future::pending(),
            ));
        }
        registry_api::serve_standalone_tls(listener, authority, shutdown_signal(), tls).await?;
        Ok(())
    })
}

fn hex_key(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn shutdown_signal() {
    grant_node::commands::serve::shutdown_signal().await
}
