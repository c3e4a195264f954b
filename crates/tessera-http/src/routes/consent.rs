//! The consent page (OIDC Core §3.1.2.4) for third-party clients (and `prompt=consent`).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tessera_core::oauth::scope::Scope;

use super::authorize::{LOGIN, respond_step};
use super::login::{client_name, client_or_page, open_tx, tx_error_page};
use super::pages::{self, Chrome, ConsentPage, SESSION_COOKIE};
use crate::AppState;
use crate::extract::Context;

pub(super) async fn show(
    State(s): State<AppState>,
    Context(ctx): Context,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let e = &s.engine;
    let params =
        pages::parse_params(q.as_deref().unwrap_or_default().as_bytes()).unwrap_or_default();
    let sealed = params.get("tx").unwrap_or_default().to_owned();
    let tx = match open_tx(&s, Some(&sealed), &headers) {
        Ok(t) => t,
        Err(err) => return tx_error_page(&s, err, &ctx.request_id),
    };
    let client = match client_or_page(&s, &tx, &ctx.request_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let session = match e
        .load_session(pages::cookie(&headers, SESSION_COOKIE).as_deref(), e.now())
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return pages::see_other(&format!("{}{LOGIN}?tx={sealed}", Chrome::of(e).base)),
        Err(err) => {
            crate::error::log_cause(&err);
            return pages::error_page(
                e,
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "Please try again in a few minutes.",
                &ctx.request_id,
            );
        }
    };
    let user = session
        .claims
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(&session.username)
        .to_owned();
    let scope = Scope::parse(&tx.request.scope).unwrap_or_default();
    let scopes = scope
        .tokens()
        .iter()
        .filter_map(|t| pages::describe_scope(t))
        .collect();
    let client_host = url::Url::parse(&tx.request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let chrome = Chrome::of(e);
    let csrf = tx.csrf_token(e);
    let page = ConsentPage {
        chrome: &chrome,
        title: "Allow access",
        client_name: client_name(&client),
        client_host: &client_host,
        user: &user,
        scopes,
        tx: &sealed,
        csrf: &csrf,
    };
    let targets: Vec<String> = pages::form_target(&tx.request.redirect_uri)
        .into_iter()
        .collect();
    pages::html(StatusCode::OK, &page, &targets)
}

pub(super) async fn submit(
    State(s): State<AppState>,
    Context(ctx): Context,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let e = &s.engine;
    let params = pages::parse_params(&body).unwrap_or_default();
    let tx = match open_tx(&s, params.get("tx"), &headers) {
        Ok(t) => t,
        Err(err) => return tx_error_page(&s, err, &ctx.request_id),
    };
    if let Err(err) = tx.check_csrf(e, params.get("csrf_token")) {
        return tx_error_page(&s, err, &ctx.request_id);
    }
    let approve = params.get("decision") == Some("allow");
    let session = pages::cookie(&headers, SESSION_COOKIE);
    let step = e.consent(tx, session.as_deref(), approve, e.now()).await;
    respond_step(&s, step, &ctx.request_id)
}
