//! Raw configuration → [`Config`]: every semantic rule, each error located.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tessera_core::lockout::LockoutPolicy;
use tessera_core::registration::{ID_TOKEN_ALGS, client_from_metadata};
use tessera_core::secret::Secret;
use tessera_core::secrets::MasterKey;
use tessera_core::settings::Settings;
use tessera_jose::Algorithm;

use super::*;

// ---------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------

pub(super) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// RFC 8414 §2 issuer: https (http only on loopback), no query, fragment or credentials.
pub(super) fn validate_issuer(issuer: &str, allow_http: bool) -> Result<String, String> {
    let url =
        url::Url::parse(issuer).map_err(|e| format!("'{issuer}' is not an absolute URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "'{issuer}' must not have a query or fragment (RFC 8414 §2)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("'{issuer}' must not contain credentials"));
    }
    let Some(host) = url.host() else {
        return Err(format!("'{issuer}' has no host"));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) || allow_http => {}
        "http" => {
            return Err(format!(
                "'{issuer}' uses http on a non-loopback host; use the public https URL clients see (TLS is \
                 usually terminated by a reverse proxy), or for a development network only set \
                 dangerous.allow_http_issuer = true"
            ));
        }
        other => {
            return Err(format!(
                "'{issuer}': scheme '{other}' is not allowed (use https)"
            ));
        }
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// Client ids chosen by people (CLI, config): short and URL-safe.
pub fn validate_client_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    if id.is_empty() || id.len() > 128 || !id.chars().all(ok_char) {
        return Err(format!(
            "client id '{id}' must be 1 to 128 characters from A-Z a-z 0-9 - _ . @"
        ));
    }
    Ok(())
}

