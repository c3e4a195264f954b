//! Service accounts with Google-format JSON key files, so off-the-shelf Google client
//! libraries (PyPI `google-auth`, Java, Go) obtain tokens from Tessera unchanged, and minting
//! assertions from such a key file (`tessera assertion mint`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_jose::{Algorithm, SigningKey};

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::model::{AuthMethod, Client, ClientOrigin, ServiceAccount};
use crate::oauth::grant_type;
use crate::oauth::scope::Scope;
use crate::secrets::{random_bytes, random_token};
use crate::settings::{Settings, paths};
use crate::store::StoreError;

/// The JSON key file Google issues for service accounts (`type: service_account`), pointing at
/// this server. google-auth reads `client_email`, `private_key`, `private_key_id`, `token_uri`
/// (and `universe_domain`); the other members are informational.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKeyFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: String,
    /// The key's `kid`.
    pub private_key_id: String,
    /// RSA private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`), as Google issues.
    pub private_key: String,
    pub client_email: String,
    pub client_id: String,
    pub auth_uri: String,
    pub token_uri: String,
    pub auth_provider_x509_cert_url: String,
    pub client_x509_cert_url: String,
    pub universe_domain: String,
}

impl std::fmt::Display for ServiceAccountKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string_pretty(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(std::fmt::Error),
        }
    }
}

/// A service account ready to store, and its key file (the private key exists only there).
#[derive(Debug, Clone)]
pub struct NewServiceAccount {
    pub client: Client,
    pub key_file: ServiceAccountKeyFile,
}

fn bad(msg: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, msg.into())
}

/// Names: 1–63 of `a-z A-Z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_account_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Build a service account `NAME@<issuer host>`: an RSA-2048 key (RS256, `kid` = 40 hex
/// characters like Google's `private_key_id`), the jwt-bearer grant only, no token-endpoint
/// authentication (the account proves itself with its grant assertion).
pub fn new_service_account(
    settings: &Settings,
    name: &str,
    may_impersonate: Vec<String>,
    scope: Option<String>,
    now: UnixTime,
) -> OAuthResult<NewServiceAccount> {
    if !valid_account_name(name) {
        return Err(bad(format!(
            "service account name '{name}' is invalid: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )));
    }
    if let Some(s) = &scope {
        let supported = Scope::from_tokens(settings.scopes_supported.iter().cloned());
        Scope::parse(s)?.ensure_within(&supported, "this server")?;
    }
    if let Some(p) = may_impersonate.iter().find(|p| p.is_empty()) {
        return Err(bad(format!("impersonation pattern '{p}' is empty")));
    }
    let host = url::Url::parse(&settings.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .ok_or_else(|| OAuthError::server_error("the issuer has no host"))?;
    let email = format!("{name}@{host}");
    let kid = hex::encode(random_bytes::<20>().map_err(OAuthError::server_error)?);
    let key =
        SigningKey::generate(Algorithm::RS256, kid.clone()).map_err(OAuthError::server_error)?;
    let mut jwk = serde_json::to_value(key.public_jwk()).map_err(OAuthError::server_error)?;
    if let Some(m) = jwk.as_object_mut() {
        m.insert("alg".into(), json!("RS256"));
        m.insert("use".into(), json!("sig"));
        m.insert("kid".into(), json!(kid));
    }
    let client = Client {
        client_id: email.clone(),
        client_name: Some(name.to_owned()),
        client_id_issued_at: now,
        grant_types: vec![grant_type::JWT_BEARER.to_owned()],
        response_types: Vec::new(),
        token_endpoint_auth_method: AuthMethod::None,
        token_endpoint_auth_signing_alg: Some("RS256".into()),
        jwks: Some(json!({ "keys": [jwk] })),
        scope,
        origin: ClientOrigin::Cli,
        service_account: Some(ServiceAccount {
            may_impersonate,
            description: None,
        }),
        extra: Map::new(),
        ..Client::default()
    };
    let jwks_url = settings.endpoint(paths::JWKS);
    let key_file = ServiceAccountKeyFile {
        kind: "service_account".into(),
        project_id: host,
        private_key_id: kid,
        private_key: key.to_pkcs8_pem().to_string(),
        client_email: email.clone(),
        client_id: email,
        auth_uri: settings.endpoint(paths::AUTHORIZE),
        token_uri: settings.token_endpoint(),
        auth_provider_x509_cert_url: jwks_url.clone(),
        client_x509_cert_url: jwks_url,
        universe_domain: "googleapis.com".into(),
    };
    Ok(NewServiceAccount { client, key_file })
}

/// Create and store a service account; returns its key file (shown once, never stored).
pub async fn create_service_account(
    engine: &Engine,
    name: &str,
    may_impersonate: Vec<String>,
    scope: Option<String>,
    now: UnixTime,
) -> OAuthResult<ServiceAccountKeyFile> {
    let new = new_service_account(&engine.settings, name, may_impersonate, scope, now)?;
    match engine.store.create_client(&new.client).await {
        Ok(()) => Ok(new.key_file),
        Err(StoreError::Conflict(_)) => Err(bad(format!(
            "a client '{}' already exists",
            new.client.client_id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Options of `tessera assertion mint`.
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// Default: the key file's `token_uri`.
    pub audience: Option<String>,
    /// Impersonated subject (`sub`); default none (the account itself).
    pub subject: Option<String>,
    /// `scope` claim; default none.
    pub scope: Option<String>,
    /// Seconds; default 3600 (what google-auth makes).
    pub lifetime: Option<u64>,
    /// Add a random `jti` (single use).
    pub jti: bool,
}

/// Sign a jwt-bearer grant assertion with a Google-format key file (RS256, `kid` =
/// `private_key_id`), as google-auth would (plus the chosen options).
pub fn mint(key_file_json: &str, opts: &MintOptions, now: UnixTime) -> Result<String, String> {
    let kf: ServiceAccountKeyFile = serde_json::from_str(key_file_json)
        .map_err(|e| format!("not a service account key file: {e}"))?;
    if kf.kind != "service_account" {
        return Err(format!(
            "key file type is '{}', expected 'service_account'",
            kf.kind
        ));
    }
    let key =
        SigningKey::from_pkcs8_pem(Algorithm::RS256, kf.private_key_id.clone(), &kf.private_key)
            .map_err(|e| format!("private_key: {e}"))?;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(kf.client_email));
    claims.insert(
        "aud".into(),
        json!(opts.audience.clone().unwrap_or(kf.token_uri)),
    );
    claims.insert("iat".into(), json!(now));
    claims.insert(
        "exp".into(),
        json!(now + opts.lifetime.unwrap_or(3600) as i64),
    );
    if let Some(s) = &opts.subject {
        claims.insert("sub".into(), json!(s));
    }
    if let Some(s) = &opts.scope {
        claims.insert("scope".into(), json!(s));
    }
    if opts.jti {
        claims.insert(
            "jti".into(),
            json!(random_token().map_err(|e| e.to_string())?),
        );
    }
    key.sign_jwt(Some("JWT"), &Value::Object(claims))
        .map_err(|e| e.to_string())
}
