//! The composition root: turns a validated [`Config`] into a running [`Engine`] (store, master
//! key, signing keys, password hasher, provider chain, configured clients) and serves it, with
//! the background tasks every node runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::Engine;
use tessera_core::authn::{AuthProvider, Chain, ChainEntry, LocalProvider};
use tessera_core::clock::{SharedClock, UnixTime};
use tessera_core::engine::EngineParts;
use tessera_core::keys::{KeyError, KeyManager};
use tessera_core::model::{Client, ClientOrigin};
use tessera_core::secrets::{MasterKey, PasswordHasher, PasswordParams, SecretError};
use tessera_core::store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigClient, MasterKeySource, ProviderConfig, ProviderSettings};

/// How often expired codes, tokens, sessions and removed keys are deleted.
pub const GARBAGE_COLLECTION_INTERVAL: Duration = Duration::from_secs(300);
/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Meta key of the master-key fingerprint (detects a database opened with another key).
const MASTER_KEY_CHECK: &str = "master_key_check";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Something the operator can fix (bad key file, conflicting clients, …).
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl AppError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
    /// Whether the operator can fix it by changing configuration or input (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Setup(_) | Self::Io { .. })
    }
}

/// An opened Tessera: configuration plus the engine built from it.
#[derive(Debug, Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub engine: Arc<Engine>,
}

impl App {
    /// Open the store (applying migrations), load or create the master key and build the
    /// engine. Signing keys are loaded but not created: see [`App::prepare_to_serve`].
    pub async fn open(
        config: Arc<Config>,
        issuer: &str,
        clock: SharedClock,
    ) -> Result<Self, AppError> {
        let store = open_store(&config).await?;
        Self::with_store(config, issuer, clock, store).await
    }

    /// As [`App::open`] with an already opened store.
    pub async fn with_store(
        config: Arc<Config>,
        issuer: &str,
        clock: SharedClock,
        store: Arc<dyn Store>,
    ) -> Result<Self, AppError> {
        let master = load_master_key(&config.master_key)?;
        check_master_key(store.as_ref(), &master, &config.master_key).await?;
        let settings = config.settings(issuer);
        let keys = KeyManager::new(
            master.clone(),
            settings.key_rotation_period,
            settings.jwks_max_age,
            settings.longest_token_ttl() + settings.jwks_max_age,
        );
        for e in keys.reload(store.as_ref(), clock.now()).await? {
            tracing::error!(error = %e, "a signing key cannot be loaded (was it sealed with another master key?)");
        }
        let passwords = PasswordHasher::new(PasswordParams::default())?;
        // The upstreams come first in the chain: how each answers a password sign-in (see
        // tessera_core::federation, "Control flags").
        let chain = build_chain(&config.providers, &store, &passwords)?
            .with_prefix(tessera_core::federation::chain_entries(&config.upstreams));
        let mut engine = Engine::new(EngineParts {
            settings: Arc::new(settings),
            store,
            keys: Arc::new(keys),
            master,
            clock,
            passwords,
            chain,
        });
        engine.diagnostics = Arc::new(tessera_core::diagnostics::Diagnostics::with_capacity(
            config.raw().diagnostics.trace_capacity,
        ));
        engine
            .diagnostics
            .set_propagate_cause(config.raw().diagnostics.propagate_cause);
        // Every outbound call (client `jwks_uri`, trusted-issuer keys, upstream providers) goes
        // through the one egress client and its proxy settings.
        let http = tessera_egress::HttpClient::new(config.raw().egress.clone())
            .map_err(|e| AppError::Setup(format!("outbound HTTP client: {e}")))?;
        crate::config::upstream::install(
            &engine,
            &config.upstreams,
            http.clone(),
            http.proxy_settings().clone(),
        );
        engine.jwks = crate::cli_assertion::jwks_cache(http);
        // OpenID Connect Back-Channel Logout 1.0: deliver logout tokens to registered clients.
        engine.backchannel = Arc::new(
            tessera_http::backchannel::HttpBackchannel::direct(std::time::Duration::from_secs(5))
                .map_err(|e| AppError::Setup(format!("back-channel logout HTTP client: {e}")))?,
        );
        Ok(Self {
            config,
            engine: Arc::new(engine),
        })
    }