pub(super) fn validate(
    raw: RawConfig,
    loc: &Locator,
    env: &Env,
    base_dir: &Path,
    source: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let mut errors: Vec<String> = Vec::new();
    let mut err = |path: &str, msg: String| errors.push(loc.error(path, msg));

    let listen: SocketAddr = match raw.listen.parse() {
        Ok(a) => a,
        Err(_) => {
            err(
                "listen",
                format!(
                    "'{}' is not an IP address and port like 127.0.0.1:8080",
                    raw.listen
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }
    };
    let issuer = match &raw.issuer {
        Some(i) => match validate_issuer(i, raw.dangerous.allow_http_issuer) {
            Ok(i) => Some(i),
            Err(e) => {
                err("issuer", e);
                None
            }
        },
        None => {
            if !listen.ip().is_loopback() {
                err(
                    "issuer",
                    format!(
                        "not set, and listen address {listen} is not loopback: set issuer to the public \
                         https URL clients use (e.g. issuer = \"https://id.example.com\")"
                    ),
                );
            }
            None
        }
    };

    if raw.data_dir.trim().is_empty() {
        err("data_dir", "must not be empty".into());
    }
    let data_dir = PathBuf::from(&raw.data_dir);
    let store = match &raw.database_url {
        Some(url) if url.trim().is_empty() => {
            err(
                "database_url",
                "must not be empty (remove it to use SQLite in data_dir)".into(),
            );
            StoreLocation {
                url: String::new(),
                display: String::new(),
            }
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreLocation {
                url: url.clone(),
                display: redact_url_password(url),
            }
        }
        Some(url) => {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            if url.contains("://") && !url.starts_with("sqlite://") {
                err(
                    "database_url",
                    format!(
                        "unsupported URL scheme in '{}' (use postgres://… or sqlite:PATH)",
                        redact_url_password(url)
                    ),
                );
            }
            StoreLocation {
                url: url.clone(),
                display: format!("sqlite:{path}"),
            }
        }
        None => {
            let path = data_dir.join(SQLITE_FILE);
            StoreLocation {
                url: path.display().to_string(),
                display: format!("sqlite:{}", path.display()),
            }
        }
    };

    let master_key = match (&raw.master_key, &raw.master_key_file) {
        (Some(_), Some(_)) => {
            err(
                "master_key",
                "set master_key or master_key_file, not both".into(),
            );
            MasterKeySource::Inline(Secret::default())
        }
        (Some(k), None) => {
            if let Err(e) = MasterKey::parse(k.expose()) {
                err(
                    "master_key",
                    format!("{e}; generate one with `openssl rand -hex 32`"),
                );
            }
            MasterKeySource::Inline(Secret::new(k.expose()))
        }
        (None, Some(p)) => MasterKeySource::File {
            path: PathBuf::from(p),
            generate: false,
        },
        (None, None) => MasterKeySource::File {
            path: data_dir.join(MASTER_KEY_FILE),
            generate: true,
        },
    };

    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        err(
            "log.level",
            format!(
                "'{}' is not a log filter ({e}); try info, debug or warn,tessera=debug",
                raw.log.level
            ),
        );
    }

    let mut settings = Settings::new("http://placeholder.invalid");
    let t = &raw.tokens;
    for (key, value) in [
        ("tokens.access_token_ttl", t.access_token_ttl),
        ("tokens.id_token_ttl", t.id_token_ttl),
        ("tokens.code_ttl", t.code_ttl),
        ("tokens.refresh_token_ttl", t.refresh_token_ttl),
        ("tokens.session_ttl", t.session_ttl),
        (
            "oauth.max_assertion_lifetime",
            raw.oauth.max_assertion_lifetime,
        ),
        ("keys.rotation_period", raw.keys.rotation_period),
        ("keys.jwks_max_age", raw.keys.jwks_max_age),
        ("keys.refresh_interval", raw.keys.refresh_interval),
    ] {
        if value == 0 {
            err(key, "must be greater than 0".into());
        }
    }
    if t.code_ttl > 600 {
        err(
            "tokens.code_ttl",
            format!(
                "{} s is too long: RFC 6749 §4.1.2 recommends at most 600",
                t.code_ttl
            ),
        );
    }
    let asymmetric =
        |a: Algorithm| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if !asymmetric(t.access_token_alg) {
        err(
            "tokens.access_token_alg",
            format!(
                "{} is symmetric; access tokens need a public-key algorithm such as ES256",
                t.access_token_alg
            ),
        );
    }
    if !ID_TOKEN_ALGS.contains(&t.id_token_alg) {
        err(
            "tokens.id_token_alg",
            format!(
                "{} is not supported for ID tokens (use RS256, ES256 or EdDSA)",
                t.id_token_alg
            ),
        );
    }
    for a in &raw.keys.algs {
        if !asymmetric(*a) {
            err(
                "keys.algs",
                format!("{a} is symmetric: signing keys must be public-key algorithms"),
            );
        }
    }
    if raw.keys.rotation_period <= raw.keys.jwks_max_age {
        err(
            "keys.rotation_period",
            format!(
                "must be longer than keys.jwks_max_age ({} s): a new key is published that long before it signs",
                raw.keys.jwks_max_age
            ),
        );
    }
    // Every node must load a new key between its publication and its activation.
    if raw.keys.refresh_interval > raw.keys.jwks_max_age / 2 {
        err(
            "keys.refresh_interval",
            format!(
                "must be at most half of keys.jwks_max_age ({} s), so every node loads a new key before it signs",
                raw.keys.jwks_max_age
            ),
        );
    }
    if raw.oauth.clock_skew > 300 {
        err(
            "oauth.clock_skew",
            "more than 300 s of tolerated clock skew hides broken clocks; fix NTP instead".into(),
        );
    }
    for s in &raw.oauth.scopes_supported {
        if s.is_empty()
            || s.chars()
                .any(|c| c == ' ' || c == '"' || c == '\\' || c.is_control())
        {
            err(
                "oauth.scopes_supported",
                format!("'{s}' is not a valid scope token (RFC 6749 §3.3)"),
            );
        }
    }
    if raw.http.max_body_bytes < 1024 {
        err("http.max_body_bytes", "must be at least 1024".into());
    }
    if raw.http.max_jwt_bytes < 512 || raw.http.max_jwt_bytes > raw.http.max_body_bytes {
        err(
            "http.max_jwt_bytes",
            "must be between 512 and http.max_body_bytes".into(),
        );
    }
    let initial_access_token = raw
        .registration
        .initial_access_token
        .as_ref()
        .map(|t| Secret::new(t.expose()));
    if initial_access_token
        .as_ref()
        .is_some_and(|t| t.expose().chars().count() < MIN_INITIAL_ACCESS_TOKEN_CHARS)
    {
        err(
            "registration.initial_access_token",
            format!(
                "is shorter than {MIN_INITIAL_ACCESS_TOKEN_CHARS} characters; generate one with `openssl rand -base64 32`"
            ),
        );
    }

    settings.access_token_ttl = t.access_token_ttl;
    settings.access_token_alg = t.access_token_alg;
    settings.access_token_audience = t.access_token_audience.clone();
    settings.id_token_ttl = t.id_token_ttl;
    settings.id_token_alg = t.id_token_alg;
    settings.code_ttl = t.code_ttl;
    settings.refresh_token_ttl = t.refresh_token_ttl;
    settings.session_ttl = t.session_ttl;
    settings.clock_skew = raw.oauth.clock_skew;
    settings.max_assertion_lifetime = raw.oauth.max_assertion_lifetime;
    settings.client_assertion_audience = raw.oauth.client_assertion_audience;
    settings.accept_google_audience = raw.oauth.accept_google_audience;
    settings.scopes_supported = raw.oauth.scopes_supported.clone();
    settings.key_rotation_period = raw.keys.rotation_period;
    settings.jwks_max_age = raw.keys.jwks_max_age;
    settings.registration_initial_access_token = initial_access_token;
    settings.max_body_bytes = raw.http.max_body_bytes;
    settings.max_jwt_bytes = raw.http.max_jwt_bytes;
    settings.dangerous_allow_http_redirects = raw.dangerous.allow_http_redirect_uris;
    settings.user_lockout = raw.lockout.users.apply(LockoutPolicy::users());
    settings.client_lockout = raw.lockout.clients.apply(LockoutPolicy::clients());
    settings.client_lockout_scope = raw.lockout.client_scope;
    for (name, p) in [
        ("users", &settings.user_lockout),
        ("clients", &settings.client_lockout),
    ] {
        if p.enabled && (p.threshold == 0 || p.reset_window == 0 || p.lock_duration == 0) {
            err(
                &format!("lockout.{name}"),
                "threshold, reset_window and lock_duration must be at least 1 (use mode = \"monitor_only\" to count without locking)".to_owned(),
            );
        }
        if let Some(pr) = p.progressive
            && (pr.factor < 1 || pr.max < p.lock_duration)
        {
            err(
                &format!("lockout.{name}.progressive"),
                format!(
                    "factor must be at least 1 and max at least lock_duration ({} s); got factor {}, max {}",
                    p.lock_duration, pr.factor, pr.max
                ),
            );
        }
    }
    if let Some(t) = &raw.admin_token {
        if t.expose().chars().count() < MIN_SECRET_CHARS {
            err(
                "admin_token",
                format!("must be at least {MIN_SECRET_CHARS} characters (use a random value)"),
            );
        }
        settings.admin_token = Some(Secret::new(t.expose()));
    }

    let mut clients = Vec::new();
    let mut seen_clients = BTreeSet::new();
    for (i, rc) in raw.clients.iter().enumerate() {
        let path = format!("clients[{i}]");
        match config_client(rc, &settings, env, base_dir) {
            Ok(c) => {
                if let Some(msg) = unkeyed_id_token_alg(&c.client, &settings, &raw.keys.algs) {
                    err(&format!("{path}.id_token_signed_response_alg"), msg);
                }
                if !seen_clients.insert(c.client.client_id.clone()) {
                    err(
                        &format!("{path}.client_id"),
                        format!("client id '{}' is declared twice", c.client.client_id),
                    );
                }
                clients.push(c);
            }
            Err((key, msg)) => err(&format!("{path}{key}"), msg),
        }
    }

    let mut seen_issuers = BTreeSet::new();
    for (i, t) in raw.trusted_issuers.iter().enumerate() {
        match trusted_issuer(t) {
            Ok(t) => {
                if !seen_issuers.insert(t.issuer.clone()) {
                    err(
                        &format!("trusted_issuers[{i}].issuer"),
                        format!("issuer '{}' is declared twice", t.issuer),
                    );
                }
                settings.trusted_issuers.push(t);
            }
            Err(msg) => err(&format!("trusted_issuers[{i}]"), msg),
        }
    }

    let mut providers = Vec::new();
    let mut seen_providers = BTreeSet::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let path = format!("providers[{i}].name");
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            err(
                &path,
                format!("'{}' must be non-empty, from A-Z a-z 0-9 - _", p.name),
            );
        }
        if !seen_providers.insert(p.name.clone()) {
            err(&path, format!("provider name '{}' is used twice", p.name));
        }
        let settings = match (&p.kind, &p.ldap) {
            (ProviderKind::Ldap, Some(l)) => ProviderSettings::Ldap(Box::new(l.clone())),
            _ => ProviderSettings::Local,
        };
        providers.push(ProviderConfig {
            name: p.name.clone(),
            flag: p.flag,
            settings,
        });
    }

    let (upstreams, upstream_errors) =
        super::upstream::validate_upstreams(&raw.upstreams, env, base_dir);
    for (path, msg) in upstream_errors {
        err(&path, msg);
    }

    if !errors.is_empty() {
        return Err(ConfigError(errors));
    }
    Ok(Config {
        source,
        listen,
        issuer,
        data_dir,
        store,
        master_key,
        log: LogSettings {
            level: raw.log.level.clone(),
            format: raw.log.format,
        },
        settings,
        key_algs: raw.keys.algs.clone(),
        key_refresh_interval: Duration::from_secs(raw.keys.refresh_interval),
        clients,
        providers,
        upstreams,
        raw,
    })
}

