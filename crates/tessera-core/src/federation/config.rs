//! The `[[upstreams]]` configuration entry as written in the file, and its validation into an
//! [`UpstreamConfig`]. Pure: the caller supplies the environment and file reads (core does no
//! I/O).
//!
//! ```toml
//! [[upstreams]]
//! name = "corp"                      # A-Z a-z 0-9 - _ ; in URLs and links
//! kind = "oidc"                      # the only kind
//! display_name = "Corporate SSO"     # "Sign in with Corporate SSO"
//! issuer = "https://login.corp.example/tenant/v2.0"
//! client_id = "tessera"
//! client_auth_method = "client_secret_basic"   # or client_secret_post, private_key_jwt
//! client_secret_env = "CORP_SECRET"  # or client_secret = "…" (development)
//! # private_key_file = "corp-key.pem"  # PKCS#8, for private_key_jwt
//! # private_key_alg = "ES256"           # default RS256
//! # private_key_kid = "tessera-1"
//! # assertion_audience = "issuer"       # or "token_endpoint"
//! scopes = ["openid", "profile", "email"]
//! linking = "jit"                    # or link_verified_email, deny
//! groups_claim = "groups"
//! clock_skew = 60
//! flag = "SUFFICIENT"               # or OPTIONAL, REQUIRED, REQUISITE (see "Control flags")
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_jose::{Algorithm, SigningKey};

use super::{AssertionAudience, ClaimMapping, LinkPolicy, UpstreamClientAuth, UpstreamConfig};
use crate::secret::Secret;

/// Exactly what the file says (unknown keys are errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub name: String,
    /// `oidc` (default).
    pub kind: Option<String>,
    pub display_name: Option<String>,
    pub issuer: String,
    pub client_id: String,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    pub client_auth_method: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub private_key_file: Option<String>,
    pub private_key_alg: Option<String>,
    pub private_key_kid: Option<String>,
    pub assertion_audience: Option<AssertionAudience>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub linking: Option<LinkPolicy>,
    pub clock_skew: Option<u64>,
    pub max_id_token_age: Option<u64>,
    pub trusted_audiences: Option<Vec<String>>,
    pub id_token_algs: Option<Vec<String>>,
    pub userinfo: Option<bool>,
    pub discovery_ttl: Option<u64>,
    pub jwks_ttl: Option<u64>,
    pub jwks_min_refetch: Option<u64>,
    /// JAAS control flag: SUFFICIENT (default), OPTIONAL, REQUIRED or REQUISITE.
    pub flag: Option<crate::authn::ControlFlag>,
    pub enabled: Option<bool>,
}

/// Largest accepted clock skew, seconds (FAPI 2.0 §5.3.2.1 caps at 60; we allow an
/// administrator up to 5 minutes for upstreams they cannot fix).
pub const MAX_CLOCK_SKEW: u64 = 300;

