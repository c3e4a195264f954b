//! ID tokens (OIDC Core §2, §3.1.3.6) and the claims released per scope (§5.4).

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use tessera_jose::Algorithm;

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::model::Client;
use crate::oauth::scope::Scope;

/// OIDC Core §5.4 plus `groups`: which claims each scope releases.
pub const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &["name", "given_name", "family_name", "preferred_username"],
    ),
    ("email", &["email", "email_verified"]),
    ("groups", &["groups"]),
];

/// The subset of `claims` the scopes release.
pub fn filter_claims(claims: &Map<String, Value>, scope: &Scope) -> Map<String, Value> {
    let mut out = Map::new();
    for (s, names) in SCOPE_CLAIMS {
        if !scope.contains(s) {
            continue;
        }
        for n in *names {
            if let Some(v) = claims.get(*n) {
                out.insert((*n).to_owned(), v.clone());
            }
        }
    }
    out
}

/// OIDC Core §3.1.3.6 `at_hash`: the left half of the hash of the access token's ASCII octets,
/// base64url. The hash is the one of the ID token's alg (SHA-256 for RS256/ES256); for EdDSA
/// with Ed25519 it is SHA-512 (OIDC Core errata, as deployed).
pub fn at_hash(access_token: &str, alg: Algorithm) -> String {
    let d = match alg {
        Algorithm::EdDSA | Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 => {
            digest::digest(&digest::SHA512, access_token.as_bytes())
        }
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 | Algorithm::HS384 => {
            digest::digest(&digest::SHA384, access_token.as_bytes())
        }
        _ => digest::digest(&digest::SHA256, access_token.as_bytes()),
    };
    let bytes = d.as_ref();
    B64.encode(&bytes[..bytes.len() / 2])
}

/// What an ID token says about the authentication.
#[derive(Debug, Clone, Default)]
pub struct IdTokenFacts<'a> {
    pub subject: &'a str,
    pub auth_time: UnixTime,
    pub nonce: Option<&'a str>,
    pub amr: &'a [String],
    pub acr: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub access_token: Option<&'a str>,
    /// Released claims (already filtered by scope).
    pub claims: Option<&'a Map<String, Value>>,
}

impl Engine {
    /// The alg a client's ID tokens are signed with: its registered
    /// `id_token_signed_response_alg` (OIDC Registration §2), else the server default (RS256).
    pub fn id_token_alg(&self, client: &Client) -> OAuthResult<Algorithm> {
        match &client.id_token_signed_response_alg {
            Some(a) => a.parse().map_err(|_| {
                OAuthError::server_error(format!("client '{}': bad id_token alg", client.client_id))
            }),
            None => Ok(self.settings.id_token_alg),
        }
    }

    /// Sign an ID token for `client` (OIDC Core §2).
    pub fn issue_id_token(
        &self,
        client: &Client,
        facts: &IdTokenFacts<'_>,
        now: UnixTime,
    ) -> OAuthResult<String> {
        let alg = self.id_token_alg(client)?;
        let mut c = Map::new();
        if let Some(extra) = facts.claims {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        // Registered claims last, so released claims can never override them.
        c.insert("iss".into(), json!(self.settings.issuer));
        c.insert("sub".into(), json!(facts.subject));
        c.insert("aud".into(), json!(client.client_id));
        c.insert("exp".into(), json!(now + self.settings.id_token_ttl as i64));
        c.insert("iat".into(), json!(now));
        c.insert("auth_time".into(), json!(facts.auth_time));
        // §2: azp, the party the token was issued to.
        c.insert("azp".into(), json!(client.client_id));
        if let Some(n) = facts.nonce {
            c.insert("nonce".into(), json!(n));
        }
        if !facts.amr.is_empty() {
            c.insert("amr".into(), json!(facts.amr));
        }
        if let Some(a) = facts.acr {
            c.insert("acr".into(), json!(a));
        }
        if let Some(sid) = facts.sid {
            c.insert("sid".into(), json!(sid));
        }
        if let Some(at) = facts.access_token {
            c.insert("at_hash".into(), json!(at_hash(at, alg)));
        }
        let signer = self
            .keys
            .signer(alg, now)
            .map_err(OAuthError::server_error)?;
        signer
            .sign_jwt(Some("JWT"), &Value::Object(c))
            .map_err(OAuthError::server_error)
    }
}
