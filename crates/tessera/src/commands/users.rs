//! `tessera user add|passwd|list|disable|enable`: the local password store (argon2id).

use std::io::{BufRead, IsTerminal};

use serde_json::json;
use tessera_core::model::User;
use tessera_core::secret::Secret;
use tessera_core::store::StoreError;

use super::{CliError, print_json, print_table};
use crate::app::App;
use crate::cli::{UserAdd, UserCommand};

/// Shortest password accepted (OWASP ASVS 2.1.1).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 input is bounded to keep hashing cost predictable).
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub(super) async fn run(app: &App, command: UserCommand) -> Result<(), CliError> {
    let store = &app.engine.store;
    match command {
        UserCommand::Add(args) => add(app, args).await,
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let mut user = find(app, &username).await?;
            let password = read_password(password_stdin)?;
            user.password_hash = Some(hash(app, &password)?);
            user.updated_at = app.engine.now();
            store.update_user(&user).await?;
            println!("password of '{username}' changed");
            Ok(())
        }
        UserCommand::List(output) => {
            let users = store.list_users().await?;
            if output.json {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({
                            "username": u.username, "subject": u.subject, "name": u.name,
                            "email": u.email, "groups": u.groups, "disabled": u.disabled,
                            "created_at": u.created_at, "updated_at": u.updated_at,
                        })
                    })
                    .collect();
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        u.name.clone().unwrap_or_default(),
                        u.email.clone().unwrap_or_default(),
                        u.groups.join(","),
                        if u.disabled { "disabled" } else { "active" }.into(),
                    ]
                })
                .collect();
            print_table(&["USERNAME", "NAME", "EMAIL", "GROUPS", "STATE"], &rows);
            Ok(())
        }
        UserCommand::Disable { username } => set_disabled(app, &username, true).await,
        UserCommand::Enable { username } => set_disabled(app, &username, false).await,
    }
}

async fn find(app: &App, username: &str) -> Result<User, CliError> {
    app.engine
        .store
        .get_user(username)
        .await?
        .ok_or_else(|| CliError::user(format!("no user '{username}' (see `tessera user list`)")))
}

async fn set_disabled(app: &App, username: &str, disabled: bool) -> Result<(), CliError> {
    let mut user = find(app, username).await?;
    user.disabled = disabled;
    user.updated_at = app.engine.now();
    app.engine.store.update_user(&user).await?;
    println!(
        "user '{username}' {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

fn validate_username(name: &str) -> Result<(), CliError> {
    if name.is_empty()
        || name.len() > 256
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CliError::user(format!(
            "username '{name}' must be 1 to 256 bytes with no spaces or control characters"
        )));
    }
    Ok(())
}

fn hash(app: &App, password: &Secret) -> Result<String, CliError> {
    app.engine
        .passwords
        .hash(password)
        .map_err(|e| CliError::Internal(e.to_string()))
}

async fn add(app: &App, args: UserAdd) -> Result<(), CliError> {
    validate_username(&args.username)?;
    if app.engine.store.get_user(&args.username).await?.is_some() {
        return Err(CliError::user(format!(
            "user '{}' already exists",
            args.username
        )));
    }
    let password = read_password(args.password_stdin)?;
    let now = app.engine.now();
    let user = User {
        username: args.username.clone(),
        subject: uuid::Uuid::new_v4().to_string(),
        password_hash: Some(hash(app, &password)?),
        name: args.name,
        email: args.email,
        groups: args.groups,
        created_at: now,
        updated_at: now,
        ..User::default()
    };
    match app.engine.store.create_user(&user).await {
        Err(StoreError::Conflict(_)) => Err(CliError::user(format!(
            "user '{}' already exists",
            args.username
        ))),
        Err(e) => Err(e.into()),
        Ok(()) => {
            println!(
                "user '{}' created (subject {})",
                user.username, user.subject
            );
            Ok(())
        }
    }
}

/// One line from standard input with `--password-stdin`; otherwise a no-echo prompt (twice)
/// when standard input is a terminal.
fn read_password(from_stdin: bool) -> Result<Secret, CliError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            CliError::user(format!("cannot read the password from standard input: {e}"))
        })?;
        Secret::new(line.trim_end_matches(['\r', '\n']))
    } else if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Password: ").map_err(|e| CliError::user(e.to_string()))?;
        let second = rpassword::prompt_password("Repeat password: ")
            .map_err(|e| CliError::user(e.to_string()))?;
        if first != second {
            return Err(CliError::user("the passwords do not match"));
        }
        Secret::new(first)
    } else {
        return Err(CliError::user(
            "standard input is not a terminal: pipe the password in and pass --password-stdin",
        ));
    };
    if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(CliError::user(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(CliError::user(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(password)
}
