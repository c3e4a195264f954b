//! The raw configuration: exactly what the file says, defaults filled in, nothing checked
//! beyond types and key names.

use std::fmt;

use serde::{Deserialize, Serialize};
use tessera_core::assertion::TrustedIssuer;
use tessera_core::authn::ControlFlag;
use tessera_core::lockout::{ClientLockoutScope, LockoutMode, LockoutPolicy, Progressive};
use tessera_core::settings::{ClientAssertionAudience, Settings};
use tessera_jose::Algorithm;
use tessera_ldap::LdapConfig;

use super::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};

// ---------------------------------------------------------------------------------------------
// Raw configuration: exactly what the file says, with defaults filled in.
// ---------------------------------------------------------------------------------------------

/// A string that must not be printed (`Debug` is redacted; serialization is used only for the
/// environment overlay and is redacted by [`Config::effective_toml`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Public URL of this server; default `http://<listen address>`, loopback only.
    pub issuer: Option<String>,
    pub listen: String,
    pub data_dir: String,
    /// `postgres://…`, `sqlite:PATH` or a path; default `<data_dir>/tessera.db`.
    pub database_url: Option<String>,
    /// 32 bytes as hex or base64url. Exclusive with `master_key_file`.
    pub master_key: Option<SecretString>,
    /// Default `<data_dir>/master.key`, generated on first start when missing.
    pub master_key_file: Option<String>,
    pub log: RawLog,
    pub http: RawHttp,
    pub tokens: RawTokens,
    pub oauth: RawOauth,
    pub keys: RawKeys,
    pub registration: RawRegistration,
    pub dangerous: RawDangerous,
    pub clients: Vec<RawClient>,
    /// `[[trusted_issuers]]`: external issuers of jwt-bearer grant assertions (RFC 7523 §2.1).
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Bearer token of the admin API (`/admin/*`: lockout manager, traces). Unset: disabled.
    pub admin_token: Option<SecretString>,
    pub lockout: RawLockout,
    pub diagnostics: RawDiagnostics,
    /// Outbound HTTP (client `jwks_uri`, trusted-issuer keys, upstream providers).
    pub egress: tessera_egress::EgressConfig,
    /// `[[upstreams]]`: upstream OpenID providers users may sign in with.
    pub upstreams: Vec<tessera_core::federation::config::RawUpstream>,
    /// Parsed separately (LDAP fields are flattened, which serde's `flatten` cannot combine
    /// with `deny_unknown_fields`); see [`parse_providers`].
    #[serde(skip)]
    pub providers: Vec<RawProvider>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            listen: DEFAULT_LISTEN.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            database_url: None,
            master_key: None,
            master_key_file: None,
            log: RawLog::default(),
            http: RawHttp::default(),
            tokens: RawTokens::default(),
            oauth: RawOauth::default(),
            keys: RawKeys::default(),
            registration: RawRegistration::default(),
            dangerous: RawDangerous::default(),
            clients: Vec::new(),
            trusted_issuers: Vec::new(),
            admin_token: None,
            lockout: RawLockout::default(),
            diagnostics: RawDiagnostics::default(),
            egress: tessera_egress::EgressConfig::default(),
            upstreams: Vec::new(),
            providers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// A `tracing` filter: `info`, `debug`, `info,tessera_http=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub max_body_bytes: usize,
    pub max_jwt_bytes: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        let s = Settings::new("");
        Self {
            max_body_bytes: s.max_body_bytes,
            max_jwt_bytes: s.max_jwt_bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub access_token_ttl: u64,
    pub access_token_alg: Algorithm,
    /// Default audience of access tokens; empty = the issuer.
    pub access_token_audience: String,
    pub id_token_ttl: u64,
    pub id_token_alg: Algorithm,
    pub code_ttl: u64,
    pub refresh_token_ttl: u64,
    pub session_ttl: u64,
}

