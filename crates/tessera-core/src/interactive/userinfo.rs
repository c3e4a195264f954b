//! The UserInfo endpoint (OIDC Core §5.3) with RFC 6750 bearer-token errors.

use serde_json::{Map, Value};

use super::id_token::filter_claims;
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{AuthScheme, ErrorCode, OAuthError, OAuthResult};
use crate::oauth::scope::Scope;

/// How the access token was presented (RFC 6750 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerSource<'a> {
    /// §2.1 `Authorization: Bearer`.
    Header(&'a str),
    /// §2.2 form-encoded body parameter `access_token` (POST only).
    Body(&'a str),
}

/// RFC 6750 §3.1: a request without a token gets a bare challenge (no error code).
pub fn missing_token() -> OAuthError {
    OAuthError::bare(ErrorCode::InvalidRequest).with_challenge(Some(AuthScheme::Bearer))
}

fn invalid_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
    .with_challenge(Some(AuthScheme::Bearer))
}

/// Parse an `Authorization` header value as a bearer credential (RFC 6750 §2.1).
pub fn bearer_from_header(value: &str) -> OAuthResult<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // RFC 6750 §3.1: an attempt with an unsupported authentication method is answered like
        // a request without credentials: a bare challenge, no error code.
        return Err(missing_token());
    }
    let token = token.trim();
    if token.is_empty() {
        // RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; without the token the request is
        // malformed (§3.1 invalid_request), there is no token to call invalid.
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "the Bearer credentials carry no access token",
        )
        .with_challenge(Some(AuthScheme::Bearer)));
    }
    Ok(token)
}

impl Engine {
    /// UserInfo claims for an access token: `sub` plus the claims its scopes release.
    pub async fn userinfo(&self, token: BearerSource<'_>, now: UnixTime) -> OAuthResult<Value> {
        let token = match token {
            BearerSource::Header(t) | BearerSource::Body(t) => t,
        };
        let Some(claims) = self.verify_access_token(token, now).await? else {
            return Err(invalid_token());
        };
        let scope = Scope::parse(
            claims
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        // OIDC Core §5.3.1: the token must have been issued for the openid scope.
        if !scope.contains("openid") {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            )
            .with_challenge(Some(AuthScheme::Bearer)));
        }
        let mut out: Map<String, Value> = filter_claims(&claims, &scope);
        out.insert(
            "sub".into(),
            claims.get("sub").cloned().unwrap_or(Value::Null),
        );
        Ok(Value::Object(out))
    }
}
