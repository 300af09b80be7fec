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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
