#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The OAuth surface of issue 2 over HTTP, through the real router with a real (in-memory
//! SQLite) store: token endpoint success and every error code, introspection, revocation,
//! discovery, JWKS, key rotation and dynamic registration.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{ISSUER, Server as Harness, T0, basic_auth, cc_request};
use serde_json::{Value, json};
use tessera_core::model::{AuthMethod, Client};
use tessera_core::registration::set_new_secret;
use tessera_core::settings::Settings;
use tessera_jose::{Algorithm, JwkSet, Limits, decode_compact};
use tower::ServiceExt;

const IAT: &str = "initial-access-token-for-tests";
const CC: &[u8] = b"grant_type=client_credentials";

/// Status, headers and the body as JSON (a JSON string if it is not JSON, null if empty).
type Response = (StatusCode, HeaderMap, Value);

async fn harness_with(configure: impl FnOnce(&mut Settings), ensure_keys: bool) -> Harness {
    common::server(
        |s| {
            s.registration_initial_access_token = Some(IAT.into());
            configure(s);
        },
        ensure_keys,
    )
    .await
}

async fn harness() -> Harness {
    harness_with(|_| {}, true).await
}

impl Harness {
    /// Register a `client_credentials` client directly in the store; returns its secret.
    async fn client(&self, id: &str, method: AuthMethod, scope: Option<&str>) -> String {
        let mut c = Client {
            client_id: id.into(),
            token_endpoint_auth_method: method,
            grant_types: vec!["client_credentials".into()],
            scope: scope.map(str::to_owned),
            ..Default::default()
        };
        let secret = set_new_secret(&self.engine, &mut c).unwrap();
        self.engine.store.put_client(&c).await.unwrap();
        secret
    }

    async fn send(&self, req: Request<Body>) -> Response {
        let (status, headers, bytes) = self.call(req).await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, body)
    }

    async fn post_form(&self, path: &str, basic: Option<(&str, &str)>, body: &[u8]) -> Response {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            b = b.header(header::AUTHORIZATION, basic_auth(id, secret));
        }
        self.send(b.body(Body::from(body.to_vec())).unwrap()).await
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// A JSON request, with a bearer token if given; a body makes it `application/json`.
    async fn json(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        self.send(common::json_request(method, path, bearer, body))
            .await
    }

    async fn register(&self, token: Option<&str>, meta: &Value) -> Response {
        self.json(Method::POST, "/register", token, Some(meta))
            .await
    }

    /// `grant_type=client_credentials` at `/token` with HTTP Basic.
    async fn cc(&self, id: &str, secret: &str) -> Response {
        self.post_form("/token", Some((id, secret)), CC).await
    }

    async fn cc_token(&self, id: &str, secret: &str) -> String {
        let (s, _, b) = self.cc(id, secret).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["access_token"].as_str().unwrap().to_owned()
    }
}

/// Asserts an RFC 6749 §5.2 error response; hands the response back.
fn assert_oauth_error(r: Response, want_status: StatusCode, code: &str) -> Response {
    let (status, headers, body) = &r;
    assert_eq!(*status, want_status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(headers.get(header::PRAGMA).unwrap(), "no-cache");
    if let Some(d) = body.get("error_description").and_then(Value::as_str) {
        // RFC 6749 §5.2 character set.
        assert!(
            d.chars()
                .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
            "{d}"
        );
    }
    r
}

#[tokio::test]
async fn client_credentials_with_basic_issues_an_rfc9068_es256_token() {
    let h = harness().await;
    let secret = h
        .client(
            "svc",
            AuthMethod::ClientSecretBasic,
            Some("api:read api:write"),
        )
        .await;
    let (s, headers, b) = h
        .post_form(
            "/token",
            Some(("svc", &secret)),
            b"grant_type=client_credentials&scope=api%3Aread",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(headers.get(header::PRAGMA).unwrap(), "no-cache");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["scope"], "api:read");
    assert!(b.get("refresh_token").is_none());

    let token = b["access_token"].as_str().unwrap();
    let jwt = decode_compact(token, &Limits::default()).unwrap();
    assert_eq!(jwt.header().typ.as_deref(), Some("at+jwt"));
    assert_eq!(jwt.header().alg, Algorithm::ES256);
    // Verifies with the published JWKS.
    let (_, _, jwks) = h.get("/jwks.json").await;
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    let (keys, _) = set.verifying_keys();
    let verified = jwt.verify_with_any(&keys, &[Algorithm::ES256]).unwrap();
    let c = verified.claims();
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["aud"], ISSUER);
    assert_eq!(c["sub"], "svc");
    assert_eq!(c["client_id"], "svc");
    assert_eq!(c["scope"], "api:read");
    assert_eq!(c["iat"], T0);
    assert_eq!(c["exp"], T0 + 900);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 22));
}

