//! The `grant-node` binary: parse flags, start logging, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

use grant_node::cli::{Cli, Command, LogFormat};
use grant_node::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Name(command) => commands::name::run(command),
        Command::Controller(command) => commands::controller::run(command),
        Command::App(args) => commands::app::run(args),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::Backup(args) => commands::backup::backup(args),
        Command::Restore(args) => commands::backup::restore(args),
        Command::Owner(command) => commands::owner::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grant-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
