//! `registry-stub`: the naming registry as a standalone server.
//!
//! Until the registry issue lands this binary only reports that it is a placeholder; the
//! registry rules themselves will live in the `grant-node` library so that the node can embed
//! the very same service.

fn main() -> std::process::ExitCode {
    eprintln!("registry-stub: not implemented yet");
    std::process::ExitCode::from(2)
}
