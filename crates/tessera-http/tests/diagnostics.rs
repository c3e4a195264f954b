//! The authentication trace over HTTP: the admin switch (`POST /admin/debug/authn`), kept
//! traces by request id (`GET /admin/traces/{id}`), scoping to one client, and cause
//! propagation: the admin API gets the root cause and a stable code, anonymous callers only the
//! standard OAuth error (RFC 6749 §5.2), and no secret appears in either.

// Test harness helpers outside `#[test]` functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Server, cc_request as token_req};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-diagnostics-tests";
const RIGHT: &str = "right-secret-7f3a9c";
const WRONG: &str = "wrong-secret-MARKER-51d2";

async fn router() -> Server {
    let s = common::server(
        |s| {
            s.admin_token = Some(TOKEN.into());
            s.client_lockout.threshold = 3;
        },
        true,
    )
    .await;
    for id in ["svc", "other"] {
        s.put_basic_client(id, RIGHT).await;
    }
    s
}

/// (status, body, X-Request-Id)
async fn send(r: &Server, req: Request<Body>) -> (StatusCode, String, String) {
    let (status, headers, body) = r.call(req).await;
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
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

/// `GET /admin/traces/{id}` as the admin.
fn trace(id: &str) -> Request<Body> {
    admin("GET", &format!("/admin/traces/{id}"), None)
}

/// `POST /admin/debug/authn` as the admin.
fn switch(body: Value) -> Request<Body> {
    admin("POST", "/admin/debug/authn", Some(body))
}

fn artifact(name: &str, text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts/diagnostics");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
    }
}

#[tokio::test]
async fn off_by_default_nothing_kept() {
    let r = router().await;
    let e = &r.engine;
    let (status, _, id) = send(&r, token_req("svc", WRONG)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(e.diagnostics.traces.is_empty());
    let (status, body, _) = send(&r, trace(&id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("tracing was off"), "{body}");
}

#[tokio::test]
async fn the_switch_needs_the_admin_token() {
    let r = router().await;
    let req = Request::builder()
        .method("POST")
        .uri("/admin/debug/authn")
        .body(Body::from(r#"{"on":true}"#))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&r, switch(json!({"of": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scoped_to_one_client_with_cause_for_admins_only() {
    let r = router().await;
    let (status, body, _) = send(&r, switch(json!({"on": true, "client": "svc"}))).await;
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
    let (status, body, _) = send(&r, trace(&id)).await;
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
    let (status, _, _) = send(&r, trace(&other_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Lock the client: the trace names the lockout.
    for _ in 0..3 {
        send(&r, token_req("svc", WRONG)).await;
    }
    let (_, _, locked_id) = send(&r, token_req("svc", RIGHT)).await;
    let (_, body, _) = send(&r, trace(&locked_id)).await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["code"], "TSR-CLIENT-LOCKED", "{body}");

    // The list, newest first; then switch everything off.
    let (_, body, _) = send(&r, admin("GET", "/admin/traces?limit=2", None)).await;
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["traces"].as_array().unwrap().len(), 2);
    assert_eq!(list["traces"][0]["request_id"], locked_id.as_str());
    let (_, body, _) = send(&r, switch(json!({"on": false}))).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["clients"],
        json!([])
    );
}

#[tokio::test]
async fn without_cause_propagation_admins_get_code_and_remedy_only() {
    let r = router().await;
    let e = &r.engine;
    e.diagnostics.set_propagate_cause(false);
    send(&r, switch(json!({"on": true}))).await;
    let (_, _, id) = send(&r, token_req("nobody", WRONG)).await;
    let (_, body, _) = send(&r, trace(&id)).await;
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
    let r = router().await;
    send(&r, switch(json!({"on": true}))).await;
    for req in [token_req("svc", WRONG), token_req("nobody", WRONG)] {
        let (_, body, _) = send(&r, req).await;
        for leak in ["wrong secret", "unknown client", "TSR-", WRONG] {
            assert!(!body.contains(leak), "{leak} in {body}");
        }
    }
}
