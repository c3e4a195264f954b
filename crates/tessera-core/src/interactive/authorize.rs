//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2).
//!
//! The request goes through [`CHECKS`], an ordered table of small named checks, like
//! node-oidc-provider's `actions/authorization/index.js`. The first two establish the client
//! and its redirect URI; until both pass, an error is shown to the user on an error page and
//! never redirected (RFC 6749 §4.1.2.1: an unverified redirect URI must not be used). After
//! them, errors go back to the client with `error`, `error_description`, `state` and `iss`
//! (RFC 9207).
//!
//! Then [`Engine::authorize`] decides over the browser's session: sign in, ask for consent, or
//! issue a code.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::id_token::filter_claims;
use super::transaction::{AuthRequest, Prompt, Transaction};
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::model::{AuthCode, Client, Grant, Session};
use crate::oauth::grant_type;
use crate::oauth::params::{Params, decode_component};
use crate::oauth::scope::Scope;
use crate::secrets::random_token;

/// Error codes of an authorization response: RFC 6749 §4.1.2.1 and OIDC Core §3.1.2.6, plus
/// the two OIDC codes [`ErrorCode`] does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzCode {
    OAuth(ErrorCode),
    /// OIDC Core §6: the `request` parameter is not supported.
    RequestNotSupported,
    /// OIDC Core §6: the `request_uri` parameter is not supported.
    RequestUriNotSupported,
    /// OIDC Core §3.1.2.6 / §7.2.1: the `registration` parameter is not supported.
    RegistrationNotSupported,
}

impl AuthzCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth(c) => c.as_str(),
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::RegistrationNotSupported => "registration_not_supported",
        }
    }
}

/// Where an authorization error may be sent: only once the client and redirect URI are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AuthorizeError {
    pub code: AuthzCode,
    /// Safe for the user and the client.
    pub description: Cow<'static, str>,
    /// For the logs only.
    pub cause: Option<String>,
    /// `None`: the client or redirect URI is not verified — show an error page.
    pub redirect: Option<ErrorRedirect>,
}

impl AuthorizeError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: AuthzCode::OAuth(code),
            description: description.into(),
            cause: None,
            redirect: None,
        }
    }
    fn with(code: AuthzCode, description: &'static str) -> Self {
        Self {
            code,
            description: Cow::Borrowed(description),
            cause: None,
            redirect: None,
        }
    }
    pub fn error(&self) -> &'static str {
        self.code.as_str()
    }
    fn to(mut self, redirect: Option<&ErrorRedirect>) -> Self {
        if self.redirect.is_none() {
            self.redirect = redirect.cloned();
        }
        self
    }
    /// Protocol and internal errors met after the redirect URI was verified.
    pub fn from_oauth(e: OAuthError, redirect: Option<ErrorRedirect>) -> Self {
        let description = match e.code {
            ErrorCode::ServerError => Cow::Borrowed("an unexpected error occurred"),
            _ => e
                .description
                .clone()
                .unwrap_or(Cow::Borrowed("the request was refused")),
        };
        Self {
            code: AuthzCode::OAuth(e.code),
            description,
            cause: e.cause,
            redirect,
        }
    }
    /// The error response URL (RFC 6749 §4.1.2.1, RFC 9207 §2), or `None` for an error page.
    pub fn redirect_url(&self, issuer: &str) -> Option<String> {
        let r = self.redirect.as_ref()?;
        let mut pairs: Vec<(&str, &str)> = vec![("error", self.error())];
        let description = crate::error::sanitize_description(&self.description);
        pairs.push(("error_description", &description));
        if let Some(s) = &r.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", issuer));
        response_url(&r.redirect_uri, &pairs)
    }
}

/// What the edge does next.
#[derive(Debug, Clone)]
pub enum Step {
    /// Show the login page for this transaction.
    Login(Box<Transaction>),
    /// Show the consent page for this transaction.
    Consent(Box<Transaction>),
    /// Send the browser to the client: a successful authorization response.
    Redirect(String),
}

/// Append response parameters to a redirect URI, keeping its own query (RFC 6749 §3.1.2).
pub(crate) fn response_url(redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    if pairs.is_empty() {
        return Some(redirect_uri.to_owned());
    }
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(url.into())
}

