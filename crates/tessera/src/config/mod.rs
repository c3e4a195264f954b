//! Configuration: one TOML file, then `TESSERA_*` environment overrides, then command-line
//! flags. The file is parsed strictly into [`RawConfig`] (unknown keys are errors that name the
//! file, line and column), then validated into the typed [`Config`] the rest of the binary uses.
//!
//! Environment overrides: `TESSERA_<KEY>` sets a top-level key (`TESSERA_ISSUER`,
//! `TESSERA_LISTEN`, `TESSERA_DATA_DIR`, `TESSERA_DATABASE_URL`, `TESSERA_MASTER_KEY`, …) and
//! `TESSERA_<SECTION>__<KEY>` a key of a section (`TESSERA_TOKENS__ACCESS_TOKEN_TTL=300`).
//! Two shortcuts exist: `TESSERA_LOG` (= `log.level`) and
//! `TESSERA_REGISTRATION_INITIAL_ACCESS_TOKEN`. An unknown `TESSERA_*` variable is an error, so a
//! typo never goes unnoticed. `[[clients]]`, `[[trusted_issuers]]` and `[[providers]]` are
//! file-only; their secrets can come from the environment by reference (`client_secret_env`,
//! `bind_password_env`).
//!
//! Every key, its default and its override are documented in `config.example.toml` at the
//! repository root; tests keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_core::authn::ControlFlag;
use tessera_core::model::Client;
use tessera_core::secret::Secret;
use tessera_core::settings::Settings;
use tessera_jose::Algorithm;
use tessera_ldap::LdapConfig;

pub const ENV_PREFIX: &str = "TESSERA_";
/// The environment variable naming the configuration file (read by the CLI, not a key).
pub const CONFIG_FILE_VAR: &str = "TESSERA_CONFIG";
/// Variables with this prefix belong to the test infrastructure, not the configuration.
pub const TEST_VAR_PREFIX: &str = "TESSERA_TEST_";
/// Variables read by client-side commands (`probe`, `debug`, `trace`), not configuration keys.
const CLI_VARS: [&str; 2] = ["TESSERA_URL", "TESSERA_PROBE_CLIENT_SECRET"];
/// Shortcut variables and the key each one sets.
const ENV_SHORTCUTS: [(&str, &str, &str); 2] = [
    ("TESSERA_LOG", "log", "level"),
    (
        "TESSERA_REGISTRATION_INITIAL_ACCESS_TOKEN",
        "registration",
        "initial_access_token",
    ),
];
/// Keys whose values `config check` never prints.
const SECRET_KEYS: [&str; 5] = [
    "admin_token",
    "master_key",
    "initial_access_token",
    "client_secret",
    "bind_password",
];
/// Shortest secret accepted from configuration (client secrets, initial access token).
pub const MIN_SECRET_CHARS: usize = 32;
/// Shortest initial access token accepted.
pub const MIN_INITIAL_ACCESS_TOKEN_CHARS: usize = 16;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = ".tessera";
pub const SQLITE_FILE: &str = "tessera.db";
pub const MASTER_KEY_FILE: &str = "master.key";

mod parse;
mod raw;
pub mod upstream;
mod validate;

use parse::*;
pub use raw::*;
use validate::validate;
pub use validate::validate_client_id;
// ---------------------------------------------------------------------------------------------
// Validated configuration.
// ---------------------------------------------------------------------------------------------

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// Given in the configuration or `TESSERA_MASTER_KEY` (already checked to parse).
    Inline(Secret),
    /// A file holding the key as hex. `generate`: create it (mode 0600) when missing, which is
    /// only done for the default location, never for a path someone configured.
    File { path: PathBuf, generate: bool },
}

/// Where the data lives.
#[derive(Clone)]
pub struct StoreLocation {
    /// What `tessera_store::open_store` takes (may contain a password).
    pub url: String,
    /// Safe to print: passwords removed.
    pub display: String,
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A `[[clients]]` entry, validated; its secret is hashed once the master key is known.
#[derive(Debug, Clone)]
pub struct ConfigClient {
    pub client: Client,
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub enum ProviderSettings {
    Local,
    Ldap(Box<LdapConfig>),
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub flag: ControlFlag,
    pub settings: ProviderSettings,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any (for messages).
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    /// `None`: derived from the bound address at start (`http://127.0.0.1:PORT`).
    pub issuer: Option<String>,
    pub data_dir: PathBuf,
    pub store: StoreLocation,
    pub master_key: MasterKeySource,
    pub log: LogSettings,
    /// Protocol settings with a placeholder issuer; see [`Config::settings`].
    settings: Settings,
    /// Algorithms that must always have a signing key.
    pub key_algs: Vec<Algorithm>,
    pub key_refresh_interval: Duration,
    pub clients: Vec<ConfigClient>,
    pub providers: Vec<ProviderConfig>,
    raw: RawConfig,
    /// `[[upstreams]]`, validated.
    pub upstreams: Vec<tessera_core::federation::UpstreamConfig>,
}

/// Everything wrong with a configuration, one located message per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// A snapshot of the environment variables the loader may read.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment (variables that are not valid UTF-8 are ignored).
    pub fn from_process() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    fn config_vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().filter(|(k, _)| {
            k.starts_with(ENV_PREFIX)
                && k.as_str() != CONFIG_FILE_VAR
                && !CLI_VARS.contains(&k.as_str())
                && !k.starts_with(TEST_VAR_PREFIX)
        })
    }
}

