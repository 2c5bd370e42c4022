//! `grant-node owner export` and `owner import`: moving an owner between nodes. The database
//! and key work is [`crate::node::moves`]'s; this adds the flags and the registry.

use anyhow::{bail, Context};

use super::backup::{open_key, seal_key};
use super::name::{current, empty_update, explain};
use crate::cli::{OwnerCommand, OwnerExportArgs, OwnerImportArgs};
use crate::clock::Clock;
use crate::config::{Config, RegistrySetting};
use crate::name::Name;
use crate::node::moves::{read_export, Opened};
use crate::registry::client::RegistryClient;
use crate::registry::op::Operation;
use crate::uri::CheckedUri;

pub fn run(command: OwnerCommand) -> anyhow::Result<()> {
    match command {
        OwnerCommand::Export(args) => export(args),
        OwnerCommand::Import(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(import(args))
        }
    }
}

fn export(args: OwnerExportArgs) -> anyhow::Result<()> {
    let name =
        Name::parse(&args.name).with_context(|| format!("{:?} is not a valid name", args.name))?;
    let new_node = CheckedUri::base_url(&args.new_node)
        .with_context(|| format!("--new-node {:?}", args.new_node))?;
    let key = seal_key(&args.seal)?;
    if args.to.exists() {
        bail!("{} exists: export into a new file", args.to.display());
    }
    let opened = open(Config::build(args.node)?)?;
    let rows = opened.export(&name, &new_node, &args.to, &key, Clock::system().now())?;
    eprintln!(
        "exported {name} ({} grants, {} history entries) to {}; this node now answers \
         owner.moved for {name}. Keep the file until `grant-node owner import` has succeeded \
         on {new_node}.",
        rows.count("grants"),
        rows.count("audit"),
        args.to.display()
    );
    Ok(())
}

async fn import(args: OwnerImportArgs) -> anyhow::Result<()> {
    let key = open_key(&args.open)?;
    let export = read_export(&args.from, &key)?;
    let owner = export.owner()?;
    let (updating, _) = export.keys()?;
    let config = Config::build(args.node)?;
    let Some(public_url) = config.public_url.clone() else {
        bail!(
            "give --public-url (or public_url in the configuration): the URL at which this \
             node is reached, which the registry will name as {owner}'s node"
        );
    };
    let node_uri = format!("{public_url}/");
    if export.to_node.trim_end_matches('/') != public_url {
        eprintln!(
            "grant-node: note: {owner} was exported for {}, and is imported at {public_url}",
            export.to_node
        );
    }
    let registry = registry_client(&config)?;
    // Before anything is written: the keys must be the name's (the registry's record).
    let record = current(&registry, &owner).await?;
    let ours = hex::encode(updating.verifying_key().as_bytes());
    if record.updating_key != ours {
        bail!(
            "the export's updating key for {owner} is {ours}, but the registry holds {}: it \
             changed since the export (recovered with the words?); nothing was imported",
            record.updating_key
        );
    }
    let opened = open(config)?;
    opened.import(&export)?;
    if record.node_uri != node_uri {
        let mut update = empty_update(&owner, &record)?;
        update.node_uri = Some(node_uri.clone());
        let envelope = Operation::Update(update).sign(&updating);
        if let Err(e) = registry.submit(envelope).await {
            let e = explain(e);
            opened
                .unimport(&owner)
                .context("undoing the import after the registry refused it")?;
            return Err(e.context(format!(
                "the registry did not point {owner} at {node_uri}; nothing was imported"
            )));
        }
    }
    if let Some(platform) = controller_of(&export) {
        let known = crate::store::controllers::get(&opened.db.lock()?, &platform)?.is_some();
        if !known {
            eprintln!(
                "grant-node: note: {owner} was created by the platform {platform}, which is not a \
                 controller here; it cannot act for {owner} until `grant-node controller add \
                 {platform} …`"
            );
        }
    }
    eprintln!(
        "imported {owner} ({} grants, {} history entries); the registry names {node_uri} as \
         its node. {owner} logs in here with the same password (sessions stay behind).",
        export.rows.count("grants"),
        export.rows.count("audit"),
    );
    Ok(())
}

/// The platform that created the exported owner (controlled accounts), if any.
fn controller_of(export: &crate::node::moves::Export) -> Option<Name> {
    let table = export.rows.tables.iter().find(|t| t.table == "owners")?;
    let at = table.columns.iter().position(|c| c == "controller")?;
    let value = table.rows.first()?.get(at)?.as_str()?;
    Name::parse_canonical(value).ok()
}

/// The node's data, as the node opens it.
fn open(config: Config) -> anyhow::Result<Opened> {
    if let crate::config::Database::Sqlite = config.database {
        let file = config.data_dir.join("node.sqlite3");
        if !file.exists() {
            bail!(
                "no node database at {}; pass the node's --data-dir",
                file.display()
            );
        }
    }
    let (db, _mirror) = crate::server::open_databases(&config)?;
    let keys = crate::server::owner_keys(&config, &db)?;
    Ok(Opened::new(config, db, keys))
}

/// Where registry operations go: the configured registry, or (embedded) the node itself,
/// which must be running.
fn registry_client(config: &Config) -> anyhow::Result<RegistryClient> {
    let http = crate::outbound::HttpClient::with(config.outbound.clone())?;
    let base = match &config.registry {
        RegistrySetting::Remote { url, .. } => url.clone(),
        RegistrySetting::Embedded { .. } => config
            .public_url
            .clone()
            .context("the embedded registry is reached at the node's --public-url")?,
    };
    Ok(RegistryClient::with_client(&base, http))
}
