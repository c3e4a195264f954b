//! The authorization and end-session endpoints as a conformance tester probes them over HTTP:
//! RFC 6749 §3.1 / §4.1.2.1, OIDC Core §3.1.2, RP-Initiated Logout 1.0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{ISSUER, T0};
use tessera_core::model::{AuthMethod, Client, Session};

const RP: &str = "https://rp.example/cb";
const RP_ENC: &str = "https%3A%2F%2Frp.example%2Fcb";

async fn server() -> common::Server {
    let s = common::server(|_| {}, true).await;
    s.engine
        .store
        .put_client(&Client {
            client_id: "web".into(),
            secret_hash: Some(s.engine.master.hash_client_secret("web-secret")),
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            redirect_uris: vec![RP.into()],
            post_logout_redirect_uris: vec!["https://rp.example/bye".into()],
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            first_party: true,
            ..Client::default()
        })
        .await
        .unwrap();
    s
}

/// A signed-in session for `sub-alice`; returns the session cookie's value.
async fn session(s: &common::Server) -> String {
    let cookie = "c".repeat(43);
    s.engine
        .store
        .put_session(&Session {
            id_hash: s.engine.master.hash_token(&cookie),
            sid: "sid-1".into(),
            subject: "sub-alice".into(),
            username: "alice".into(),
            auth_time: T0,
            amr: vec!["pwd".into()],
            acr: None,
            claims: Default::default(),
            clients: vec![],
            created_at: T0,
            expires_at: T0 + 3600,
        })
        .await
        .unwrap();
    cookie
}

fn location(h: &HeaderMap) -> &str {
    h.get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

fn assert_page_headers(h: &HeaderMap) {
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store");
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request_at_the_client() {
    // RFC 6749 §3.1 (parameters MUST NOT repeat) and §4.1.2.1 (errors other than a bad client
    // or redirect URI go back to the client, with iss per RFC 9207).
    let s = server().await;
    let (status, h, _) = s
        .call(get(&format!(
            "/authorize?client_id=web&redirect_uri={RP_ENC}&response_type=code&scope=openid&state=a&state=b"
        )))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let url = location(&h);
    assert!(url.starts_with("https://rp.example/cb?"), "{url}");
    assert_eq!(query(url, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(url, "state"), None, "which state would it be?");
    assert_eq!(query(url, "iss").as_deref(), Some(ISSUER));
    // The client itself repeated: an error page, never a redirect.
    let (status, h, _) = s
        .call(get(&format!(
            "/authorize?client_id=web&client_id=web&redirect_uri={RP_ENC}&response_type=code&scope=openid"
        )))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.get(header::LOCATION).is_none());
    assert_page_headers(&h);
}

#[tokio::test]
async fn registration_and_request_parameters_are_refused_by_name() {
    // OIDC Core §3.1.2.6.
    let s = server().await;
    for (extra, code) in [
        ("registration=%7B%7D", "registration_not_supported"),
        ("request=e30.e30.", "request_not_supported"),
        (
            "request_uri=https%3A%2F%2Frp.example%2Fr",
            "request_uri_not_supported",
        ),
    ] {
        let (status, h, _) = s
            .call(get(&format!(
                "/authorize?client_id=web&redirect_uri={RP_ENC}&response_type=code&scope=openid&state=s%26t&{extra}"
            )))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{extra}");
        let url = location(&h);
        assert_eq!(query(url, "error").as_deref(), Some(code));
        assert_eq!(query(url, "state").as_deref(), Some("s&t"));
    }
}

#[tokio::test]
async fn openid_request_without_redirect_uri_is_an_error_page() {
    // OIDC Core §3.1.2.1: redirect_uri is REQUIRED (conformance: "ensure redirect URI in
    // authorization request").
    let s = server().await;
    let (status, h, body) = s
        .call(get(
            "/authorize?client_id=web&response_type=code&scope=openid&state=s",
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.get(header::LOCATION).is_none());
    assert_page_headers(&h);
    assert!(String::from_utf8_lossy(&body).contains("redirect_uri"));
}

#[tokio::test]
async fn cross_site_post_without_cookies_is_repeated_as_a_get() {
    // OIDC Core §3.1.2.1: POST is supported. Browsers hold SameSite=Lax cookies back from a
    // cross-site POST, so the request is repeated as a top-level GET that carries them.
    let s = server().await;
    let body = format!(
        "client_id=web&redirect_uri={RP_ENC}&response_type=code&scope=openid&prompt=none&state=a+b"
    );
    let (status, h, _) = s
        .call(post(
            "/authorize",
            &body,
            &[("sec-fetch-site", "cross-site")],
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let url = location(&h);
    assert!(url.starts_with("/authorize?"), "{url}");
    let again = format!("https://id.example.test{url}");
    assert_eq!(query(&again, "state").as_deref(), Some("a b"));
    assert_eq!(query(&again, "redirect_uri").as_deref(), Some(RP));
    // The GET, with the session cookie the browser now sends: a silent success.
    let cookie = session(&s).await;
    let (status, h, _) = s
        .call(
            Request::get(url)
                .header(header::COOKIE, format!("tessera_session={cookie}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(query(location(&h), "code").is_some(), "{}", location(&h));
    // A POST with the cookies, or from a client that is not a browser, is answered directly.
    let (_, h, _) = s
        .call(post(
            "/authorize",
            &body,
            &[
                ("sec-fetch-site", "cross-site"),
                ("cookie", &format!("tessera_session={cookie}")),
            ],
        ))
        .await;
    assert!(query(location(&h), "code").is_some(), "{}", location(&h));
    let (_, h, _) = s.call(post("/authorize", &body, &[])).await;
    assert_eq!(
        query(location(&h), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn end_session_with_repeated_parameters_is_an_error_page() {
    let s = server().await;
    let cookie = session(&s).await;
    let (status, h, _) = s
        .call(
            Request::get(
                "/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=a&state=b",
            )
            .header(header::COOKIE, format!("tessera_session={cookie}"))
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.get(header::LOCATION).is_none());
    assert_page_headers(&h);
    // Nothing was ended.
    assert!(
        s.engine
            .load_session(Some(&cookie), T0)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn cross_site_post_to_end_session_is_repeated_as_a_get() {
    // RP-Initiated Logout 1.0 §2: GET and POST. Without the cookie the session could be
    // neither confirmed nor ended.
    let s = server().await;
    let body = "client_id=web&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=x";
    let (status, h, _) = s
        .call(post("/logout", body, &[("sec-fetch-site", "cross-site")]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&h),
        "/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=x"
    );
    // The GET with the session: the user is asked (no id_token_hint).
    let cookie = session(&s).await;
    let (status, h, _) = s
        .call(
            Request::get(location(&h))
                .header(header::COOKIE, format!("tessera_session={cookie}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_page_headers(&h);
}
