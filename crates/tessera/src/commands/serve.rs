//! `serve`, and the quickstart's demo client and user.

use std::io::Write;
use std::sync::Arc;

use serde_json::json;
use tessera_core::Engine;
use tessera_core::clock::SystemClock;
use tessera_core::model::{ClientOrigin, User};
use tessera_core::registration::{client_from_metadata, set_new_secret};
use tessera_core::secret::Secret;
use tessera_core::secrets::random_token;
use tessera_core::settings::paths;
use tokio::net::TcpListener;

use super::CliError;
use crate::app::{App, shutdown_signal, start};
use crate::config::Config;

pub const DEMO_CLIENT_ID: &str = "demo";
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_REDIRECT_URI: &str = "http://127.0.0.1:9000/callback";

pub(super) async fn serve(config: Arc<Config>, quickstart: bool) -> Result<(), CliError> {
    for option in config.dangerous_options() {
        tracing::warn!(
            option,
            "a development-only relaxation is enabled: do not use this configuration in production"
        );
    }
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        CliError::user(format!(
            "cannot listen on {}: {e} (set `listen` in the configuration or TESSERA_LISTEN; port 0 picks a free port)",
            config.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let issuer = config.issuer_for(addr);
    let app = App::open(config.clone(), &issuer, Arc::new(SystemClock)).await?;
    app.prepare_to_serve().await?;
    let mut out = String::new();
    if quickstart {
        let demo = quickstart_setup(&app.engine).await?;
        out.push_str(&demo.render(&issuer));
    }
    let mut running = start(&app, listener).map_err(|e| CliError::Internal(e.to_string()))?;
    out.push_str(&format!(
        "tessera listening on http://{addr} (issuer {issuer}, store {})\n",
        config.store.display
    ));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    tracing::info!(%addr, %issuer, store = %config.store.display, "listening");

    let stopped_by_signal = tokio::select! {
        () = shutdown_signal() => true,
        result = running.wait() => {
            result.map_err(|e| CliError::Internal(format!("the server stopped: {e}")))?;
            false
        }
    };
    if stopped_by_signal {
        tracing::info!("shutting down");
        running
            .shutdown()
            .await
            .map_err(|e| CliError::Internal(e.to_string()))?;
    }
    Ok(())
}

/// What the quickstart created (or refreshed), to print once.
#[derive(Debug)]
pub struct Quickstart {
    pub client_id: String,
    pub client_secret: Secret,
    pub client_existed: bool,
    pub username: String,
    pub password: Secret,
    pub user_existed: bool,
}

impl Quickstart {
    pub fn render(&self, issuer: &str) -> String {
        let client_note = if self.client_existed {
            "the demo client already existed: its secret was rotated so a working one can be shown"
        } else {
            "demo client created"
        };
        let user_note = if self.user_existed {
            "the demo user already existed: its password was reset"
        } else {
            "demo user created"
        };
        format!(
            "Quickstart: {client_note}; {user_note}.\n\
             \n  issuer         {issuer}\
             \n  client_id      {client}\
             \n  client_secret  {secret}\
             \n  redirect_uri   {DEMO_REDIRECT_URI}\
             \n  user           {user}\
             \n  password       {password}\
             \n\nGet an access token:\n  curl -u {client}:{secret} -d grant_type=client_credentials {issuer}{token_path}\n\n",
            client = self.client_id,
            secret = self.client_secret.expose(),
            user = self.username,
            password = self.password.expose(),
            token_path = paths::TOKEN,
        )
    }
}

/// Create the demo client and user, or rotate the secret and reset the password of existing
/// ones (so the printed values always work). Idempotent.
pub async fn quickstart_setup(engine: &Engine) -> Result<Quickstart, CliError> {
    let now = engine.now();
    let existing = engine.store.get_client(DEMO_CLIENT_ID).await?;
    let client_existed = existing.is_some();
    let mut client = match existing {
        Some(c) => c,
        None => {
            let meta = json!({
                "client_name": "Tessera quickstart demo",
                "grant_types": ["client_credentials", "authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [DEMO_REDIRECT_URI],
                "token_endpoint_auth_method": "client_secret_basic",
            });
            let mut c = client_from_metadata(&meta, &engine.settings)?;
            c.client_id = DEMO_CLIENT_ID.into();
            c.client_id_issued_at = now;
            c.origin = ClientOrigin::Cli;
            c.first_party = true;
            c
        }
    };
    let client_secret = Secret::new(set_new_secret(engine, &mut client)?);
    client.disabled = false;
    engine.store.put_client(&client).await?;

    let password = Secret::new(
        random_token().map_err(|e| CliError::Internal(e.to_string()))?[..20].to_owned(),
    );
    let hash = engine
        .passwords
        .hash(&password)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let user_existed = match engine.store.get_user(DEMO_USERNAME).await? {
        Some(mut user) => {
            user.password_hash = Some(hash);
            user.disabled = false;
            user.updated_at = now;
            engine.store.update_user(&user).await?;
            true
        }
        None => {
            let user = User {
                username: DEMO_USERNAME.into(),
                subject: uuid::Uuid::new_v4().to_string(),
                password_hash: Some(hash),
                name: Some("Demo User".into()),
                email: Some("demo@example.com".into()),
                email_verified: true,
                groups: vec!["demo".into()],
                created_at: now,
                updated_at: now,
                ..User::default()
            };
            engine.store.create_user(&user).await?;
            false
        }
    };
    Ok(Quickstart {
        client_id: DEMO_CLIENT_ID.into(),
        client_secret,
        client_existed,
        username: DEMO_USERNAME.into(),
        password,
        user_existed,
    })
}
