//! Route table. One module per endpoint family.

mod admin;
mod authorize;
mod consent;
mod diagnostics;
mod federation;
mod login;
mod logout;
mod metadata;
mod oauth;
mod pages;
mod register;
mod userinfo;

use axum::Router;
use axum::routing::{get, post};
use tessera_core::settings::paths;

use crate::AppState;

pub use federation::EgressUpstreamHttp;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::OIDC_DISCOVERY, get(metadata::discovery))
        .route(paths::OAUTH_METADATA, get(metadata::discovery))
        .route(paths::JWKS, get(metadata::jwks))
        .route("/healthz", get(metadata::health))
        .route("/metrics", get(admin::metrics))
        .route("/admin/lockout", get(admin::list))
        .route(
            "/admin/lockout/{name}",
            get(admin::status).delete(admin::clear),
        )
        .route(
            "/admin/debug/authn",
            get(diagnostics::get_debug).post(diagnostics::set_debug),
        )
        .route("/admin/traces", get(diagnostics::list_traces))
        .route("/admin/traces/{request_id}", get(diagnostics::show_trace))
        .route(paths::TOKEN, post(oauth::token))
        .route(paths::INTROSPECT, post(oauth::introspect))
        .route(paths::REVOKE, post(oauth::revoke))
        .route(
            paths::AUTHORIZE,
            get(authorize::authorize).post(authorize::authorize),
        )
        .route(authorize::LOGIN, get(login::show).post(login::submit))
        .route(authorize::CONSENT, get(consent::show).post(consent::submit))
        .route(
            paths::USERINFO,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(
            paths::END_SESSION,
            get(logout::end_session).post(logout::end_session),
        )
        .route("/assets/tessera.css", get(pages::stylesheet))
        .route("/federation/{name}/start", get(federation::start))
        .route("/federation/{name}/callback", get(federation::callback))
        .route(paths::REGISTER, post(register::create))
        .route(
            &format!("{}/{{client_id}}", paths::REGISTER),
            get(register::read)
                .put(register::update)
                .delete(register::delete),
        )
}

/// RFC 6749 §5.1: responses with tokens or credentials are not cached.
pub(crate) fn no_store(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}
