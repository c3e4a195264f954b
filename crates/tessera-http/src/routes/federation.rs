//! Upstream OpenID providers at the edge: `GET /federation/{name}/start?tx=…` (the login page's
//! "Sign in with …" button) and `GET /federation/{name}/callback` (the redirect URI registered
//! at the upstream). Decisions are in `tessera_core::federation`; this module sets and reads
//! cookies and renders the end user's error page (a generic message and the request id; the
//! cause, code and remedy go to the log and the trace only).
//!
//! Also the glue from the outbound client to core's [`UpstreamHttp`]: [`EgressUpstreamHttp`]
//! sends through `tessera_egress::HttpClient` (timeouts, CA bundle, proxy) and, after a
//! transport failure through a proxy, asks the proxy again with the egress probe to learn its
//! answer to CONNECT (hyper's `TunnelError` drops the status line).

use async_trait::async_trait;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tessera_core::federation::{
    FailureClass, FlowError, HttpReply, PENDING_COOKIE, ProxyRefusal, TransportError,
    TransportKind, UpstreamFailure, UpstreamHttp,
};
use tessera_egress::probe::ProbeOptions;
use tessera_egress::proxy::{ProxySettings, Route};
use tessera_egress::{EgressError, HttpClient};

use super::authorize::respond_step;
use super::pages::{self, BIND_COOKIE, SESSION_COOKIE};
use crate::AppState;
use crate::extract::Context;

