//! Client metadata validation and RFC 7591 / RFC 7592 dynamic registration. The CLI and the
//! configuration loader use the same validation, so every client obeys the same rules.

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use tessera_jose::{Algorithm, JwkSet};

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::model::{AuthMethod, Client, ClientOrigin};
use crate::oauth::grant_type;
use crate::oauth::scope::Scope;
use crate::secrets::{MasterKey, SecretError, random_token};
use crate::settings::paths;

fn bad_meta(msg: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, msg.into())
}
fn bad_redirect(msg: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, msg.into())
}

/// JWS algorithms clients may sign assertions with.
pub const CLIENT_ASSERTION_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS384,
    Algorithm::PS512,
];
pub const CLIENT_SECRET_JWT_ALGS: [Algorithm; 3] =
    [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// ID token algorithms this server can sign with.
pub const ID_TOKEN_ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// `localhost` or a loopback IP literal (RFC 8252 §7.3, §8.3). A name such as
/// `127.example.com` is not loopback, however it starts.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// RFC 3986 §2: a URI is ASCII drawn from the unreserved and reserved sets, with `%` only as
/// the start of a two-hex-digit escape.
fn is_uri_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'%' => {
            b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        }
        _ => c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c),
    })
}

/// Parse an absolute URI as the client registered it. The URL parser follows the WHATWG URL
/// standard, which repairs input: it strips surrounding spaces, drops tabs and newlines, reads
/// `\` as `/`, and reads `https:x` or `https:///x` as `https://x/`. A registered string is
/// compared byte for byte later, so it must already be a URI (RFC 6749 §3.1.2: an absolute URI
/// as defined by RFC 3986 §4.3), and an http(s) URI needs an authority with a host
/// (RFC 9110 §4.2).
fn parse_absolute_uri(s: &str) -> Option<url::Url> {
    if !is_uri_syntax(s) {
        return None;
    }
    let parsed = url::Url::parse(s).ok()?;
    if matches!(parsed.scheme(), "http" | "https") {
        let rest = s.get(parsed.scheme().len() + 1..)?;
        let authority = rest.strip_prefix("//")?;
        if authority.is_empty() || authority.starts_with(['/', '?', '#']) {
            return None;
        }
    }
    Some(parsed)
}

/// A redirect URI: absolute, no fragment (RFC 6749 §3.1.2), https — or http on loopback, or a
/// private-use scheme for native apps (RFC 8252 §7).
pub fn validate_redirect_uri(uri: &str, native: bool, allow_http: bool) -> OAuthResult<()> {
    let parsed = parse_absolute_uri(uri)
        .ok_or_else(|| bad_redirect(format!("redirect URI '{uri}' is not an absolute URI")))?;
    if parsed.fragment().is_some() {
        return Err(bad_redirect(format!(
            "redirect URI '{uri}' must not contain a fragment"
        )));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) || allow_http => Ok(()),
        "http" => Err(bad_redirect(format!(
            "redirect URI '{uri}' must use https (http is allowed only on loopback)"
        ))),
        s if native && s.contains('.') => Ok(()),
        "javascript" | "data" | "file" | "vbscript" => Err(bad_redirect(format!(
            "redirect URI scheme of '{uri}' is not allowed"
        ))),
        _ => Err(bad_redirect(format!(
            "redirect URI '{uri}': custom schemes need application_type 'native' and a reverse-domain scheme"
        ))),
    }
}

fn string_field(meta: &Map<String, Value>, name: &str) -> OAuthResult<Option<String>> {
    match meta.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad_meta(format!("{name} must be a string"))),
    }
}

fn string_list(meta: &Map<String, Value>, name: &str) -> OAuthResult<Option<Vec<String>>> {
    match meta.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad_meta(format!("{name} must be an array of strings")))
            })
            .collect::<OAuthResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad_meta(format!("{name} must be an array of strings"))),
    }
}

fn https_uri(meta: &Map<String, Value>, name: &str) -> OAuthResult<Option<String>> {
    let Some(v) = string_field(meta, name)? else {
        return Ok(None);
    };
    match parse_absolute_uri(&v) {
        Some(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
            Ok(Some(v))
        }
        _ => Err(bad_meta(format!("{name} must be an https URL"))),
    }
}