/// Command-line values that override both file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------------------------

/// A configuration file as read from disk (or given by a test).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The path as the user wrote it (used in messages and to resolve relative paths).
    pub path: PathBuf,
    pub contents: String,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        std::fs::read_to_string(path)
            .map(|contents| Self {
                path: path.to_owned(),
                contents,
            })
            .map_err(|e| {
                ConfigError(vec![format!(
                    "{}: cannot read configuration file: {e}",
                    path.display()
                )])
            })
    }
}

impl Config {
    /// The file's values with defaults filled in (sections the composition root reads as they
    /// are: `[egress]`, `[diagnostics]`).
    pub fn raw(&self) -> &RawConfig {
        &self.raw
    }

    /// Load from an optional file, the environment and command-line overrides.
    pub fn load(
        file: Option<&ConfigFile>,
        env: &Env,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut locator = Locator {
            file: file.map(|f| f.path.display().to_string()),
            ..Locator::default()
        };
        let (mut raw, provider_errors) = match file {
            Some(f) => parse_file(f, env, &mut locator)?,
            None => (RawConfig::default(), Vec::new()),
        };
        if !provider_errors.is_empty() {
            return Err(ConfigError(provider_errors));
        }
        apply_env(&mut raw, env, &mut locator)?;
        if let Some(dir) = &overrides.data_dir {
            raw.data_dir = dir.display().to_string();
            locator
                .origins
                .insert("data_dir".into(), Origin::Flag("--data-dir"));
        }
        let base_dir = file
            .and_then(|f| f.path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        validate(raw, &locator, env, &base_dir, file.map(|f| f.path.clone()))
    }

    /// Parse a TOML document (as if it were a file named `name`) with no environment: for tests.
    pub fn from_toml(name: &str, contents: &str) -> Result<Self, ConfigError> {
        let file = ConfigFile {
            path: PathBuf::from(name),
            contents: contents.to_owned(),
        };
        Self::load(Some(&file), &Env::default(), &Overrides::default())
    }

    /// The protocol settings for this issuer.
    pub fn settings(&self, issuer: &str) -> Settings {
        let mut s = self.settings.clone();
        s.issuer = issuer.trim_end_matches('/').to_owned();
        s
    }

    /// The issuer: configured, or `http://<bound address>` (allowed because `listen` was
    /// checked to be loopback when no issuer is set).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        match &self.issuer {
            Some(i) => i.clone(),
            None => format!("http://{bound}"),
        }
    }

    /// The algorithms the key manager keeps a signing key for: the token algorithms first.
    /// Algorithms that must have a signing key: the two token algorithms and `keys.algs`. Only
    /// these are offered for ID tokens (discovery, registration): a JWK Set holding key types
    /// nobody uses breaks relying parties that parse every key (OKP keys, for one).
    pub fn signing_algs(&self) -> Vec<Algorithm> {
        let mut algs = vec![self.settings.access_token_alg, self.settings.id_token_alg];
        for a in &self.key_algs {
            if !algs.contains(a) {
                algs.push(*a);
            }
        }
        algs
    }

    pub fn dangerous_options(&self) -> Vec<&'static str> {
        let d = &self.raw.dangerous;
        let mut on = Vec::new();
        if d.allow_http_redirect_uris {
            on.push("dangerous.allow_http_redirect_uris");
        }
        if d.allow_http_issuer {
            on.push("dangerous.allow_http_issuer");
        }
        on
    }

    /// The effective configuration as TOML, secrets replaced by `[redacted]`.
    pub fn effective_toml(&self) -> String {
        let mut table = match toml::Table::try_from(&self.raw) {
            Ok(t) => t,
            Err(e) => return format!("# cannot render the configuration: {e}\n"),
        };
        if !self.raw.providers.is_empty() {
            let providers = self
                .raw
                .providers
                .iter()
                .map(|p| toml::Value::Table(p.display.clone()))
                .collect();
            table.insert("providers".into(), toml::Value::Array(providers));
        }
        if let Some(toml::Value::String(url)) = table.get_mut("database_url") {
            *url = redact_url_password(url);
        }
        redact(&mut table);
        toml::to_string_pretty(&table)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(t) => redact(t),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        redact(t);
                    }
                }
            }
            _ if SECRET_KEYS.contains(&key.as_str()) => {
                *value = toml::Value::String("[redacted]".into())
            }
            _ => {}
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            if u.set_password(Some("[redacted]")).is_err() {
                return "[redacted]".into();
            }
            u.to_string().replace("%5Bredacted%5D", "[redacted]")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
