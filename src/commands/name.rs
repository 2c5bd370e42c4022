//! `grant-node name …`: register and manage a name from the shell.
//!
//! Keys live in `KEY_DIR/NAME/`: `updating.key` (authorises registry changes) and `signing.key`
//! (signs cartes); retired signing keys are kept as `signing-<valid_from>.key`. Every file is
//! created with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;

use crate::cli::{NameCommand, RegistryArgs};
use crate::clock::Clock;
use crate::keyfile;
use crate::name::Name;
use crate::recovery::RecoveryWords;
use crate::registry::client::{RegistryClient, RemoteError};
use crate::registry::op::{solve_pow, Operation, Register, Update};
use crate::registry::RecordJson;
use crate::uri::CheckedUri;

/// The default key directory: `$HOME/.grant-node/keys`.
pub fn default_key_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".grant-node")
        .join("keys")
}

/// The key folder of `name` under `key_dir`.
pub fn name_dir(key_dir: Option<&Path>, name: &Name) -> PathBuf {
    key_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(default_key_dir)
        .join(name.as_str())
}

pub fn run(command: NameCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(command))
}

async fn dispatch(command: NameCommand) -> anyhow::Result<()> {
    match command {
        NameCommand::Register {
            name,
            node_uri,
            redirect_uris,
            words_out,
            registry,
        } => {
            register(
                &name,
                node_uri,
                redirect_uris,
                words_out.as_deref(),
                &registry,
            )
            .await
        }
        NameCommand::Recover {
            name,
            words_file,
            node_uri,
            compromised_since,
            registry,
        } => recover(&name, &words_file, node_uri, compromised_since, &registry).await,
        NameCommand::RotateKey { name, registry } => rotate(&name, false, &registry).await,
        NameCommand::RevokeKey { name, registry } => rotate(&name, true, &registry).await,
        NameCommand::Update {
            name,
            node_uri,
            redirect_uris,
            clear_redirect_uris,
            registry,
        } => {
            let uris = if clear_redirect_uris {
                Some(Vec::new())
            } else if redirect_uris.is_empty() {
                None
            } else {
                Some(redirect_uris)
            };
            update(&name, node_uri, uris, &registry).await
        }
        NameCommand::Watch {
            names,
            registry_key,
            from,
            hook,
            once,
            interval,
            registry,
        } => {
            let names = names
                .iter()
                .map(|n| parse_name(n))
                .collect::<anyhow::Result<_>>()?;
            super::watch::watch(super::watch::Watch {
                names,
                registry_key,
                from,
                hook,
                once,
                interval: std::time::Duration::from_secs(interval.max(1)),
                registry,
            })
            .await
        }
        NameCommand::Show { name, registry } => {
            let name = parse_name(&name)?;
            let client = registry_client(&registry)?;
            match client.record(&name).await.map_err(explain)? {
                Some(record) => print_record(&record),
                None => bail!("{name} is not registered in {}", client.base()),
            }
        }
    }
}

fn parse_name(raw: &str) -> anyhow::Result<Name> {
    Name::parse(raw).with_context(|| format!("{raw:?} is not a valid name"))
}

fn check_uris(node_uri: Option<&str>, redirect_uris: &[String]) -> anyhow::Result<()> {
    if let Some(uri) = node_uri {
        CheckedUri::parse_node(uri).with_context(|| format!("--node-uri {uri:?}"))?;
    }
    for uri in redirect_uris {
        CheckedUri::parse_redirect(uri).with_context(|| format!("--redirect-uri {uri:?}"))?;
    }
    Ok(())
}

/// The updating key in `dir`, or a new one from fresh recovery words, which are shown once
/// (stderr, with a warning) or written to `words_out`.
fn updating_key_with_words(dir: &Path, words_out: Option<&Path>) -> anyhow::Result<SigningKey> {
    let path = dir.join("updating.key");
    if path.exists() {
        if words_out.is_some() {
            bail!(
                "{} exists already: its recovery words were given when it was made",
                path.display()
            );
        }
        return keyfile::load(&path);
    }
    let words = RecoveryWords::generate()?;
    let key = words.updating_key();
    // The words go out before the key is kept: if they cannot be written, nothing is made.
    match words_out {
        Some(out) => write_words(out, &words)?,
        None => show_words(&words),
    }
    keyfile::save(&path, &key)?;
    Ok(key)
}

