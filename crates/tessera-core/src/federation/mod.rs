//! Upstream OpenID Connect providers: Tessera as the relying party of another IdP (a corporate
//! Entra ID, Okta, Google, or another Tessera), signing its users in by the authorization code
//! flow with PKCE (S256), `state` and `nonce`.
//!
//! - [`UpstreamConfig`]: one `[[upstreams]]` entry (issuer, client credentials, claim mapping,
//!   account-linking policy, clock skew, cache timings);
//! - [`UpstreamHttp`]: the outbound HTTP contract. Core does no I/O: the binary adapts
//!   `tessera_egress::HttpClient` (proxy, CA bundle, timeouts) to it, and reports what a proxy
//!   answered to `CONNECT` after a failure (hyper hides that status line);
//! - [`keys`]: discovery (issuer match, RFC 8414 §3.3 / OIDC Discovery §4.3) and the JWKS cache,
//!   refetched once on an unknown `kid` (OIDC Core §10.1.1), rate-limited;
//! - [`id_token`]: ID token validation (OIDC Core §3.1.3.7) with every check traced;
//! - [`flow`]: the start (authorization request) and the callback (state, code exchange,
//!   validation, userinfo, mapping, linking, session);
//! - [`failure`]: every failure as a class with a stable code, a remedy, and the message
//!   "Exchanging authorization tokens with upstream 'NAME' failed: …".
//!
//! ID tokens are validated with `tessera-jose` directly rather than the `openidconnect` crate:
//! that crate never refreshes its JWKS on an unknown `kid` (openidconnect-rs #232), checks
//! `iat` only with a custom verifier, brings its own HTTP client (which would bypass the egress
//! configuration), and folds network and validation errors into types that lose the root cause
//! this module must name.

pub mod config;
pub mod failure;
pub mod flow;
pub mod id_token;
pub mod keys;
pub mod link;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tessera_jose::{Algorithm, SigningKey};

use crate::secret::Secret;

pub use failure::{FailureClass, Stage, UpstreamFailure};
pub use flow::{CallbackOutcome, FlowError, PENDING_COOKIE, StartRedirect};

/// How Tessera authenticates to the upstream's token endpoint (OIDC Core §9).
#[derive(Clone)]
pub enum UpstreamClientAuth {
    /// HTTP Basic with the form-urlencoded client id and secret (RFC 6749 §2.3.1).
    SecretBasic(Secret),
    /// `client_id` and `client_secret` in the form body.
    SecretPost(Secret),
    /// A JWT signed with our key (RFC 7523 §2.2); `aud` per [`AssertionAudience`].
    PrivateKeyJwt {
        key: Arc<SigningKey>,
        audience: AssertionAudience,
    },
}

impl std::fmt::Debug for UpstreamClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl UpstreamClientAuth {
    pub fn method(&self) -> &'static str {
        match self {
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }
}

/// The `aud` of our client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    /// The upstream's issuer identifier (draft-ietf-oauth-rfc7523bis). Default.
    #[default]
    Issuer,
    /// The upstream's token endpoint URL (what older servers require).
    TokenEndpoint,
}

/// What to do with an upstream identity that has no local account linked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkPolicy {
    /// Create a local user record on first sign-in (just in time) and link it.
    #[default]
    Jit,
    /// Link to the existing local user with the same email, when the upstream says the email
    /// is verified; refuse otherwise.
    LinkVerifiedEmail,
    /// Only identities already linked (by an administrator) may sign in.
    Deny,
}

impl LinkPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jit => "jit",
            Self::LinkVerifiedEmail => "link_verified_email",
            Self::Deny => "deny",
        }
    }
}

/// Which upstream claims become the local principal's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Default `preferred_username` (falls back to `email`, then `sub`).
    pub username: String,
    /// Default `email`.
    pub email: String,
    /// Default `name`.
    pub name: String,
    /// Default `groups` (Entra ID: `groups` or `roles`; Okta: `groups`).
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            username: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
        }
    }
}

/// One upstream OpenID provider (`[[upstreams]]`), validated.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Short name: in URLs (`/federation/{name}/…`), logs, traces, and the local link.
    pub name: String,
    /// Shown on the login button: "Sign in with {display_name}".
    pub display_name: String,
    /// The upstream's issuer identifier, compared exactly (no normalisation).
    pub issuer: String,
    pub client_id: String,
    pub auth: UpstreamClientAuth,
    /// Requested scopes; `openid` is always included.
    pub scopes: Vec<String>,
    pub mapping: ClaimMapping,
    pub linking: LinkPolicy,
    /// Accepted clock difference for `exp` / `iat`, seconds. Default 60.
    pub clock_skew: u64,
    /// Oldest accepted `iat`, seconds before now (plus skew). Default 600.
    pub max_id_token_age: u64,
    /// Audiences besides our `client_id` that an ID token may carry. Default none.
    pub trusted_audiences: Vec<String>,
    /// Accepted ID token algorithms; empty = what discovery advertises (never `none`, never
    /// HMAC). Default empty.
    pub id_token_algs: Vec<Algorithm>,
    /// Fetch userinfo after the code exchange. Default true.
    pub userinfo: bool,
    /// How long discovery metadata is reused, seconds. Default 3600.
    pub discovery_ttl: u64,
    /// How long a fetched JWKS is reused, seconds. Default 3600 (an unknown `kid` refetches).
    pub jwks_ttl: u64,
    /// Smallest interval between two JWKS fetches triggered by unknown `kid`s, seconds.
    /// Default 60.
    pub jwks_min_refetch: u64,
    /// Show the button and accept callbacks. Default true.
    pub enabled: bool,
}