/// A `[[trusted_issuers]]` entry, checked by the core's own rules. `jwks` may also be given as a
/// string holding the JWK Set as JSON (pasted from the issuer's `jwks_uri`).
pub(super) fn trusted_issuer(
    t: &tessera_core::assertion::TrustedIssuer,
) -> Result<tessera_core::assertion::TrustedIssuer, String> {
    let mut t = t.clone();
    if let Some(Json::String(text)) = &t.jwks {
        let doc: Json = serde_json::from_str(text)
            .map_err(|e| format!("jwks is a string but not a JSON JWK Set: {e}"))?;
        t.jwks = Some(doc);
    }
    t.validate()?;
    Ok(t)
}

/// A client's `id_token_signed_response_alg` that no key will sign: only the two token
/// algorithms and `keys.algs` get keys (see `Config::signing_algs`).
fn unkeyed_id_token_alg(
    client: &tessera_core::model::Client,
    settings: &Settings,
    key_algs: &[Algorithm],
) -> Option<String> {
    let alg: Algorithm = client
        .id_token_signed_response_alg
        .as_deref()?
        .parse()
        .ok()?;
    let keyed =
        alg == settings.id_token_alg || alg == settings.access_token_alg || key_algs.contains(&alg);
    (!keyed).then(|| format!("{alg} has no signing key on this server: add \"{alg}\" to keys.algs"))
}

