//! The upstream sign-in flow.
//!
//! **Start** (`GET /federation/{name}/start?tx=…` from the login page): the pending sign-in
//! transaction is opened (bound to this browser), discovery gives the authorization endpoint,
//! and the browser is sent to the upstream with `state`, `nonce` and a PKCE S256 challenge.
//! `state`, `nonce`, the PKCE verifier and the sealed transaction travel in a cookie sealed with
//! the master key (AES-256-GCM), so nothing is stored server-side and any node can finish.
//!
//! **Callback** (`GET /federation/{name}/callback?code&state&iss`): the cookie's `state` must
//! equal the parameter (constant time) and must not have been used before (each state is
//! remembered in the store at its first callback, so a replayed callback is refused before the
//! upstream is asked); `iss`, when sent or advertised (RFC 9207), must equal
//! the issuer; then the code exchange (client authentication per configuration, PKCE
//! verifier; the response must carry a Bearer access token and an ID token), ID token
//! validation, userinfo (its `sub` must match), claim mapping, account
//! linking, and a session like a password sign-in's.
//!
//! Every failure is an [`UpstreamFailure`]: logged once with its message and code, recorded in
//! the authentication trace, and kept in the trace ring when tracing is on.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::failure::{FailureClass, Stage, UpstreamFailure};
use super::id_token::{self, Expected};
use super::keys::Metadata;
use super::link;
use super::{Upstream, UpstreamClientAuth};
use crate::authn::{ControlFlag, Decision, Outcome, decide_outcomes};
use crate::clock::UnixTime;
use crate::diagnostics::TraceRecord;
use crate::engine::Engine;
use crate::interactive::signin::principal_claims;
use crate::interactive::{SignedIn, Transaction, TransactionError};
use crate::model::Session;
use crate::oauth::RequestContext;
use crate::oauth::params::Params;
use crate::secrets::random_token;

/// The cookie holding the sealed pending sign-in.
pub const PENDING_COOKIE: &str = "tessera_upstream";
/// How long the user may take at the upstream, seconds.
pub const PENDING_TTL: i64 = 10 * 60;
const PENDING_CONTEXT: &str = "tessera/v1/federation-pending";
/// Largest accepted token endpoint or userinfo response, bytes (the transport caps it too).
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    upstream: String,
    state: String,
    nonce: String,
    verifier: String,
    /// The sealed Tessera transaction (the downstream authorization request).
    tx: String,
    expires_at: UnixTime,
}

/// Where to send the browser, and the cookie to set first.
#[derive(Debug, Clone)]
pub struct StartRedirect {
    pub url: String,
    /// Value of [`PENDING_COOKIE`].
    pub cookie: String,
}

/// A finished upstream sign-in: continue the transaction with the new session.
#[derive(Debug)]
pub struct CallbackOutcome {
    pub tx: Transaction,
    pub signed: SignedIn,
}

#[derive(Debug, Clone)]
pub enum FlowError {
    /// The downstream transaction cannot be used (expired, other browser, forged).
    Tx(TransactionError),
    Upstream(Box<UpstreamFailure>),
}

impl From<UpstreamFailure> for FlowError {
    fn from(f: UpstreamFailure) -> Self {
        Self::Upstream(Box::new(f))
    }
}

/// The callback URL registered at the upstream.
pub fn redirect_uri(engine: &Engine, name: &str) -> String {
    engine
        .settings
        .endpoint(&format!("/federation/{name}/callback"))
}

