//! A small web application that uses grant-node: a visitor types their name, is sent to their
//! own node to grant `view-profile`, and comes back to see their profile read through the
//! node's API.
//!
//! ```sh
//! grant-node name register photo-app --node-uri http://127.0.0.1:8700/ \
//!     --redirect-uri http://127.0.0.1:8700/cb
//! cargo run --example photo_app -- --name photo-app --listen 127.0.0.1:8700
//! ```
//!
//! Add `--light` to keep no registry mirror (each user's record is proven against a
//! witnessed checkpoint instead: the toolkit's own way, with no database). Then open http://127.0.0.1:8700/. Notifications from nodes arrive at `POST /` (the node URI
//! registered above) and keep the grant book current.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use grant_node::http::pages::html::{html, page, see_other};
use grant_node::http::{Body, Request};
use grant_node::name::Name;
use grant_node::scope::Scope;
use grant_toolkit::{notify, App, AppConfig};
use hyper::{Method, Response, StatusCode};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "photo-app")]
    name: String,
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    #[arg(
        long,
        env = "GRANT_NODE_REGISTRY",
        default_value = "http://127.0.0.1:8650"
    )]
    registry: String,
    #[arg(long, env = "GRANT_NODE_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// `--light [--witness VKEY…] [--witness-quorum K]`: no registry mirror; every name it
    /// needs is proven against a witnessed checkpoint.
    #[command(flatten)]
    light: grant_node::cli::LightArgs,
}

const VIEW_PROFILE: Scope = Scope::from_bits(0x80000);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key_dir = args
        .key_dir
        .unwrap_or_else(grant_node::commands::name::default_key_dir);
    let book = key_dir.join(&args.name).join("grants.book");
    let mut config = AppConfig::from_key_dir(&args.name, &key_dir, &args.registry, None, &book)?;
    match args.light.mode()? {
        Some(light) => config.light = light,
        None => {
            config.directory = Some(grant_node::ledger::directory::mirror_at(
                &book.with_extension("mirror.sqlite3"),
            ))
        }
    }
    let app = App::open(config).await.context("opening the application")?;
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("photo-app on {base}/");
    let handler = move |req: Request, _peer| {
        let (app, base) = (app.clone(), base.clone());
        async move { route(&app, &base, req).await }
    };
    grant_node::http::run(listener, handler, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

async fn route(app: &App, base: &str, req: Request) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let user: Option<String> = form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == "user")
        .map(|(_, v)| v.into_owned());
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/") => page(
            StatusCode::OK,
            "Photo app",
            html! {
                h1 { "Photo app" }
                form action="/start" {
                    label for="user" { "Your name" }
                    input type="text" id="user" name="user" required;
                    button type="submit" { "Show my profile" }
                }
            },
        ),
        (Method::POST, "/") => notify::handle(app, req).await,
        (Method::GET, "/start") => {
            let Some(user) = user.and_then(|u| Name::parse(&u).ok()) else {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Photo app",
                    html! { p { "That is not a name." } },
                );
            };
            match app
                .start_grant(&user, VIEW_PROFILE, &format!("{base}/cb"))
                .await
            {
                Ok(start) => see_other(&start.url),
                Err(e) => page(StatusCode::BAD_GATEWAY, "Photo app", html! { p { (e) } }),
            }
        }
        (Method::GET, "/cb") => {
            let shown = match app.finish_grant(&query).await {
                Ok(granted) => match app.get(&granted.owner, "/api/profile", VIEW_PROFILE).await {
                    Ok(profile) => html! {
                        h1 { "Hello, " (granted.owner.as_str()) }
                        p { "Your profile, read through your node:" }
                        pre { (serde_json::to_string_pretty(&profile["document"]).unwrap_or_default()) }
                    },
                    Err(e) => html! { p { "Your node refused: " (e) } },
                },
                Err(e) => html! { p { "No grant: " (e) } },
            };
            page(StatusCode::OK, "Photo app", shown)
        }
        _ => page(
            StatusCode::NOT_FOUND,
            "Photo app",
            html! { p { "Not found." } },
        ),
    }
}
