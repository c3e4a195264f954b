#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The lockout manager over HTTP: admin API authentication, list/status/clear, and `/metrics`,
//! through the real router on an in-memory SQLite store, with client lockout driving the state.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::Server;
use serde_json::Value;

const TOKEN: &str = "admin-token-for-tests";

async fn router(admin_token: Option<&str>) -> Server {
    let s = common::server(
        |s| {
            s.admin_token = admin_token.map(Into::into);
            s.client_lockout.threshold = 3;
        },
        true,
    )
    .await;
    s.put_basic_client("svc", "right-secret").await;
    s
}

async fn send(r: &Server, req: Request<Body>) -> (StatusCode, String) {
    let (status, _, body) = r.call(req).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn admin(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

async fn token_request(r: &Server, secret: &str) -> StatusCode {
    send(r, common::cc_request("svc", secret)).await.0
}

#[tokio::test]
async fn admin_api_is_404_without_a_token() {
    let r = router(None).await;
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
    let r = router(Some(TOKEN)).await;
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        (Some(TOKEN), StatusCode::OK),
    ] {
        assert_eq!(
            send(&r, admin("GET", "/admin/lockout", token)).await.0,
            want,
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn list_status_clear_and_metrics() {
    let r = router(Some(TOKEN)).await;
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