fn write_words(out: &Path, words: &RecoveryWords) -> anyhow::Result<()> {
    let mut file = keyfile::create_private(out)
        .with_context(|| format!("for the recovery words: {}", out.display()))?;
    writeln!(file, "{}", words.phrase())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the recovery words to {}", out.display()))?;
    eprintln!(
        "the 24 recovery words are in {} (mode 0600): copy them onto paper, keep them apart \
         from this machine, then delete the file",
        out.display()
    );
    Ok(())
}

fn show_words(words: &RecoveryWords) {
    eprintln!(
        "\nRECOVERY WORDS. Write these 24 words down, in order, and keep them offline. They are\n\
         the only way to take this name back if this machine is lost, and anyone who has them\n\
         can take it from you. They are shown this once and stored nowhere.\n"
    );
    for (i, w) in words.words().iter().enumerate() {
        eprint!(
            "{:>2}. {w:<10}{}",
            i + 1,
            if i % 6 == 5 { "\n" } else { " " }
        );
    }
    eprintln!();
}

async fn register(
    raw: &str,
    node_uri: String,
    redirect_uris: Vec<String>,
    words_out: Option<&Path>,
    args: &RegistryArgs,
) -> anyhow::Result<()> {
    let name = parse_name(raw)?;
    check_uris(Some(&node_uri), &redirect_uris)?;
    let dir = name_dir(args.key_dir.as_deref(), &name);
    let updating = updating_key_with_words(&dir, words_out)?;
    let signing = keyfile::load_or_create(&dir.join("signing.key"))?;
    let client = registry_client(args)?;
    let metadata = client.metadata().await.map_err(explain)?;
    let mut op = Register {
        name: name.clone(),
        updating_key: updating.verifying_key(),
        signing_key: signing.verifying_key(),
        // Two minutes back: the name is new, so back-dating its first key harms no one, and it
        // lets cartes signed right away verify on nodes whose clocks are a little behind.
        valid_from: Clock::system().now().saturating_sub(120),
        node_uri,
        redirect_uris,
        pow_nonce: [0; 8],
    };
    let bits = metadata.pow_bits;
    eprint!("solving the proof of work ({bits} bits)…");
    let started = std::time::Instant::now();
    let op = tokio::task::spawn_blocking(move || {
        solve_pow(&mut op, bits, |attempts| {
            if attempts % (1 << 20) == 0 {
                eprint!(
                    "\rsolving the proof of work ({bits} bits)… {}M attempts",
                    attempts >> 20
                );
                let _ = std::io::stderr().flush();
            }
        });
        op
    })
    .await
    .context("solving the proof of work")?;
    eprintln!(" done in {:.1?}", started.elapsed());
    let envelope = Operation::Register(op).sign(&updating);
    journal(&dir, &envelope)?;
    let record = client.submit(envelope).await.map_err(explain)?;
    eprintln!("registered {name}; keys in {}", dir.display());
    print_record(&record)
}

pub(crate) async fn current(client: &RegistryClient, name: &Name) -> anyhow::Result<RecordJson> {
    client
        .record(name)
        .await
        .map_err(explain)?
        .with_context(|| format!("{name} is not registered in {}", client.base()))
}

pub(crate) fn digest(record: &RecordJson) -> anyhow::Result<[u8; 32]> {
    hex::decode(&record.digest)
        .ok()
        .and_then(|d| d.try_into().ok())
        .context("the registry sent a malformed digest")
}

