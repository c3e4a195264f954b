//! `tessera`: the OpenID Connect provider and OAuth 2.0 authorization server as one binary.
//!
//! `tessera serve` runs the server (with no configuration at all: 127.0.0.1:8080, SQLite and a
//! generated master key in `./.tessera`); the other subcommands administer the same store
//! (clients, users, signing keys, migrations) and check configuration. Exit codes: 0 success,
//! 1 a problem the user can fix (the message says how), 2 an internal error.

use std::process::ExitCode;

use clap::Parser;
use tessera::cli::Cli;
use tessera::commands::{self, CliError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and are not errors.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("internal error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::User(message)) => {
            for line in message.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(1)
        }
        Err(CliError::Internal(message)) => {
            eprintln!("internal error: {message}");
            ExitCode::from(2)
        }
    }
}
