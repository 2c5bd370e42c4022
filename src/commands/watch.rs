//! `grant-node name watch`: follow the verified registry log and report every operation on
//! some names, telling the owner's own operations (listed in the name's journal) from anyone
//! else's. The log is verified as a node verifies it (a [`Mirror`] in memory: every entry
//! re-checked, the tree root matched to a registry-signed checkpoint), so a registry cannot
//! hide an operation from the watcher without forking, which the mirror reports.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::name::{name_dir, registry_client};
use crate::cli::RegistryArgs;
use crate::clock::Clock;
use crate::ledger::mirror::Mirror;
use crate::ledger::source::Source;
use crate::name::Name;
use crate::registry::log::LogEntry;
use crate::registry::op::{Operation, SignedOp};
use crate::store::{self, Local};

/// The flags of `name watch`.
pub struct Watch {
    pub names: Vec<Name>,
    pub registry_key: Option<String>,
    pub from: u64,
    pub hook: Option<String>,
    pub once: bool,
    pub interval: Duration,
    pub registry: RegistryArgs,
}

/// How an operation is named in journals and events: SHA-256 of its envelope, hex.
pub fn op_id(envelope: &[u8]) -> String {
    hex::encode(Sha256::digest(envelope))
}

fn journal(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_to_string(dir.join("journal"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// What changed, in words.
fn changes(op: &Operation) -> Vec<String> {
    match op {
        Operation::Register(r) => vec![
            format!(
                "registered with updating key {}",
                hex::encode(r.updating_key.as_bytes())
            ),
            format!(
                "signing key {} from {}",
                hex::encode(r.signing_key.as_bytes()),
                r.valid_from
            ),
            format!("node_uri {}", r.node_uri),
            format!("redirect_uris {:?}", r.redirect_uris),
        ],
        Operation::Update(u) => {
            let mut out = Vec::new();
            if let Some((k, from)) = &u.new_signing_key {
                out.push(format!(
                    "new signing key {} from {from}",
                    hex::encode(k.as_bytes())
                ));
            }
            if let Some(k) = &u.compromised_key {
                out.push(format!(
                    "signing key {} marked compromised",
                    hex::encode(k.as_bytes())
                ));
            }
            if let Some(k) = &u.new_updating_key {
                out.push(format!("new updating key {}", hex::encode(k.as_bytes())));
            }
            if let Some(n) = &u.node_uri {
                out.push(format!("node_uri {n}"));
            }
            if let Some(r) = &u.redirect_uris {
                out.push(format!("redirect_uris {r:?}"));
            }
            out
        }
    }
}

pub async fn watch(w: Watch) -> anyhow::Result<()> {
    let client = registry_client(&w.registry)?;
    let key = match &w.registry_key {
        Some(k) => crate::config::parse_key(k).context("--registry-key")?,
        None => {
            let meta = client
                .metadata()
                .await
                .context("fetching the registry's key")?;
            eprintln!(
                "trusting the registry key {} as fetched; pass --registry-key to pin it",
                meta.public_key
            );
            crate::config::parse_key(&meta.public_key)?
        }
    };
    let db = Local::in_memory()?;
    let mirror = Arc::new(Mirror::new(
        db.clone(),
        key,
        Source::remote_with(&w.registry.registry, client.http().clone()),
        Clock::system(),
    )?);
    let watched: HashSet<Name> = w.names.iter().cloned().collect();
    let dirs: Vec<(Name, PathBuf)> = w
        .names
        .iter()
        .map(|n| (n.clone(), name_dir(w.registry.key_dir.as_deref(), n)))
        .collect();
    let mut next = w.from;
    loop {
        match mirror.sync().await {
            Ok(_) => {}
            Err(e) if w.once => bail!("the registry log could not be verified: {e}"),
            Err(e) => eprintln!("registry sync failed (retrying): {e}"),
        }
        if let Some(fault) = mirror.status().degraded {
            bail!("the registry misbehaved: {fault}");
        }
        loop {
            let from = next;
            let page = db
                .run(move |c| store::registry::entries(c, from, 1000))
                .await?;
            if page.is_empty() {
                break;
            }
            for bytes in page {
                let entry = LogEntry::decode(&bytes).context("a verified entry does not decode")?;
                next = entry.seq + 1;
                let signed =
                    SignedOp::decode(&entry.op).context("a verified op does not decode")?;
                let name = signed.op.name().clone();
                if !watched.contains(&name) {
                    continue;
                }
                let id = op_id(&entry.op);
                let known = dirs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| journal(d))
                    .unwrap_or_default();
                let expected = known.contains(&id);
                let event = json!({
                    "seq": entry.seq,
                    "time": entry.time,
                    "name": name.as_str(),
                    "op": match signed.op { Operation::Register(_) => "register", Operation::Update(_) => "update" },
                    "op_id": id,
                    "expected": expected,
                    "changes": changes(&signed.op),
                });
                println!("{event}");
                if expected {
                    continue;
                }
                match &w.hook {
                    Some(cmd) => {
                        let status = std::process::Command::new("sh")
                            .arg("-c")
                            .arg(cmd)
                            .env("GRANT_NODE_WATCH_EVENT", event.to_string())
                            .status()
                            .with_context(|| format!("running the hook {cmd:?}"))?;
                        if !status.success() {
                            eprintln!("the hook exited with {status}");
                        }
                    }
                    None => bail!(
                        "unexpected operation on {name} at log position {} (op {id}): not in {}",
                        entry.seq,
                        name_dir(w.registry.key_dir.as_deref(), &name)
                            .join("journal")
                            .display()
                    ),
                }
            }
        }
        if w.once {
            return Ok(());
        }
        tokio::time::sleep(w.interval).await;
    }
}
