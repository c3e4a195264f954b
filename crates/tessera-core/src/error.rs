//! The protocol error: an RFC 6749 error code, a safe description for the client, and an
//! internal cause for logs and administrators (never sent to anonymous callers).
//!
//! The HTTP edge maps this to the wire in exactly one place (`tessera-http::error`).

use std::borrow::Cow;
use std::fmt;

/// Error codes of RFC 6749 §4.1.2.1 / §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2, OIDC Core §3.1.2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// RFC 6749 §5.2: missing/duplicated/malformed parameter, or more than one auth mechanism.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed.
    InvalidClient,
    /// RFC 6749 §5.2: grant (code, refresh token, assertion) invalid, expired or revoked.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 §5.2: the grant type is not supported by this server.
    UnsupportedGrantType,
    /// RFC 6749 §5.2 / §4.1.2.1: requested scope invalid, unknown or exceeds what is allowed.
    InvalidScope,
    /// RFC 6749 §4.1.2.1
    AccessDenied,
    /// RFC 6749 §4.1.2.1
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1: an unexpected condition; details only in logs.
    ServerError,
    /// RFC 6749 §4.1.2.1: temporarily unable (e.g. a directory is unavailable).
    TemporarilyUnavailable,
    /// OIDC Core §3.1.2.6
    LoginRequired,
    /// OIDC Core §3.1.2.6
    ConsentRequired,
    /// OIDC Core §3.1.2.6
    InteractionRequired,
    /// OIDC Core §3.1.2.6
    InvalidRequestUri,
    /// RFC 6750 §3.1
    InvalidToken,
    /// RFC 6750 §3.1
    InsufficientScope,
    /// RFC 7591 §3.2.2
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2
    InvalidClientMetadata,
    /// RFC 7009 §2.2.1
    UnsupportedTokenType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the client tried to authenticate, so the edge can answer `invalid_client` with 401 and a
/// matching `WWW-Authenticate` when the `Authorization` header was used (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Basic,
    Bearer,
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Safe for the client: RFC 6749 §5.2 restricts it to %x20-21 / %x23-5B / %x5D-7E.
    pub description: Option<Cow<'static, str>>,
    /// Internal detail for logs and admins; never sent to an anonymous caller.
    pub cause: Option<String>,
    /// Set when the failed credentials came in an `Authorization` header.
    pub challenge: Option<AuthScheme>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: Some(description.into()),
            cause: None,
            challenge: None,
        }
    }
    pub fn bare(code: ErrorCode) -> Self {
        Self {
            code,
            description: None,
            cause: None,
            challenge: None,
        }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    /// An internal fault: the client learns nothing, the cause is logged once at the edge.
    pub fn server_error(cause: impl fmt::Display) -> Self {
        Self {
            code: ErrorCode::ServerError,
            description: None,
            cause: Some(cause.to_string()),
            challenge: None,
        }
    }
    pub fn temporarily_unavailable(cause: impl fmt::Display) -> Self {
        Self {
            code: ErrorCode::TemporarilyUnavailable,
            description: Some(Cow::Borrowed(
                "the service is temporarily unavailable, try again later",
            )),
            cause: Some(cause.to_string()),
            challenge: None,
        }
    }
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }
    pub fn with_challenge(mut self, scheme: Option<AuthScheme>) -> Self {
        self.challenge = scheme;
        self
    }
    /// The description with any character outside RFC 6749 §5.2's allowed set replaced.
    pub fn safe_description(&self) -> Option<String> {
        self.description.as_deref().map(sanitize_description)
    }
}

/// RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
pub fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '\'',
        })
        .collect()
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        if let Some(c) = &self.cause {
            write!(f, " (cause: {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(c) => Self::temporarily_unavailable(c),
            other => Self::server_error(other),
        }
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_is_restricted_to_the_rfc_charset() {
        assert_eq!(sanitize_description("a \"b\" \\ c\né"), "a 'b' ' c''");
    }

    #[test]
    fn server_error_carries_no_description() {
        let e = OAuthError::server_error("db exploded");
        assert!(e.description.is_none());
        assert_eq!(e.cause.as_deref(), Some("db exploded"));
    }
}