impl UpstreamConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        auth: UpstreamClientAuth,
    ) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            issuer: issuer.into(),
            client_id: client_id.into(),
            auth,
            scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
            mapping: ClaimMapping::default(),
            linking: LinkPolicy::default(),
            clock_skew: 60,
            max_id_token_age: 600,
            trusted_audiences: Vec::new(),
            id_token_algs: Vec::new(),
            userinfo: true,
            discovery_ttl: 3600,
            jwks_ttl: 3600,
            jwks_min_refetch: 60,
            enabled: true,
        }
    }

    /// The scope parameter: the configured scopes with `openid` first.
    pub fn scope_param(&self) -> String {
        let mut out = vec!["openid".to_owned()];
        for s in &self.scopes {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out.join(" ")
    }
}

/// A reply of the upstream (any status: the token endpoint's errors have bodies we need).
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What an outbound proxy answered to `CONNECT` for a target, when it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRefusal {
    /// `host:port` of the proxy.
    pub proxy: String,
    /// `host:port` the tunnel was asked for.
    pub target: String,
    /// The proxy's status line, e.g. `HTTP/1.1 403 Filtered`.
    pub status_line: String,
    pub status: u16,
}

/// Transport failure classes (the adapter's classification of the egress error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportKind {
    Dns,
    Refused,
    /// Connect timed out.
    Timeout,
    /// Connected, but no answer in time.
    NoAnswer,
    /// The certificate is not trusted (unknown issuer, wrong name, expired).
    TlsTrust,
    /// Another TLS failure.
    Tls,
    /// The proxy refused the tunnel (status line known).
    Proxy(ProxyRefusal),
    /// Another connection failure.
    Connect,
    /// A non-2xx answer where only 2xx is usable.
    HttpStatus(u16),
    TooLarge,
    InvalidUrl,
    Other,
}

/// A failed outbound request: the class and the root message (for logs and admins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    pub kind: TransportKind,
    pub detail: String,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Outbound HTTP to upstream providers, implemented outside core over `tessera-egress`.
#[async_trait]
pub trait UpstreamHttp: Send + Sync {
    /// GET `url`; a non-2xx status is an error ([`TransportKind::HttpStatus`]). `bearer` adds
    /// `Authorization: Bearer` (userinfo).
    async fn get(
        &self,
        url: &str,
        accept: &str,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, TransportError>;
    /// POST an `application/x-www-form-urlencoded` body; every status is returned. `basic` is
    /// the already form-urlencoded (id, secret) pair for HTTP Basic (RFC 6749 §2.3.1).
    async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        basic: Option<(&str, &str)>,
    ) -> Result<HttpReply, TransportError>;
    /// After a transport failure on `url`: when the request went through an outbound proxy,
    /// ask the proxy for a tunnel to the same target and return its refusal (status line), if
    /// it refuses. `None`: no proxy, or the proxy accepts.
    async fn proxy_refusal(&self, url: &str) -> Option<ProxyRefusal>;
}

/// One configured upstream with its caches.
pub struct Upstream {
    pub config: UpstreamConfig,
    http: Arc<dyn UpstreamHttp>,
    cache: keys::Cache,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.config.name)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(config: UpstreamConfig, http: Arc<dyn UpstreamHttp>) -> Self {
        Self {
            config,
            http,
            cache: keys::Cache::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// What the login page shows per upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamButton {
    pub name: String,
    pub display_name: String,
}

/// The configured upstreams (`Engine::upstreams`). Replaced as a whole by the composition
/// root (and by tests) with [`Upstreams::install`].
#[derive(Debug, Default)]
pub struct Upstreams {
    inner: RwLock<Vec<Arc<Upstream>>>,
}

impl Upstreams {
    pub fn install(&self, upstreams: Vec<Arc<Upstream>>) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        *g = upstreams;
    }

    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.iter().find(|u| u.config.name == name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The "Sign in with …" buttons of the login page (enabled upstreams, config order).
    pub fn buttons(&self) -> Vec<UpstreamButton> {
        self.all()
            .iter()
            .filter(|u| u.config.enabled)
            .map(|u| UpstreamButton {
                name: u.config.name.clone(),
                display_name: u.config.display_name.clone(),
            })
            .collect()
    }
}
