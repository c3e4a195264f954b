//! Tessera's HTTP edge (axum). Handlers are thin: extract, make one call into
//! `tessera_core::Engine`, map the result to the wire. The only error-to-response mapping is in
//! [`error`]; request parsing rules for OAuth endpoints are in [`extract`].
//!
//! Must not: make protocol decisions (they belong to tessera-core), or touch storage directly.

pub mod backchannel;
pub mod error;
pub mod extract;
mod routes;

pub use routes::EgressUpstreamHttp;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tessera_core::Engine;
use tower_http::set_header::SetResponseHeaderLayer;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    routes::routes()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(axum::middleware::from_fn(extract::request_id_layer))
        .with_state(state)
}
