//! OAuth 2.0 endpoints' logic: client authentication, grants, token issuance, introspection
//! and revocation. Each grant lives in its own module under `grants`.

pub mod client_auth;
pub mod grants;
pub mod introspect;
pub mod issue;
pub mod params;
pub mod scope;

use serde::Serialize;

/// RFC 6749 §5.1 successful token response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693 §2.2.1, for callers that want to know what they got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// Per-request facts the edge knows (who is calling from where, and the request id).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub source_ip: Option<std::net::IpAddr>,
    /// The authentication trace of this request (off unless diagnostics asked for it).
    pub trace: crate::trace::TraceHandle,
}

/// Grant type identifiers (RFC 6749 §4, RFC 7523 §2.1).
pub mod grant_type {
    pub const AUTHORIZATION_CODE: &str = "authorization_code";
    pub const CLIENT_CREDENTIALS: &str = "client_credentials";
    pub const REFRESH_TOKEN: &str = "refresh_token";
    pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    pub const ALL: [&str; 4] = [
        AUTHORIZATION_CODE,
        CLIENT_CREDENTIALS,
        REFRESH_TOKEN,
        JWT_BEARER,
    ];
}