/// The state the checks read and fill in.
pub struct AuthorizeCtx<'a> {
    pub params: &'a Params,
    pub client: Option<Client>,
    pub allowed_scope: Scope,
    pub supported_scope: Scope,
    pub now: UnixTime,
    /// The `id_token_hint`, verified before the checks run (the keys are not reachable from a
    /// check): `None` when absent, `Some(None)` when it is not a valid ID token of this server,
    /// `Some(Some(sub))` otherwise.
    pub id_token_hint: Option<Option<String>>,
    /// Set by [`check_redirect_uri`]: from then on errors are redirected.
    pub redirect: Option<ErrorRedirect>,
    pub out: AuthRequestBuilder,
}

/// The fields of [`AuthRequest`] as the checks establish them.
#[derive(Debug, Default)]
pub struct AuthRequestBuilder {
    pub redirect_uri: Option<String>,
    pub redirect_uri_sent: bool,
    pub scope: Option<Scope>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub nonce: Option<String>,
    pub login_hint: Option<String>,
    pub id_token_hint_sub: Option<String>,
}

type Check = fn(&mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError>;

/// The authorization request checks, in order. The name appears in logs.
pub const CHECKS: &[(&str, Check)] = &[
    ("client", check_client),
    ("redirect_uri", check_redirect_uri),
    ("request_object", check_request_object),
    ("registration", check_registration),
    ("response_type", check_response_type),
    ("response_mode", check_response_mode),
    ("scope", check_scope),
    ("pkce", check_pkce),
    ("state", check_state),
    ("nonce", check_nonce),
    ("prompt", check_prompt),
    ("max_age", check_max_age),
    ("login_hint", check_login_hint),
    ("id_token_hint", check_id_token_hint),
];

fn invalid_request(d: &'static str) -> AuthorizeError {
    AuthorizeError::new(ErrorCode::InvalidRequest, d)
}

/// RFC 6749 §4.1.2.1: a missing, unknown or disabled client is shown on an error page.
pub fn check_client(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    if ctx.params.get("client_id").is_none() {
        return Err(invalid_request("the request has no client_id"));
    }
    match &ctx.client {
        Some(c) if !c.disabled => Ok(()),
        Some(c) => Err(AuthorizeError::new(
            ErrorCode::InvalidClient,
            "the application is disabled",
        )
        .with_cause(format!("client '{}' is disabled", c.client_id))),
        None => Err(AuthorizeError::new(
            ErrorCode::InvalidClient,
            "the application is not registered",
        )),
    }
}

/// RFC 6749 §3.1.2.3 and OIDC Core §3.1.2.1: exact string match with a registered URI; it may be
/// omitted when exactly one is registered.
pub fn check_redirect_uri(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(client) = &ctx.client else {
        return Err(invalid_request("unknown client"));
    };
    let uri = match ctx.params.get("redirect_uri") {
        Some(u) if client.redirect_uris.iter().any(|r| r == u) => {
            ctx.out.redirect_uri_sent = true;
            u.to_owned()
        }
        Some(u) => {
            let mut e = AuthorizeError::new(
                ErrorCode::InvalidRequest,
                "the redirect_uri is not registered for this application",
            );
            e.cause = Some(format!(
                "redirect_uri '{u}' is not registered for client '{}' (exact match required; registered: {})",
                client.client_id,
                if client.redirect_uris.is_empty() {
                    "none".to_owned()
                } else {
                    client
                        .redirect_uris
                        .iter()
                        .map(|r| format!("'{r}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            return Err(e);
        }
        // OIDC Core §3.1.2.1: `redirect_uri` is REQUIRED in an OpenID Connect request; only a
        // plain OAuth 2.0 request may omit it (RFC 6749 §3.1.2.3). Still an error page: the
        // client did not say where the response should go.
        None if is_openid_request(ctx.params) => {
            return Err(invalid_request(
                "the request has no redirect_uri (required for OpenID Connect)",
            ));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(invalid_request(
                    "the application has no registered redirect_uri",
                ));
            }
            _ => return Err(invalid_request("the request has no redirect_uri")),
        },
    };
    ctx.redirect = Some(ErrorRedirect {
        redirect_uri: uri.clone(),
        state: ctx.params.get("state").map(str::to_owned),
    });
    ctx.out.redirect_uri = Some(uri);
    Ok(())
}

/// Whether the request asks for OpenID Connect (`openid` among the scopes), read before the
/// scope itself is checked.
fn is_openid_request(params: &Params) -> bool {
    params
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|t| t == "openid"))
}

/// OIDC Core §3.1.2.6: the `registration` parameter (§7.2.1) is not supported.
pub fn check_registration(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    if ctx.params.contains("registration") {
        return Err(AuthorizeError::with(
            AuthzCode::RegistrationNotSupported,
            "the registration parameter is not supported",
        ));
    }
    Ok(())
}

/// OIDC Core §6: request objects are not supported.
pub fn check_request_object(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    if ctx.params.contains("request") {
        return Err(AuthorizeError::with(
            AuthzCode::RequestNotSupported,
            "the request parameter is not supported",
        ));
    }
    if ctx.params.contains("request_uri") {
        return Err(AuthorizeError::with(
            AuthzCode::RequestUriNotSupported,
            "the request_uri parameter is not supported",
        ));
    }
    Ok(())
}

/// RFC 6749 §4.1.1 / §3.1.1: only `code`, and only for clients registered for it.
pub fn check_response_type(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(rt) = ctx.params.get("response_type") else {
        return Err(invalid_request("the request has no response_type"));
    };
    if rt != "code" {
        return Err(AuthorizeError::new(
            ErrorCode::UnsupportedResponseType,
            "only response_type 'code' is supported",
        ));
    }
    let allowed = ctx.client.as_ref().is_some_and(|c| {
        c.response_types.iter().any(|r| r == "code")
            && c.allows_grant(grant_type::AUTHORIZATION_CODE)
    });
    if !allowed {
        return Err(AuthorizeError::new(
            ErrorCode::UnauthorizedClient,
            "the application may not use the authorization code flow",
        ));
    }
    Ok(())
}

/// OAuth 2.0 Multiple Response Types §2.1: only the `query` mode is implemented.
pub fn check_response_mode(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    match ctx.params.get("response_mode") {
        None | Some("query") => Ok(()),
        Some(_) => Err(invalid_request("only response_mode 'query' is supported")),
    }
}

/// RFC 6749 §3.3: every scope must be known and allowed for the client; a request without a
/// scope fails (there is no default). With `openid` it is an OpenID Connect request (OIDC Core
/// §3.1.2.1) and the code also yields an ID token; without it, a plain OAuth 2.0 request whose
/// code yields only an access token (and a refresh token with `offline_access`).
pub fn check_scope(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(raw) = ctx.params.get("scope") else {
        return Err(AuthorizeError::new(
            ErrorCode::InvalidScope,
            "the request has no scope (include 'openid' for OpenID Connect)",
        ));
    };
    let scope = Scope::parse(raw).map_err(|e| AuthorizeError::from_oauth(e, None))?;
    if scope.is_empty() {
        return Err(AuthorizeError::new(
            ErrorCode::InvalidScope,
            "the scope is empty (include 'openid' for OpenID Connect)",
        ));
    }
    if let Some(t) = scope.first_outside(&ctx.supported_scope) {
        return Err(AuthorizeError::new(
            ErrorCode::InvalidScope,
            format!("scope '{t}' is not supported"),
        ));
    }
    if let Some(t) = scope.first_outside(&ctx.allowed_scope) {
        return Err(AuthorizeError::new(
            ErrorCode::InvalidScope,
            format!("scope '{t}' is not allowed for this application"),
        ));
    }
    ctx.out.scope = Some(scope);
    Ok(())
}

/// RFC 7636 §4.3 / §4.4.1: S256 only (`plain`, the default method, is refused); required for
/// public clients (RFC 9700 §2.1.1) and clients registered with `require_pkce`.
pub fn check_pkce(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let challenge = ctx.params.get("code_challenge");
    let method = ctx.params.get("code_challenge_method");
    let required = ctx
        .client
        .as_ref()
        .is_some_and(|c| c.is_public() || c.require_pkce);
    match (challenge, method) {
        (None, None) if required => Err(invalid_request(
            "code_challenge is required (PKCE with S256)",
        )),
        (None, None) => Ok(()),
        (None, Some(_)) => Err(invalid_request(
            "code_challenge_method without code_challenge",
        )),
        (Some(_), None) => Err(invalid_request(
            "code_challenge_method is required; only S256 is supported",
        )),
        (Some(_), Some(m)) if m != "S256" => Err(invalid_request(
            "only code_challenge_method S256 is supported",
        )),
        (Some(c), Some(_)) => {
            // RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is exactly 43 characters.
            let ok = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid_request(
                    "code_challenge is not a base64url SHA-256 value",
                ));
            }
            ctx.out.code_challenge = Some(c.to_owned());
            Ok(())
        }
    }
}

const MAX_ECHO_LEN: usize = 2048;

/// RFC 6749 §4.1.1: `state` is echoed as is; bounded so the redirect stays a sane size.
pub fn check_state(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    if ctx
        .params
        .get("state")
        .is_some_and(|s| s.len() > MAX_ECHO_LEN)
    {
        // Echoing it would make the redirect unusable: drop it from the error response too.
        if let Some(r) = ctx.redirect.as_mut() {
            r.state = None;
        }
        return Err(invalid_request("state is too long"));
    }
    Ok(())
}

/// OIDC Core §3.1.2.1: `nonce` is stored and returned in the ID token.
pub fn check_nonce(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    match ctx.params.get("nonce") {
        Some(n) if n.len() > MAX_ECHO_LEN => Err(invalid_request("nonce is too long")),
        n => {
            ctx.out.nonce = n.map(str::to_owned);
            Ok(())
        }
    }
}

/// OIDC Core §3.1.2.1: `none` must stand alone; `select_account` is accepted (one account
/// per session, so there is nothing to select).
pub fn check_prompt(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(raw) = ctx.params.get("prompt") else {
        return Ok(());
    };
    let mut p = Prompt::default();
    let mut count = 0;
    for v in raw.split(' ').filter(|v| !v.is_empty()) {
        count += 1;
        match v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            "select_account" => {}
            _ => return Err(invalid_request("unsupported prompt value")),
        }
    }
    if p.none && count > 1 {
        return Err(invalid_request(
            "prompt 'none' cannot be combined with other values",
        ));
    }
    ctx.out.prompt = p;
    Ok(())
}

