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
//! # Control flags
//!
//! An upstream is a provider of the authentication chain like `[[providers]]`, with a JAAS
//! control flag (`flag`, default `SUFFICIENT`), and every sign-in is decided by the chain's
//! own JAAS evaluation (`crate::authn::chain`) over the upstreams (configuration order) followed
//! by the password providers. A redirect-based provider differs in one way: a sign-in presents
//! *one* credential — a password on the login form, or the return from *one* upstream — and an
//! entry answers only for its own credential:
//!
//! - a sign-in that comes back from upstream U: U answers with its result (authenticated, or
//!   the [`UpstreamFailure`]); the password providers answer `NotApplicable` (JAAS "ignored":
//!   no password was presented), whatever their flags, so a REQUIRED or REQUISITE password
//!   provider (the default chain is one REQUIRED local store) neither blocks nor adds to it;
//! - a password sign-in (and a sign-in through another upstream): a SUFFICIENT or OPTIONAL
//!   upstream answers `NotApplicable`; a REQUIRED or REQUISITE upstream answers a refusal
//!   (`AccountState(Restricted)`: the sign-in did not come through it), which is never counted
//!   by the lockout.
//!
//! What each flag therefore means for an upstream:
//!
//! | flag | sign-in through this upstream | password sign-in |
//! |---|---|---|
//! | `SUFFICIENT` (default) | its result alone decides | unaffected: the upstream is an alternative |
//! | `OPTIONAL` | its result alone decides (every other entry is ignored, so its success is the only one) | unaffected |
//! | `REQUIRED` | its result alone decides | refused; the password providers still run (JAAS REQUIRED goes on) but cannot make it succeed |
//! | `REQUISITE` | its result alone decides | refused at once; no password provider runs |
//!
//! A REQUIRED or REQUISITE upstream is thus mandatory: the login page shows only its button
//! and no password form. It must be the only enabled upstream (configuration error otherwise:
//! a sign-in through any other would always be refused). When an upstream is installed
//! programmatically alongside a mandatory one anyway, a sign-in through it fails with
//! [`FailureClass::ChainRefused`] (`TSR-UPSTREAM-CHAIN`).
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

use crate::authn::{
    AccountState, AuthProvider, ChainEntry, ControlFlag, Outcome, PasswordCredentials,
};
use crate::secret::Secret;
use crate::trace::Trace;

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
    /// JAAS control flag (see "Control flags" in the module documentation). Default
    /// SUFFICIENT.
    pub flag: ControlFlag,
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
            flag: ControlFlag::Sufficient,
            enabled: true,
        }
    }

    /// REQUIRED or REQUISITE: every sign-in must come through this upstream.
    pub fn is_mandatory(&self) -> bool {
        matches!(self.flag, ControlFlag::Required | ControlFlag::Requisite)
    }

    /// This upstream's answer to a sign-in that did not come through it.
    pub fn answer_to_other_sign_in(&self) -> Outcome {
        if self.is_mandatory() {
            Outcome::AccountState(AccountState::Restricted)
        } else {
            Outcome::NotApplicable
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

    /// The "Sign in with …" buttons of the login page (enabled upstreams, config order; only
    /// the mandatory ones when there are any).
    pub fn buttons(&self) -> Vec<UpstreamButton> {
        let all = self.all();
        let mandatory = all
            .iter()
            .any(|u| u.config.enabled && u.config.is_mandatory());
        all.iter()
            .filter(|u| u.config.enabled && (!mandatory || u.config.is_mandatory()))
            .map(|u| UpstreamButton {
                name: u.config.name.clone(),
                display_name: u.config.display_name.clone(),
            })
            .collect()
    }

    /// Whether the login page offers the password form: not when an enabled upstream is
    /// REQUIRED or REQUISITE (a password sign-in cannot succeed).
    pub fn password_sign_in(&self) -> bool {
        !self
            .all()
            .iter()
            .any(|u| u.config.enabled && u.config.is_mandatory())
    }
}

/// The chain entries of the enabled upstreams, to put before the password providers: how each
/// answers a password sign-in (see "Control flags").
pub fn chain_entries(upstreams: &[UpstreamConfig]) -> Vec<ChainEntry> {
    upstreams
        .iter()
        .filter(|c| c.enabled)
        .map(|c| ChainEntry {
            flag: c.flag,
            provider: Arc::new(PasswordAttempt {
                name: c.name.clone(),
                answer: c.answer_to_other_sign_in(),
            }),
        })
        .collect()
}

/// An upstream as a chain entry of a password sign-in.
struct PasswordAttempt {
    name: String,
    answer: Outcome,
}

#[async_trait]
impl AuthProvider for PasswordAttempt {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "oidc"
    }
    async fn authenticate(&self, _: &PasswordCredentials, trace: &mut Trace) -> Outcome {
        if !matches!(self.answer, Outcome::NotApplicable) {
            trace.step(format!("upstream:{}", self.name), "password_sign_in", "refused", || {
                crate::detail! {"reason" => "this upstream is REQUIRED/REQUISITE: sign-ins must come through it"}
            });
        }
        self.answer.clone()
    }
}
