//! `tessera lockout status NAME | list | clear NAME`: the lockout manager on the command line
//! (WebLogic's UserLockoutManagerRuntimeMBean operations). Operates directly on the store, so
//! it sees the state every node shares; the same operations are on the admin API.

use clap::{Args, Subcommand};
use tessera_core::lockout::LockoutStatus;

use crate::app::App;
use crate::cli::OutputFormat;
use crate::commands::{CliError, format_time, print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum LockoutCommand {
    /// Show whether a username or client_id is locked, its failure count and last failure.
    Status(LockoutName),
    /// List names that are locked or have unexpired failures: locked now, failure count, last
    /// failure time and source address.
    List(OutputFormat),
    /// Unlock a name and forget its failures (users and clients of that name).
    Clear(LockoutClear),
}

#[derive(Debug, Args)]
pub struct LockoutName {
    /// A username (compared as the lockout keys it: NFKC, lowercased, spaces collapsed) or a
    /// client_id.
    pub name: String,
    #[command(flatten)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LockoutClear {
    /// A username (compared as the lockout keys it: NFKC, lowercased, spaces collapsed) or a
    /// client_id.
    pub name: String,
}

pub async fn run(app: &App, command: LockoutCommand) -> Result<(), CliError> {
    let engine = &app.engine;
    match command {
        LockoutCommand::Status(args) => {
            let records = engine.lockout_status(&args.name).await?;
            if args.output.json {
                let locked = records.iter().any(|r| r.locked);
                return print_json(&serde_json::json!({
                    "name": args.name, "locked": locked, "records": records,
                }));
            }
            if records.is_empty() {
                println!("'{}' is not locked and has no failures", args.name);
                return Ok(());
            }
            print_records(&records);
            Ok(())
        }
        LockoutCommand::List(output) => {
            let records = engine.lockout_list().await?;
            if output.json {
                // The admin API's shape (GET /admin/lockout).
                let locked_now = records.iter().filter(|r| r.locked).count();
                return print_json(&serde_json::json!({
                    "locked_now": locked_now, "records": records,
                }));
            }
            if records.is_empty() {
                println!("no locked names and no failures");
                return Ok(());
            }
            print_records(&records);
            Ok(())
        }
        LockoutCommand::Clear(args) => {
            let cleared = engine.lockout_clear(&args.name).await?;
            let unlocked = cleared.iter().filter(|r| r.locked).count();
            if cleared.is_empty() {
                println!("'{}' had no lockout record", args.name);
            } else {
                println!(
                    "cleared {} record(s) of '{}' ({unlocked} locked)",
                    cleared.len(),
                    args.name
                );
            }
            Ok(())
        }
    }
}

fn print_records(records: &[LockoutStatus]) {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.kind.as_str().to_owned(),
                r.name.clone(),
                r.source.clone().unwrap_or_else(|| "-".into()),
                if r.locked {
                    format!("until {}", format_time(r.locked_until))
                } else {
                    "no".into()
                },
                r.failure_count.to_string(),
                format_time(r.last_failure_at),
                r.last_failure_source.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "KIND",
            "NAME",
            "KEY SOURCE",
            "LOCKED",
            "FAILURES",
            "LAST FAILURE",
            "LAST SOURCE",
        ],
        &rows,
    );
}
