//! Records the store keeps. Plain data: validation lives in the modules that create them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::UnixTime;

/// RFC 7591 §2 `token_endpoint_auth_method` values Tessera supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
    /// Public client (RFC 7591 §2): no authentication at the token endpoint.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretJwt => "client_secret_jwt",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "client_secret_basic" => Self::ClientSecretBasic,
            "client_secret_post" => Self::ClientSecretPost,
            "client_secret_jwt" => Self::ClientSecretJwt,
            "private_key_jwt" => Self::PrivateKeyJwt,
            "none" => Self::None,
            _ => return None,
        })
    }
    /// Methods that use a shared secret issued by this server.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt
        )
    }
}

/// Where a client's registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientOrigin {
    /// Declared in the configuration file; re-applied at every start.
    Config,
    /// Created with the CLI.
    #[default]
    Cli,
    /// RFC 7591 dynamic registration.
    Dynamic,
}

/// A registered OAuth client. Stored as one JSON document keyed by `client_id`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Client {
    pub client_id: String,
    pub client_name: Option<String>,
    /// Keyed hash (HMAC-SHA-256, hex) of the server-generated secret; see `crate::secrets`.
    pub secret_hash: Option<String>,
    /// The secret sealed with the server's master key, kept only for `client_secret_jwt`,
    /// which needs the secret itself as the HMAC key (OIDC Core §9).
    pub secret_sealed: Option<String>,
    /// RFC 7591 §3.2.1; 0 = never expires.
    pub client_secret_expires_at: UnixTime,
    pub client_id_issued_at: UnixTime,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    /// OIDC Registration: the only JWS alg accepted for this client's assertions.
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// Inline JWK Set (RFC 7591 §2); exclusive with `jwks_uri`.
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    /// Scopes this client may request (space-separated); `None` = every supported scope.
    pub scope: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
    /// PKCE required even though the client is confidential (always required for public ones).
    pub require_pkce: bool,
    /// First-party clients skip the consent page.
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    pub application_type: Option<String>,
    pub contacts: Vec<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    /// RFC 7592: hash of the registration access token (dynamic clients only).
    pub registration_access_token_hash: Option<String>,
    pub origin: ClientOrigin,
    pub disabled: bool,
    /// Set for service accounts (`tessera service-account create`): the account's id is its
    /// `client_email`, its public keys are in `jwks`, and it authenticates by jwt-bearer grant.
    pub service_account: Option<ServiceAccount>,
    /// Claim used as the username in ID tokens for relying parties that want one (e.g. Jira).
    pub extra: Map<String, Value>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Service-account specifics (Google key-file style, RFC 7523 §2.1 grants).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct ServiceAccount {
    /// Subjects the account may impersonate (`sub` ≠ the account), domain-wide-delegation
    /// style. Exact values, or patterns `*@example.com`. Empty = no impersonation.
    pub may_impersonate: Vec<String>,
    pub description: Option<String>,
}

/// A user of the local password store.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct User {
    pub username: String,
    /// Stable subject identifier (never reassigned, unlike usernames).
    pub subject: String,
    /// PHC string (argon2id).
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// A signing key pair in the store; the private part is sealed with the master key.
/// Lifecycle by time: published at `publish_at`, signs from `activate_at` until `retire_at`,
/// stays published until `remove_at` (>= retire_at + the longest lifetime of a token it signed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER sealed with the master key (base64url).
    pub private_sealed: String,
    pub public_jwk: Value,
    pub created_at: UnixTime,
    pub publish_at: UnixTime,
    pub activate_at: UnixTime,
    pub retire_at: Option<UnixTime>,
    pub remove_at: Option<UnixTime>,
}

/// The authorization a user gave a client; codes, refresh tokens and access tokens hang off it,
/// so reuse of a code or refresh token can revoke everything derived from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub auth_time: Option<UnixTime>,
    pub session_id: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// An authorization code (RFC 6749 §4.1.2): single use, short-lived, bound to client,
/// redirect URI and PKCE challenge. Stored under a hash of the code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthCode {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub subject: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub session_id: Option<String>,
    /// Claims to place in the ID token / userinfo (principal attributes at login time).
    pub claims: Map<String, Value>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

// Returned once per redemption and matched at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CodeRedemption {
    /// First use: the code is now consumed.
    Redeemed(AuthCode),
    /// The code was already used (RFC 6749 §4.1.2: deny and revoke the grant).
    AlreadyUsed {
        grant_id: String,
    },
    NotFound,
}

/// A refresh token (stored under its hash); tokens of one grant form a rotation family.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub claims: Map<String, Value>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshRotation {
    /// The old token is now spent and the new one stored.
    Rotated(RefreshToken),
    /// The old token had already been spent: reuse detected (revoke the family).
    Reused {
        grant_id: String,
    },
    NotFound,
}

/// A browser session (server side; the cookie holds a random id, the store its hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub id_hash: String,
    /// OIDC `sid` claim value (not the cookie value).
    pub sid: String,
    pub subject: String,
    pub username: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub claims: Map<String, Value>,
    /// Clients that received tokens in this session (for back-channel logout).
    pub clients: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}