    /// What `serve` does before accepting requests: make sure every signing algorithm has a key
    /// (rotating on schedule) and apply the `[[clients]]` of the configuration.
    pub async fn prepare_to_serve(&self) -> Result<(), AppError> {
        let now = self.engine.now();
        let created = self
            .engine
            .keys
            .ensure(self.engine.store.as_ref(), &self.config.signing_algs(), now)
            .await?;
        for kid in created {
            tracing::info!(%kid, "signing key created");
        }
        apply_config_clients(&self.engine, &self.config.clients, now).await
    }

    pub fn router(&self) -> axum::Router {
        tessera_http::router(tessera_http::AppState::new(self.engine.clone()))
    }
}

/// Open (and migrate) the configured store, creating the SQLite file's directory if needed.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    if let Some(path) = sqlite_path(config)
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        create_private_dir(dir)?;
    }
    tessera_store::open_store(&config.store.url)
        .await
        .map_err(|e| match e {
            StoreError::Unavailable(cause) => AppError::Setup(format!(
                "cannot open the store {}: {cause}",
                config.store.display
            )),
            other => AppError::Store(other),
        })
}

/// The SQLite database file of the configured store (`None` on PostgreSQL).
pub fn sqlite_path(config: &Config) -> Option<&Path> {
    let url = &config.store.url;
    if url.starts_with("postgres") {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    Some(Path::new(path.split('?').next().unwrap_or(path)))
}

/// `mkdir -p` with mode 0700 for directories it creates (they hold the key and database).
fn create_private_dir(dir: &Path) -> Result<(), AppError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(AppError::io(format!(
        "cannot create directory {}",
        dir.display()
    )))
}