/// OIDC Core §3.1.2.1: a non-negative number of seconds.
pub fn check_max_age(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(raw) = ctx.params.get("max_age") else {
        return Ok(());
    };
    match raw.parse::<i64>() {
        Ok(v) if v >= 0 => {
            ctx.out.max_age = Some(v);
            Ok(())
        }
        _ => Err(invalid_request("max_age must be a non-negative integer")),
    }
}

/// OIDC Core §3.1.2.1: a hint for the username field; bounded, control characters refused.
pub fn check_login_hint(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    let Some(h) = ctx.params.get("login_hint") else {
        return Ok(());
    };
    if h.len() > 256 || h.chars().any(char::is_control) {
        return Err(invalid_request("login_hint is malformed"));
    }
    ctx.out.login_hint = Some(h.to_owned());
    Ok(())
}

/// OIDC Core §3.1.2.1 `id_token_hint`: an ID token this server issued (it may have expired: the
/// hint names the user, it grants nothing). Its `sub` must be the signed-in user: see the
/// decision over the session.
pub fn check_id_token_hint(ctx: &mut AuthorizeCtx<'_>) -> Result<(), AuthorizeError> {
    match &ctx.id_token_hint {
        None => Ok(()),
        Some(None) => Err(invalid_request(
            "id_token_hint is not a valid ID token issued by this server",
        )),
        Some(Some(sub)) => {
            ctx.out.id_token_hint_sub = Some(sub.clone());
            Ok(())
        }
    }
}

