//! RP-Initiated Logout 1.0 (`end_session_endpoint`, GET and POST).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use tessera_core::interactive::transaction::{browser_csrf_token, check_browser_csrf};
use tessera_core::oauth::params::Params;
use tessera_core::settings::paths;

use super::pages::{self, BIND_COOKIE, Chrome, LogoutPage, SESSION_COOKIE, SignedOutPage};
use crate::AppState;
use crate::extract::Context;

const PURPOSE: &str = "logout";

pub(super) async fn end_session(
    State(s): State<AppState>,
    method: Method,
    Context(ctx): Context,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let e = &s.engine;
    let raw: &[u8] = if method == Method::POST {
        &body
    } else {
        query.as_deref().unwrap_or_default().as_bytes()
    };
    // RFC 6749 §3.1 (whose form rules this endpoint shares): a repeated or malformed parameter
    // makes the request invalid; it is not read as an empty one.
    let params: Params = match pages::parse_params(raw) {
        Ok(p) => p,
        Err(why) => {
            tracing::debug!(target: "tessera::logout", cause = %why, "malformed end-session request");
            return pages::error_page(
                e,
                StatusCode::BAD_REQUEST,
                "This sign-out link is not valid",
                "The application sent an invalid sign-out request: it could not be read.",
                &ctx.request_id,
            );
        }
    };
    if method == Method::POST
        && let Some(r) = pages::repeat_as_get(e, &headers, paths::END_SESSION, &params)
    {
        return r;
    }
    let now = e.now();
    // The confirmation form comes back with its token; anything else is a fresh request.
    let confirmed = match params.get("confirm_token") {
        Some(t) => {
            if !check_browser_csrf(
                e,
                PURPOSE,
                pages::cookie(&headers, BIND_COOKIE).as_deref(),
                Some(t),
            ) {
                return pages::error_page(
                    e,
                    StatusCode::BAD_REQUEST,
                    "The form could not be verified",
                    "Reload the page and try again.",
                    &ctx.request_id,
                );
            }
            true
        }
        None => false,
    };
    let req = match e.end_session_request(&params, now).await {
        Ok(r) => r,
        Err(err) => {
            crate::error::log_cause(&err);
            let message = format!(
                "The application sent an invalid sign-out request: {}.",
                err.description.as_deref().unwrap_or("unknown error")
            );
            return pages::error_page(
                e,
                StatusCode::BAD_REQUEST,
                "This sign-out link is not valid",
                &message,
                &ctx.request_id,
            );
        }
    };
    let session_cookie = pages::cookie(&headers, SESSION_COOKIE);
    let session = match e.load_session(session_cookie.as_deref(), now).await {
        Ok(s) => s,
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
    let chrome = Chrome::of(e);
    if !confirmed && e.logout_needs_confirmation(&req, session.as_ref()) {
        let (bind, new_bind) = pages::ensure_bind(e, &headers);
        let csrf = browser_csrf_token(e, PURPOSE, &bind);
        let page = LogoutPage {
            chrome: &chrome,
            title: "Sign out",
            client_name: req.client_name.as_deref(),
            csrf: &csrf,
            client_id: req.client_id.as_deref(),
            post_logout_redirect_uri: req.post_logout_redirect_uri.as_deref(),
            state: req.state.as_deref(),
        };
        let targets: Vec<String> = req
            .post_logout_redirect_uri
            .as_deref()
            .and_then(pages::form_target)
            .into_iter()
            .collect();
        let mut r = pages::html(StatusCode::OK, &page, &targets);
        pages::add_cookie(&mut r, new_bind);
        return r;
    }
    if let Err(err) = e.logout(session_cookie.as_deref(), now).await {
        crate::error::log_cause(&err);
        return pages::error_page(
            e,
            StatusCode::SERVICE_UNAVAILABLE,
            "Something went wrong",
            "You may still be signed in. Please try again in a few minutes.",
            &ctx.request_id,
        );
    }
    let mut r = match e.post_logout_url(&req) {
        Some(url) => pages::see_other(&url),
        None => pages::html(
            StatusCode::OK,
            &SignedOutPage {
                chrome: &chrome,
                title: "Signed out",
            },
            &[],
        ),
    };
    pages::add_cookie(&mut r, pages::set_cookie(e, SESSION_COOKIE, "", Some(0)));
    r
}
