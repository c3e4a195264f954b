//! Shared setup for the integration tests: an engine on an in-memory SQLite store, behind the
//! real router, on a manual clock.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::Value;
use tessera_core::Engine;
use tessera_core::authn::Chain;
use tessera_core::clock::ManualClock;
use tessera_core::engine::EngineParts;
use tessera_core::keys::KeyManager;
use tessera_core::model::{AuthMethod, Client};
use tessera_core::secrets::{MasterKey, PasswordHasher, PasswordParams};
use tessera_core::settings::Settings;
use tessera_core::store::Store;
use tessera_jose::Algorithm;
use tessera_store::SqliteStore;
use tower::ServiceExt;

pub const ISSUER: &str = "https://id.example.test";
pub const T0: i64 = 1_900_000_000;

pub struct Server {
    pub engine: Arc<Engine>,
    pub clock: ManualClock,
    pub router: axum::Router,
}

/// A server with `Settings::new(ISSUER)` adjusted by `configure`; with ES256 and RS256 signing
/// keys when `ensure_keys`.
pub async fn server(configure: impl FnOnce(&mut Settings), ensure_keys: bool) -> Server {
    let store = SqliteStore::memory().await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let mut settings = Settings::new(ISSUER);
    configure(&mut settings);
    let keys = Arc::new(KeyManager::new(
        master.clone(),
        90 * 86400,
        settings.jwks_max_age,
        7200,
    ));
    if ensure_keys {
        keys.ensure(&*store, &[Algorithm::ES256, Algorithm::RS256], T0)
            .await
            .unwrap();
    }
    let clock = ManualClock::new(T0);
    let engine = Arc::new(Engine::new(EngineParts {
        settings: Arc::new(settings),
        store,
        keys,
        master,
        clock: Arc::new(clock.clone()),
        passwords: PasswordHasher::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap(),
        chain: Chain::default(),
    }));
    let router = tessera_http::router(tessera_http::AppState::new(engine.clone()));
    Server {
        engine,
        clock,
        router,
    }
}

impl Server {
    /// Store a `client_secret_basic` client for `client_credentials` with `secret`.
    pub async fn put_basic_client(&self, id: &str, secret: &str) {
        self.engine
            .store
            .put_client(&Client {
                client_id: id.into(),
                secret_hash: Some(self.engine.master.hash_client_secret(secret)),
                token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
                grant_types: vec!["client_credentials".into()],
                ..Client::default()
            })
            .await
            .unwrap();
    }

    /// Status, headers and the whole body.
    pub async fn call(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }
}

/// A request with a JSON body (`application/json`) when `body` is given, and a Bearer token
/// when `bearer` is.
pub fn json_request(
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    b.body(body).unwrap()
}

/// The `Authorization` value for HTTP Basic client authentication.
pub fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `POST /token` with `grant_type=client_credentials`, authenticated with HTTP Basic.
pub fn cc_request(id: &str, secret: &str) -> Request<Body> {
    Request::post("/token")
        .header(header::AUTHORIZATION, basic_auth(id, secret))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap()
}