/// `name recover`: see the command's help. Nothing is sent before the words are known to be
/// this name's: the derived updating key must be the one in the registry's record.
async fn recover(
    raw: &str,
    words_file: &Path,
    node_uri: Option<String>,
    compromised_since: Option<u64>,
    args: &RegistryArgs,
) -> anyhow::Result<()> {
    let name = parse_name(raw)?;
    check_uris(node_uri.as_deref(), &[])?;
    let text = std::fs::read_to_string(words_file)
        .with_context(|| format!("reading {}", words_file.display()))?;
    let words = RecoveryWords::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e} ({})", words_file.display(), e.code()))?;
    let updating = words.updating_key();
    let client = registry_client(args)?;
    let record = current(&client, &name).await?;
    let derived = hex::encode(updating.verifying_key().as_bytes());
    if record.updating_key != derived {
        bail!(
            "these recovery words give the updating key {derived}, but the registry holds {} \
             for {name}: they are not this name's words (or its updating key was changed since); \
             nothing was sent",
            record.updating_key
        );
    }
    let dir = name_dir(args.key_dir.as_deref(), &name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let signing_path = dir.join("signing.key");
    if signing_path.exists() {
        bail!(
            "{} exists: recover into a key directory that has no keys for {name}",
            signing_path.display()
        );
    }
    let new = keyfile::generate()?;
    let latest = record.keys.iter().map(|k| k.valid_from).max().unwrap_or(0);
    let now = Clock::system().now().max(latest + 1);
    let current_key = record
        .keys
        .iter()
        .max_by_key(|k| k.valid_from)
        .map(|k| crate::config::parse_key(&k.key))
        .transpose()
        .context("the registry's current signing key")?;
    let mut update = empty_update(&name, &record)?;
    update.new_signing_key = Some((new.verifying_key(), now));
    // The lost machine held the signing key: whoever has it now must not sign for the name.
    update.compromised_key = current_key.filter(|_| {
        !record
            .keys
            .iter()
            .max_by_key(|k| k.valid_from)
            .is_some_and(|k| k.compromised)
    });
    update.compromised_since = update
        .compromised_key
        .map(|_| compromised_since.unwrap_or_else(|| Clock::system().now()));
    update.node_uri = node_uri;
    // Keys first, then the journal, then the submission: a crash leaves keys that the next
    // `recover` refuses to overwrite, never a submitted change without its keys.
    keyfile::save(&dir.join("updating.key"), &updating)?;
    keyfile::save(&dir.join("signing.next.key"), &new)?;
    let envelope = Operation::Update(update).sign(&updating);
    journal(&dir, &envelope)?;
    let record = client.submit(envelope).await.map_err(explain)?;
    std::fs::rename(dir.join("signing.next.key"), &signing_path)
        .with_context(|| format!("installing the new key as {}", signing_path.display()))?;
    eprintln!(
        "recovered {name}: a new signing key from now on, the old one marked compromised as of \
         {}; keys in {}",
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(compromised_since.unwrap_or(now).min(now))
        ),
        dir.display()
    );
    print_record(&record)
}

pub(crate) fn empty_update(name: &Name, record: &RecordJson) -> anyhow::Result<Update> {
    Ok(Update {
        name: name.clone(),
        previous_digest: digest(record)?,
        new_signing_key: None,
        node_uri: None,
        redirect_uris: None,
        new_updating_key: None,
        compromised_key: None,
        compromised_since: None,
    })
}