/// Back-Channel Logout 1.0 §2.2: an absolute URI without a fragment, https; http only for a
/// confidential client and where the OP allows it — here, as for redirect URIs, on loopback (a
/// receiver on the server's own host, e.g. in development).
fn backchannel_logout_uri(
    meta: &Map<String, Value>,
    confidential: bool,
) -> OAuthResult<Option<String>> {
    let Some(v) = string_field(meta, "backchannel_logout_uri")? else {
        return Ok(None);
    };
    let u = parse_absolute_uri(&v)
        .ok_or_else(|| bad_meta("backchannel_logout_uri must be an absolute https URL"))?;
    if u.fragment().is_some() {
        return Err(bad_meta(
            "backchannel_logout_uri must not contain a fragment",
        ));
    }
    match u.scheme() {
        "https" => Ok(Some(v)),
        "http" if is_loopback(&u) && confidential => Ok(Some(v)),
        "http" if is_loopback(&u) => Err(bad_meta(
            "backchannel_logout_uri may use http only for a confidential client",
        )),
        _ => Err(bad_meta(
            "backchannel_logout_uri must be an https URL (http is allowed only on loopback)",
        )),
    }
}

/// Build a client from RFC 7591 metadata, applying defaults and every consistency rule.
/// Secrets and ids are not set here.
pub fn client_from_metadata(
    meta: &Value,
    settings: &crate::settings::Settings,
) -> OAuthResult<Client> {
    let Value::Object(meta) = meta else {
        return Err(bad_meta("client metadata must be a JSON object"));
    };
    let application_type = string_field(meta, "application_type")?.unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err(bad_meta("application_type must be 'web' or 'native'"));
    }
    let native = application_type == "native";

    let method = match string_field(meta, "token_endpoint_auth_method")? {
        None => AuthMethod::ClientSecretBasic,
        Some(m) => AuthMethod::parse(&m).ok_or_else(|| {
            bad_meta(format!("token_endpoint_auth_method '{m}' is not supported"))
        })?,
    };
    // RFC 7591 §2: defaults are ["authorization_code"] and ["code"].
    let grant_types = string_list(meta, "grant_types")?
        .unwrap_or_else(|| vec![grant_type::AUTHORIZATION_CODE.into()]);
    let response_types = string_list(meta, "response_types")?.unwrap_or_else(|| {
        if grant_types
            .iter()
            .any(|g| g == grant_type::AUTHORIZATION_CODE)
        {
            vec!["code".into()]
        } else {
            vec![]
        }
    });
    for g in &grant_types {
        if !grant_type::ALL.contains(&g.as_str()) {
            return Err(bad_meta(format!("grant type '{g}' is not supported")));
        }
    }
    for r in &response_types {
        if r != "code" {
            return Err(bad_meta(format!(
                "response type '{r}' is not supported (only 'code')"
            )));
        }
    }
    // RFC 7591 §2.1: grant_types and response_types must agree.
    let has_code_grant = grant_types
        .iter()
        .any(|g| g == grant_type::AUTHORIZATION_CODE);
    if has_code_grant != response_types.iter().any(|r| r == "code") {
        return Err(bad_meta(
            "grant_types 'authorization_code' and response_types 'code' must be registered together",
        ));
    }
    if method == AuthMethod::None
        && grant_types
            .iter()
            .any(|g| g == grant_type::CLIENT_CREDENTIALS)
    {
        return Err(bad_meta(
            "public clients (token_endpoint_auth_method 'none') cannot use client_credentials",
        ));
    }

    let redirect_uris = string_list(meta, "redirect_uris")?.unwrap_or_default();
    if has_code_grant && redirect_uris.is_empty() {
        return Err(bad_redirect(
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    for u in &redirect_uris {
        validate_redirect_uri(u, native, settings.dangerous_allow_http_redirects)?;
    }
    let post_logout_redirect_uris =
        string_list(meta, "post_logout_redirect_uris")?.unwrap_or_default();
    for u in &post_logout_redirect_uris {
        validate_redirect_uri(u, native, settings.dangerous_allow_http_redirects)?;
    }

    // RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
    let jwks = meta.get("jwks").filter(|v| !v.is_null()).cloned();
    let jwks_uri = https_uri(meta, "jwks_uri")?;
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(bad_meta("jwks and jwks_uri must not both be present"));
    }
    if let Some(j) = &jwks {
        let set: JwkSet = serde_json::from_value(j.clone())
            .map_err(|e| bad_meta(format!("jwks is not a JWK Set: {e}")))?;
        if set.keys.is_empty() {
            return Err(bad_meta("jwks has no keys"));
        }
        for k in &set.keys {
            k.to_verifying_key()
                .map_err(|e| bad_meta(format!("jwks: {e}")))?;
        }
    }
    if method == AuthMethod::PrivateKeyJwt && jwks.is_none() && jwks_uri.is_none() {
        return Err(bad_meta("private_key_jwt needs jwks or jwks_uri"));
    }

    let signing_alg = string_field(meta, "token_endpoint_auth_signing_alg")?;
    if let Some(a) = &signing_alg {
        let alg: Algorithm = a.parse().map_err(|_| {
            bad_meta(format!(
                "token_endpoint_auth_signing_alg '{a}' is not supported"
            ))
        })?;
        let allowed: &[Algorithm] = match method {
            AuthMethod::PrivateKeyJwt => &CLIENT_ASSERTION_ALGS,
            AuthMethod::ClientSecretJwt => &CLIENT_SECRET_JWT_ALGS,
            _ => &[],
        };
        if !allowed.contains(&alg) {
            return Err(bad_meta(format!(
                "token_endpoint_auth_signing_alg '{a}' does not fit token_endpoint_auth_method '{}'",
                method.as_str()
            )));
        }
    }
    let id_alg = string_field(meta, "id_token_signed_response_alg")?;
    if let Some(a) = &id_alg {
        let ok = a
            .parse::<Algorithm>()
            .is_ok_and(|alg| ID_TOKEN_ALGS.contains(&alg));
        if !ok {
            return Err(bad_meta(format!(
                "id_token_signed_response_alg '{a}' is not supported"
            )));
        }
    }

    let scope = string_field(meta, "scope")?;
    if let Some(s) = &scope {
        let supported = Scope::from_tokens(settings.scopes_supported.iter().cloned());
        Scope::parse(s)
            .map_err(|_| bad_meta("scope is malformed"))?
            .ensure_within(&supported, "this server")
            .map_err(|e| bad_meta(e.description.map(|d| d.into_owned()).unwrap_or_default()))?;
    }
    let backchannel_logout_uri = backchannel_logout_uri(meta, method != AuthMethod::None)?;
    let backchannel_logout_session_required = match meta.get("backchannel_logout_session_required")
    {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad_meta(
                "backchannel_logout_session_required must be a boolean",
            ));
        }
    };
    Ok(Client {
        client_name: string_field(meta, "client_name")?,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        token_endpoint_auth_signing_alg: signing_alg,
        jwks,
        jwks_uri,
        scope,
        id_token_signed_response_alg: id_alg,
        require_pkce: method == AuthMethod::None,
        backchannel_logout_uri,
        backchannel_logout_session_required,
        application_type: Some(application_type),
        contacts: string_list(meta, "contacts")?.unwrap_or_default(),
        client_uri: https_uri(meta, "client_uri")?,
        logo_uri: https_uri(meta, "logo_uri")?,
        policy_uri: https_uri(meta, "policy_uri")?,
        tos_uri: https_uri(meta, "tos_uri")?,
        ..Client::default()
    })
}

