//! The tree is the architecture: the top-level modules of `src/` form no cycle, read from the
//! code's own `crate::` references (comments aside), and the layers the README describes hold.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir` (relative to the package): its path relative to `dir`
/// (`/`-separated) and its text.
fn rs_files(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = vec![root.clone()];
    let mut out = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for e in std::fs::read_dir(&path).unwrap() {
                files.push(e.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(&root).unwrap().to_string_lossy();
            out.push((
                rel.replace('\\', "/"),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    out
}

/// Every `.rs` file under `src/`.
fn rust_files() -> Vec<(String, String)> {
    rs_files("src")
}

/// Every `.rs` file under `crates/`.
fn crate_files() -> Vec<(String, String)> {
    rs_files("crates")
}

/// Each top-level module and the top-level modules it names, with one file that names each.
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            modules.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                modules.insert(stem.to_owned());
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (rel, text) in rust_files() {
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if !modules.contains(&top) {
            continue;
        }
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split(['}', ','])
                        .map(|p| p.trim().split("::").next().unwrap_or(""))
                        .collect()
                } else {
                    vec![rest
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")]
                };
                for name in names {
                    if name != top && modules.contains(name) {
                        edges
                            .entry(top.clone())
                            .or_default()
                            .entry(name.to_owned())
                            .or_insert_with(|| rel.clone());
                    }
                }
            }
        }
    }
    for m in modules {
        edges.entry(m).or_default();
    }
    edges
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in edges[&at].keys() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let edges = graph();
    assert!(edges.len() > 8, "the modules were not found: {edges:?}");
    for module in edges.keys() {
        if let Some(cycle) = cycle_through(&edges, module) {
            let why: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            panic!("a module cycle: {}", why.join(", "));
        }
    }
}

#[test]
fn the_layers_hold() {
    let edges = graph();
    // What each module must never name: the ones above it.
    let above: &[(&str, &[&str])] = &[
        (
            "config",
            &[
                "node", "http", "cli", "client", "commands", "server", "ledger", "store",
            ],
        ),
        ("node", &["http", "cli", "commands", "server"]),
        ("http", &["cli", "commands", "server"]),
        (
            "ledger",
            &["node", "http", "cli", "commands", "server", "config"],
        ),
        ("store", &["ledger", "node", "http", "server", "config"]),
    ];
    for (module, forbidden) in above {
        for f in *forbidden {
            if let Some(file) = edges[*module].get(*f) {
                panic!("{module} names {f} ({file}), a module above it");
            }
        }
    }
}

#[test]
fn the_database_kind_is_named_only_behind_its_door() {
    // The door: store/; the composition root: server.rs, commands/ and main.rs; and the
    // configuration, which defines the setting itself.
    let allowed = ["store/", "server.rs", "commands/", "main.rs", "config/"];
    let names = [
        "rusqlite",
        "tokio_postgres",
        "is_postgres(",
        ".postgres()",
        "Database::Sqlite",
        "Database::Postgres",
        "pg_advisory",
        "pg_notify",
    ];
    let mut found = Vec::new();
    // The workspace's library crates name no database at all.
    let crates = crate_files()
        .into_iter()
        .map(|(rel, text)| (format!("crates/{rel}"), text));
    for (rel, text) in rust_files().into_iter().chain(crates) {
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in names {
                if line.contains(name) {
                    found.push(format!("{rel}:{}: {name}", n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the database kind outside store/: {found:#?}"
    );
}

#[test]
fn pages_call_the_nodes_operations_not_api_handlers() {
    // Every file under http/pages/: none names the API group or its handlers.
    let mut seen = 0;
    for (rel, text) in rust_files() {
        if !rel.starts_with("http/pages/") {
            continue;
        }
        seen += 1;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            assert!(
                !line.contains("http::api") && !line.contains("_api::"),
                "src/{rel}:{}: a page calls an API handler: {line}",
                n + 1
            );
        }
    }
    assert!(seen >= 8, "the pages were not found");
}

/// No hand-written escaping is left: the pages' markup comes from the template macro, and no
/// HTML is assembled with `format!`.
#[test]
fn pages_are_built_by_the_template_macro() {
    for (rel, text) in rust_files() {
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let hand_made = line.contains("fn esc(")
                || line.contains("esc(&")
                || (line.contains("format!(") && line.contains("\"<"))
                || line.contains("\"<p>")
                || line.contains("\"<h1>")
                || line.contains("\"<main>")
                || line.contains("\"<input")
                || line.contains("\"<tr>");
            assert!(
                !hand_made,
                "src/{rel}:{}: HTML built by hand: {line}",
                n + 1
            );
        }
    }
}

/// `cargo tree` of one workspace package, as its own build resolves it (features included).
fn tree(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--offline", "-p", package, "-e", "normal,features"])
        .args(["--prefix", "none", "--format", "{p} {f}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The toolkit is what an application adds to its Cargo.toml: its tree holds no database
/// driver, no password hashing and no HTTP server; the wire formats hold no I/O crate at all.
#[test]
fn the_toolkit_and_the_wire_formats_link_none_of_the_servers_dependencies() {
    let toolkit = tree("grant-toolkit");
    assert!(toolkit.contains("grant-wire "), "{toolkit}");
    for server_only in ["rusqlite", "tokio-postgres", "argon2", "grant-node "] {
        assert!(
            !toolkit.lines().any(|l| l.starts_with(server_only)),
            "grant-toolkit links {server_only}:\n{toolkit}"
        );
    }
    let hyper: Vec<&str> = toolkit
        .lines()
        .filter(|l| l.starts_with("hyper v1"))
        .collect();
    assert!(!hyper.is_empty(), "{toolkit}");
    for line in hyper {
        assert!(!line.contains("server"), "the toolkit's hyper: {line}");
    }
    let wire = tree("grant-wire");
    for io in [
        "hyper",
        "tokio",
        "rusqlite",
        "tokio-postgres",
        "argon2",
        "rustls",
    ] {
        assert!(
            !wire.lines().any(|l| l.starts_with(&format!("{io} "))),
            "grant-wire links {io}:\n{wire}"
        );
    }
}