impl AuthorizeError {
    fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
}

/// Run [`CHECKS`] in order; the first failure stops.
pub fn run_checks(ctx: &mut AuthorizeCtx<'_>) -> Result<AuthRequest, AuthorizeError> {
    for (name, check) in CHECKS {
        if let Err(e) = check(ctx) {
            tracing::debug!(target: "tessera::authorize", check = name, error = e.error(), "authorization request refused");
            return Err(e.to(ctx.redirect.as_ref()));
        }
    }
    let (Some(client), Some(redirect_uri), Some(scope)) = (
        ctx.client.as_ref(),
        ctx.out.redirect_uri.take(),
        ctx.out.scope.take(),
    ) else {
        return Err(AuthorizeError::from_oauth(
            OAuthError::server_error("authorize checks incomplete"),
            None,
        ));
    };
    Ok(AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_sent: ctx.out.redirect_uri_sent,
        scope: scope.to_string(),
        state: ctx.params.get("state").map(str::to_owned),
        nonce: ctx.out.nonce.take(),
        code_challenge: ctx.out.code_challenge.take(),
        prompt: ctx.out.prompt,
        max_age: ctx.out.max_age,
        login_hint: ctx.out.login_hint.take(),
        id_token_hint_sub: ctx.out.id_token_hint_sub.take(),
        started_at: ctx.now,
    })
}