/// `GET /federation/{name}/start?tx=…`
pub(super) async fn start(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Context(ctx): Context,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let e = &s.engine;
    let params =
        pages::parse_params(q.as_deref().unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(tx) = params.get("tx") else {
        return pages::error_page(
            e,
            StatusCode::BAD_REQUEST,
            "Start from your application",
            "Sign-in starts at the application you want to use. Open it and choose sign in.",
            &ctx.request_id,
        );
    };
    let bind = pages::cookie(&headers, BIND_COOKIE);
    match e.upstream_start(&name, tx, bind.as_deref(), &ctx).await {
        Ok(r) => {
            let mut resp = pages::see_other(&r.url);
            pages::add_cookie(
                &mut resp,
                pages::set_cookie(
                    e,
                    PENDING_COOKIE,
                    &r.cookie,
                    Some(tessera_core::federation::flow::PENDING_TTL),
                ),
            );
            resp
        }
        Err(err) => failure_page(&s, &name, err, &ctx.request_id),
    }
}

/// `GET /federation/{name}/callback?code=…&state=…[&iss=…]`
pub(super) async fn callback(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Context(ctx): Context,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let e = &s.engine;
    let clear = pages::set_cookie(e, PENDING_COOKIE, "", Some(0));
    let params = match pages::parse_params(q.as_deref().unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(why) => {
            let f = UpstreamFailure::new(
                &name,
                tessera_core::federation::Stage::Callback,
                FailureClass::Malformed,
                format!("the callback's query does not parse: {why}"),
            );
            let mut r = failure_page(&s, &name, FlowError::from(f), &ctx.request_id);
            pages::add_cookie(&mut r, clear);
            return r;
        }
    };
    let pending = pages::cookie(&headers, PENDING_COOKIE);
    let bind = pages::cookie(&headers, BIND_COOKIE);
    let previous = pages::cookie(&headers, SESSION_COOKIE);
    let outcome = e
        .upstream_callback(
            &name,
            &params,
            pending.as_deref(),
            bind.as_deref(),
            previous.as_deref(),
            &ctx,
        )
        .await;
    let mut r = match outcome {
        Ok(o) => {
            let step = e.resume(o.tx, Some(&o.signed.cookie), e.now()).await;
            let mut r = respond_step(&s, step, &ctx.request_id);
            pages::add_cookie(
                &mut r,
                pages::set_cookie(
                    e,
                    SESSION_COOKIE,
                    &o.signed.cookie,
                    Some(e.settings.session_ttl as i64),
                ),
            );
            r
        }
        Err(err) => failure_page(&s, &name, err, &ctx.request_id),
    };
    pages::add_cookie(&mut r, clear);
    r
}

/// What the end user sees: a plain explanation and the request id to quote. The cause was
/// logged (with code and remedy) by the engine.
fn failure_page(s: &AppState, name: &str, err: FlowError, request_id: &str) -> Response {
    let e = &s.engine;
    let f = match err {
        FlowError::Tx(t) => return super::login::tx_error_page(s, t, request_id),
        FlowError::Upstream(f) => f,
    };
    let display = e
        .upstreams
        .get(name)
        .map(|u| u.config.display_name.clone())
        .unwrap_or_else(|| name.to_owned());
    let (status, title, message) = match &f.class {
        FailureClass::UnknownUpstream => (
            StatusCode::NOT_FOUND,
            "This sign-in option is not available".to_owned(),
            "Return to the application and choose another way to sign in.".to_owned(),
        ),
        FailureClass::StateMismatch => (
            StatusCode::BAD_REQUEST,
            format!("Signing in with {display} could not be completed"),
            "This sign-in was started in another browser or tab, or took too long. Return to the application and sign in again."
                .to_owned(),
        ),
        FailureClass::UpstreamDenied(_) => (
            StatusCode::FORBIDDEN,
            format!("{display} did not sign you in"),
            "The sign-in was cancelled or refused. Return to the application to try again.".to_owned(),
        ),
        FailureClass::NotLinked | FailureClass::AccountDisabled => (
            StatusCode::FORBIDDEN,
            format!("Your {display} account cannot be used here"),
            "There is no account on this service for you, or it is disabled. Contact your administrator."
                .to_owned(),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            format!("Signing in with {display} failed"),
            format!(
                "We could not complete the sign-in with {display}. Please try again later; if it keeps failing, contact your administrator."
            ),
        ),
    };
    pages::error_page(e, status, &title, &message, request_id)
}

// ---------------------------------------------------------------------------------------------
// The outbound adapter.
// ---------------------------------------------------------------------------------------------

/// Core's upstream transport over the egress client.
pub struct EgressUpstreamHttp {
    client: HttpClient,
    proxy: ProxySettings,
}

impl EgressUpstreamHttp {
    /// `proxy` must be the settings `client` was built with (used only to explain failures).
    pub fn new(client: HttpClient, proxy: ProxySettings) -> Self {
        Self { client, proxy }
    }

    fn classify(&self, e: EgressError) -> TransportError {
        let detail = e.to_string();
        let kind = match &e {
            EgressError::Dns { .. } => TransportKind::Dns,
            EgressError::ConnectionRefused { .. } => TransportKind::Refused,
            EgressError::Timeout { after_ms, .. } => {
                if *after_ms == self.client.config().connect_timeout_ms {
                    TransportKind::Timeout
                } else {
                    TransportKind::NoAnswer
                }
            }
            EgressError::Tls { detail, .. } => {
                let d = detail.to_ascii_lowercase();
                if d.contains("unknownissuer")
                    || d.contains("invalid peer certificate")
                    || d.contains("notvalidforname")
                    || d.contains("expired")
                {
                    TransportKind::TlsTrust
                } else {
                    TransportKind::Tls
                }
            }
            EgressError::Connect { .. } => TransportKind::Connect,
            EgressError::HttpStatus { status, .. } => TransportKind::HttpStatus(*status),
            EgressError::TooLarge { .. } => TransportKind::TooLarge,
            EgressError::InvalidUrl(_) => TransportKind::InvalidUrl,
            _ => TransportKind::Other,
        };
        TransportError { kind, detail }
    }
}

#[async_trait]
impl UpstreamHttp for EgressUpstreamHttp {
    async fn get(
        &self,
        url: &str,
        accept: &str,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, TransportError> {
        self.client
            .get_bearer(url, accept, bearer)
            .await
            .map_err(|e| self.classify(e))
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        basic: Option<(&str, &str)>,
    ) -> Result<HttpReply, TransportError> {
        self.client
            .post_form(url, form, basic)
            .await
            .map(|r| HttpReply {
                status: r.status,
                body: r.body,
            })
            .map_err(|e| self.classify(e))
    }

    async fn proxy_refusal(&self, url: &str) -> Option<ProxyRefusal> {
        let parsed = url::Url::parse(url).ok()?;
        if !matches!(self.proxy.route(&parsed), Route::Proxy(_)) {
            return None;
        }
        let opts = ProbeOptions::from_egress(self.client.config(), self.proxy.clone());
        let report = tessera_egress::probe::probe_get(url, &opts).await;
        let failure = report.failure.as_ref()?;
        if failure.step != "proxy_connect" || !failure.code.starts_with("TSR-PROXY") {
            return None;
        }
        // "proxy P answered CONNECT T with 403 Filtered"
        let said = failure.cause.rsplit_once(" with ").map(|(_, s)| s.trim())?;
        let status: u16 = said.split(' ').next()?.parse().ok()?;
        Some(ProxyRefusal {
            proxy: report.proxy.clone().unwrap_or_default(),
            target: report.target.clone(),
            status_line: said.to_owned(),
            status,
        })
    }
}
