//! `grant-node controller …`: the node administrator designates, lists and removes
//! controllers, directly in the node's database (the running node sees changes at once).

use anyhow::{bail, Context};

use crate::cli::ControllerCommand;
use crate::clock::Clock;
use crate::config::{Config, Database};
use crate::name::Name;
use crate::scope::Catalogue;
use crate::store;

pub fn run(command: ControllerCommand) -> anyhow::Result<()> {
    let (data_dir, database, action) = match &command {
        ControllerCommand::Add {
            data_dir, database, ..
        }
        | ControllerCommand::List { data_dir, database }
        | ControllerCommand::Remove {
            data_dir, database, ..
        } => (data_dir.clone(), database.clone(), &command),
    };
    let mut config = Config::new(crate::config::DEFAULT_LISTEN.parse()?, data_dir.clone());
    if let Some(url) = &database {
        config.database = Database::parse(url)?;
    }
    // The node's verified registry mirror: its SQLite file, shared with the node's data when
    // that is SQLite too.
    let local_path = data_dir.join(match config.database {
        Database::Sqlite => "node.sqlite3",
        Database::Postgres { .. } => "mirror.sqlite3",
    });
    if !local_path.exists() {
        bail!(
            "no node database at {}; start the node once, or pass --data-dir",
            local_path.display()
        );
    }
    let (db, local) = crate::server::open_databases(&config)?;
    // One connection at a time: with SQLite both handles are the same connection.
    let registered = |name: &Name| -> anyhow::Result<bool> {
        Ok(store::registry::record(&local.lock(), name)?.is_some())
    };
    let catalogue = Catalogue::builtin();
    match action {
        ControllerCommand::Add {
            name, max_scope, ..
        } => {
            let name =
                Name::parse(name).with_context(|| format!("{name:?} is not a valid name"))?;
            let max = catalogue.parse(max_scope).context("--max-scope")?;
            // The node's verified registry mirror lives in the same database.
            if !registered(&name)? {
                bail!(
                    "{name} is not a registered name (this node's registry mirror does not know \
                     it); register it first with `grant-node name register {name} …`"
                );
            }
            store::controllers::put(&db.lock()?, &name, max, Clock::system().now())?;
            println!(
                "{name} may create owners and act for them with: {}",
                catalogue.format(max)
            );
        }
        ControllerCommand::List { .. } => {
            for c in store::controllers::list(&db.lock()?)? {
                println!("{}\t{}", c.name, catalogue.format(c.max_scope));
            }
        }
        ControllerCommand::Remove { name, .. } => {
            let name =
                Name::parse(name).with_context(|| format!("{name:?} is not a valid name"))?;
            if !store::controllers::remove(&db.lock()?, &name)? {
                bail!("{name} is not a controller");
            }
            println!("{name} is no longer a controller");
        }
    }
    Ok(())
}