/// The parameters of `raw` that occur once, and the names of those that repeat; `None` if `raw`
/// is not a readable form at all.
fn without_repeated(raw: &[u8]) -> Option<(Params, Vec<String>)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        if pairs.len() >= 128 {
            return None;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        pairs.push((decode_component(name).ok()?, decode_component(value).ok()?));
    }
    let mut repeated: Vec<String> = Vec::new();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) && !repeated.contains(name) {
            repeated.push(name.clone());
        }
    }
    let once = pairs.into_iter().filter(|(n, _)| !repeated.contains(n));
    Some((Params::from_pairs(once), repeated))
}

/// Why a session cannot be used for this request, if it cannot. `fresh`: the session comes
/// from a sign-in for this very request.
fn needs_login(req: &AuthRequest, session: Option<&Session>, fresh: bool, now: UnixTime) -> bool {
    let Some(s) = session else { return true };
    // A sign-in for this request is the (re-)authentication prompt=login and max_age ask for,
    // however long the clock took to tick past it: with max_age=0, a second boundary between
    // the sign-in and this decision must not send the user back to the login page.
    if fresh {
        return false;
    }
    // OIDC Core §3.1.2.1 prompt=login, and max_age=0 which is equivalent: re-authenticate. Any
    // session met here predates the request, even one whose auth_time is the request's second
    // (auth_time counts whole seconds), so it never satisfies them.
    if req.prompt.login || req.max_age == Some(0) {
        return true;
    }
    // OIDC Core §3.1.2.1 max_age: the last authentication must be recent enough.
    req.max_age.is_some_and(|m| now - s.auth_time > m)
}

fn redirect_of(req: &AuthRequest) -> ErrorRedirect {
    ErrorRedirect {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
    }
}

