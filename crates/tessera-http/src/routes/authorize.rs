//! The authorization endpoint (RFC 6749 §3.1, OIDC Core §3.1.2.1: GET and POST).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use tessera_core::interactive::{AuthorizeError, Step};
use tessera_core::oauth::params::{FormError, Params};
use tessera_core::settings::paths;

use super::pages::{self, SESSION_COOKIE};
use crate::AppState;
use crate::extract::Context;

pub(super) async fn authorize(
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
    let params = match Params::parse(raw) {
        Ok(p) => p,
        // RFC 6749 §3.1: parameters must not repeat. §4.1.2.1: invalid_request, redirected
        // once the client and redirect URI are verified from the parameters that do not.
        Err(FormError::Duplicate(name)) => {
            tracing::debug!(target: "tessera::authorize", parameter = %name, "repeated authorization request parameter");
            let err = e.refuse_repeated(raw, e.now()).await;
            return authorize_error(&s, &err, &ctx.request_id);
        }
        Err(why) => {
            tracing::debug!(target: "tessera::authorize", cause = %why, "malformed authorization request");
            return pages::error_page(
                e,
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                "The request could not be read. Return to the application and try again.",
                &ctx.request_id,
            );
        }
    };
    if method == Method::POST
        && let Some(r) = pages::repeat_as_get(e, &headers, paths::AUTHORIZE, &params)
    {
        return r;
    }
    let (bind, new_bind) = pages::ensure_bind(e, &headers);
    let session = pages::cookie(&headers, SESSION_COOKIE);
    let step = e
        .authorize(&params, session.as_deref(), &bind, e.now())
        .await;
    if let Err(err) = &step {
        // A refused authorization request is traced (e.g. a redirect_uri that is not
        // registered); the user only sees the page and the request id.
        super::diagnostics::record_attempt(
            &s,
            &ctx,
            "authorize",
            None,
            params.get("client_id"),
            Some(tessera_core::diagnostics::AttemptError {
                error: err.error().to_owned(),
                description: Some(err.description.to_string()),
                cause: err.cause.clone(),
            }),
        );
    }
    let mut r = respond_step(&s, step, &ctx.request_id);
    pages::add_cookie(&mut r, new_bind);
    r
}

/// Turn a decision into a response: interaction pages by redirect (so a reload is harmless),
/// success and client-visible errors as redirects to the client, the rest as an error page.
pub(super) fn respond_step(
    s: &AppState,
    step: Result<Step, AuthorizeError>,
    request_id: &str,
) -> Response {
    let e = &s.engine;
    let base = pages::Chrome::of(e).base;
    let interaction = |path: &str, tx: &tessera_core::interactive::Transaction| match tx.seal(e) {
        Ok(sealed) => pages::see_other(&format!("{base}{path}?tx={sealed}")),
        Err(err) => {
            crate::error::log_cause(&err);
            pages::error_page(
                e,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "An unexpected error occurred. Please try again.",
                request_id,
            )
        }
    };
    match step {
        Ok(Step::Login(tx)) => interaction(LOGIN, &tx),
        Ok(Step::Consent(tx)) => interaction(CONSENT, &tx),
        Ok(Step::Redirect(url)) => pages::see_other(&url),
        Err(err) => authorize_error(s, &err, request_id),
    }
}

pub(super) const LOGIN: &str = "/login";
pub(super) const CONSENT: &str = "/consent";

/// RFC 6749 §4.1.2.1: redirect only once the redirect URI is verified; otherwise explain.
pub(super) fn authorize_error(s: &AppState, err: &AuthorizeError, request_id: &str) -> Response {
    let e = &s.engine;
    match err.code {
        tessera_core::interactive::AuthzCode::OAuth(tessera_core::ErrorCode::ServerError) => {
            tracing::error!(target: "tessera::error", cause = ?err.cause, request_id, "authorization failed")
        }
        _ => {
            tracing::info!(target: "tessera::security", error = err.error(), description = %err.description, cause = ?err.cause, request_id, "authorization request refused")
        }
    }
    if let Some(url) = err.redirect_url(&e.settings.issuer) {
        return pages::see_other(&url);
    }
    let (title, message): (&str, String) = match err.code {
        tessera_core::interactive::AuthzCode::OAuth(tessera_core::ErrorCode::InvalidClient) => {
            ("Unknown application", "The application that sent you here is not registered with this sign-in service, or is disabled. Contact the application's administrator.".to_owned())
        }
        tessera_core::interactive::AuthzCode::OAuth(tessera_core::ErrorCode::ServerError) => {
            ("Something went wrong", "An unexpected error occurred. Please try again.".to_owned())
        }
        _ => ("This sign-in link is not valid", format!("The application sent an invalid sign-in request ({}). Contact the application's administrator.", err.description)),
    };
    let status = match err.code {
        tessera_core::interactive::AuthzCode::OAuth(tessera_core::ErrorCode::ServerError) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        tessera_core::interactive::AuthzCode::OAuth(
            tessera_core::ErrorCode::TemporarilyUnavailable,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    pages::error_page(e, status, title, &message, request_id)
}
