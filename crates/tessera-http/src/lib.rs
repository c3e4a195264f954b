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
use tessera_core::Engine;

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

/// The whole HTTP surface. One middleware wraps every route: the request id and the security
/// headers (`extract::request_id_layer`).
pub fn router(state: AppState) -> Router {
    routes::routes()
        .layer(axum::middleware::from_fn(extract::request_id_layer))
        .with_state(state)
}