impl RawUpstream {
    /// Validate. `env` reads environment variables, `read_file` reads the private key file
    /// (a path relative to the configuration file is the caller's business). Errors are
    /// `(key, message)` pairs.
    pub fn build(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<UpstreamConfig, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut err = |k: &str, m: String| errors.push((k.to_owned(), m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            err(
                "name",
                format!(
                    "'{}' must be 1-64 characters from A-Z a-z 0-9 - _",
                    self.name
                ),
            );
        }
        if let Some(k) = self.kind.as_deref().filter(|k| *k != "oidc") {
            err("kind", format!("'{k}' is not supported (only \"oidc\")"));
        }
        match url::Url::parse(&self.issuer) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u)
                if u.scheme() == "http"
                    && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => {}
            Ok(_) => err(
                "issuer",
                "must be an https URL (http only for loopback)".into(),
            ),
            Err(e) => err("issuer", format!("'{}' is not a URL: {e}", self.issuer)),
        }
        if self.client_id.is_empty() {
            err("client_id", "is required".into());
        }
        let secret = || -> Result<Secret, String> {
            match (&self.client_secret, &self.client_secret_env) {
                (Some(_), Some(_)) => {
                    Err("set client_secret or client_secret_env, not both".into())
                }
                (Some(s), None) => Ok(Secret::new(s.as_str())),
                (None, Some(var)) => env(var)
                    .filter(|v| !v.is_empty())
                    .map(Secret::from)
                    .ok_or_else(|| format!("environment variable {var} is not set")),
                (None, None) => Err("client_secret or client_secret_env is required".into()),
            }
        };
        let method = self
            .client_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        let auth = match method {
            "client_secret_basic" => secret().map(UpstreamClientAuth::SecretBasic),
            "client_secret_post" => secret().map(UpstreamClientAuth::SecretPost),
            "private_key_jwt" => (|| {
                let path = self
                    .private_key_file
                    .as_deref()
                    .ok_or("private_key_file is required for private_key_jwt")?;
                let alg: Algorithm = self
                    .private_key_alg
                    .as_deref()
                    .unwrap_or("RS256")
                    .parse()
                    .map_err(|e| format!("private_key_alg: {e}"))?;
                let pem = read_file(path)?;
                let kid = self.private_key_kid.clone().unwrap_or_default();
                let key = SigningKey::from_pkcs8_pem(alg, kid, &pem)
                    .map_err(|e| format!("private_key_file {path}: {e}"))?;
                Ok(UpstreamClientAuth::PrivateKeyJwt {
                    key: Arc::new(key),
                    audience: self.assertion_audience.unwrap_or_default(),
                })
            })(),
            other => Err(format!(
                "client_auth_method '{other}' is not one of client_secret_basic, client_secret_post, private_key_jwt"
            )),
        };
        let auth = match auth {
            Ok(a) => Some(a),
            Err(m) => {
                err("client_auth_method", m);
                None
            }
        };
        let skew = self.clock_skew.unwrap_or(60);
        if skew > MAX_CLOCK_SKEW {
            err(
                "clock_skew",
                format!("{skew} s is more than the maximum {MAX_CLOCK_SKEW} s"),
            );
        }
        let mut algs = Vec::new();
        for a in self.id_token_algs.iter().flatten() {
            match a.parse::<Algorithm>() {
                Ok(alg) if !alg.is_hmac() => algs.push(alg),
                Ok(_) => err(
                    "id_token_algs",
                    format!("{a}: HMAC ID tokens are not accepted"),
                ),
                Err(e) => err("id_token_algs", format!("{a}: {e}")),
            }
        }
        let (Some(auth), true) = (auth, errors.is_empty()) else {
            return Err(errors);
        };
        let mut c = UpstreamConfig::new(&self.name, &self.issuer, &self.client_id, auth);
        if let Some(d) = &self.display_name {
            c.display_name = d.clone();
        }
        if let Some(s) = &self.scopes {
            c.scopes = s.clone();
        }
        let d = ClaimMapping::default();
        c.mapping = ClaimMapping {
            username: self.username_claim.clone().unwrap_or(d.username),
            email: self.email_claim.clone().unwrap_or(d.email),
            name: self.name_claim.clone().unwrap_or(d.name),
            groups: self.groups_claim.clone().unwrap_or(d.groups),
        };
        c.linking = self.linking.unwrap_or_default();
        c.clock_skew = skew;
        c.max_id_token_age = self.max_id_token_age.unwrap_or(c.max_id_token_age);
        c.trusted_audiences = self.trusted_audiences.clone().unwrap_or_default();
        c.id_token_algs = algs;
        c.userinfo = self.userinfo.unwrap_or(true);
        c.discovery_ttl = self.discovery_ttl.unwrap_or(c.discovery_ttl);
        c.jwks_ttl = self.jwks_ttl.unwrap_or(c.jwks_ttl);
        c.jwks_min_refetch = self.jwks_min_refetch.unwrap_or(c.jwks_min_refetch);
        c.flag = self.flag.unwrap_or(c.flag);
        c.enabled = self.enabled.unwrap_or(true);
        Ok(c)
    }
}
