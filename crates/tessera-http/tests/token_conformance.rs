#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Black-box conformance of the token endpoint (RFC 6749 §3.2, §5), token introspection
//! (RFC 7662), token revocation (RFC 7009), bearer-token use at UserInfo (RFC 6750 §2–3,
//! OIDC Core §5.3) and JWT access tokens (RFC 9068), through the real router: what an
//! independent conformance tester would probe from outside.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{ISSUER, Server, T0, basic_auth};
use serde_json::{Map, Value};
use tessera_core::model::{AuthMethod, Client, Grant, RefreshToken};
use tessera_core::oauth::issue::AccessTokenRequest;
use tessera_jose::{Limits, decode_compact};

const FORM: &str = "application/x-www-form-urlencoded";
const WEB_SECRET: &str = "web-secret-0123456789";
const POST_SECRET: &str = "post-secret-0123456789";
const RS_SECRET: &str = "rs-secret-0123456789";

/// Status, headers, raw body and the body as JSON (null when empty or not JSON).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    raw: Vec<u8>,
    json: Value,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn challenge(&self) -> Option<&str> {
        self.header(header::WWW_AUTHENTICATE)
    }
}

async fn send(h: &Server, req: Request<Body>) -> Reply {
    let (status, headers, bytes) = h.call(req).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        raw: bytes.to_vec(),
        json,
    }
}

/// `POST path` with a form body and optional `Authorization` value.
async fn post(h: &Server, path: &str, authorization: Option<&str>, body: &str) -> Reply {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, FORM);
    if let Some(a) = authorization {
        b = b.header(header::AUTHORIZATION, a);
    }
    send(h, b.body(Body::from(body.to_owned())).unwrap()).await
}

