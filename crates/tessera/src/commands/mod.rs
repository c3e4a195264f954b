//! The subcommands. Each opens what it needs (configuration only, or the whole [`App`]), does
//! one thing and prints a human-readable result (`--json` for lists and records).

mod clients;
mod keys;
mod serve;
mod users;

use std::sync::Arc;

use tessera_core::clock::{SystemClock, UnixTime};
use tessera_core::error::OAuthError;
use tessera_core::store::StoreError;

use crate::app::{App, AppError, init_logging};
use crate::cli::{Cli, ClientCommand, Command, ConfigCommand, KeysCommand, UserCommand};
use crate::cli_assertion::{AssertionCommand, ServiceAccountCommand};
use crate::config::{Config, ConfigError, ConfigFile, Env, Overrides};

pub use serve::{Quickstart, quickstart_setup};

/// A failed command: `User` is something the operator can fix (exit 1), `Internal` is not (2).
#[derive(Debug)]
pub enum CliError {
    User(String),
    Internal(String),
}

impl CliError {
    pub fn user(msg: impl Into<String>) -> Self {
        Self::User(msg.into())
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::User(e.to_string())
    }
}

impl From<AppError> for CliError {
    fn from(e: AppError) -> Self {
        if e.is_user_error() {
            Self::User(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::User(format!("already exists: {what}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<OAuthError> for CliError {
    fn from(e: OAuthError) -> Self {
        match e.description {
            Some(d) if e.code != tessera_core::ErrorCode::ServerError => Self::User(d.into_owned()),
            _ => Self::Internal(e.cause.unwrap_or_else(|| e.code.as_str().to_owned())),
        }
    }
}

/// Load the configuration the way every command does: `--config`/`TESSERA_CONFIG`, the
/// process environment, then flags.
pub fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let file = cli.config.as_deref().map(ConfigFile::read).transpose()?;
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
    };
    Config::load(file.as_ref(), &Env::from_process(), &overrides)
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    // Client-side commands talk to other hosts or a running server: no configuration needed.
    let cli = match cli.command {
        Command::Probe(a) => return crate::cli_doctor::run_probe(a).await,
        Command::Debug(c) => return crate::cli_debug::run_debug(c).await,
        Command::Trace(c) => return crate::cli_debug::run_trace(c).await,
        command => Cli { command, ..cli },
    };
    let config = load_config(&cli)?;
    if let Command::Config(ConfigCommand::Check) = &cli.command {
        return check_config(&config);
    }
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Quickstart);
    // Administrative commands stay quiet unless a log level was asked for.
    let level = if serving || config.log.level != "info" {
        config.log.level.as_str()
    } else {
        "warn"
    };
    init_logging(level, config.log.format);
    let config = Arc::new(config);
    match cli.command {
        Command::Serve { quickstart } => serve::serve(config, quickstart).await,
        Command::Quickstart => serve::serve(config, true).await,
        Command::Config(ConfigCommand::Check) => Ok(()),
        Command::Migrate => migrate(config).await,
        Command::Client(c) => {
            if !matches!(c, ClientCommand::Add(_)) {
                require_existing_store(&config)?;
            }
            clients::run(&open_app(config).await?, c).await
        }
        Command::User(c) => {
            if !matches!(c, UserCommand::Add(_)) {
                require_existing_store(&config)?;
            }
            users::run(&open_app(config).await?, c).await
        }
        Command::Keys(c) => {
            if matches!(c, KeysCommand::List(_)) {
                require_existing_store(&config)?;
            }
            keys::run(&open_app(config).await?, c).await
        }
        Command::ServiceAccount(ServiceAccountCommand::Create(a)) => {
            crate::cli_assertion::service_account_create(&open_app(config).await?.engine, &a).await
        }
        Command::Assertion(AssertionCommand::Mint(a)) => crate::cli_assertion::assertion_mint(&a),
        Command::Assertion(AssertionCommand::Check(a)) => {
            let accepted =
                crate::cli_assertion::assertion_check(&open_app(config).await?.engine, &a).await?;
            if accepted {
                Ok(())
            } else {
                Err(CliError::user(
                    "the assertion was rejected (see the checks above)",
                ))
            }
        }
        Command::Lockout(c) => {
            require_existing_store(&config)?;
            crate::cli_lockout::run(&open_app(config).await?, c).await
        }
        Command::Doctor(a) => crate::cli_doctor::run(config, a).await,
        Command::Probe(_) | Command::Debug(_) | Command::Trace(_) => Ok(()),
    }
}

/// Commands that read or change what a deployment holds need its database: where none exists
/// (a mistyped `--data-dir`), say so rather than create an empty one and answer "nothing".
fn require_existing_store(config: &Config) -> Result<(), CliError> {
    match crate::app::sqlite_path(config) {
        Some(path) if !path.exists() => Err(CliError::user(format!(
            "no database at {} (is --data-dir / data_dir right? `tessera serve` or `tessera migrate` creates it)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The app for administrative commands (store opened and migrated, nothing served).
async fn open_app(config: Arc<Config>) -> Result<App, CliError> {
    let issuer = config.issuer_for(config.listen);
    Ok(App::open(config, &issuer, Arc::new(SystemClock)).await?)
}

fn check_config(config: &Config) -> Result<(), CliError> {
    // Provider settings that need more than parsing (URLs, CA files) are checked by building
    // the chain, which makes no network connection.
    for p in &config.providers {
        if let crate::config::ProviderSettings::Ldap(cfg) = &p.settings {
            tessera_ldap::LdapProvider::new(p.name.clone(), (**cfg).clone())
                .map_err(|e| CliError::user(format!("provider '{}': {e}", p.name)))?;
        }
    }
    let source = config.source.as_ref().map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    println!("# configuration OK ({source}); effective values, secrets redacted:");
    print!("{}", config.effective_toml());
    Ok(())
}

async fn migrate(config: Arc<Config>) -> Result<(), CliError> {
    let store = crate::app::open_store(&config).await?;
    let (applied, expected) = store.schema_version().await?;
    println!(
        "store {} is at schema version {applied} (this build expects {expected})",
        config.store.display
    );
    Ok(())
}

/// RFC 3339 UTC, or `-` for "never".
pub(crate) fn format_time(t: Option<UnixTime>) -> String {
    let Some(t) = t else { return "-".into() };
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Print rows under headers, columns aligned.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CliError::Internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}