impl Default for RawTokens {
    fn default() -> Self {
        let s = Settings::new("");
        Self {
            access_token_ttl: s.access_token_ttl,
            access_token_alg: s.access_token_alg,
            access_token_audience: s.access_token_audience,
            id_token_ttl: s.id_token_ttl,
            id_token_alg: s.id_token_alg,
            code_ttl: s.code_ttl,
            refresh_token_ttl: s.refresh_token_ttl,
            session_ttl: s.session_ttl,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOauth {
    pub scopes_supported: Vec<String>,
    pub clock_skew: u64,
    pub max_assertion_lifetime: u64,
    pub client_assertion_audience: ClientAssertionAudience,
    /// Accept Google's token URL as `aud` from service accounts this server created.
    pub accept_google_audience: bool,
}

impl Default for RawOauth {
    fn default() -> Self {
        let s = Settings::new("");
        Self {
            scopes_supported: s.scopes_supported,
            clock_skew: s.clock_skew,
            max_assertion_lifetime: s.max_assertion_lifetime,
            client_assertion_audience: s.client_assertion_audience,
            accept_google_audience: s.accept_google_audience,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeys {
    /// Seconds a key signs before the next one takes over.
    pub rotation_period: u64,
    /// JWKS `Cache-Control: max-age`, and how long a new key is published before it signs.
    pub jwks_max_age: u64,
    /// Algorithms that always have a signing key (besides the token algorithms).
    pub algs: Vec<Algorithm>,
    /// Seconds between reloads of the key ring from the store (every node converges).
    pub refresh_interval: u64,
}

impl Default for RawKeys {
    fn default() -> Self {
        let s = Settings::new("");
        Self {
            rotation_period: s.key_rotation_period,
            jwks_max_age: s.jwks_max_age,
            algs: vec![Algorithm::ES256, Algorithm::RS256],
            refresh_interval: 60,
        }
    }
}

/// `[lockout]`: soft lockout of end users (password logins) and clients (secret or assertion).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLockout {
    pub users: RawLockoutPolicy,
    pub clients: RawLockoutPolicy,
    /// What the client policy keys on: `client_and_source` (default) or `client_only`.
    pub client_scope: ClientLockoutScope,
}

impl Default for RawLockout {
    fn default() -> Self {
        Self {
            users: RawLockoutPolicy::from(LockoutPolicy::users()),
            clients: RawLockoutPolicy::from(LockoutPolicy::clients()),
            client_scope: Settings::new("").client_lockout_scope,
        }
    }
}

/// One lockout policy as the file gives it; unset keys keep the policy's own default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLockoutPolicy {
    pub enabled: Option<bool>,
    /// `enforce` or `monitor_only` (count and alert, never lock).
    pub mode: Option<LockoutMode>,
    pub threshold: Option<u32>,
    pub reset_window: Option<u64>,
    pub lock_duration: Option<u64>,
    /// Each further lock within the streak lasts `factor` times longer, up to `max` seconds.
    pub progressive: Option<Progressive>,
}

impl From<LockoutPolicy> for RawLockoutPolicy {
    fn from(p: LockoutPolicy) -> Self {
        Self {
            enabled: Some(p.enabled),
            mode: Some(p.mode),
            threshold: Some(p.threshold),
            reset_window: Some(p.reset_window),
            lock_duration: Some(p.lock_duration),
            progressive: p.progressive,
        }
    }
}

impl RawLockoutPolicy {
    /// The policy: `base` with every key the file sets.
    pub fn apply(&self, base: LockoutPolicy) -> LockoutPolicy {
        LockoutPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            mode: self.mode.unwrap_or(base.mode),
            threshold: self.threshold.unwrap_or(base.threshold),
            reset_window: self.reset_window.unwrap_or(base.reset_window),
            lock_duration: self.lock_duration.unwrap_or(base.lock_duration),
            progressive: self.progressive.or(base.progressive),
        }
    }
}

/// `[diagnostics]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiagnostics {
    /// Give administrators (admin API, logs) the root cause of failed logins; anonymous callers
    /// always get only the standard error.
    pub propagate_cause: bool,
    /// Authentication traces kept in memory for `tessera trace show`.
    pub trace_capacity: usize,
}

impl Default for RawDiagnostics {
    fn default() -> Self {
        Self {
            propagate_cause: true,
            trace_capacity: 500,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegistration {
    /// Enables RFC 7591 dynamic registration, guarded by this bearer token.
    pub initial_access_token: Option<SecretString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDangerous {
    /// Allow `http://` redirect URIs on non-loopback hosts.
    pub allow_http_redirect_uris: bool,
    /// Allow an `http://` issuer on a non-loopback host.
    pub allow_http_issuer: bool,
}

/// `[[clients]]`: RFC 7591 metadata plus where the secret comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    /// A literal secret: for development only; prefer `client_secret_env`.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// The environment variable holding the secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub require_pkce: bool,
    /// A file holding the client's JWK Set (relative paths: to the configuration file).
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default)]
    pub application_type: Option<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Users in Tessera's own store (`tessera user add`).
    Local,
    /// An LDAP directory (search, then bind as the user).
    Ldap,
}

/// The keys every `[[providers]]` entry has; the rest belongs to the provider kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderHeader {
    pub(super) kind: ProviderKind,
    pub(super) name: String,
    #[serde(default = "default_flag")]
    pub(super) flag: ControlFlag,
    #[serde(default)]
    pub(super) bind_password_env: Option<String>,
}

/// The keys of [`ProviderHeader`], split off before the kind's own fields are parsed.
pub const PROVIDER_HEADER_KEYS: [&str; 4] = ["kind", "name", "flag", "bind_password_env"];

pub(super) fn default_flag() -> ControlFlag {
    ControlFlag::Required
}

/// One `[[providers]]` entry.
#[derive(Debug, Clone)]
pub struct RawProvider {
    pub kind: ProviderKind,
    pub name: String,
    pub flag: ControlFlag,
    pub ldap: Option<LdapConfig>,
    /// The entry as written (secrets included), for `config check` (which redacts them).
    pub(super) display: toml::Table,
}