async fn rotate(raw: &str, compromised: bool, args: &RegistryArgs) -> anyhow::Result<()> {
    let name = parse_name(raw)?;
    let dir = name_dir(args.key_dir.as_deref(), &name);
    let updating = keyfile::load(&dir.join("updating.key"))
        .context("the updating key is needed to change a name")?;
    let signing_path = dir.join("signing.key");
    let old = keyfile::load(&signing_path)?;
    let client = registry_client(args)?;
    let record = current(&client, &name).await?;
    let new = keyfile::generate()?;
    // A new key must start after every earlier one; two rotations within a second still work.
    let latest = record.keys.iter().map(|k| k.valid_from).max().unwrap_or(0);
    let now = Clock::system().now().max(latest + 1);
    let mut update = empty_update(&name, &record)?;
    update.new_signing_key = Some((new.verifying_key(), now));
    if compromised {
        update.compromised_key = Some(old.verifying_key());
    }
    let next_path = dir.join("signing.next.key");
    let _ = std::fs::remove_file(&next_path);
    keyfile::save(&next_path, &new)?;
    let envelope = Operation::Update(update).sign(&updating);
    journal(&dir, &envelope)?;
    let result = client.submit(envelope).await;
    let record = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&next_path);
            return Err(explain(e));
        }
    };
    let old_valid_from = record
        .keys
        .iter()
        .find(|k| k.key == hex::encode(old.verifying_key().as_bytes()))
        .map(|k| k.valid_from)
        .unwrap_or(0);
    let retired = dir.join(format!("signing-{old_valid_from}.key"));
    std::fs::rename(&signing_path, &retired)
        .with_context(|| format!("keeping the old key as {}", retired.display()))?;
    std::fs::rename(&next_path, &signing_path)
        .with_context(|| format!("installing the new key as {}", signing_path.display()))?;
    if compromised {
        eprintln!("marked the old signing key compromised; signing with a new key from now on");
    } else {
        eprintln!("signing with a new key from now on; cartes signed earlier stay valid");
    }
    print_record(&record)
}

async fn update(
    raw: &str,
    node_uri: Option<String>,
    redirect_uris: Option<Vec<String>>,
    args: &RegistryArgs,
) -> anyhow::Result<()> {
    let name = parse_name(raw)?;
    if node_uri.is_none() && redirect_uris.is_none() {
        bail!("nothing to change: give --node-uri, --redirect-uri or --clear-redirect-uris");
    }
    check_uris(node_uri.as_deref(), redirect_uris.as_deref().unwrap_or(&[]))?;
    let dir = name_dir(args.key_dir.as_deref(), &name);
    let updating: SigningKey = keyfile::load(&dir.join("updating.key"))
        .context("the updating key is needed to change a name")?;
    let client = registry_client(args)?;
    let record = current(&client, &name).await?;
    let mut update = empty_update(&name, &record)?;
    update.node_uri = node_uri;
    update.redirect_uris = redirect_uris;
    let envelope = Operation::Update(update).sign(&updating);
    journal(&dir, &envelope)?;
    let record = client.submit(envelope).await.map_err(explain)?;
    print_record(&record)
}

/// Notes an operation in the name's journal before it is submitted, so `name watch` knows it
/// for ours. (Written first: a crash after it leaves a line for an operation never made, which
/// is harmless; the other order could report our own change as someone else's.)
fn journal(dir: &Path, envelope: &[u8]) -> anyhow::Result<()> {
    let path = dir.join("journal");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", super::watch::op_id(envelope))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn print_record(record: &RecordJson) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(record)?);
    Ok(())
}

/// A registry refusal with advice on what to do about it.
pub(crate) fn explain(e: RemoteError) -> anyhow::Error {
    let hint = match e.code() {
        "name.taken" => "choose another name",
        "name.confusable" => "choose a name that does not look like an existing one",
        "name.invalid" => "names are letters of one script, digits, '-' and '.'",
        "op.stale-digest" => "the name changed meanwhile; run the command again",
        "op.pow-insufficient" => "the registry raised its difficulty; run the command again",
        "op.valid-from-in-past" => "check this machine's clock",
        "op.bad-signature" => "the key in the key directory is not this name's updating key",
        "registry.unavailable" => "check --registry and that the registry is running",
        _ => "",
    };
    if hint.is_empty() {
        anyhow::anyhow!("{e}")
    } else {
        anyhow::anyhow!("{e} ({hint})")
    }
}

/// The registry client the `name` flags describe (its trust roots and pinned names).
pub(crate) fn registry_client(args: &RegistryArgs) -> anyhow::Result<RegistryClient> {
    let http = crate::outbound::HttpClient::with(args.outbound.options()?)?;
    Ok(RegistryClient::with_client(&args.registry, http))
}
