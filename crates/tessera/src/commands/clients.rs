//! `tessera client add|list|show|remove`.

use serde_json::{Value, json};
use tessera_core::model::{Client, ClientOrigin};
use tessera_core::oauth::grant_type;
use tessera_core::registration::{client_from_metadata, client_metadata, set_new_secret};
use tessera_core::store::StoreError;

use super::{CliError, print_json, print_table};
use crate::app::App;
use crate::cli::{ClientAdd, ClientCommand};
use crate::config::validate_client_id;

pub(super) async fn run(app: &App, command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Add(args) => add(app, args).await,
        ClientCommand::List(output) => {
            let clients = app.engine.store.list_clients().await?;
            if output.json {
                return print_json(&clients.iter().map(record).collect::<Vec<_>>());
            }
            let rows: Vec<Vec<String>> = clients
                .iter()
                .map(|c| {
                    vec![
                        c.client_id.clone(),
                        c.client_name.clone().unwrap_or_default(),
                        origin(c.origin).into(),
                        c.token_endpoint_auth_method.as_str().into(),
                        c.grant_types.join(","),
                        if c.disabled { "disabled" } else { "active" }.into(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "CLIENT_ID",
                    "NAME",
                    "ORIGIN",
                    "AUTH_METHOD",
                    "GRANTS",
                    "STATE",
                ],
                &rows,
            );
            Ok(())
        }
        ClientCommand::Show { client_id, output } => {
            let client = find(app, &client_id).await?;
            let rec = record(&client);
            if output.json {
                return print_json(&rec);
            }
            if let Value::Object(map) = rec {
                let width = map.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    println!("{k:<width$}  {v}");
                }
            }
            Ok(())
        }
        ClientCommand::Remove { client_id } => {
            let client = find(app, &client_id).await?;
            app.engine.store.delete_client(&client_id).await?;
            println!("client '{client_id}' removed");
            if client.origin == ClientOrigin::Config {
                println!(
                    "note: it is declared in the configuration and comes back at the next start unless removed there"
                );
            }
            Ok(())
        }
    }
}

async fn find(app: &App, client_id: &str) -> Result<Client, CliError> {
    app.engine
        .store
        .get_client(client_id)
        .await?
        .ok_or_else(|| {
            CliError::user(format!(
                "no client '{client_id}' (see `tessera client list`)"
            ))
        })
}

fn origin(o: ClientOrigin) -> &'static str {
    match o {
        ClientOrigin::Config => "config",
        ClientOrigin::Cli => "cli",
        ClientOrigin::Dynamic => "dynamic",
    }
}

/// The registration as shown by `show` and `--json`: RFC 7591 metadata plus local fields.
/// Never includes secrets or their hashes.
fn record(c: &Client) -> Value {
    let mut m = client_metadata(c);
    m.insert("origin".into(), json!(origin(c.origin)));
    m.insert("first_party".into(), json!(c.first_party));
    m.insert(
        "require_pkce".into(),
        json!(c.require_pkce || c.is_public()),
    );
    m.insert("disabled".into(), json!(c.disabled));
    Value::Object(m)
}

async fn add(app: &App, args: ClientAdd) -> Result<(), CliError> {
    validate_client_id(&args.name).map_err(CliError::User)?;
    let engine = &app.engine;
    let grants = if args.grants.is_empty() {
        let default = if args.redirect_uris.is_empty() {
            grant_type::CLIENT_CREDENTIALS
        } else {
            grant_type::AUTHORIZATION_CODE
        };
        vec![default.to_owned()]
    } else {
        args.grants.clone()
    };
    let mut meta = serde_json::Map::new();
    meta.insert(
        "client_name".into(),
        json!(args.client_name.as_deref().unwrap_or(&args.name)),
    );
    meta.insert("grant_types".into(), json!(grants));
    meta.insert("redirect_uris".into(), json!(args.redirect_uris));
    if !args.post_logout_redirect_uris.is_empty() {
        meta.insert(
            "post_logout_redirect_uris".into(),
            json!(args.post_logout_redirect_uris),
        );
    }
    meta.insert("token_endpoint_auth_method".into(), json!(args.auth_method));
    if let Some(s) = &args.scope {
        meta.insert("scope".into(), json!(s));
    }
    if let Some(u) = &args.jwks_uri {
        meta.insert("jwks_uri".into(), json!(u));
    }
    if let Some(path) = &args.jwks_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::user(format!("cannot read {}: {e}", path.display())))?;
        let jwks: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::user(format!("{} is not JSON: {e}", path.display())))?;
        meta.insert("jwks".into(), jwks);
    }
    let mut client = client_from_metadata(&Value::Object(meta), &engine.settings)?;
    client.client_id = args.name.clone();
    client.client_id_issued_at = engine.now();
    client.first_party = args.first_party;
    client.origin = ClientOrigin::Cli;
    let secret = if client.token_endpoint_auth_method.uses_secret() {
        Some(set_new_secret(engine, &mut client)?)
    } else {
        None
    };
    match engine.store.create_client(&client).await {
        Err(StoreError::Conflict(_)) => {
            return Err(CliError::user(format!(
                "client '{}' already exists (see `tessera client show {}`)",
                args.name, args.name
            )));
        }
        other => other?,
    }
    if args.output.json {
        let mut rec = record(&client);
        if let (Value::Object(m), Some(s)) = (&mut rec, &secret) {
            m.insert("client_secret".into(), json!(s));
        }
        return print_json(&rec);
    }
    println!("client '{}' created", client.client_id);
    println!("client_id:     {}", client.client_id);
    if let Some(s) = &secret {
        println!("client_secret: {s}");
        println!(
            "The secret is shown only this once: store it now. Tessera keeps only a keyed hash."
        );
    }
    Ok(())
}