fn pkce_challenge(verifier: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// An `error` or `error_description` of the upstream, fit for the log and the trace: at most
/// `max` characters, each outside RFC 6749's set (%x20-21 / %x23-5B / %x5D-7E) replaced by `?`.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if matches!(c, ' '..='~') && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 for Basic).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Engine {
    fn upstream_or_fail(
        &self,
        name: &str,
        stage: Stage,
    ) -> Result<std::sync::Arc<Upstream>, UpstreamFailure> {
        match self.upstreams.get(name) {
            Some(u) if u.config.enabled => Ok(u),
            _ => Err(UpstreamFailure::new(
                name,
                stage,
                FailureClass::UnknownUpstream,
                format!("no enabled upstream named '{name}'"),
            )),
        }
    }

    /// The login page's "Sign in with …" button: build the authorization request.
    pub async fn upstream_start(
        &self,
        name: &str,
        sealed_tx: &str,
        bind: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<StartRedirect, FlowError> {
        let now = self.now();
        let tx = Transaction::open(self, sealed_tx, bind, now).map_err(FlowError::Tx)?;
        let result = self
            .upstream_start_inner(name, sealed_tx, &tx, ctx, now)
            .await;
        if let Err(f) = &result {
            self.upstream_failed(f, Some(&tx.request.client_id), ctx, now);
        }
        result.map_err(FlowError::from)
    }

    async fn upstream_start_inner(
        &self,
        name: &str,
        sealed_tx: &str,
        tx: &Transaction,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> Result<StartRedirect, UpstreamFailure> {
        let up = self.upstream_or_fail(name, Stage::Start)?;
        let meta = up.metadata(Stage::Start, now, &ctx.trace).await?;
        let random = || random_token().map_err(|e| up.internal(Stage::Start, e.to_string()));
        let pending = Pending {
            upstream: name.to_owned(),
            state: random()?,
            nonce: random()?,
            verifier: random()?,
            tx: sealed_tx.to_owned(),
            expires_at: now + PENDING_TTL,
        };
        let mut url = url::Url::parse(&meta.authorization_endpoint)
            .map_err(|e| up.internal(Stage::Start, e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &up.config.client_id)
                .append_pair("redirect_uri", &redirect_uri(self, name))
                .append_pair("scope", &up.config.scope_param())
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(h) = &tx.request.login_hint {
                q.append_pair("login_hint", h);
            }
        }
        let json =
            serde_json::to_vec(&pending).map_err(|e| up.internal(Stage::Start, e.to_string()))?;
        let cookie = self
            .master
            .seal(&json, PENDING_CONTEXT)
            .map_err(|e| up.internal(Stage::Start, e.to_string()))?;
        ctx.trace.step(
            format!("upstream:{name}"),
            "authorization_request",
            "ok",
            || {
                crate::detail! {
                    "authorization_endpoint" => meta.authorization_endpoint,
                    "client_id" => up.config.client_id,
                    "scope" => up.config.scope_param(),
                    "pkce" => "S256",
                }
            },
        );
        Ok(StartRedirect {
            url: url.into(),
            cookie,
        })
    }

    /// The upstream sent the browser back.
    pub async fn upstream_callback(
        &self,
        name: &str,
        params: &Params,
        pending_cookie: Option<&str>,
        bind: Option<&str>,
        previous_session: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<CallbackOutcome, FlowError> {
        let now = self.now();
        let result = self
            .upstream_callback_inner(
                name,
                params,
                pending_cookie,
                bind,
                previous_session,
                ctx,
                now,
            )
            .await;
        match &result {
            Err(FlowError::Upstream(f)) => self.upstream_failed(f, None, ctx, now),
            Err(FlowError::Tx(e)) => {
                tracing::info!(target: "tessera::security", upstream = %name, cause = %e, request_id = %ctx.request_id, "upstream callback for an unusable sign-in transaction");
            }
            Ok(o) => {
                tracing::info!(
                    target: "tessera::security",
                    event = "login",
                    subject = %o.signed.session.subject,
                    username = %o.signed.session.username,
                    provider = %name,
                    request_id = %ctx.request_id,
                    "signed in through upstream"
                );
                self.keep_upstream_trace(
                    ctx,
                    Some(&o.signed.session.username),
                    Some(&o.tx.request.client_id),
                    None,
                    now,
                );
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn upstream_callback_inner(
        &self,
        name: &str,
        params: &Params,
        pending_cookie: Option<&str>,
        bind: Option<&str>,
        previous_session: Option<&str>,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> Result<CallbackOutcome, FlowError> {
        let up = self.upstream_or_fail(name, Stage::Callback)?;
        let component = format!("upstream:{name}");
        let trace = &ctx.trace;
        let state_fail = |detail: &str| {
            trace.step(
                &component,
                "check:state",
                "failed",
                || crate::detail! {"reason" => detail},
            );
            FlowError::from(UpstreamFailure::new(
                name,
                Stage::Callback,
                FailureClass::StateMismatch,
                detail,
            ))
        };
        // 1. The pending sign-in of this browser, and its state.
        let pending: Pending = match pending_cookie
            .filter(|c| c.len() <= 8192)
            .and_then(|c| self.master.unseal(c, PENDING_CONTEXT).ok())
            .and_then(|p| serde_json::from_slice(&p).ok())
        {
            Some(p) => p,
            None => {
                return Err(state_fail(
                    "no pending upstream sign-in in this browser (cookie missing, expired or not ours)",
                ));
            }
        };
        if pending.upstream != name {
            return Err(state_fail("the pending sign-in is for another upstream"));
        }
        if pending.expires_at <= now {
            return Err(state_fail(
                "the pending sign-in expired (more than 10 minutes at the upstream)",
            ));
        }
        let state_ok = params
            .get("state")
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
        if !state_ok {
            return Err(state_fail(
                "the state parameter does not match this browser's pending sign-in",
            ));
        }
        // RFC 6749 §10.12 / OIDC Core §15.5.2: the state (and with it the nonce and the PKCE
        // verifier) is single-use. The pending sign-in lives in the browser, so a captured
        // cookie and callback URL could otherwise be replayed until the cookie expires: each
        // state is remembered (atomically, on every node) at its first callback, before any
        // call to the upstream.
        let first = self
            .store
            .remember_once(
                &format!(
                    "federation-state:{name}:{}",
                    self.master.hash_token(&pending.state)
                ),
                pending.expires_at,
                now,
            )
            .await
            .map_err(|e| {
                FlowError::from(UpstreamFailure::new(
                    name,
                    Stage::Callback,
                    FailureClass::Internal,
                    format!("store: {e}"),
                ))
            })?;
        if !first {
            return Err(state_fail(
                "this sign-in's callback was already used (a replayed callback): its state is single-use",
            ));
        }
        trace.step(&component, "check:state", "ok", || crate::detail! {});
        let tx = Transaction::open(self, &pending.tx, bind, now).map_err(FlowError::Tx)?;

        // 2. Errors from the upstream, and RFC 9207 `iss`.
        let meta = up.metadata(Stage::Discovery, now, trace).await?;
        if let Some(iss) = params.get("iss") {
            let ok = iss == up.config.issuer;
            trace.step(
                &component,
                "check:iss_param",
                if ok { "ok" } else { "failed" },
                || {
                    crate::detail! {"expected" => up.config.issuer, "actual" => iss}
                },
            );
            if !ok {
                return Err(UpstreamFailure::new(
                    name,
                    Stage::Callback,
                    FailureClass::IssuerMismatch,
                    format!(
                        "the authorization response's iss \"{iss}\" is not \"{}\" (RFC 9207)",
                        up.config.issuer
                    ),
                )
                .into());
            }
        } else if meta.authorization_response_iss_parameter_supported {
            return Err(UpstreamFailure::new(
                name,
                Stage::Callback,
                FailureClass::IssuerMismatch,
                "the upstream advertises RFC 9207 but the authorization response has no iss",
            )
            .into());
        }
        if let Some(err) = params.get("error") {
            // RFC 6749 §4.1.2.1: error and error_description are limited to printable ASCII
            // without `"` and `\`; whatever else arrives (a newline forging a log line, markup)
            // is replaced before it reaches the log and the trace.
            let err = sanitize(err, 64);
            let desc = sanitize(params.get("error_description").unwrap_or_default(), 300);
            trace.step(&component, "authorization_response", "error", || {
                crate::detail! {"error" => err, "error_description" => desc}
            });
            return Err(UpstreamFailure::new(
                name,
                Stage::Callback,
                FailureClass::UpstreamDenied(err.clone()),
                if desc.is_empty() {
                    err
                } else {
                    format!("{err}: {desc}")
                },
            )
            .into());
        }
        let Some(code) = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= 4096)
        else {
            return Err(UpstreamFailure::new(
                name,
                Stage::Callback,
                FailureClass::Malformed,
                "the authorization response has neither code nor error",
            )
            .into());
        };

        // 3. The code exchange.
        let tokens = self
            .exchange_code(&up, &meta, code, &pending.verifier, ctx, now)
            .await?;

        // 4. The ID token.
        let claims = id_token::validate(
            &up,
            &meta,
            &tokens.id_token,
            &Expected {
                nonce: &pending.nonce,
                access_token: tokens.access_token.as_deref(),
                now,
            },
            trace,
        )
        .await?;

        // 5. Userinfo.
        let claims = self
            .upstream_userinfo(&up, &meta, tokens.access_token.as_deref(), claims, ctx)
            .await?;

        // 6. Mapping and linking.
        let identity = link::map_claims(&up, &claims);
        trace.step(&component, "map_claims", "ok", || {
            crate::detail! {
                "upstream_sub" => identity.sub,
                "username" => identity.username,
                "email" => identity.email,
                "email_verified" => identity.email_verified,
                "groups" => identity.groups,
            }
        });
        self.upstream_chain_decision(&up, &identity, trace)?;
        let user = link::resolve(self, &up, &identity, now, trace).await?;
        let principal = link::principal(&up, &identity, &user);

        // 7. The session.
        let signed = self
            .open_session(&principal, previous_session, now)
            .await
            .map_err(|e| {
                UpstreamFailure::new(name, Stage::Session, FailureClass::Internal, e.to_string())
            })?;
        trace.step(&component, "decision", "ok", || {
            crate::detail! {"local_user" => user.username, "subject" => user.subject}
        });
        Ok(CallbackOutcome { tx, signed })
    }

    async fn exchange_code(
        &self,
        up: &Upstream,
        meta: &Metadata,
        code: &str,
        verifier: &str,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> Result<Tokens, UpstreamFailure> {
        let name = &up.config.name;
        let component = format!("upstream:{name}");
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.into()),
            ("redirect_uri".into(), redirect_uri(self, name)),
            ("code_verifier".into(), verifier.into()),
        ];
        let mut basic = None;
        match &up.config.auth {
            UpstreamClientAuth::SecretBasic(secret) => {
                basic = Some((
                    form_encode(&up.config.client_id),
                    form_encode(secret.expose()),
                ));
            }
            UpstreamClientAuth::SecretPost(secret) => {
                form.push(("client_id".into(), up.config.client_id.clone()));
                form.push(("client_secret".into(), secret.expose().to_owned()));
            }
            UpstreamClientAuth::PrivateKeyJwt { key, audience } => {
                let aud = match audience {
                    super::AssertionAudience::Issuer => meta.issuer.clone(),
                    super::AssertionAudience::TokenEndpoint => meta.token_endpoint.clone(),
                };
                let jti =
                    random_token().map_err(|e| up.internal(Stage::TokenRequest, e.to_string()))?;
                let assertion = key
                    .sign_jwt(
                        Some("JWT"),
                        &serde_json::json!({
                            "iss": up.config.client_id,
                            "sub": up.config.client_id,
                            "aud": aud,
                            "jti": jti,
                            "iat": now,
                            "exp": now + 60,
                        }),
                    )
                    .map_err(|e| {
                        up.internal(
                            Stage::TokenRequest,
                            format!("signing the client assertion: {e}"),
                        )
                    })?;
                form.push(("client_id".into(), up.config.client_id.clone()));
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), assertion));
            }
        }
        let url = &meta.token_endpoint;
        let reply = match self
            .upstreams_http(up)
            .post_form(
                url,
                &form,
                basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let f = up.transport_failure(Stage::TokenRequest, url, e).await;
                ctx.trace.step(&component, "token_request", "failed", || {
                    crate::detail! {"url" => url, "auth_method" => up.config.auth.method(), "code" => f.code(), "cause" => f.cause()}
                });
                return Err(f);
            }
        };
        let body: Option<Map<String, Value>> = if reply.body.len() <= MAX_TOKEN_RESPONSE {
            serde_json::from_slice(&reply.body).ok()
        } else {
            None
        };
        if !(200..300).contains(&reply.status) {
            // RFC 6749 §5.2: the same character set as in the authorization response.
            let err = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .map(|s| sanitize(s, 64));
            let desc = body
                .as_ref()
                .and_then(|b| b.get("error_description"))
                .and_then(Value::as_str)
                .map(|s| sanitize(s, 300))
                .unwrap_or_default();
            let class = match err.as_deref() {
                Some("invalid_client") => FailureClass::InvalidClient,
                Some("invalid_grant") => FailureClass::InvalidGrant,
                Some(other) => FailureClass::TokenError(other.to_owned()),
                None => FailureClass::HttpStatus(reply.status),
            };
            let detail = match &err {
                Some(e) => format!(
                    "{url} answered HTTP {} {e}{}{} (client authentication: {})",
                    reply.status,
                    if desc.is_empty() { "" } else { ": " },
                    desc,
                    up.config.auth.method()
                ),
                None => format!(
                    "{url} answered HTTP {} without an OAuth error",
                    reply.status
                ),
            };
            ctx.trace.step(&component, "token_request", "failed", || {
                crate::detail! {
                    "url" => url,
                    "auth_method" => up.config.auth.method(),
                    "status" => reply.status,
                    "error" => err,
                    "error_description" => desc,
                }
            });
            return Err(UpstreamFailure::new(
                name,
                Stage::TokenRequest,
                class,
                detail,
            ));
        }
        let Some(body) = body else {
            return Err(UpstreamFailure::new(
                name,
                Stage::TokenRequest,
                FailureClass::Malformed,
                format!(
                    "{url} answered HTTP {} with a body that is not a JSON object",
                    reply.status
                ),
            ));
        };
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned);
        ctx.trace.step(&component, "token_request", "ok", || {
            crate::detail! {
                "url" => url,
                "auth_method" => up.config.auth.method(),
                "status" => reply.status,
                "id_token" => id_token.is_some(),
                "access_token" => access_token.is_some(),
            }
        });
        let Some(id_token) = id_token else {
            return Err(UpstreamFailure::new(
                name,
                Stage::TokenRequest,
                FailureClass::Malformed,
                format!("{url} returned no id_token (is the openid scope granted?)"),
            ));
        };
        // OIDC Core §3.1.3.5 (validate the token response per RFC 6749 §5.1): access_token and
        // token_type are REQUIRED, and token_type MUST be Bearer (OIDC Core §3.1.3.3; token
        // types compare case-insensitively, RFC 6749 §5.1). Another type (DPoP, …) would make
        // the userinfo call with `Authorization: Bearer` wrong.
        let token_type = body.get("token_type").and_then(Value::as_str);
        let problem = match (&access_token, token_type) {
            (None, _) => Some("no access_token".to_owned()),
            (Some(at), _) if at.is_empty() => Some("an empty access_token".to_owned()),
            (_, None) => Some("no token_type".to_owned()),
            (_, Some(t)) if !t.eq_ignore_ascii_case("Bearer") => Some(format!(
                "token_type \"{}\" instead of Bearer",
                sanitize(t, 64)
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            ctx.trace
                .step(&component, "check:token_response", "failed", || {
                    crate::detail! {"reason" => problem}
                });
            return Err(UpstreamFailure::new(
                name,
                Stage::TokenRequest,
                FailureClass::Malformed,
                format!("{url} answered {problem} (RFC 6749 §5.1, OIDC Core §3.1.3.3)"),
            ));
        }
        Ok(Tokens {
            id_token,
            access_token,
        })
    }

    /// The JAAS decision over every entry's answer to this sign-in (module documentation,
    /// "Control flags"): this upstream authenticated, the password providers ignored, another
    /// upstream ignored unless it is mandatory. Traced as the chain traces a password sign-in.
    fn upstream_chain_decision(
        &self,
        up: &Upstream,
        identity: &link::UpstreamIdentity,
        trace: &crate::trace::TraceHandle,
    ) -> Result<(), UpstreamFailure> {
        let name = &up.config.name;
        let mut outcomes: Vec<(String, ControlFlag, Outcome)> = Vec::new();
        for u in self.upstreams.all().iter().filter(|u| u.config.enabled) {
            let answer = if u.config.name == *name {
                Outcome::Authenticated(crate::authn::Principal {
                    subject: identity.sub.clone(),
                    username: identity.username.clone(),
                    provider: name.clone(),
                    ..Default::default()
                })
            } else {
                u.config.answer_to_other_sign_in()
            };
            outcomes.push((u.config.name.clone(), u.config.flag, answer));
        }
        for e in self.chain.entries() {
            if e.provider.kind() != "oidc" {
                outcomes.push((e.provider.name().to_owned(), e.flag, Outcome::NotApplicable));
            }
        }
        for (n, flag, o) in &outcomes {
            trace.step("chain", format!("provider:{n}"), o.label(), || {
                crate::detail! {"flag" => flag.as_str()}
            });
        }
        let decision = decide_outcomes(&outcomes);
        trace.step(
            "chain",
            "decision",
            crate::authn::decision_label(&decision),
            serde_json::Map::new,
        );
        match decision {
            Decision::Authenticated(_) => Ok(()),
            Decision::Denied { provider, .. } | Decision::Unavailable { provider, .. } => {
                let flag = outcomes
                    .iter()
                    .find(|(n, _, _)| *n == provider)
                    .map_or("", |(_, f, _)| f.as_str());
                Err(UpstreamFailure::new(
                    name,
                    Stage::Chain,
                    FailureClass::ChainRefused(provider.clone()),
                    format!("upstream '{provider}' is {flag}: every sign-in must come through it"),
                ))
            }
        }
    }

    fn upstreams_http<'a>(&self, up: &'a Upstream) -> &'a dyn super::UpstreamHttp {
        up.http.as_ref()
    }

    async fn upstream_userinfo(
        &self,
        up: &Upstream,
        meta: &Metadata,
        access_token: Option<&str>,
        mut claims: Map<String, Value>,
        ctx: &RequestContext,
    ) -> Result<Map<String, Value>, UpstreamFailure> {
        let component = format!("upstream:{}", up.config.name);
        let (Some(url), Some(at), true) =
            (&meta.userinfo_endpoint, access_token, up.config.userinfo)
        else {
            ctx.trace
                .step(&component, "userinfo", "skipped", || crate::detail! {});
            return Ok(claims);
        };
        let body = match up.http.get(url, "application/json", Some(at)).await {
            Ok(b) => b,
            Err(e) => {
                let f = up.transport_failure(Stage::Userinfo, url, e).await;
                ctx.trace.step(&component, "userinfo", "failed", || {
                    crate::detail! {"url" => url, "code" => f.code(), "cause" => f.cause()}
                });
                return Err(f);
            }
        };
        let info: Map<String, Value> = serde_json::from_slice(&body).map_err(|_| {
            UpstreamFailure::new(
                &up.config.name,
                Stage::Userinfo,
                FailureClass::Malformed,
                format!("{url} did not return a JSON object (signed userinfo is not supported)"),
            )
        })?;
        // OIDC Core §5.3.2: the userinfo sub must be the ID token's.
        if info.get("sub") != claims.get("sub") {
            ctx.trace.step(&component, "check:userinfo_sub", "failed", || {
                crate::detail! {"expected" => claims.get("sub").cloned(), "actual" => info.get("sub").cloned()}
            });
            return Err(UpstreamFailure::new(
                &up.config.name,
                Stage::Userinfo,
                FailureClass::Malformed,
                "the userinfo response is for another subject than the id_token",
            ));
        }
        let names: Vec<String> = info.keys().cloned().collect();
        ctx.trace.step(
            &component,
            "userinfo",
            "ok",
            || crate::detail! {"url" => url, "claims" => names},
        );
        for (k, v) in info {
            if !matches!(
                k.as_str(),
                "iss" | "aud" | "sub" | "exp" | "iat" | "nonce" | "azp"
            ) {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(claims)
    }

    /// A session for a principal (as `sign_in` opens one after the chain).
    async fn open_session(
        &self,
        principal: &crate::authn::Principal,
        previous_cookie: Option<&str>,
        now: UnixTime,
    ) -> crate::OAuthResult<SignedIn> {
        let previous = self.load_session(previous_cookie, now).await?;
        let (sid, clients) = match previous {
            Some(p) if p.subject == principal.subject => {
                self.store.delete_session(&p.id_hash).await?;
                (p.sid, p.clients)
            }
            _ => (
                random_token().map_err(crate::OAuthError::server_error)?,
                Vec::new(),
            ),
        };
        let cookie = random_token().map_err(crate::OAuthError::server_error)?;
        let session = Session {
            id_hash: self.master.hash_token(&cookie),
            sid,
            subject: principal.subject.clone(),
            username: principal.username.clone(),
            auth_time: now,
            amr: principal.amr.clone(),
            acr: None,
            claims: principal_claims(principal),
            clients,
            created_at: now,
            expires_at: now + self.settings.session_ttl as i64,
        };
        self.store.put_session(&session).await?;
        Ok(SignedIn { cookie, session })
    }

    /// Log a failure once (with its code and remedy), finish the trace and keep it.
    fn upstream_failed(
        &self,
        f: &UpstreamFailure,
        client: Option<&str>,
        ctx: &RequestContext,
        now: UnixTime,
    ) {
        let remedy = f.class.remedy();
        ctx.trace.step(
            format!("upstream:{}", f.upstream),
            "decision",
            "failed",
            || {
                crate::detail! {
                    "stage" => f.stage.as_str(),
                    "class" => f.class.label(),
                    "code" => f.code(),
                    "cause" => f.cause(),
                    "remedy" => remedy,
                }
            },
        );
        tracing::warn!(
            target: "tessera::security",
            event = "upstream_login_failed",
            upstream = %f.upstream,
            stage = f.stage.as_str(),
            class = f.class.label(),
            code = f.code(),
            request_id = %ctx.request_id,
            "{}",
            f.message()
        );
        self.keep_upstream_trace(ctx, None, client, Some(f), now);
    }

    fn keep_upstream_trace(
        &self,
        ctx: &RequestContext,
        user: Option<&str>,
        client: Option<&str>,
        failure: Option<&UpstreamFailure>,
        now: UnixTime,
    ) {
        if !ctx.trace.is_on() || !self.diagnostics.switch.wants(user, client) {
            return;
        }
        let mut steps = ctx.trace.steps();
        steps.truncate(crate::diagnostics::MAX_STEPS_PER_TRACE);
        let entry = failure.and_then(|f| f.class.entry());
        let propagate = self.diagnostics.propagate_cause();
        self.diagnostics.traces.push(TraceRecord {
            request_id: ctx.request_id.clone(),
            at: now,
            attempt: "upstream_login".into(),
            user: user.map(str::to_owned),
            client: client.map(str::to_owned),
            source_ip: ctx.source_ip.map(|ip| ip.to_string()),
            decision: if failure.is_some() {
                "failure"
            } else {
                "success"
            }
            .into(),
            error: failure.map(|f| f.class.label().to_owned()),
            code: failure.map(|f| f.code().to_owned()),
            explanation: entry.map(|e| e.explanation.to_owned()),
            remedy: failure.map(|f| f.class.remedy()),
            cause: failure.filter(|_| propagate).map(UpstreamFailure::message),
            steps,
        });
    }
}

struct Tokens {
    id_token: String,
    access_token: Option<String>,
}