/// The registered metadata as RFC 7591 §3.2.1 returns it.
pub fn client_metadata(client: &Client) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("client_id", json!(client.client_id));
    put("client_id_issued_at", json!(client.client_id_issued_at));
    put("client_name", json!(client.client_name));
    put("redirect_uris", json!(client.redirect_uris));
    if !client.post_logout_redirect_uris.is_empty() {
        put(
            "post_logout_redirect_uris",
            json!(client.post_logout_redirect_uris),
        );
    }
    put("grant_types", json!(client.grant_types));
    put("response_types", json!(client.response_types));
    put(
        "token_endpoint_auth_method",
        json!(client.token_endpoint_auth_method.as_str()),
    );
    put(
        "token_endpoint_auth_signing_alg",
        json!(client.token_endpoint_auth_signing_alg),
    );
    put("jwks", json!(client.jwks));
    put("jwks_uri", json!(client.jwks_uri));
    put("scope", json!(client.scope));
    put(
        "id_token_signed_response_alg",
        json!(client.id_token_signed_response_alg),
    );
    put(
        "backchannel_logout_uri",
        json!(client.backchannel_logout_uri),
    );
    if client.backchannel_logout_uri.is_some() {
        put(
            "backchannel_logout_session_required",
            json!(client.backchannel_logout_session_required),
        );
    }
    put("application_type", json!(client.application_type));
    if !client.contacts.is_empty() {
        put("contacts", json!(client.contacts));
    }
    put("client_uri", json!(client.client_uri));
    put("logo_uri", json!(client.logo_uri));
    put("policy_uri", json!(client.policy_uri));
    put("tos_uri", json!(client.tos_uri));
    if client.token_endpoint_auth_method.uses_secret() {
        put(
            "client_secret_expires_at",
            json!(client.client_secret_expires_at),
        );
    }
    m
}

