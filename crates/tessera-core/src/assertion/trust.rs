//! Trusted issuers for the jwt-bearer grant (RFC 7523 §3, RFC 7521 §5 / §7: issuer, audience,
//! keys, subjects, lifetime and scope are agreed out of band, per trust relationship).
//!
//! Configuration form (TOML, under `[[trusted_issuers]]`):
//!
//! ```toml
//! [[trusted_issuers]]
//! issuer = "https://sts.example.com"          # compared by simple string comparison
//! jwks_uri = "https://sts.example.com/jwks"  # or: jwks = { keys = [...] } / public_key_pem = "..."
//! audience = "either"                        # "issuer" | "token_endpoint" | "either" (default)
//! allowed_subjects = ["svc-*", "alice"]      # exact values or `*` globs; ["*"] = any; default none
//! subject_claim = "sub"                      # claim mapped to the local principal (default sub)
//! allowed_scopes = ["api.read"]              # default: none (token with empty scope)
//! max_lifetime = 600                         # seconds; default: settings.max_assertion_lifetime
//! allowed_clients = "authenticated"          # "any" (also unauthenticated) | "authenticated" | ["id", ...]
//! algorithms = ["ES256"]                     # default: every asymmetric algorithm; never HS*
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_jose::Algorithm;

/// Which audience a trusted issuer's assertions must carry (as their sole audience).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrustedAudience {
    /// This server's issuer identifier.
    Issuer,
    /// This server's token endpoint URL.
    TokenEndpoint,
    /// Either of the two (RFC 7523 §3 item 3; rfc7523bis allows both for grants).
    #[default]
    Either,
}

/// Which clients may present a trusted issuer's assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "AllowedClientsRepr", into = "AllowedClientsRepr")]
pub enum AllowedClients {
    /// Anyone, including unauthenticated callers (RFC 7523 §3.1: client auth is optional).
    Any,
    /// Any authenticated client.
    #[default]
    Authenticated,
    /// Only these authenticated clients.
    List(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum AllowedClientsRepr {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<AllowedClientsRepr> for AllowedClients {
    type Error = String;
    fn try_from(r: AllowedClientsRepr) -> Result<Self, String> {
        match r {
            AllowedClientsRepr::Word(w) if w == "any" => Ok(Self::Any),
            AllowedClientsRepr::Word(w) if w == "authenticated" => Ok(Self::Authenticated),
            AllowedClientsRepr::Word(w) => Err(format!(
                "allowed_clients must be \"any\", \"authenticated\" or a list of client ids, not \"{w}\""
            )),
            AllowedClientsRepr::List(l) => Ok(Self::List(l)),
        }
    }
}

impl From<AllowedClients> for AllowedClientsRepr {
    fn from(a: AllowedClients) -> Self {
        match a {
            AllowedClients::Any => Self::Word("any".into()),
            AllowedClients::Authenticated => Self::Word("authenticated".into()),
            AllowedClients::List(l) => Self::List(l),
        }
    }
}

fn default_subject_claim() -> String {
    "sub".into()
}

/// One trust relationship with an external assertion issuer (an STS or another IdP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub audience: TrustedAudience,
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<u64>,
    #[serde(default)]
    pub allowed_clients: AllowedClients,
    #[serde(default)]
    pub algorithms: Vec<Algorithm>,
}

impl TrustedIssuer {
    /// A trust entry with defaults, for code and tests.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks: None,
            jwks_uri: None,
            public_key_pem: None,
            audience: TrustedAudience::Either,
            allowed_subjects: Vec::new(),
            subject_claim: default_subject_claim(),
            allowed_scopes: Vec::new(),
            max_lifetime: None,
            allowed_clients: AllowedClients::Authenticated,
            algorithms: Vec::new(),
        }
    }

    /// Consistency rules, for the configuration loader.
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("trusted issuer: issuer must not be empty".into());
        }
        let sources = [
            self.jwks.is_some(),
            self.jwks_uri.is_some(),
            self.public_key_pem.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return Err(format!(
                "trusted issuer '{}': exactly one of jwks, jwks_uri, public_key_pem is required",
                self.issuer
            ));
        }
        if let Some(uri) = &self.jwks_uri {
            let ok = url::Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
            if !ok {
                return Err(format!(
                    "trusted issuer '{}': jwks_uri must be an http(s) URL",
                    self.issuer
                ));
            }
        }
        if let Some(doc) = &self.jwks {
            super::keys::parse_jwks_value(doc)
                .map_err(|e| format!("trusted issuer '{}': jwks: {e}", self.issuer))?;
        }
        if let Some(pem) = &self.public_key_pem {
            super::keys::parse_public_key_pem(pem)
                .map_err(|e| format!("trusted issuer '{}': public_key_pem: {e}", self.issuer))?;
        }
        if let Some(a) = self.algorithms.iter().find(|a| a.is_hmac()) {
            return Err(format!(
                "trusted issuer '{}': {a} needs a shared secret; only asymmetric algorithms are allowed",
                self.issuer
            ));
        }
        if self.subject_claim.is_empty() {
            return Err(format!(
                "trusted issuer '{}': subject_claim must not be empty",
                self.issuer
            ));
        }
        if let Some(bad) = self
            .allowed_scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(' '))
        {
            return Err(format!(
                "trusted issuer '{}': invalid scope '{bad}'",
                self.issuer
            ));
        }
        Ok(())
    }
}

/// Glob match where `*` matches any run of characters (also empty); everything else is literal.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `value` matches any of `patterns` (exact strings or `*` globs).
pub fn matches_any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*@example.com", "alice@example.com"));
        assert!(!glob_match("*@example.com", "alice@example.com.evil"));
        assert!(!glob_match("*@example.com", "alice@EXAMPLE.com"));
        assert!(glob_match("svc-*-prod", "svc-a-b-prod"));
        assert!(!glob_match("svc-*-prod", "svc-prod"));
        assert!(glob_match("alice", "alice"));
        assert!(!glob_match("alice", "alice2"));
    }

    #[test]
    fn config_forms() {
        let t: TrustedIssuer = serde_json::from_value(serde_json::json!({
            "issuer": "https://sts", "jwks_uri": "https://sts/jwks", "allowed_clients": ["a"],
            "audience": "token_endpoint", "algorithms": ["ES256"]
        }))
        .unwrap();
        assert_eq!(t.allowed_clients, AllowedClients::List(vec!["a".into()]));
        assert_eq!(t.audience, TrustedAudience::TokenEndpoint);
        assert_eq!(t.subject_claim, "sub");
        assert!(t.validate().is_ok());
        let any: AllowedClients = serde_json::from_value(serde_json::json!("any")).unwrap();
        assert_eq!(any, AllowedClients::Any);
        assert!(serde_json::from_value::<AllowedClients>(serde_json::json!("anyone")).is_err());
        assert!(
            serde_json::from_value::<TrustedIssuer>(serde_json::json!({"issuer": "x", "bogus": 1}))
                .is_err()
        );

        let mut t = TrustedIssuer::new("https://sts");
        assert!(t.validate().is_err(), "a key source is required");
        t.jwks_uri = Some("https://sts/jwks".into());
        t.algorithms = vec![Algorithm::HS256];
        assert!(t.validate().unwrap_err().contains("asymmetric"));
    }
}
