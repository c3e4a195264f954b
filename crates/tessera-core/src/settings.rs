//! Protocol settings: the validated, typed form of what the configuration file says about
//! OAuth/OIDC behaviour. Built by the binary's config loader; defaults documented here are the
//! ones `config.example.toml` shows.

use tessera_jose::Algorithm;

use crate::lockout::{ClientLockoutScope, LockoutPolicy};
use crate::secret::Secret;

/// How the `aud` of a client-authentication JWT must identify this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAssertionAudience {
    /// The issuer identifier or the token endpoint URL, as the sole audience (RFC 7523 §3 as
    /// deployed; what Authlib and openid-client send). Default.
    IssuerOrTokenEndpoint,
    /// Only the issuer identifier, as the sole audience (draft-ietf-oauth-rfc7523bis).
    Strict,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// RFC 8414 §2: https (http only for loopback development), no query or fragment, no
    /// trailing slash.
    pub issuer: String,
    /// Access token lifetime, seconds. Default 900.
    pub access_token_ttl: u64,
    /// Access token signature alg. Default ES256 (RS256 costs ~18× more CPU to sign).
    pub access_token_alg: Algorithm,
    /// Default audience of access tokens when no `resource` is requested. Default: the issuer.
    pub access_token_audience: String,
    /// ID token lifetime, seconds. Default 3600.
    pub id_token_ttl: u64,
    /// Default ID token alg (per-client `id_token_signed_response_alg` overrides). Default RS256.
    pub id_token_alg: Algorithm,
    /// Authorization code lifetime, seconds. Default 60 (RFC 6749 §4.1.2: at most 10 minutes).
    pub code_ttl: u64,
    /// Refresh token lifetime, seconds. Default 30 days.
    pub refresh_token_ttl: u64,
    /// Browser session lifetime, seconds. Default 8 hours.
    pub session_ttl: u64,
    /// Allowed clock skew for `exp`/`nbf`/`iat` checks, seconds. Default 60.
    pub clock_skew: u64,
    /// Largest accepted `exp - iat` of an assertion, seconds. Default 3660 (google-auth and
    /// Authlib make one-hour assertions).
    pub max_assertion_lifetime: u64,
    pub client_assertion_audience: ClientAssertionAudience,
    /// Scopes this server knows. Default: openid profile email groups offline_access.
    pub scopes_supported: Vec<String>,
    /// Signing key rotation period, seconds. Default 90 days.
    pub key_rotation_period: u64,
    /// JWKS `Cache-Control: max-age`, seconds. Default 3600. A new key is published at least
    /// this long before it signs, so relying parties' caches already hold it.
    pub jwks_max_age: u64,
    /// RFC 7591 dynamic registration: enabled only when an initial access token is set.
    pub registration_initial_access_token: Option<Secret>,
    /// Largest accepted request body, bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Largest accepted JWT (assertion, token to introspect), bytes. Default 16 KiB.
    pub max_jwt_bytes: usize,
    /// Development only: allow http:// redirect URIs for non-loopback hosts.
    pub dangerous_allow_http_redirects: bool,
    /// How long a node may serve a client record or a client's lockout state from memory,
    /// milliseconds (0 = always read the store). Default 1000: a change made on another node
    /// is seen within a second; changes made through this node are seen at once.
    pub client_cache_ttl_ms: u64,
    /// Soft lockout of end users (password logins), keyed by the submitted username. Default
    /// [`LockoutPolicy::users`]: threshold 5 (the 5th failure locks), window 5 min, lock 30 min.
    pub user_lockout: LockoutPolicy,
    /// Soft lockout of clients / service accounts (failed secret or assertion authentication).
    /// Default [`LockoutPolicy::clients`]: threshold 10, window 5 min, lock 15 min.
    pub client_lockout: LockoutPolicy,
    /// What the client policy keys on. Default (`client_id`, source address).
    pub client_lockout_scope: ClientLockoutScope,
    /// Bearer token of the admin API (`/admin/...`); the API answers 404 when unset. Default none.
    pub admin_token: Option<Secret>,
    /// External issuers whose JWTs the jwt-bearer grant accepts (RFC 7523 §2.1; see
    /// `crate::assertion::trust`). Default: none.
    pub trusted_issuers: Vec<crate::assertion::TrustedIssuer>,
    /// Accept `aud` = `https://oauth2.googleapis.com/token` in grant assertions signed with a
    /// service-account key this server issued (google-auth hard-codes that audience). Never for
    /// trusted issuers. Default true.
    pub accept_google_audience: bool,
}

impl Settings {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            access_token_ttl: 900,
            access_token_alg: Algorithm::ES256,
            access_token_audience: String::new(),
            id_token_ttl: 3600,
            id_token_alg: Algorithm::RS256,
            code_ttl: 60,
            refresh_token_ttl: 30 * 24 * 3600,
            session_ttl: 8 * 3600,
            clock_skew: 60,
            max_assertion_lifetime: 3660,
            client_assertion_audience: ClientAssertionAudience::IssuerOrTokenEndpoint,
            scopes_supported: ["openid", "profile", "email", "groups", "offline_access"]
                .map(String::from)
                .to_vec(),
            key_rotation_period: 90 * 24 * 3600,
            jwks_max_age: 3600,
            registration_initial_access_token: None,
            max_body_bytes: 64 * 1024,
            max_jwt_bytes: 16 * 1024,
            dangerous_allow_http_redirects: false,
            client_cache_ttl_ms: 1000,
            user_lockout: LockoutPolicy::users(),
            client_lockout: LockoutPolicy::clients(),
            client_lockout_scope: ClientLockoutScope::ClientAndSource,
            admin_token: None,
            trusted_issuers: Vec::new(),
            accept_google_audience: true,
        }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
    pub fn token_endpoint(&self) -> String {
        self.endpoint(paths::TOKEN)
    }
    pub fn access_token_audience(&self) -> &str {
        if self.access_token_audience.is_empty() {
            &self.issuer
        } else {
            &self.access_token_audience
        }
    }
    /// The longest any token signed today stays valid: how long a retired key must stay
    /// published.
    pub fn longest_token_ttl(&self) -> u64 {
        self.access_token_ttl.max(self.id_token_ttl)
    }
}

/// Endpoint paths, relative to the issuer.
pub mod paths {
    pub const AUTHORIZE: &str = "/authorize";
    pub const TOKEN: &str = "/token";
    pub const USERINFO: &str = "/userinfo";
    pub const JWKS: &str = "/jwks.json";
    pub const INTROSPECT: &str = "/introspect";
    pub const REVOKE: &str = "/revoke";
    pub const REGISTER: &str = "/register";
    pub const END_SESSION: &str = "/logout";
    pub const OIDC_DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
}
