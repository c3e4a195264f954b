#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The lockout manager over HTTP: admin API authentication, list/status/clear, and `/metrics`,
//! through the real router on an in-memory SQLite store, with client lockout driving the state.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
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

const ISSUER: &str = "https://id.example.test";
const T0: i64 = 1_900_000_000;
const TOKEN: &str = "admin-token-for-tests";

async fn router(admin_token: Option<&str>) -> (axum::Router, Arc<Engine>) {
    let store = SqliteStore::memory().await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let mut settings = Settings::new(ISSUER);
    settings.admin_token = admin_token.map(Into::into);
    settings.client_lockout.threshold = 3;
    let keys = Arc::new(KeyManager::new(
        master.clone(),
        90 * 86400,
        settings.jwks_max_age,
        7200,
    ));
    keys.ensure(&*store, &[Algorithm::ES256, Algorithm::RS256], T0)
        .await
        .unwrap();
    let client = Client {
        client_id: "svc".into(),
        secret_hash: Some(master.hash_client_secret("right-secret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        grant_types: vec!["client_credentials".into()],
        ..Client::default()
    };
    store.put_client(&client).await.unwrap();
    let engine = Arc::new(Engine::new(EngineParts {
        settings: Arc::new(settings),
        store,
        keys,
        master,
        clock: Arc::new(ManualClock::new(T0)),
        passwords: PasswordHasher::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap(),
        chain: Chain::default(),
    }));
    (
        tessera_http::router(tessera_http::AppState::new(engine.clone())),
        engine,
    )
}

async fn send(r: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn admin(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

async fn token_request(r: &axum::Router, secret: &str) -> StatusCode {
    let basic = STANDARD.encode(format!("svc:{secret}"));
    let req = Request::builder()
        .method("POST")
        .uri("/token")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    send(r, req).await.0
}

#[tokio::test]
async fn admin_api_is_404_without_a_token() {
    let (r, _) = router(None).await;
    for (m, p) in [
        ("GET", "/admin/lockout"),
        ("GET", "/admin/lockout/x"),
        ("DELETE", "/admin/lockout/x"),
    ] {
        assert_eq!(
            send(&r, admin(m, p, Some("anything"))).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn admin_api_requires_the_bearer_token() {
    let (r, _) = router(Some(TOKEN)).await;
    assert_eq!(
        send(&r, admin("GET", "/admin/lockout", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&r, admin("GET", "/admin/lockout", Some("wrong")))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&r, admin("GET", "/admin/lockout", Some(TOKEN)))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn list_status_clear_and_metrics() {
    let (r, _) = router(Some(TOKEN)).await;
    for _ in 0..3 {
        assert_eq!(token_request(&r, "guess").await, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right secret is refused (from this source).
    assert_eq!(
        token_request(&r, "right-secret").await,
        StatusCode::UNAUTHORIZED
    );

    let (status, body) = send(&r, admin("GET", "/admin/lockout", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["locked_now"], 1);
    let rec = &v["records"][0];
    assert_eq!(
        (rec["kind"].as_str(), rec["name"].as_str()),
        (Some("client"), Some("svc"))
    );
    assert_eq!(
        (rec["locked"].as_bool(), rec["failure_count"].as_u64()),
        (Some(true), Some(3))
    );
    assert!(rec["last_failure_at"].as_i64().is_some());

    let (_, body) = send(&r, admin("GET", "/admin/lockout/svc", Some(TOKEN))).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["locked"], true);

    let (_, metrics) = send(&r, admin("GET", "/metrics", None)).await;
    for line in [
        "tessera_lockouts_total 1",
        "tessera_lockout_invalid_attempts_total 3",
        "tessera_lockout_attempts_while_locked_total 1",
        "tessera_lockout_locked_now{kind=\"client\"} 1",
        "tessera_lockout_locked_now{kind=\"user\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }

    let (status, body) = send(&r, admin("DELETE", "/admin/lockout/svc", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["cleared"].as_u64(), v["unlocked"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(token_request(&r, "right-secret").await, StatusCode::OK);
    let (_, metrics) = send(&r, admin("GET", "/metrics", None)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "tessera_lockout_unlocks_total 1"),
        "{metrics}"
    );
}