/// A new secret for `client`: returns the plaintext (shown once) and stores only its keyed
/// hash — plus a sealed copy for `client_secret_jwt`, which needs the secret as an HMAC key.
pub fn set_new_secret(engine: &Engine, client: &mut Client) -> OAuthResult<String> {
    let secret = crate::secrets::random_client_secret().map_err(OAuthError::server_error)?;
    set_secret(&engine.master, client, &secret).map_err(OAuthError::server_error)?;
    Ok(secret)
}

/// Store `secret` for `client`: its keyed hash, and for `client_secret_jwt` a sealed copy.
pub fn set_secret(
    master: &MasterKey,
    client: &mut Client,
    secret: &str,
) -> Result<(), SecretError> {
    client.secret_hash = Some(master.hash_client_secret(secret));
    client.secret_sealed = if client.token_endpoint_auth_method == AuthMethod::ClientSecretJwt {
        Some(master.seal(secret.as_bytes(), &client_secret_context(&client.client_id))?)
    } else {
        None
    };
    Ok(())
}

/// Associated data binding a sealed client secret to its client.
pub fn client_secret_context(client_id: &str) -> String {
    format!("client-secret:{client_id}")
}

/// Server-provisioned values of a dynamically registered client, returned in the client
/// information response (RFC 7591 §3.2.1: "including any fields provisioned by the
/// authorization server itself").
fn provision_defaults(client: &mut Client) {
    // OIDC Registration §2: an omitted id_token_signed_response_alg means RS256. The server-wide
    // default (`tokens.id_token_alg`, which may be another alg) applies to clients the operator
    // declares; a client that registers itself gets RS256, and is told so.
    if client.id_token_signed_response_alg.is_none()
        && client.allows_grant(grant_type::AUTHORIZATION_CODE)
    {
        client.id_token_signed_response_alg = Some(Algorithm::RS256.to_string());
    }
}

fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let v = authorization?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn invalid_token(msg: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, msg)
        .with_challenge(Some(crate::error::AuthScheme::Bearer))
}

impl Engine {
    /// RFC 7591 §3.2.1 / RFC 7592 §3: the client information response. `rat` is the
    /// registration access token, REQUIRED in every such response (RFC 7592 §3): the new one on
    /// registration, the one the request presented (and that was just verified) on read and
    /// update — only its keyed hash is stored, so it cannot be read back.
    fn registration_response(&self, client: &Client, secret: Option<String>, rat: &str) -> Value {
        let mut m = client_metadata(client);
        if let Some(s) = secret {
            m.insert("client_secret".into(), json!(s));
        }
        m.insert("registration_access_token".into(), json!(rat));
        m.insert(
            "registration_client_uri".into(),
            json!(format!(
                "{}{}/{}",
                self.settings.issuer,
                paths::REGISTER,
                client.client_id
            )),
        );
        Value::Object(m)
    }