/// A `[[clients]]` entry → a validated client. Errors are (`.key` suffix, message).
pub(super) fn config_client(
    rc: &RawClient,
    settings: &Settings,
    env: &Env,
    base_dir: &Path,
) -> Result<ConfigClient, (String, String)> {
    validate_client_id(&rc.client_id).map_err(|e| (".client_id".into(), e))?;
    let mut meta = serde_json::Map::new();
    let mut put = |k: &str, v: Json| {
        if !v.is_null() {
            meta.insert(k.into(), v);
        }
    };
    put("client_name", json!(rc.client_name));
    put("redirect_uris", json!(rc.redirect_uris));
    put(
        "post_logout_redirect_uris",
        json!(rc.post_logout_redirect_uris),
    );
    put("grant_types", json!(rc.grant_types));
    put("response_types", json!(rc.response_types));
    put(
        "token_endpoint_auth_method",
        json!(rc.token_endpoint_auth_method),
    );
    put(
        "token_endpoint_auth_signing_alg",
        json!(rc.token_endpoint_auth_signing_alg),
    );
    put("scope", json!(rc.scope));
    put("jwks_uri", json!(rc.jwks_uri));
    put(
        "id_token_signed_response_alg",
        json!(rc.id_token_signed_response_alg),
    );
    put("application_type", json!(rc.application_type));
    put("backchannel_logout_uri", json!(rc.backchannel_logout_uri));
    put(
        "backchannel_logout_session_required",
        json!(rc.backchannel_logout_session_required),
    );
    if let Some(file) = &rc.jwks_file {
        let path = base_dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            (
                ".jwks_file".to_owned(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let jwks: Json = serde_json::from_str(&text).map_err(|e| {
            (
                ".jwks_file".to_owned(),
                format!("{} is not JSON: {e}", path.display()),
            )
        })?;
        meta.insert("jwks".into(), jwks);
    }
    let mut client = client_from_metadata(&Json::Object(meta), settings).map_err(|e| {
        (
            String::new(),
            e.description
                .map(|d| d.into_owned())
                .unwrap_or_else(|| e.code.as_str().to_owned()),
        )
    })?;
    client.client_id = rc.client_id.clone();
    client.first_party = rc.first_party;
    client.require_pkce |= rc.require_pkce;
    client.origin = tessera_core::model::ClientOrigin::Config;

    let secret = match (&rc.client_secret, &rc.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err((
                ".client_secret".into(),
                "set client_secret or client_secret_env, not both".into(),
            ));
        }
        (Some(s), None) => Some((".client_secret", Secret::new(s.expose()))),
        (None, Some(var)) => match env.get(var) {
            Some(v) => Some((".client_secret_env", Secret::new(v))),
            None => {
                return Err((
                    ".client_secret_env".into(),
                    format!("environment variable {var} is not set"),
                ));
            }
        },
        (None, None) => None,
    };
    let uses_secret = client.token_endpoint_auth_method.uses_secret();
    let secret = match secret {
        Some((key, s)) if uses_secret => {
            if s.expose().chars().count() < MIN_SECRET_CHARS {
                return Err((
                    key.into(),
                    format!(
                        "the secret is shorter than {MIN_SECRET_CHARS} characters; generate one with `openssl rand -base64 32`"
                    ),
                ));
            }
            Some(s)
        }
        Some((key, _)) => {
            return Err((
                key.into(),
                format!(
                    "token_endpoint_auth_method '{}' does not use a client secret",
                    client.token_endpoint_auth_method.as_str()
                ),
            ));
        }
        None if uses_secret => {
            return Err((
                ".client_secret_env".into(),
                format!(
                    "token_endpoint_auth_method '{}' needs a secret: set client_secret_env (or client_secret for development)",
                    client.token_endpoint_auth_method.as_str()
                ),
            ));
        }
        None => None,
    };
    Ok(ConfigClient { client, secret })
}
