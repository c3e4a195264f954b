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

fn with_authorization(path: &str, value: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::AUTHORIZATION, value)
        .body(Body::empty())
        .unwrap()
}

/// Review findings: the auth scheme is case-insensitive (RFC 9110 §11.1); a wrong token gets
/// `error="invalid_token"` in its challenge (RFC 6750 §3.1), a missing one a bare challenge;
/// the 401 is not cacheable.
#[tokio::test]
async fn bearer_scheme_and_challenges() {
    let r = router(Some(TOKEN)).await;
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let (status, _, _) = r
            .call(with_authorization(
                "/admin/lockout",
                &format!("{scheme} {TOKEN}"),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    for value in [
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN} extra"),
        "Bearer ".to_owned(),
        format!("Bearer{TOKEN}"),
    ] {
        let (status, _, _) = r.call(with_authorization("/admin/lockout", &value)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value:?}");
    }

    let (status, headers, _) = r.call(admin("GET", "/admin/lockout", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"tessera-admin\""
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let (status, headers, body) = r
        .call(admin("GET", "/admin/lockout/x", Some("wrong")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"tessera-admin\", error=\"invalid_token\""
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "invalid_token");
}

const OPENAPI: &str = include_str!("../../../docs/admin-api.openapi.yaml");

/// The properties the OpenAPI document lists under `name:` (indented `indent` spaces, up to the
/// next key at a smaller indent).
fn documented_properties(schema: &str, indent: usize) -> Vec<String> {
    let start = OPENAPI
        .find(&format!("\n{}{schema}:\n", " ".repeat(indent - 4)))
        .unwrap_or_else(|| panic!("{schema} not in the OpenAPI document"));
    let section = &OPENAPI[start + 1..];
    let props = section.find("properties:\n").unwrap() + "properties:\n".len();
    section[props..]
        .lines()
        .take_while(|l| l.len() - l.trim_start().len() >= indent || l.trim().is_empty())
        .filter(|l| l.len() - l.trim_start().len() == indent)
        .filter_map(|l| l.trim().split(':').next().map(str::to_owned))
        .collect()
}

/// Review finding: the OpenAPI document did not match the implementation exactly (`/metrics`
/// exported a family it did not list). Every metric family and every field the API emits is
/// documented, and every documented `LockoutStatus` field is one the API can emit.
#[tokio::test]
async fn the_openapi_document_matches_the_responses() {
    let r = router(Some(TOKEN)).await;
    for _ in 0..3 {
        token_request(&r, "guess").await;
    }
    let (_, metrics) = send(&r, admin("GET", "/metrics", None)).await;
    for family in metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
    {
        assert!(
            OPENAPI.contains(&format!("`{family}")),
            "metric {family} is not documented"
        );
    }

    let (_, body) = send(&r, admin("GET", "/admin/lockout", Some(TOKEN))).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let record = v["records"][0].as_object().unwrap();
    let documented = documented_properties("LockoutStatus", 8);
    for field in record.keys() {
        assert!(documented.contains(field), "{field} is not documented");
    }
    for field in ["kind", "name", "locked", "failure_count", "lock_count"] {
        assert!(record.contains_key(field), "required {field} missing");
    }
    assert!(OPENAPI.contains("required: [kind, name, locked, failure_count, lock_count]"));
    for (path, method, fields) in [
        ("/admin/lockout", "GET", vec!["locked_now", "records"]),
        (
            "/admin/lockout/svc",
            "GET",
            vec!["name", "locked", "records"],
        ),
        (
            "/admin/lockout/svc",
            "DELETE",
            vec!["name", "cleared", "unlocked"],
        ),
    ] {
        let (status, body) = send(&r, admin(method, path, Some(TOKEN))).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut want: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        want.sort();
        assert_eq!(keys, want, "{method} {path}");
        assert!(
            OPENAPI.contains(&format!("required: [{}]", fields.join(", "))),
            "{method} {path}: the document requires other fields"
        );
    }
}