#[tokio::test]
async fn default_scope_is_the_registered_one() {
    let h = harness().await;
    let secret = h
        .client("svc", AuthMethod::ClientSecretBasic, Some("api:read"))
        .await;
    let (_, _, b) = h.cc("svc", &secret).await;
    assert_eq!(b["scope"], "api:read");
}

#[tokio::test]
async fn client_secret_post_works_and_resource_sets_audience() {
    let h = harness().await;
    let secret = h.client("poster", AuthMethod::ClientSecretPost, None).await;
    let body = format!(
        "grant_type=client_credentials&client_id=poster&client_secret={secret}&resource=https%3A%2F%2Fapi.example.test"
    );
    let (s, _, b) = h.post_form("/token", None, body.as_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let jwt = decode_compact(b["access_token"].as_str().unwrap(), &Limits::default()).unwrap();
    assert_eq!(jwt.claims()["aud"], "https://api.example.test");
}

#[tokio::test]
async fn wrong_basic_secret_is_401_with_a_basic_challenge() {
    let h = harness().await;
    h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let (_, headers, _) = assert_oauth_error(
        h.cc("svc", "wrong").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let challenge = headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
}

#[tokio::test]
async fn wrong_post_secret_is_400_without_challenge() {
    let h = harness().await;
    h.client("poster", AuthMethod::ClientSecretPost, None).await;
    let (_, headers, _) = assert_oauth_error(
        h.post_form(
            "/token",
            None,
            b"grant_type=client_credentials&client_id=poster&client_secret=nope",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_client",
    );
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn unknown_client_and_wrong_method_are_invalid_client() {
    let h = harness().await;
    let secret = h.client("poster", AuthMethod::ClientSecretPost, None).await;
    assert_oauth_error(
        h.cc("ghost", "x").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // Registered for client_secret_post, presented Basic.
    let (_, _, b) = assert_oauth_error(
        h.cc("poster", &secret).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("client_secret_post")
    );
}

#[tokio::test]
async fn expired_or_disabled_clients_are_refused() {
    let h = harness().await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let mut c = h.engine.store.get_client("svc").await.unwrap().unwrap();
    c.client_secret_expires_at = T0 - 1;
    h.engine.store.put_client(&c).await.unwrap();
    h.engine.forget_client("svc");
    let (_, _, b) = assert_oauth_error(
        h.cc("svc", &secret).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_eq!(b["error_description"], "client secret has expired");
    c.client_secret_expires_at = 0;
    c.disabled = true;
    h.engine.store.put_client(&c).await.unwrap();
    h.engine.forget_client("svc");
    assert_oauth_error(
        h.cc("svc", &secret).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let h = harness().await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let basic = Some(("svc", secret.as_str()));
    for (body, why) in [
        (
            &b"grant_type=client_credentials&grant_type=client_credentials"[..],
            "duplicate",
        ),
        (
            b"grant_type=client_credentials&scope=%zz",
            "bad percent-encoding",
        ),
        (b"grant_type=client_credentials&scope=%C3", "bad UTF-8"),
        (b"scope=api", "missing grant_type"),
        (b"grant_type=", "empty grant_type is omitted"),
    ] {
        let r = h.post_form("/token", basic, body).await;
        let (_, _, b) = assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(b["error_description"].is_string(), "{why}: {b}");
    }
    // A JSON body.
    let req = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, basic_auth("svc", &secret))
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .unwrap();
    assert_oauth_error(
        h.send(req).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Two authentication mechanisms.
    let body = format!("grant_type=client_credentials&client_id=svc&client_secret={secret}");
    assert_oauth_error(
        h.post_form("/token", basic, body.as_bytes()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_cleanly() {
    let h = harness_with(|s| s.max_body_bytes = 1024, true).await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let body = format!("grant_type=client_credentials&scope={}", "a".repeat(4096));
    let (_, _, b) = assert_oauth_error(
        h.post_form("/token", Some(("svc", &secret)), body.as_bytes())
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("larger than 1024")
    );
}

#[tokio::test]
async fn grant_and_scope_errors() {
    let h = harness().await;
    let secret = h
        .client("svc", AuthMethod::ClientSecretBasic, Some("api:read"))
        .await;
    let basic = Some(("svc", secret.as_str()));
    for (body, code, description) in [
        (
            &b"grant_type=password&username=a&password=b"[..],
            "unsupported_grant_type",
            None,
        ),
        (
            b"grant_type=refresh_token&refresh_token=x",
            "unauthorized_client",
            None,
        ),
        (
            b"grant_type=client_credentials&scope=api%3Aadmin",
            "invalid_scope",
            Some("scope 'api:admin' is not allowed for client 'svc'"),
        ),
        (
            b"grant_type=client_credentials&scope=openid",
            "invalid_scope",
            None,
        ),
        (
            b"grant_type=client_credentials&resource=relative",
            "invalid_request",
            None,
        ),
    ] {
        let r = h.post_form("/token", basic, body).await;
        let (_, _, b) = assert_oauth_error(r, StatusCode::BAD_REQUEST, code);
        if let Some(d) = description {
            assert_eq!(b["error_description"], d);
        }
    }
}

#[tokio::test]
async fn internal_faults_are_server_error_without_detail() {
    // No signing key: issuing must fail internally.
    let h = harness_with(|_| {}, false).await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let (_, _, b) = assert_oauth_error(
        h.cc("svc", &secret).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
    );
    assert_eq!(b, json!({"error": "server_error"}));
}

#[tokio::test]
async fn introspection_and_revocation() {
    let h = harness().await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let other = h.client("rs", AuthMethod::ClientSecretBasic, None).await;
    let owner = Some(("svc", secret.as_str()));
    let rs = Some(("rs", other.as_str()));
    let token = h.cc_token("svc", &secret).await;
    let body = format!("token={token}");
    let body = body.as_bytes();

    // RFC 7662 §2.1: authentication required.
    for (basic, want) in [
        (None, StatusCode::BAD_REQUEST),
        (Some(("rs", "bad")), StatusCode::UNAUTHORIZED),
    ] {
        let r = h.post_form("/introspect", basic, body).await;
        assert_oauth_error(r, want, "invalid_client");
    }

    let (s, headers, b) = h.post_form("/introspect", rs, body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(b["active"], true);
    assert_eq!(b["client_id"], "svc");
    assert_eq!(b["token_type"], "Bearer");

    // Garbage and missing tokens.
    let (_, _, b) = h.post_form("/introspect", rs, b"token=not-a-token").await;
    assert_eq!(b, json!({"active": false}));
    assert_oauth_error(
        h.post_form("/introspect", rs, b"").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Another client cannot revoke it (RFC 7009 §2.1), and still gets 200.
    let (s, _, _) = h.post_form("/revoke", rs, body).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, b) = h.post_form("/introspect", rs, body).await;
    assert_eq!(b["active"], true);
    // The owner can.
    let hinted = format!("token={token}&token_type_hint=access_token");
    let (s, _, _) = h.post_form("/revoke", owner, hinted.as_bytes()).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, b) = h.post_form("/introspect", rs, body).await;
    assert_eq!(b, json!({"active": false}));
    // Unknown tokens: 200 (RFC 7009 §2.2).
    let (s, _, _) = h.post_form("/revoke", owner, b"token=unknown").await;
    assert_eq!(s, StatusCode::OK);

    // Expired tokens are inactive.
    let fresh = h.cc_token("svc", &secret).await;
    h.clock.advance(901);
    let fresh = format!("token={fresh}");
    let (_, _, b) = h.post_form("/introspect", rs, fresh.as_bytes()).await;
    assert_eq!(b, json!({"active": false}));
}

#[tokio::test]
async fn discovery_documents_list_exactly_what_is_supported() {
    let h = harness().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (s, _, d) = h.get(path).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(d["issuer"], ISSUER);
        assert_eq!(d["token_endpoint"], format!("{ISSUER}/token"));
        assert_eq!(d["jwks_uri"], format!("{ISSUER}/jwks.json"));
        assert_eq!(d["introspection_endpoint"], format!("{ISSUER}/introspect"));
        assert_eq!(d["revocation_endpoint"], format!("{ISSUER}/revoke"));
        assert_eq!(d["registration_endpoint"], format!("{ISSUER}/register"));
        assert_eq!(d["response_types_supported"], json!(["code"]));
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        let grants: Vec<&str> = d["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            grants.contains(&"client_credentials")
                && grants.contains(&"urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        assert!(!grants.contains(&"implicit") && !grants.contains(&"password"));
        let algs = d["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap();
        assert!(!algs.iter().any(|a| a == "none"));
        // Every listed endpoint answers (not 404).
        for key in [
            "token_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "registration_endpoint",
        ] {
            let url = d[key]
                .as_str()
                .unwrap()
                .strip_prefix(ISSUER)
                .unwrap()
                .to_owned();
            let (s, _, _) = h.post_form(&url, None, b"").await;
            assert_ne!(s, StatusCode::NOT_FOUND, "{key}");
        }
    }
    // Without an initial access token, registration is not advertised.
    let h = harness_with(|s| s.registration_initial_access_token = None, true).await;
    let (_, _, d) = h.get("/.well-known/openid-configuration").await;
    assert!(d.get("registration_endpoint").is_none());
}

#[tokio::test]
async fn jwks_has_public_parts_only_and_a_max_age() {
    let h = harness().await;
    let (s, headers, j) = h.get("/jwks.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=3600"
    );
    let keys = j["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "{private} leaked: {k}");
        }
        assert!(k["kid"].is_string());
        assert_eq!(k["use"], "sig");
    }
}

#[tokio::test]
async fn staged_rotation_publishes_before_signing_and_keeps_retired_keys() {
    let h = harness().await;
    let secret = h.client("svc", AuthMethod::ClientSecretBasic, None).await;
    let kid_of = |t: &str| {
        decode_compact(t, &Limits::default())
            .unwrap()
            .header()
            .kid
            .clone()
            .unwrap()
    };
    let old = kid_of(&h.cc_token("svc", &secret).await);
    let new = h
        .engine
        .keys
        .rotate(&*h.engine.store, Algorithm::ES256, T0)
        .await
        .unwrap();
    let published = |j: &Value, kid: &str| {
        j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    };
    let (_, _, j) = h.get("/jwks.json").await;
    assert!(published(&j, &new) && published(&j, &old));
    // Not signing yet: caches need max-age to pick it up.
    assert_eq!(kid_of(&h.cc_token("svc", &secret).await), old);
    h.clock.advance(3600);
    assert_eq!(kid_of(&h.cc_token("svc", &secret).await), new);
    let (_, _, j) = h.get("/jwks.json").await;
    assert!(
        published(&j, &old),
        "retired key must stay published while its tokens live"
    );
    h.clock.advance(7200);
    h.engine
        .keys
        .reload(&*h.engine.store, h.engine.now())
        .await
        .unwrap();
    let (_, _, j) = h.get("/jwks.json").await;
    assert!(!published(&j, &old));
}

#[tokio::test]
async fn dynamic_registration_lifecycle() {
    let h = harness().await;
    let meta = json!({"client_name": "RP", "redirect_uris": ["https://rp.example.test/cb"], "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile"});
    // Guarded by the initial access token.
    let (s, headers, b) = h.register(None, &meta).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (s, _, _) = h.register(Some("wrong"), &meta).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, headers, b) = h.register(Some(IAT), &meta).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let id = b["client_id"].as_str().unwrap().to_owned();
    let secret = b["client_secret"].as_str().unwrap().to_owned();
    let rat = b["registration_access_token"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "high-entropy secret");
    assert_eq!(b["client_secret_expires_at"], 0);
    assert_eq!(b["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        b["registration_client_uri"],
        format!("{ISSUER}/register/{id}")
    );
    // Only a keyed hash is stored.
    let stored =
        serde_json::to_string(&h.engine.store.get_client(&id).await.unwrap().unwrap()).unwrap();
    assert!(!stored.contains(&secret) && !stored.contains(&rat));

    // RFC 7592 read / update / delete.
    let path = format!("/register/{id}");
    let rat = Some(rat.as_str());
    let (s, _, b) = h.json(Method::GET, &path, rat, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.get("client_secret").is_none());
    let (s, _, _) = h.json(Method::GET, &path, Some("nope"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let update = json!({"client_id": id, "client_name": "RP 2", "redirect_uris": ["https://rp.example.test/cb2"]});
    let (s, _, b) = h.json(Method::PUT, &path, rat, Some(&update)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["client_name"], "RP 2");
    assert_eq!(b["redirect_uris"], json!(["https://rp.example.test/cb2"]));
    let (s, _, _) = h.json(Method::DELETE, &path, rat, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(h.engine.store.get_client(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn registration_metadata_errors() {
    let h = harness().await;
    let cases = [
        (
            json!({"redirect_uris": ["http://rp.example.test/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"grant_types": ["authorization_code"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"grant_types": ["authorization_code"], "response_types": [], "redirect_uris": ["https://a.example.test/cb"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "jwks_uri": "https://a.example.test/jwks", "jwks": {"keys": []}, "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "magic"}),
            "invalid_client_metadata",
        ),
    ];
    for (meta, code) in cases {
        let (s, _, b) = h.register(Some(IAT), &meta).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{meta}: {b}");
        assert_eq!(b["error"], code, "{meta}: {b}");
    }
    // Not JSON at all.
    let req = Request::post("/register")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {IAT}"))
        .body(Body::from("{"))
        .unwrap();
    let (s, _, b) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn registered_client_gets_tokens() {
    let h = harness().await;
    let meta = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"});
    let (_, _, b) = h.register(Some(IAT), &meta).await;
    let id = b["client_id"].as_str().unwrap();
    let secret = b["client_secret"].as_str().unwrap();
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let (s, _, b) = h.post_form("/token", None, body.as_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn a_client_is_never_refused_for_its_own_concurrency() {
    // Client lockout must not bound parallel requests of a correct client.
    let h = harness().await;
    let secret = h.client("busy", AuthMethod::ClientSecretBasic, None).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let router = h.router.clone();
        let req = cc_request("busy", &secret);
        tasks.push(tokio::spawn(async move {
            router.oneshot(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
}
