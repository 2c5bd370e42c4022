//! `grant-node controller …`: the node administrator designates, lists and removes
//! controllers, directly in the node's database (the running node sees changes at once).

use anyhow::{bail, Context};

use crate::cli::ControllerCommand;
use crate::clock::Clock;
use crate::name::Name;
use crate::scope::Catalogue;
use crate::store::{self, Db};

pub fn run(command: ControllerCommand) -> anyhow::Result<()> {
    let (data_dir, action) = match &command {
        ControllerCommand::Add { data_dir, .. }
        | ControllerCommand::List { data_dir }
        | ControllerCommand::Remove { data_dir, .. } => (data_dir.clone(), &command),
    };
    let path = data_dir.join("node.sqlite3");
    if !path.exists() {
        bail!(
            "no node database at {}; start the node once, or pass --data-dir",
            path.display()
        );
    }
    let db = Db::open(&path).context("opening the node database")?;
    let conn = db.lock();
    let catalogue = Catalogue::builtin();
    match action {
        ControllerCommand::Add {
            name, max_scope, ..
        } => {
            let name =
                Name::parse(name).with_context(|| format!("{name:?} is not a valid name"))?;
            let max = catalogue.parse(max_scope).context("--max-scope")?;
            // The node's verified registry mirror lives in the same database.
            if store::registry::record(&conn, &name)?.is_none() {
                bail!(
                    "{name} is not a registered name (this node's registry mirror does not know \
                     it); register it first with `grant-node name register {name} …`"
                );
            }
            store::controllers::put(&conn, &name, max, Clock::system().now())?;
            println!(
                "{name} may create owners and act for them with: {}",
                catalogue.format(max)
            );
        }
        ControllerCommand::List { .. } => {
            for c in store::controllers::list(&conn)? {
                println!("{}\t{}", c.name, catalogue.format(c.max_scope));
            }
        }
        ControllerCommand::Remove { name, .. } => {
            let name =
                Name::parse(name).with_context(|| format!("{name:?} is not a valid name"))?;
            if !store::controllers::remove(&conn, &name)? {
                bail!("{name} is not a controller");
            }
            println!("{name} is no longer a controller");
        }
    }
    Ok(())
}
