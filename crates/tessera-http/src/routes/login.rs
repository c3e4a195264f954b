//! The login page: GET shows the form, POST authenticates through the chain
//! (`Engine::sign_in` → `engine.chain`) and continues the authorization.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tessera_core::authn::PasswordCredentials;
use tessera_core::interactive::{SignInError, Transaction, TransactionError};
use tessera_core::model::Client;
use tessera_core::secret::Secret;

use super::authorize::respond_step;
use super::pages::{self, BIND_COOKIE, Chrome, LoginPage, SESSION_COOKIE};
use crate::AppState;
use crate::extract::Context;

pub(super) const INVALID_CREDENTIALS: &str = "Invalid username or password.";
pub(super) const UNAVAILABLE: &str =
    "Sign-in is temporarily unavailable. Please try again in a few minutes.";
pub(super) const ACCOUNT_STATE: &str =
    "This account cannot sign in right now. Please contact your administrator.";

/// Open the transaction a page carries (bound to this browser's binding cookie).
pub(super) fn open_tx(
    s: &AppState,
    sealed: Option<&str>,
    headers: &HeaderMap,
) -> Result<Transaction, TransactionError> {
    let bind = pages::cookie(headers, BIND_COOKIE);
    let sealed = sealed.ok_or(TransactionError::Invalid)?;
    Transaction::open(&s.engine, sealed, bind.as_deref(), s.engine.now())
}

/// The error page explaining why a transaction cannot be used.
pub(super) fn tx_error_page(s: &AppState, err: TransactionError, request_id: &str) -> Response {
    tracing::info!(target: "tessera::security", cause = %err, request_id, "sign-in transaction refused");
    let (title, message) = match err {
        TransactionError::Expired => (
            "This sign-in page has expired",
            "Return to the application and sign in again.",
        ),
        TransactionError::WrongBrowser => (
            "This sign-in page belongs to another browser",
            "Return to the application in this browser and sign in again. Cookies must be enabled.",
        ),
        TransactionError::BadCsrf => (
            "The form could not be verified",
            "Return to the application and sign in again.",
        ),
        TransactionError::Invalid => (
            "This sign-in page is not valid",
            "Return to the application and sign in again.",
        ),
    };
    pages::error_page(
        &s.engine,
        StatusCode::BAD_REQUEST,
        title,
        message,
        request_id,
    )
}

pub(super) async fn client_or_page(
    s: &AppState,
    tx: &Transaction,
    request_id: &str,
) -> Result<Client, Response> {
    s.engine.interaction_client(tx).await.map_err(|err| {
        crate::error::log_cause(&err);
        pages::error_page(
            &s.engine,
            StatusCode::BAD_REQUEST,
            "This application is not available",
            "The application you are signing in to is no longer available.",
            request_id,
        )
    })
}

pub(super) fn client_name(c: &Client) -> &str {
    c.client_name.as_deref().unwrap_or(&c.client_id)
}

fn render(
    s: &AppState,
    status: StatusCode,
    tx: &Transaction,
    sealed: &str,
    client: &Client,
    username: &str,
    error: Option<&str>,
) -> Response {
    let chrome = Chrome::of(&s.engine);
    let csrf = tx.csrf_token(&s.engine);
    let page = LoginPage {
        chrome: &chrome,
        title: "Sign in",
        client_name: client_name(client),
        tx: sealed,
        csrf: &csrf,
        username,
        error,
        upstreams: s.engine.upstreams.buttons(),
        password_form: s.engine.upstreams.password_sign_in(),
    };
    // The POST ends in a redirect to the client (or to the consent page): allow it as a target.
    let targets: Vec<String> = pages::form_target(&tx.request.redirect_uri)
        .into_iter()
        .collect();
    pages::html(status, &page, &targets)
}

pub(super) async fn show(
    State(s): State<AppState>,
    Context(ctx): Context,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params =
        pages::parse_params(q.as_deref().unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(sealed) = params.get("tx") else {
        return pages::error_page(
            &s.engine,
            StatusCode::BAD_REQUEST,
            "Start from your application",
            "Sign-in starts at the application you want to use. Open it and choose sign in.",
            &ctx.request_id,
        );
    };
    let tx = match open_tx(&s, Some(sealed), &headers) {
        Ok(t) => t,
        Err(err) => return tx_error_page(&s, err, &ctx.request_id),
    };
    let client = match client_or_page(&s, &tx, &ctx.request_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let hint = tx.request.login_hint.clone().unwrap_or_default();
    render(&s, StatusCode::OK, &tx, sealed, &client, &hint, None)
}

pub(super) async fn submit(
    State(s): State<AppState>,
    Context(ctx): Context,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let e = &s.engine;
    let params = pages::parse_params(&body).unwrap_or_default();
    let sealed = params.get("tx").unwrap_or_default().to_owned();
    let tx = match open_tx(&s, Some(&sealed), &headers) {
        Ok(t) => t,
        Err(err) => return tx_error_page(&s, err, &ctx.request_id),
    };
    if let Err(err) = tx.check_csrf(e, params.get("csrf_token")) {
        return tx_error_page(&s, err, &ctx.request_id);
    }
    let client = match client_or_page(&s, &tx, &ctx.request_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let username = params.get("username").unwrap_or_default().trim().to_owned();
    let password = Secret::new(params.get("password").unwrap_or_default());
    if username.len() > 256 || password.expose().len() > 1024 {
        return render(
            &s,
            StatusCode::OK,
            &tx,
            &sealed,
            &client,
            "",
            Some(INVALID_CREDENTIALS),
        );
    }
    let creds = PasswordCredentials {
        username: username.clone(),
        password,
    };
    let previous = pages::cookie(&headers, SESSION_COOKIE);
    let result = e.sign_in(&creds, previous.as_deref(), &ctx, e.now()).await;
    super::diagnostics::record_attempt(
        &s,
        &ctx,
        "login",
        Some(&username),
        Some(&tx.request.client_id),
        result
            .as_ref()
            .err()
            .map(|err| tessera_core::diagnostics::AttemptError {
                error: match err {
                    SignInError::InvalidCredentials => "invalid_credentials",
                    SignInError::AccountState(_) => "account_state",
                    SignInError::Unavailable => "unavailable",
                    SignInError::Internal(_) => "server_error",
                }
                .to_owned(),
                ..Default::default()
            }),
    );
    match result {
        Ok(signed) => {
            let step = e.resume(tx, Some(&signed.cookie), e.now()).await;
            let mut r = respond_step(&s, step, &ctx.request_id);
            let max_age = e.settings.session_ttl as i64;
            pages::add_cookie(
                &mut r,
                pages::set_cookie(e, SESSION_COOKIE, &signed.cookie, Some(max_age)),
            );
            r
        }
        Err(SignInError::InvalidCredentials) => render(
            &s,
            StatusCode::OK,
            &tx,
            &sealed,
            &client,
            &username,
            Some(INVALID_CREDENTIALS),
        ),
        Err(SignInError::AccountState(_)) => render(
            &s,
            StatusCode::FORBIDDEN,
            &tx,
            &sealed,
            &client,
            &username,
            Some(ACCOUNT_STATE),
        ),
        Err(SignInError::Unavailable) => render(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            &tx,
            &sealed,
            &client,
            &username,
            Some(UNAVAILABLE),
        ),
        Err(SignInError::Internal(err)) => {
            crate::error::log_cause(&err);
            pages::error_page(
                e,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "An unexpected error occurred while signing you in. Please try again.",
                &ctx.request_id,
            )
        }
    }
}