    /// The ID-token algorithms this server signs with now: those of [`ID_TOKEN_ALGS`] that have
    /// an active key (`keys.algs` decides; EdDSA is not there by default). Discovery lists
    /// exactly these (OIDC Discovery §3) and registration accepts only these.
    pub fn id_token_algs(&self) -> Vec<Algorithm> {
        let keyed = self.keys.signing_algs(self.now());
        ID_TOKEN_ALGS
            .iter()
            .copied()
            .filter(|a| keyed.contains(a))
            .collect()
    }

    /// OIDC Registration §2 `id_token_signed_response_alg`: refuse an algorithm this server
    /// has no key for, rather than accept the client and fail its every code exchange.
    pub fn check_id_token_alg(&self, client: &Client) -> OAuthResult<()> {
        let Some(a) = &client.id_token_signed_response_alg else {
            return Ok(());
        };
        let offered = self.id_token_algs();
        if a.parse::<Algorithm>()
            .is_ok_and(|alg| offered.contains(&alg))
        {
            return Ok(());
        }
        let list: Vec<String> = offered.iter().map(|a| a.to_string()).collect();
        Err(bad_meta(format!(
            "id_token_signed_response_alg '{a}' is not enabled on this server (it signs ID tokens with {}; an operator can add the algorithm to keys.algs)",
            list.join(", ")
        )))
    }

