//! `grant-node serve`: validate the flags into a [`Config`], bind, serve until a signal.

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::config::Config;

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::build(args)?;
    match crate::http::raise_descriptor_limit() {
        Ok(limit) => tracing::info!(limit, "descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener =
            listen(config.listen).with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "grant-node listening");
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        println!("grant-node listening on {scheme}://{addr}");
        crate::server::serve(config, listener, shutdown_signal()).await?;
        tracing::info!("grant-node stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The listening socket, with a backlog of 4096 (the kernel caps it at `somaxconn`) rather than
/// tokio's 1024: at the connection cap the accept loop drains idle connections to make room,
/// and a burst larger than the backlog would drop a newcomer's SYN meanwhile (a one-second
/// retransmission for that client).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