/// The master key from its configured source; the default key file is created (0600) on
/// first start.
pub fn load_master_key(source: &MasterKeySource) -> Result<MasterKey, AppError> {
    let (path, generate) = match source {
        MasterKeySource::Inline(text) => {
            return MasterKey::parse(text.expose())
                .map_err(|e| AppError::Setup(format!("master_key: {e}")));
        }
        MasterKeySource::File { path, generate } => (path, *generate),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            MasterKey::parse(&text).map_err(|e| AppError::Setup(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            let text = MasterKey::generate_text()?;
            match write_new_private_file(path, &text) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "master key generated; back it up: without it the signing keys and sealed secrets cannot be read");
                    MasterKey::parse(&text).map_err(AppError::from)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_master_key(&MasterKeySource::File {
                        path: path.clone(),
                        generate: false,
                    })
                }
                Err(e) => Err(AppError::io(format!(
                    "cannot write master key file {}",
                    path.display()
                ))(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AppError::Setup(format!(
            "master_key_file {} does not exist (only the default key file is generated automatically)",
            path.display()
        ))),
        Err(e) => Err(AppError::io(format!(
            "cannot read master key file {}",
            path.display()
        ))(e)),
    }
}

fn write_new_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the master key file is readable by other users; run chmod 600 on it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The first start records a fingerprint of the master key; later starts with another key are
/// refused instead of failing later on every sealed value.
async fn check_master_key(
    store: &dyn Store,
    master: &MasterKey,
    source: &MasterKeySource,
) -> Result<(), AppError> {
    let fingerprint = serde_json::Value::String(master.hash_token("tessera/master-key-check"));
    let stored = store
        .put_meta_if_absent(MASTER_KEY_CHECK, &fingerprint)
        .await?;
    if stored != fingerprint {
        let from = match source {
            MasterKeySource::Inline(_) => "master_key / TESSERA_MASTER_KEY".to_owned(),
            MasterKeySource::File { path, .. } => path.display().to_string(),
        };
        return Err(AppError::Setup(format!(
            "the master key ({from}) is not the one this database was created with; use the original key \
             (every node of a cluster must share it)"
        )));
    }
    Ok(())
}

/// The authentication chain from `[[providers]]`, in configuration order (with none
/// configured: the local password store alone, REQUIRED).
pub fn build_chain(
    providers: &[ProviderConfig],
    store: &Arc<dyn Store>,
    passwords: &PasswordHasher,
) -> Result<Chain, AppError> {
    let mut entries = Vec::with_capacity(providers.len().max(1));
    for p in providers {
        let provider: Arc<dyn AuthProvider> = match &p.settings {
            ProviderSettings::Local => Arc::new(LocalProvider::new(
                p.name.clone(),
                store.clone(),
                passwords.clone(),
            )),
            ProviderSettings::Ldap(cfg) => Arc::new(
                tessera_ldap::LdapProvider::new(p.name.clone(), (**cfg).clone())
                    .map_err(|e| AppError::Setup(format!("provider '{}': {e}", p.name)))?,
            ),
        };
        entries.push(ChainEntry {
            flag: p.flag,
            provider,
        });
    }
    if entries.is_empty() {
        let local = LocalProvider::new("local", store.clone(), passwords.clone());
        entries.push(ChainEntry {
            flag: tessera_core::authn::ControlFlag::Required,
            provider: Arc::new(local),
        });
    }
    Ok(Chain::new(entries))
}

/// Upsert the `[[clients]]` of the configuration (origin `Config`) and delete config clients
/// that are no longer declared. Secrets are hashed here, where the master key is known.
pub async fn apply_config_clients(
    engine: &Engine,
    clients: &[ConfigClient],
    now: UnixTime,
) -> Result<(), AppError> {
    for declared in clients {
        let mut client: Client = declared.client.clone();
        let existing = engine.store.get_client(&client.client_id).await?;
        if let Some(e) = &existing
            && e.origin != ClientOrigin::Config
        {
            return Err(AppError::Setup(format!(
                "client '{}' is declared in the configuration but already exists (origin: {:?}); \
                 remove it with `tessera client remove {}` or rename the configured one",
                client.client_id, e.origin, client.client_id
            )));
        }
        client.client_id_issued_at = existing.as_ref().map_or(now, |e| e.client_id_issued_at);
        if let Some(secret) = &declared.secret {
            tessera_core::registration::set_secret(&engine.master, &mut client, secret.expose())?;
        }
        engine.store.put_client(&client).await?;
    }
    for stale in engine.store.list_clients().await? {
        if stale.origin == ClientOrigin::Config
            && !clients
                .iter()
                .any(|c| c.client.client_id == stale.client_id)
        {
            engine.store.delete_client(&stale.client_id).await?;
            tracing::info!(client_id = %stale.client_id, "client removed from the configuration: deleted");
        }
    }
    Ok(())
}

/// A server accepting connections, with its background tasks. Dropping it stops both.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stop accepting, let requests in flight finish (up to [`SHUTDOWN_GRACE`]), stop tasks.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!("requests still running after the shutdown grace period; closing");
                Ok(())
            }
        }
    }

    /// Wait until the server stops by itself (an I/O failure of the listener).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let result = server.await.map_err(std::io::Error::other).and_then(|r| r);
        self.server = None;
        result
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serve `app` on `listener` and start the background tasks.
pub fn start(app: &App, listener: TcpListener) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let service = app
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    let tasks = vec![
        tokio::spawn(refresh_keys_periodically(
            app.engine.clone(),
            app.config.signing_algs(),
            app.config.key_refresh_interval,
        )),
        tokio::spawn(collect_garbage_periodically(app.engine.clone())),
    ];
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        server: Some(server),
        tasks,
    })
}

/// Reload the key ring and rotate on schedule. In a cluster every node runs this; the store
/// decides (all nodes converge on the same keys).
async fn refresh_keys_periodically(
    engine: Arc<Engine>,
    algs: Vec<tessera_jose::Algorithm>,
    every: Duration,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        match engine
            .keys
            .ensure(engine.store.as_ref(), &algs, engine.now())
            .await
        {
            Ok(created) => {
                for kid in created {
                    tracing::info!(%kid, "signing key rotation: next key published");
                }
            }
            Err(e) => tracing::error!(error = %e, "signing key refresh failed; retrying"),
        }
    }
}

async fn collect_garbage_periodically(engine: Arc<Engine>) {
    let mut interval = tokio::time::interval(GARBAGE_COLLECTION_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = engine.now();
        match engine.store.collect_garbage(now).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "expired records deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
        match engine.store.delete_removed_keys(now).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "retired signing keys deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deleting retired signing keys failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Install the `tracing` subscriber (stderr; text or JSON). Safe to call twice.
pub fn init_logging(level: &str, format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        crate::config::LogFormat::Text => builder.try_init(),
        crate::config::LogFormat::Json => builder.json().try_init(),
    };
}