    /// RFC 7591 §3: register a client. Guarded by the initial access token.
    pub async fn register_client(
        &self,
        authorization: Option<&str>,
        metadata: &Value,
        now: UnixTime,
    ) -> OAuthResult<Value> {
        let Some(expected) = &self.settings.registration_initial_access_token else {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "dynamic client registration is disabled",
            ));
        };
        let presented = bearer_token(authorization)
            .ok_or_else(|| invalid_token("an initial access token is required"))?;
        if !bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(invalid_token("the initial access token is invalid"));
        }
        let mut client = client_from_metadata(metadata, &self.settings)?;
        provision_defaults(&mut client);
        self.check_id_token_alg(&client)?;
        client.client_id = random_token().map_err(OAuthError::server_error)?[..22].to_owned();
        client.client_id_issued_at = now;
        client.origin = ClientOrigin::Dynamic;
        let secret = if client.token_endpoint_auth_method.uses_secret() {
            Some(set_new_secret(self, &mut client)?)
        } else {
            None
        };
        let rat = random_token().map_err(OAuthError::server_error)?;
        client.registration_access_token_hash = Some(self.master.hash_token(&rat));
        self.store.create_client(&client).await?;
        Ok(self.registration_response(&client, secret, &rat))
    }

    /// RFC 7592 §2: authenticate a management request by its registration access token.
    /// Returns the client and the token it presented.
    async fn managed_client<'a>(
        &self,
        client_id: &str,
        authorization: Option<&'a str>,
    ) -> OAuthResult<(Client, &'a str)> {
        let token = bearer_token(authorization)
            .ok_or_else(|| invalid_token("a registration access token is required"))?;
        let hash = self.master.hash_token(token);
        match self.store.get_client(client_id).await? {
            Some(c)
                if c.registration_access_token_hash
                    .as_deref()
                    .is_some_and(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes()))) =>
            {
                Ok((c, token))
            }
            // §2: an unknown client and a wrong token look the same (401).
            _ => Err(invalid_token("the registration access token is invalid")),
        }
    }

    pub async fn read_registration(
        &self,
        client_id: &str,
        authorization: Option<&str>,
    ) -> OAuthResult<Value> {
        let (client, rat) = self.managed_client(client_id, authorization).await?;
        Ok(self.registration_response(&client, None, rat))
    }

    /// RFC 7592 §2.2: replace the metadata. `client_id` must match; a `client_secret`, if sent,
    /// must be the current one (the server does not let clients choose secrets).
    pub async fn update_registration(
        &self,
        client_id: &str,
        authorization: Option<&str>,
        metadata: &Value,
    ) -> OAuthResult<Value> {
        let (current, rat) = self.managed_client(client_id, authorization).await?;
        let Value::Object(m) = metadata else {
            return Err(bad_meta("client metadata must be a JSON object"));
        };
        // §2.2: the body MUST carry the current client_id. A missing or different one is an
        // invalid metadata value, answered with an RFC 7591 §3.2.2 error.
        if m.get("client_id").and_then(Value::as_str) != Some(client_id) {
            return Err(bad_meta(
                "client_id in the body must match the client being updated",
            ));
        }
        match m.get("client_secret") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                let ok = current
                    .secret_hash
                    .as_deref()
                    .is_some_and(|h| self.master.verify_client_secret(s, h));
                if !ok {
                    return Err(bad_meta("client_secret does not match the current secret"));
                }
            }
            Some(_) => return Err(bad_meta("client_secret must be a string")),
        }
        let mut stripped = m.clone();
        for k in [
            "client_id",
            "client_secret",
            "registration_access_token",
            "registration_client_uri",
            "client_id_issued_at",
            "client_secret_expires_at",
        ] {
            stripped.remove(k);
        }
        let mut updated = client_from_metadata(&Value::Object(stripped), &self.settings)?;
        provision_defaults(&mut updated);
        self.check_id_token_alg(&updated)?;
        updated.client_id = current.client_id.clone();
        updated.client_id_issued_at = current.client_id_issued_at;
        updated.origin = current.origin;
        updated.registration_access_token_hash = current.registration_access_token_hash.clone();
        let mut new_secret = None;
        if updated.token_endpoint_auth_method.uses_secret() {
            if current.secret_hash.is_some()
                && (updated.token_endpoint_auth_method != AuthMethod::ClientSecretJwt
                    || current.secret_sealed.is_some())
            {
                updated.secret_hash = current.secret_hash.clone();
                updated.secret_sealed = current.secret_sealed.clone();
                updated.client_secret_expires_at = current.client_secret_expires_at;
            } else {
                new_secret = Some(set_new_secret(self, &mut updated)?);
            }
        }
        self.store.put_client(&updated).await?;
        self.forget_client(client_id);
        Ok(self.registration_response(&updated, new_secret, rat))
    }

    pub async fn delete_registration(
        &self,
        client_id: &str,
        authorization: Option<&str>,
    ) -> OAuthResult<()> {
        self.managed_client(client_id, authorization).await?;
        self.store.delete_client(client_id).await?;
        self.forget_client(client_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn s() -> Settings {
        Settings::new("https://id.example.com")
    }

    fn err(meta: Value) -> OAuthError {
        client_from_metadata(&meta, &s()).unwrap_err()
    }

    #[test]
    fn defaults_follow_rfc7591() {
        let c = client_from_metadata(&json!({"redirect_uris": ["https://rp.example/cb"]}), &s())
            .unwrap();
        assert_eq!(c.grant_types, vec!["authorization_code"]);
        assert_eq!(c.response_types, vec!["code"]);
        assert_eq!(c.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn rejects_inconsistent_or_bad_metadata() {
        assert_eq!(
            err(json!({"grant_types": ["authorization_code"], "response_types": []})).code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            err(json!({"grant_types": ["authorization_code"]})).code,
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            err(json!({"redirect_uris": ["http://rp.example/cb"]})).code,
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            err(json!({"redirect_uris": ["https://rp.example/cb#x"]})).code,
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            err(json!({"grant_types": ["password"], "response_types": []})).code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            err(
                json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
            )
            .code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(err(json!({"grant_types": ["client_credentials"], "jwks": {"keys": []}, "jwks_uri": "https://x.example/j"})).code, ErrorCode::InvalidClientMetadata);
        assert_eq!(err(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"})).code, ErrorCode::InvalidClientMetadata);
        assert_eq!(err(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": "RS256"})).code, ErrorCode::InvalidClientMetadata);
        assert_eq!(err(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_signing_alg": "none"})).code, ErrorCode::InvalidClientMetadata);
        assert_eq!(
            err(json!({"grant_types": ["client_credentials"], "scope": "openid admin"})).code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(err(json!("nope")).code, ErrorCode::InvalidClientMetadata);
        assert_eq!(
            err(json!({"redirect_uris": "https://a.example"})).code,
            ErrorCode::InvalidClientMetadata
        );
    }

    #[test]
    fn loopback_http_and_native_schemes() {
        assert!(validate_redirect_uri("http://127.0.0.1:8080/cb", false, false).is_ok());
        assert!(validate_redirect_uri("http://localhost/cb", false, false).is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb", true, false).is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb", false, false).is_err());
        assert!(validate_redirect_uri("javascript:alert(1)", true, false).is_err());
        assert!(validate_redirect_uri("http://127.0.0.2/cb", false, false).is_ok());
        assert!(validate_redirect_uri("http://[::1]:8080/cb", false, false).is_ok());
        // A DNS name is not loopback because it starts with "127.".
        assert!(validate_redirect_uri("http://127.rp.example/cb", false, false).is_err());
    }

    #[test]
    fn registered_uris_must_already_be_rfc3986_absolute_uris() {
        // The URL parser repairs each of these into a valid URL; the registered string itself
        // is not one (RFC 6749 §3.1.2, RFC 3986 §4.3), so it is refused, not stored as sent.
        for uri in [
            " https://rp.example/cb",
            "https://rp.example/cb ",
            "https://rp.example/c\tb",
            "https://rp.example/c\nb",
            "https://rp.example\\cb",
            "https:///cb",
            "https:/rp.example/cb",
            "https:rp.example/cb",
            "http:127.0.0.1/cb",
            "https://rp.example/c b",
            "https://rp.example/cb?x=%zz",
            "https://rp.example/cb?x=%4",
            "https://rp.example/\u{e9}",
            "https://rp.example/cb?x=<y>",
        ] {
            let e = validate_redirect_uri(uri, false, false).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRedirectUri, "{uri:?}");
            for field in ["jwks_uri", "logo_uri", "backchannel_logout_uri"] {
                let e = err(json!({"grant_types": ["client_credentials"], field: uri}));
                assert_eq!(e.code, ErrorCode::InvalidClientMetadata, "{field} {uri:?}");
            }
        }
        for uri in [
            "https://rp.example/cb",
            "HTTPS://RP.EXAMPLE/cb",
            "https://rp.example:8443/cb?x=%2F&y=[1]",
            "https://rp.example",
            "http://[::1]:8080/cb",
        ] {
            assert!(validate_redirect_uri(uri, false, false).is_ok(), "{uri}");
        }
        assert!(validate_redirect_uri("com.example.app:/cb", true, false).is_ok());
    }

    #[test]
    fn backchannel_logout_uri_is_https_or_loopback_http_for_confidential_clients() {
        let bcl = |uri: &str, method: &str| {
            client_from_metadata(
                &json!({
                    "redirect_uris": ["https://rp.example/cb"],
                    "token_endpoint_auth_method": method,
                    "backchannel_logout_uri": uri,
                }),
                &s(),
            )
            .map(|c| c.backchannel_logout_uri)
        };
        for uri in [
            "https://rp.example/bcl?tenant=1",
            "http://127.0.0.1:8080/bcl",
            "http://localhost/bcl",
            "http://[::1]/bcl",
        ] {
            assert_eq!(
                bcl(uri, "client_secret_basic").unwrap().as_deref(),
                Some(uri)
            );
        }
        assert!(bcl("https://rp.example/bcl", "none").is_ok());
        for (uri, method) in [
            ("http://127.0.0.1:8080/bcl", "none"),
            ("http://rp.example/bcl", "client_secret_basic"),
            ("http://127.rp.example/bcl", "client_secret_basic"),
            ("https://rp.example/bcl#x", "client_secret_basic"),
            ("/bcl", "client_secret_basic"),
        ] {
            assert_eq!(
                bcl(uri, method).unwrap_err().code,
                ErrorCode::InvalidClientMetadata,
                "{uri} {method}"
            );
        }
    }
}
