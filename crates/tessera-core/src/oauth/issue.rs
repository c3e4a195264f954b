//! Building and signing access tokens (RFC 9068 JWT profile).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::secrets::random_token;

/// RFC 9068 §2.1 media type in the JOSE header.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// RFC 9068 §2.2 claims.
#[derive(Debug, Clone, Serialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub exp: UnixTime,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub iat: UnixTime,
    pub jti: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    /// The grant this token derives from, so revoking the grant revokes the token at
    /// introspection (RFC 6749 §4.1.2 code reuse, §10.4 refresh reuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the caller decides; the issuer fills in the rest.
#[derive(Debug, Clone, Default)]
pub struct AccessTokenRequest {
    pub subject: String,
    pub client_id: String,
    pub scope: String,
    pub audience: Option<String>,
    pub auth_time: Option<UnixTime>,
    pub grant_id: Option<String>,
    /// Upper bound on expiry (e.g. the assertion's `exp`, RFC 7521 §4.1).
    pub not_after: Option<UnixTime>,
    pub extra: Map<String, Value>,
}

impl Engine {
    /// Sign an access token; returns (token, expires_in).
    pub fn issue_access_token(
        &self,
        req: AccessTokenRequest,
        now: UnixTime,
    ) -> OAuthResult<(String, u64)> {
        let s = &self.settings;
        let mut exp = now + s.access_token_ttl as i64;
        if let Some(limit) = req.not_after {
            exp = exp.min(limit.max(now + 1));
        }
        let claims = AccessTokenClaims {
            iss: s.issuer.clone(),
            exp,
            aud: req
                .audience
                .unwrap_or_else(|| s.access_token_audience().to_owned()),
            sub: req.subject,
            client_id: req.client_id,
            iat: now,
            jti: random_token().map_err(OAuthError::server_error)?,
            scope: req.scope,
            auth_time: req.auth_time,
            gid: req.grant_id,
            extra: req.extra,
        };
        let signer = self
            .keys
            .signer(s.access_token_alg, now)
            .map_err(OAuthError::server_error)?;
        let token = signer
            .sign_jwt(Some(ACCESS_TOKEN_TYP), &claims)
            .map_err(OAuthError::server_error)?;
        Ok((token, (exp - now).max(0) as u64))
    }
}