/// A server with: `web` (confidential, Basic, code + refresh), `web2` (the same), `post`
/// (client_secret_post, client credentials), `rs` (a resource server allowed to introspect),
/// and `spa` / `spa2` (public, code + refresh).
async fn server() -> Server {
    let h = common::server(|_| {}, true).await;
    let m = &h.engine.master;
    let interactive = |id: &str, method: AuthMethod, secret: Option<&str>| Client {
        client_id: id.into(),
        secret_hash: secret.map(|s| m.hash_client_secret(s)),
        token_endpoint_auth_method: method,
        redirect_uris: vec!["https://rp.example/cb".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        response_types: vec!["code".into()],
        ..Client::default()
    };
    let clients = [
        interactive("web", AuthMethod::ClientSecretBasic, Some(WEB_SECRET)),
        interactive("web2", AuthMethod::ClientSecretBasic, Some(WEB_SECRET)),
        interactive("spa", AuthMethod::None, None),
        interactive("spa2", AuthMethod::None, None),
        Client {
            client_id: "post".into(),
            secret_hash: Some(m.hash_client_secret(POST_SECRET)),
            token_endpoint_auth_method: AuthMethod::ClientSecretPost,
            grant_types: vec!["client_credentials".into()],
            ..Client::default()
        },
        Client {
            client_id: "rs".into(),
            secret_hash: Some(m.hash_client_secret(RS_SECRET)),
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            grant_types: vec!["client_credentials".into()],
            ..Client::default()
        },
    ];
    for c in clients {
        h.engine.store.put_client(&c).await.unwrap();
    }
    h
}

/// A user grant to `client_id` with a refresh token and an access token, as the code exchange
/// leaves them. Returns (access token, refresh token).
async fn user_grant(h: &Server, client_id: &str, scope: &str) -> (String, String) {
    let grant_id = format!("grant-of-{client_id}");
    h.engine
        .store
        .put_grant(&Grant {
            grant_id: grant_id.clone(),
            client_id: client_id.into(),
            subject: "sub-alice".into(),
            scope: scope.into(),
            auth_time: Some(T0),
            session_id: None,
            created_at: T0,
            expires_at: T0 + 86_400,
            revoked_at: None,
        })
        .await
        .unwrap();
    let refresh = format!("refresh-token-of-{client_id}-0123456789abcdef");
    h.engine
        .store
        .put_refresh_token(&RefreshToken {
            token_hash: h.engine.master.hash_token(&refresh),
            grant_id: grant_id.clone(),
            client_id: client_id.into(),
            subject: "sub-alice".into(),
            scope: scope.into(),
            issued_at: T0,
            expires_at: T0 + 86_400,
            claims: Map::new(),
        })
        .await
        .unwrap();
    let (access, _) = h
        .engine
        .issue_access_token(
            AccessTokenRequest {
                subject: "sub-alice".into(),
                client_id: client_id.into(),
                scope: scope.into(),
                auth_time: Some(T0),
                grant_id: Some(grant_id),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    (access, refresh)
}

fn web() -> String {
    basic_auth("web", WEB_SECRET)
}

fn rs() -> String {
    basic_auth("rs", RS_SECRET)
}

async fn introspect(h: &Server, token: &str) -> Value {
    let r = post(h, "/introspect", Some(&rs()), &format!("token={token}")).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json
}

fn assert_no_store(r: &Reply) {
    assert_eq!(r.header(header::CACHE_CONTROL), Some("no-store"));
    assert_eq!(r.header(header::PRAGMA), Some("no-cache"));
}

// ---------------------------------------------------------------------------------------------
// Token endpoint (RFC 6749 §2.3.1, §3.2, §5.1, §5.2)

#[tokio::test]
async fn token_responses_are_json_and_never_cached() {
    let h = server().await;
    // Success (§5.1).
    let body = format!(
        "grant_type=client_credentials&client_id=post&client_secret={POST_SECRET}&unknown=ignored"
    );
    let r = post(&h, "/token", None, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_no_store(&r);
    assert!(
        r.header(header::CONTENT_TYPE)
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.json["token_type"], "Bearer");
    assert!(r.json["expires_in"].is_u64());
    assert!(r.json.get("refresh_token").is_none(), "§4.4.3");
    // Errors (§5.2): JSON, not cached, 400 unless the Authorization header was used.
    for (auth, body, status, code) in [
        (
            None,
            "grant_type=client_credentials",
            StatusCode::BAD_REQUEST,
            "invalid_client",
        ),
        (
            None,
            "grant_type=password",
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (None, "scope=x", StatusCode::BAD_REQUEST, "invalid_request"),
        (
            None,
            "grant_type=client_credentials&grant_type=client_credentials",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(basic_auth("web", "wrong")),
            "grant_type=authorization_code&code=x",
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            Some(web()),
            "grant_type=client_credentials",
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
    ] {
        let r = post(&h, "/token", auth.as_deref(), body).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert_no_store(&r);
        assert!(
            r.header(header::CONTENT_TYPE)
                .unwrap()
                .starts_with("application/json")
        );
        if status == StatusCode::UNAUTHORIZED {
            assert!(
                r.challenge().unwrap().starts_with("Basic "),
                "§5.2: 401 with a challenge"
            );
        }
    }
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let h = server().await;
    // RFC 6749 §2.3.1: client id and secret are form-urlencoded, then Basic-encoded; a client
    // may encode characters that need no encoding.
    let encoded = format!("Basic {}", STANDARD.encode("r%73:rs-secret%2D0123456789"));
    let r = post(&h, "/introspect", Some(&encoded), "token=x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn refresh_may_only_narrow_the_scope_and_is_bound_to_its_client() {
    let h = server().await;
    let (_, refresh) = user_grant(&h, "web", "openid profile").await;
    let r = post(
        &h,
        "/token",
        Some(&basic_auth("web2", WEB_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant", "§6: bound to the client");
    let r = post(
        &h,
        "/token",
        Some(&web()),
        &format!("grant_type=refresh_token&refresh_token={refresh}&scope=openid+email"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_scope", "§6: no broader scope");
    let r = post(
        &h,
        "/token",
        Some(&web()),
        &format!("grant_type=refresh_token&refresh_token={refresh}&scope=profile"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["scope"], "profile",
        "§5.1: the granted scope differs from the original"
    );
    // An expired refresh token: invalid_grant, and inactive at introspection.
    let (_, refresh) = user_grant(&h, "web2", "openid offline_access").await;
    h.clock.advance(86_400);
    let r = post(
        &h,
        "/introspect",
        Some(&basic_auth("web2", WEB_SECRET)),
        &format!("token={refresh}"),
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
    let r = post(
        &h,
        "/token",
        Some(&basic_auth("web2", WEB_SECRET)),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// RFC 9068 access tokens

#[tokio::test]
async fn access_tokens_follow_rfc9068() {
    let h = server().await;
    let body = format!("grant_type=client_credentials&client_id=post&client_secret={POST_SECRET}");
    let r = post(&h, "/token", None, &body).await;
    let jwt = decode_compact(r.json["access_token"].as_str().unwrap(), &Limits::default()).unwrap();
    assert_eq!(jwt.header().typ.as_deref(), Some("at+jwt"), "§2.1");
    let parts: Vec<&str> = r.json["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .collect();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    for k in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        assert!(claims.get(k).is_some(), "§2.2 requires {k}: {claims}");
    }
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["sub"], "post",
        "§2.2: the client, without a resource owner"
    );
    assert!(claims["exp"].is_i64() && claims["iat"].is_i64());
}

// ---------------------------------------------------------------------------------------------
// RFC 7662 introspection

#[tokio::test]
async fn introspection_with_invalid_client_credentials_is_401() {
    let h = server().await;
    // RFC 7662 §2.3: invalid client credentials → 401 (with a challenge, as every 401), also
    // when they were sent in the body.
    let r = post(
        &h,
        "/introspect",
        None,
        "client_id=post&client_secret=wrong&token=x",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert_eq!(r.json["error"], "invalid_client");
    assert!(r.challenge().is_some());
    let r = post(
        &h,
        "/introspect",
        Some(&basic_auth("rs", "wrong")),
        "token=x",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().unwrap().starts_with("Basic "));
    // §2.1: a public client cannot introspect.
    let r = post(&h, "/introspect", None, "client_id=spa&token=x").await;
    assert_eq!(r.json["error"], "invalid_client");
}

#[tokio::test]
async fn introspection_response_members_are_well_typed() {
    let h = server().await;
    let (access, _) = user_grant(&h, "web", "openid profile").await;
    let r = post(&h, "/introspect", Some(&rs()), &format!("token={access}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_store(&r);
    let b = &r.json;
    assert_eq!(b["active"], true);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["scope"], "openid profile");
    assert_eq!(b["client_id"], "web");
    assert_eq!(b["sub"], "sub-alice");
    assert_eq!(b["iss"], ISSUER);
    assert!(b["exp"].is_i64() && b["iat"].is_i64());
    assert!(b["aud"].is_string() || b["aud"].is_array());
    assert!(b["jti"].is_string());
    // Expired: inactive, nothing else.
    h.clock.advance(901);
    assert_eq!(
        introspect(&h, &access).await,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn refresh_token_introspection_has_no_access_token_type() {
    let h = server().await;
    let (_, refresh) = user_grant(&h, "web", "openid offline_access").await;
    let r = post(&h, "/introspect", Some(&web()), &format!("token={refresh}")).await;
    assert_eq!(r.json["active"], true, "{}", r.json);
    assert_eq!(r.json["client_id"], "web");
    assert_eq!(r.json["scope"], "openid offline_access");
    // RFC 7662 §2.2: token_type is an RFC 6749 §7.1 access token type; a refresh token has none.
    assert!(r.json.get("token_type").is_none(), "{}", r.json);
    // Described only to the client it was issued to.
    assert_eq!(
        introspect(&h, &refresh).await,
        serde_json::json!({"active": false})
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 7009 revocation

#[tokio::test]
async fn revoking_a_refresh_token_revokes_the_access_tokens_of_its_grant() {
    let h = server().await;
    let (access, refresh) = user_grant(&h, "web", "openid offline_access").await;
    // Unknown tokens and unknown hints: 200 (§2.2, §2.1).
    for body in ["token=nope", "token=nope&token_type_hint=unknown_type"] {
        let r = post(&h, "/revoke", Some(&web()), body).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Missing token: invalid_request (§2.2.1).
    let r = post(&h, "/revoke", Some(&web()), "token_type_hint=access_token").await;
    assert_eq!(r.json["error"], "invalid_request");
    // A wrong hint does not stop the search (§2.1).
    let body = format!("token={refresh}&token_type_hint=access_token");
    let r = post(&h, "/revoke", Some(&web()), &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&h, &access).await["active"], false);
    let r = post(
        &h,
        "/token",
        Some(&web()),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant");
}

#[tokio::test]
async fn public_client_revokes_its_own_tokens_with_client_id() {
    let h = server().await;
    let (access, refresh) = user_grant(&h, "spa", "openid offline_access").await;
    // RFC 7009 §2.1: credentials are validated "in case of a confidential client"; a public
    // client identifies itself with client_id. Another public client's request changes nothing.
    let r = post(
        &h,
        "/revoke",
        None,
        &format!("client_id=spa2&token={refresh}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&h, &access).await["active"], true);
    let r = post(
        &h,
        "/revoke",
        None,
        &format!("client_id=spa&token={refresh}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_no_store(&r);
    assert_eq!(introspect(&h, &access).await["active"], false);
    let r = post(
        &h,
        "/token",
        None,
        &format!("grant_type=refresh_token&client_id=spa&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant");
    // A confidential client still has to authenticate; nobody may stay anonymous.
    for body in [
        "client_id=web&token=x",
        "token=x",
        "client_id=nobody&token=x",
    ] {
        let r = post(&h, "/revoke", None, body).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_client")),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6750 at UserInfo

#[tokio::test]
async fn userinfo_accepts_the_header_and_the_form_body() {
    let h = server().await;
    let (access, _) = user_grant(&h, "web", "openid").await;
    let r = send(
        &h,
        Request::get("/userinfo")
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["sub"], "sub-alice");
    let r = post(&h, "/userinfo", None, &format!("access_token={access}")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Both at once: invalid_request (§2, §3.1).
    let r = post(
        &h,
        "/userinfo",
        Some(&format!("Bearer {access}")),
        &format!("access_token={access}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.challenge().unwrap().contains("error=\"invalid_request\""));
    // A Basic header (say, from a proxy) carries no access token: the body's is the only one.
    let r = post(
        &h,
        "/userinfo",
        Some(&basic_auth("proxy", "pw")),
        &format!("access_token={access}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Not in the query (§2.3 is not supported): as if there were no token.
    let r = send(
        &h,
        Request::get(format!("/userinfo?access_token={access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn userinfo_without_credentials_is_a_bare_challenge() {
    let h = server().await;
    // RFC 6750 §3.1: no credentials, or an unsupported scheme → 401 and no error information.
    let requests = [
        Request::get("/userinfo").body(Body::empty()).unwrap(),
        Request::get("/userinfo")
            .header(header::AUTHORIZATION, basic_auth("web", WEB_SECRET))
            .body(Body::empty())
            .unwrap(),
        Request::post("/userinfo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"access_token\":\"x\"}"))
            .unwrap(),
    ];
    for req in requests {
        let r = send(&h, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.challenge(), Some("Bearer realm=\"tessera\""));
        assert!(r.raw.is_empty(), "{}", String::from_utf8_lossy(&r.raw));
    }
}

#[tokio::test]
async fn userinfo_errors_always_carry_a_bearer_challenge() {
    let h = server().await;
    // RFC 6750 §3: a refused request MUST carry WWW-Authenticate; malformed → 400
    // invalid_request (§3.1).
    let r = post(&h, "/userinfo", None, "access_token=a&access_token=b").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    assert!(r.challenge().unwrap().starts_with("Bearer "));
    assert!(r.challenge().unwrap().contains("error=\"invalid_request\""));
    let (access, _) = user_grant(&h, "web", "profile").await;
    let openid_less = format!("Bearer {access}");
    // Each row: the Authorization headers sent, the status and the challenge's error code.
    let cases: [(&[&str], StatusCode, &str); 4] = [
        (
            &["Bearer a", "Bearer b"],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // "Bearer" without a token is malformed, not an invalid token.
        (&["Bearer"], StatusCode::BAD_REQUEST, "invalid_request"),
        (
            &["Bearer not-a-token"],
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        // A token without openid: 403 insufficient_scope.
        (&[&openid_less], StatusCode::FORBIDDEN, "insufficient_scope"),
    ];
    for (authorizations, status, error) in cases {
        let mut req = Request::get("/userinfo");
        for a in authorizations {
            req = req.header(header::AUTHORIZATION, *a);
        }
        let r = send(&h, req.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, status, "{authorizations:?}");
        assert!(
            r.challenge()
                .unwrap()
                .contains(&format!("error=\"{error}\"")),
            "{authorizations:?}: {:?}",
            r.challenge()
        );
    }
}
