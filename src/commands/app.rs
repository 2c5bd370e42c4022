//! `grant-node app …`: the client library driven from a shell, for developers trying things
//! and for scripts. Every command reads the key directory `grant-node name register` wrote.

use anyhow::{bail, Context};
use hyper::Method;

use crate::cli::{AppArgs, AppCommand};
use crate::client::{App, AppConfig};
use crate::commands::name::default_key_dir;
use crate::name::Name;
use crate::scope::Catalogue;

pub fn run(args: AppArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(args))
}

async fn dispatch(args: AppArgs) -> anyhow::Result<()> {
    let name = args
        .name
        .clone()
        .context("which application? pass --name or set GRANT_NODE_APP")?;
    let key_dir = args.key_dir.clone().unwrap_or_else(default_key_dir);
    let parsed = Name::parse(&name).with_context(|| format!("{name:?} is not a valid name"))?;
    let book = args
        .book
        .clone()
        .unwrap_or_else(|| key_dir.join(parsed.as_str()).join("grants.book"));
    let registry_key = args
        .registry_key
        .as_deref()
        .map(crate::config::parse_key)
        .transpose()
        .context("--registry-key")?;
    let mut config = AppConfig::from_key_dir(&name, &key_dir, &args.registry, registry_key, &book)?;
    config.outbound = args.outbound.options()?;
    match args.light.mode()? {
        Some(light) => config.light = light,
        // A full verified mirror, in a SQLite file beside the grant book.
        None => {
            config.directory = Some(crate::ledger::directory::mirror_at(
                &book.with_extension("mirror.sqlite3"),
            ))
        }
    }
    let app = App::open(config).await?;
    let catalogue = Catalogue::builtin();
    match args.command {
        AppCommand::GrantUrl {
            user,
            scope,
            redirect_uri,
        } => {
            let user = Name::parse(&user).with_context(|| format!("--user {user:?}"))?;
            let scope = catalogue.parse(&scope).context("--scope")?;
            let start = app.start_grant(&user, scope, &redirect_uri).await?;
            println!("{}", start.url);
        }
        AppCommand::FinishGrant { url } => {
            let granted = app.finish_grant(&url).await?;
            println!(
                "{} granted {} (node {})",
                granted.owner,
                catalogue.format(granted.scope),
                granted.node_url
            );
        }
        AppCommand::Call {
            user,
            method,
            path,
            scope,
            data,
        } => {
            let user = Name::parse(&user).with_context(|| format!("--user {user:?}"))?;
            let scope = catalogue.parse(&scope).context("--scope")?;
            let method: Method = method
                .to_ascii_uppercase()
                .parse()
                .with_context(|| format!("{method:?} is not an HTTP method"))?;
            if !path.starts_with('/') {
                bail!("the path must start with '/'");
            }
            let body = data
                .map(|d| serde_json::from_str(&d).context("--data is not JSON"))
                .transpose()?;
            let answer = app.call(&user, method, &path, scope, body).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        AppCommand::Grants => {
            for g in app.grants().await? {
                println!(
                    "{}\t{}\t{}",
                    g.owner,
                    catalogue.format(crate::scope::Scope::from_bits(g.scope)),
                    g.node_url
                );
            }
        }
        AppCommand::Carte {
            audience,
            admin_scope,
            ttl,
        } => {
            let audience =
                Name::parse(&audience).with_context(|| format!("--audience {audience:?}"))?;
            let scope = catalogue.parse(&admin_scope).context("--admin-scope")?;
            let ttl = humantime::parse_duration(&ttl)
                .or_else(|_| ttl.parse::<u64>().map(std::time::Duration::from_secs))
                .with_context(|| format!("--ttl {ttl:?}: use 300, 300s, 10m or 1h"))?;
            if ttl.as_secs() == 0 || ttl.as_secs() > 3600 {
                bail!("--ttl must be between 1 second and 1 hour (the node's default maximum)");
            }
            println!("{}", app.carte(&audience, scope, ttl.as_secs()));
        }
    }
    Ok(())
}
