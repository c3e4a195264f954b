//! The authentication trace over HTTP: the admin switch (`POST /admin/debug/authn`), kept
//! traces by request id (`GET /admin/traces/{id}`), scoping to one client, and cause
//! propagation: the admin API gets the root cause and a stable code, anonymous callers only the
//! standard OAuth error (RFC 6749 §5.2), and no secret appears in either.

// Test harness helpers outside `#[test]` functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
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
const TOKEN: &str = "admin-token-for-diagnostics-tests";
const RIGHT: &str = "right-secret-7f3a9c";
const WRONG: &str = "wrong-secret-MARKER-51d2";

async fn router() -> (axum::Router, Arc<Engine>) {
    let store = SqliteStore::memory().await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let mut settings = Settings::new(ISSUER);
    settings.admin_token = Some(TOKEN.into());
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
    for id in ["svc", "other"] {
        store
            .put_client(&Client {
                client_id: id.into(),
                secret_hash: Some(master.hash_client_secret(RIGHT)),
                token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
                grant_types: vec!["client_credentials".into()],
                ..Client::default()
            })
            .await
            .unwrap();
    }
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

/// (status, body, X-Request-Id)
async fn send(r: &axum::Router, req: Request<Body>) -> (StatusCode, String, String) {
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), id)
}

fn admin(method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json");
    b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .unwrap()
}

fn token_req(client: &str, secret: &str) -> Request<Body> {
    let basic = STANDARD.encode(format!("{client}:{secret}"));
    Request::builder()
        .method("POST")
        .uri("/token")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap()
}

fn artifact(name: &str, text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts/diagnostics");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
    }
}

#[tokio::test]
async fn off_by_default_nothing_kept() {
    let (r, e) = router().await;
    let (status, _, id) = send(&r, token_req("svc", WRONG)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(e.diagnostics.traces.is_empty());
    let (status, body, _) = send(&r, admin("GET", &format!("/admin/traces/{id}"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("tracing was off"), "{body}");
}

#[tokio::test]
async fn the_switch_needs_the_admin_token() {
    let (r, _) = router().await;
    let req = Request::builder()
        .method("POST")
        .uri("/admin/debug/authn")
        .body(Body::from(r#"{"on":true}"#))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &r,
        admin("POST", "/admin/debug/authn", Some(json!({"of": 1}))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scoped_to_one_client_with_cause_for_admins_only() {
    let (r, _) = router().await;
    let (status, body, _) = send(
        &r,
        admin(
            "POST",
            "/admin/debug/authn",
            Some(json!({"on": true, "client": "svc"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        state,
        json!({"global": false, "users": [], "clients": ["svc"]})
    );

    // The anonymous caller gets the standard error, nothing more.
    let (status, body, id) = send(&r, token_req("svc", WRONG)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "invalid_client", "error_description": "client authentication failed"})
    );
    assert!(
        !body.contains("wrong secret") && !body.contains("TSR-"),
        "{body}"
    );

    // The admin gets the trace with the code, the cause and the remedy.
    let (status, body, _) = send(&r, admin("GET", &format!("/admin/traces/{id}"), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["code"], "TSR-CLIENT-SECRET");
    assert_eq!(t["client"], "svc");
    assert_eq!(t["cause"], "wrong secret for client 'svc'");
    assert!(t["remedy"].as_str().unwrap().contains("secret"));
    assert!(
        !body.contains(WRONG) && !body.contains(RIGHT),
        "a secret leaked into the trace"
    );
    let pretty = serde_json::to_string_pretty(&t)
        .unwrap()
        .replace(&id, "REQUEST_ID");
    artifact("trace-client-secret", &pretty);

    // Another client is not in scope: recorded, then discarded.
    let (_, _, other_id) = send(&r, token_req("other", WRONG)).await;
    let (status, _, _) = send(&r, admin("GET", &format!("/admin/traces/{other_id}"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Lock the client: the trace names the lockout.
    for _ in 0..3 {
        send(&r, token_req("svc", WRONG)).await;
    }
    let (_, _, locked_id) = send(&r, token_req("svc", RIGHT)).await;
    let (_, body, _) = send(
        &r,
        admin("GET", &format!("/admin/traces/{locked_id}"), None),
    )
    .await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["code"], "TSR-CLIENT-LOCKED", "{body}");

    // The list, newest first; then switch everything off.
    let (_, body, _) = send(&r, admin("GET", "/admin/traces?limit=2", None)).await;
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["traces"].as_array().unwrap().len(), 2);
    assert_eq!(list["traces"][0]["request_id"], locked_id.as_str());
    let (_, body, _) = send(
        &r,
        admin("POST", "/admin/debug/authn", Some(json!({"on": false}))),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["clients"],
        json!([])
    );
}

#[tokio::test]
async fn without_cause_propagation_admins_get_code_and_remedy_only() {
    let (r, e) = router().await;
    e.diagnostics.set_propagate_cause(false);
    send(
        &r,
        admin("POST", "/admin/debug/authn", Some(json!({"on": true}))),
    )
    .await;
    let (_, _, id) = send(&r, token_req("nobody", WRONG)).await;
    let (_, body, _) = send(&r, admin("GET", &format!("/admin/traces/{id}"), None)).await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["code"], "TSR-CLIENT-UNKNOWN", "{body}");
    assert!(t.get("cause").is_none(), "{body}");
    assert!(t["remedy"].is_string());
}

/// No OAuth error body carries a cause or a stable code, whatever the failure.
#[tokio::test]
async fn no_cause_leaks_in_any_oauth_error_body() {
    use tessera_core::error::{ErrorCode, OAuthError};
    use tessera_http::error::error_body;
    let marker = "CAUSE-MARKER /etc/secret host 10.0.0.7 password=hunter2";
    for code in [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::InvalidScope,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::AccessDenied,
    ] {
        let e = OAuthError::new(code, "safe text").with_cause(marker);
        let body = error_body(&e).to_string();
        assert!(
            !body.contains("CAUSE-MARKER") && !body.contains("hunter2"),
            "{body}"
        );
    }
    // And end to end, with tracing on.
    let (r, _) = router().await;
    send(
        &r,
        admin("POST", "/admin/debug/authn", Some(json!({"on": true}))),
    )
    .await;
    for req in [token_req("svc", WRONG), token_req("nobody", WRONG)] {
        let (_, body, _) = send(&r, req).await;
        for leak in ["wrong secret", "unknown client", "TSR-", WRONG] {
            assert!(!body.contains(leak), "{leak} in {body}");
        }
    }
}