impl Engine {
    /// The authorization endpoint: check the request, then decide over the browser's session.
    /// `session_cookie` is the session cookie's value, `bind` the browser-binding cookie's.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authorize(
        &self,
        params: &Params,
        session_cookie: Option<&str>,
        bind: &str,
        now: UnixTime,
    ) -> Result<Step, AuthorizeError> {
        let client = match params.get("client_id") {
            Some(id) if id.len() <= 256 => self
                .store
                .get_client(id)
                .await
                .map_err(|e| AuthorizeError::from_oauth(e.into(), None))?,
            _ => None,
        };
        let allowed_scope = client
            .as_ref()
            .map(|c| self.client_scope(c))
            .unwrap_or_default();
        let id_token_hint = params.get("id_token_hint").map(|h| {
            self.verify_own_id_token(h, now)
                .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
        });
        let mut ctx = AuthorizeCtx {
            params,
            client,
            allowed_scope,
            supported_scope: Scope::from_tokens(self.settings.scopes_supported.iter().cloned()),
            now,
            id_token_hint,
            redirect: None,
            out: AuthRequestBuilder::default(),
        };
        let req = run_checks(&mut ctx)?;
        let Some(client) = ctx.client else {
            return Err(AuthorizeError::from_oauth(
                OAuthError::server_error("client vanished"),
                None,
            ));
        };
        let session = self
            .load_session(session_cookie, now)
            .await
            .map_err(|e| AuthorizeError::from_oauth(e, Some(redirect_of(&req))))?;
        let tx = Transaction::new(self, req, bind, now)
            .map_err(|e| AuthorizeError::from_oauth(e, None))?;
        self.decide(&client, tx, session, false, now).await
    }

    /// RFC 6749 §3.1 and §4.1.2.1: a request whose parameters repeat (`raw` did not parse for
    /// that reason) is `invalid_request`. Like any other error it goes back to the client once
    /// the client and its redirect URI are verified — from parameters that are not repeated
    /// themselves, and without `state` if `state` is one of the repeated ones; otherwise it is
    /// shown on an error page.
    pub async fn refuse_repeated(&self, raw: &[u8], now: UnixTime) -> AuthorizeError {
        let Some((params, repeated)) = without_repeated(raw) else {
            return invalid_request("the request could not be read");
        };
        let name: String = repeated
            .first()
            .map(|n| n.chars().take(64).collect())
            .unwrap_or_default();
        let mut err = AuthorizeError::new(
            ErrorCode::InvalidRequest,
            format!("parameter '{name}' is included more than once"),
        );
        // The response may only go to a redirect URI the request names once.
        if params.get("redirect_uri").is_none() {
            return err;
        }
        let client = match params.get("client_id") {
            Some(id) if id.len() <= 256 => match self.store.get_client(id).await {
                Ok(c) => c,
                Err(e) => return AuthorizeError::from_oauth(e.into(), None),
            },
            _ => None,
        };
        let mut ctx = AuthorizeCtx {
            params: &params,
            client,
            allowed_scope: Scope::default(),
            supported_scope: Scope::default(),
            now,
            id_token_hint: None,
            redirect: None,
            out: AuthRequestBuilder::default(),
        };
        for (_, check) in &CHECKS[..2] {
            if let Err(e) = check(&mut ctx) {
                err.cause = Some(format!("{}: {}", e.error(), e.description));
                return err;
            }
        }
        err.redirect = ctx.redirect;
        err
    }

    /// Continue a transaction after a sign-in on the login page (or at an upstream provider):
    /// the same decision, with the new session.
    pub async fn resume(
        &self,
        tx: Transaction,
        session_cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<Step, AuthorizeError> {
        let redirect = redirect_of(&tx.request);
        let client = self
            .interaction_client(&tx)
            .await
            .map_err(|e| AuthorizeError::from_oauth(e, Some(redirect.clone())))?;
        let session = self
            .load_session(session_cookie, now)
            .await
            .map_err(|e| AuthorizeError::from_oauth(e, Some(redirect)))?;
        self.decide(&client, tx, session, true, now).await
    }

    /// The (enabled) client of a transaction.
    pub async fn interaction_client(&self, tx: &Transaction) -> OAuthResult<Client> {
        match self.store.get_client(&tx.request.client_id).await? {
            Some(c) if !c.disabled => Ok(c),
            _ => Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the application is no longer available",
            )),
        }
    }

    /// `signed_in` = the user has just signed in for this transaction.
    async fn decide(
        &self,
        client: &Client,
        tx: Transaction,
        session: Option<Session>,
        signed_in: bool,
        now: UnixTime,
    ) -> Result<Step, AuthorizeError> {
        let req = &tx.request;
        let redirect = redirect_of(req);
        let err = |code: ErrorCode, d: &'static str| {
            Err(AuthorizeError::new(code, d).to(Some(&redirect)))
        };
        // OIDC Core §3.1.2.1 id_token_hint: a positive response only for the user the hint
        // names, signed in already or by this request; otherwise an error such as
        // login_required. A session of someone else is not used: the user is asked to sign in,
        // and if they sign in as someone else, the client is told.
        let hinted_other = |s: &Session| {
            req.id_token_hint_sub
                .as_deref()
                .is_some_and(|sub| sub != s.subject)
        };
        // A sign-in for this request (the session's auth_time is not older than the request).
        let fresh = signed_in
            && session
                .as_ref()
                .is_some_and(|s| s.auth_time >= req.started_at);
        if fresh && session.as_ref().is_some_and(hinted_other) {
            return err(
                ErrorCode::LoginRequired,
                "the user who signed in is not the one the id_token_hint names",
            );
        }
        if needs_login(req, session.as_ref(), fresh, now)
            || session.as_ref().is_some_and(hinted_other)
        {
            // OIDC Core §3.1.2.6: prompt=none never shows a page.
            if req.prompt.none {
                return err(ErrorCode::LoginRequired, "the user must sign in");
            }
            return Ok(Step::Login(Box::new(tx)));
        }
        let Some(session) = session else {
            return Ok(Step::Login(Box::new(tx)));
        };
        let consented = self
            .has_consent(client, &session.subject, &req.scope)
            .await
            .map_err(|e| AuthorizeError::from_oauth(e, Some(redirect.clone())))?;
        if req.prompt.consent || !consented {
            if req.prompt.none {
                return err(
                    ErrorCode::ConsentRequired,
                    "the user must approve this application",
                );
            }
            return Ok(Step::Consent(Box::new(tx)));
        }
        let url = self
            .issue_code(client, req, &session, false, now)
            .await
            .map_err(|e| AuthorizeError::from_oauth(e, Some(redirect)))?;
        Ok(Step::Redirect(url))
    }

    /// Consent on record for every requested scope (first-party clients need none).
    async fn has_consent(&self, client: &Client, subject: &str, scope: &str) -> OAuthResult<bool> {
        if client.first_party {
            return Ok(true);
        }
        let Some(given) = self.store.get_consent(subject, &client.client_id).await? else {
            return Ok(false);
        };
        let given = Scope::parse(&given).unwrap_or_default();
        let wanted = Scope::parse(scope)?;
        Ok(wanted.first_outside(&given).is_none())
    }

    /// Issue a code and build the successful authorization response (RFC 6749 §4.1.2,
    /// RFC 9207 `iss`). `consent_given` = the user just approved on the consent page.
    pub(crate) async fn issue_code(
        &self,
        client: &Client,
        req: &AuthRequest,
        session: &Session,
        consent_given: bool,
        now: UnixTime,
    ) -> OAuthResult<String> {
        let mut scope = Scope::parse(&req.scope)?;
        // OIDC Core §11: offline access needs consent (first-party clients are consented by
        // configuration) and a client allowed to refresh.
        let offline_ok = (consent_given
            || client.first_party
            || self
                .has_consent(client, &session.subject, &req.scope)
                .await?)
            && client.allows_grant(grant_type::REFRESH_TOKEN);
        if !offline_ok {
            scope = scope.without(&["offline_access"]);
        }
        let offline = scope.contains("offline_access");
        let grant_id = random_token().map_err(OAuthError::server_error)?;
        let s = &self.settings;
        // The grant outlives every token derived from it (access tokens check it by `gid`).
        let expires_at = if offline {
            now + s.refresh_token_ttl as i64 + s.access_token_ttl as i64
        } else {
            now + s.code_ttl as i64 + s.access_token_ttl as i64
        };
        self.store
            .put_grant(&Grant {
                grant_id: grant_id.clone(),
                client_id: client.client_id.clone(),
                subject: session.subject.clone(),
                scope: scope.to_string(),
                auth_time: Some(session.auth_time),
                session_id: Some(session.sid.clone()),
                created_at: now,
                expires_at,
                revoked_at: None,
            })
            .await?;
        let code = random_token().map_err(OAuthError::server_error)?;
        let mut claims: Map<String, Value> = filter_claims(&session.claims, &scope);
        if req.redirect_uri_sent {
            claims.insert(REDIRECT_URI_SENT.into(), Value::Bool(true));
        }
        self.store
            .put_code(&AuthCode {
                code_hash: self.master.hash_token(&code),
                grant_id,
                client_id: client.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                subject: session.subject.clone(),
                scope: scope.to_string(),
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                code_challenge_method: req.code_challenge.as_ref().map(|_| "S256".to_owned()),
                auth_time: session.auth_time,
                amr: session.amr.clone(),
                acr: session.acr.clone(),
                session_id: Some(session.sid.clone()),
                claims,
                issued_at: now,
                expires_at: now + s.code_ttl as i64,
            })
            .await?;
        // A client that keeps getting codes and never redeems them probably cannot reach the
        // token endpoint (proxy, firewall): say so.
        self.diagnostics.code_issued(&client.client_id, now);
        // Back-channel logout needs to know which clients this session signed in to.
        self.store
            .add_session_client(&session.id_hash, &client.client_id)
            .await?;
        let mut pairs: Vec<(&str, &str)> = vec![("code", &code)];
        if let Some(st) = &req.state {
            pairs.push(("state", st));
        }
        pairs.push(("iss", &s.issuer));
        response_url(&req.redirect_uri, &pairs)
            .ok_or_else(|| OAuthError::server_error("registered redirect_uri does not parse"))
    }
}

/// Internal marker in a code's claims: the authorization request carried `redirect_uri`, so
/// the token request must carry the same value (RFC 6749 §4.1.3). Never released.
pub(crate) const REDIRECT_URI_SENT: &str = "_tessera_redirect_uri_sent";
