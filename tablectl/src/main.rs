//! `tablectl`: the operator's shell tool for batchstore tables.
//!
//! Errors print as one line on stderr starting with `error:` and exit 1; usage errors exit 2.

mod cli;
mod commands;
mod files;
mod lifecycle;
mod output;
mod progress;

use clap::Parser;

/// The hidden command a client runs to start the local home's metastore (see
/// `batchstore_client::home`): tablectl carries the metastore, so no server needs installing.
const SERVE_HOME: &str = "serve-home";

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some(SERVE_HOME) {
        return match batchstore_metastore::home::serve_home() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
