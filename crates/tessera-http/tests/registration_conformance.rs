#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Black-box conformance of dynamic client registration (RFC 7591), its management protocol
//! (RFC 7592) and the server metadata (OpenID Connect Discovery 1.0, RFC 8414), through the
//! real router: what an independent conformance tester would probe from outside.

mod common;

use axum::http::{HeaderMap, Method, StatusCode, header};
use common::{ISSUER, Server};
use serde_json::{Value, json};
use tessera_core::model::Client;
use tessera_core::settings::Settings;
use tessera_jose::Algorithm;

const IAT: &str = "initial-access-token-for-conformance";

type Response = (StatusCode, HeaderMap, Value);

async fn server_with(configure: impl FnOnce(&mut Settings)) -> Server {
    common::server(
        |s| {
            s.registration_initial_access_token = Some(IAT.into());
            configure(s);
        },
        true,
    )
    .await
}

async fn server() -> Server {
    server_with(|_| {}).await
}

async fn send(
    h: &Server,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let (status, headers, bytes) = h
        .call(common::json_request(method, path, bearer, body))
        .await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

async fn register(h: &Server, meta: &Value) -> Response {
    send(h, Method::POST, "/register", Some(IAT), Some(meta)).await
}

/// Register `meta`, expecting success; the response body.
async fn registered(h: &Server, meta: &Value) -> Value {
    let (s, _, b) = register(h, meta).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

fn config_path(b: &Value) -> String {
    b["registration_client_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(ISSUER)
        .unwrap()
        .to_owned()
}

fn assert_error(r: &Response, status: StatusCode, code: &str) {
    let (s, headers, b) = r;
    assert_eq!(*s, status, "{b}");
    assert_eq!(b["error"], code, "{b}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(headers.get(header::PRAGMA).unwrap(), "no-cache");
}

/// RFC 6750 §3: a 401 for a bad registration access token carries a Bearer challenge with
/// `error="invalid_token"`.
fn assert_invalid_token(r: &Response) {
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token");
    let challenge = r.1.get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

#[tokio::test]
async fn registration_response_follows_rfc7591_3_2_1() {
    let h = server().await;
    let meta = json!({
        "redirect_uris": ["https://rp.example.test/cb"],
        "client_name": "Conformance RP",
        "client_name#ja-Jpan-JP": "RP",
        "example_extension_parameter": "example_value",
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
        "logo_uri": "https://rp.example.test/logo.png",
        "contacts": ["ops@rp.example.test"],
        "scope": "openid email",
    });
    let (s, headers, b) = register(&h, &meta).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(headers.get(header::PRAGMA).unwrap(), "no-cache");
    // Required and defaulted values.
    assert!(b["client_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(b["client_id_issued_at"].is_i64());
    assert!(b["client_secret"].is_string());
    assert_eq!(b["client_secret_expires_at"], 0);
    assert_eq!(b["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(b["grant_types"], json!(["authorization_code"]));
    assert_eq!(b["response_types"], json!(["code"]));
    // Every registered value is echoed.
    for k in [
        "redirect_uris",
        "client_name",
        "logo_uri",
        "contacts",
        "scope",
    ] {
        assert_eq!(b[k], meta[k], "{k}");
    }
    // Unknown metadata is ignored, not rejected and not echoed (§2).
    for k in ["example_extension_parameter", "client_name#ja-Jpan-JP"] {
        assert!(b.get(k).is_none(), "{k}");
    }
    // RFC 7592 §3.
    assert!(b["registration_access_token"].is_string());
    assert_eq!(
        b["registration_client_uri"],
        format!("{ISSUER}/register/{}", b["client_id"].as_str().unwrap())
    );

    // A public client gets no secret, hence no client_secret_expires_at.
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert!(b.get("client_secret").is_none() && b.get("client_secret_expires_at").is_none());
}

#[tokio::test]
async fn registration_errors_use_rfc7591_codes() {
    let h = server().await;
    let cc = |extra: Value| {
        let mut m = json!({"grant_types": ["client_credentials"]});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases = [
        (
            json!({"redirect_uris": ["https://rp.example.test/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://rp.example.test/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"client_name": "no redirect"}),
            "invalid_redirect_uri",
        ),
        // The URL parser would repair these; as registered they are not absolute URIs.
        (
            json!({"redirect_uris": [" https://rp.example.test/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https:///cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https:rp.example.test/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://rp.example.test\\cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://rp.example.test/c\tb"]}),
            "invalid_redirect_uri",
        ),
        (
            cc(
                json!({"jwks_uri": " https://rp.example.test/jwks", "token_endpoint_auth_method": "private_key_jwt"}),
            ),
            "invalid_client_metadata",
        ),
        (
            cc(json!({"jwks": {"keys": []}, "jwks_uri": "https://rp.example.test/jwks"})),
            "invalid_client_metadata",
        ),
        (
            cc(json!({"grant_types": "client_credentials"})),
            "invalid_client_metadata",
        ),
        (cc(json!({"client_name": 7})), "invalid_client_metadata"),
        (
            cc(json!({"token_endpoint_auth_method": "tls_client_auth"})),
            "invalid_client_metadata",
        ),
        (json!([]), "invalid_client_metadata"),
        (json!(null), "invalid_client_metadata"),
    ];
    for (meta, code) in cases {
        let r = register(&h, &meta).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    // Nothing was registered by any of them.
    assert!(h.engine.store.list_clients().await.unwrap().is_empty());
}

#[tokio::test]
async fn read_and_update_responses_carry_the_registration_access_token() {
    // RFC 7592 §3: registration_access_token is REQUIRED in the client information response,
    // which §2.1 and §2.2 return on read and update.
    let h = server().await;
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"]}),
    )
    .await;
    let id = b["client_id"].as_str().unwrap().to_owned();
    let rat = b["registration_access_token"].as_str().unwrap().to_owned();
    let path = config_path(&b);

    let (s, headers, read) = send(&h, Method::GET, &path, Some(&rat), None).await;
    assert_eq!(s, StatusCode::OK, "{read}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!(read["registration_access_token"], rat.as_str());
    assert_eq!(
        read["registration_client_uri"],
        b["registration_client_uri"]
    );
    assert_eq!(read["client_secret_expires_at"], 0);

    let update = json!({"client_id": id, "redirect_uris": ["https://rp.example.test/cb2"]});
    let (s, _, updated) = send(&h, Method::PUT, &path, Some(&rat), Some(&update)).await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    // Whatever token the response carries is the one that works from now on.
    let next = updated["registration_access_token"].as_str().unwrap();
    let (s, _, again) = send(&h, Method::GET, &path, Some(next), None).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["redirect_uris"],
        json!(["https://rp.example.test/cb2"])
    );
}

#[tokio::test]
async fn update_replaces_metadata_and_keeps_the_client_id() {
    let h = server().await;
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"], "client_name": "Old", "logo_uri": "https://rp.example.test/l.png"}),
    )
    .await;
    let id = b["client_id"].as_str().unwrap().to_owned();
    let secret = b["client_secret"].as_str().unwrap().to_owned();
    let rat = b["registration_access_token"].as_str().unwrap().to_owned();
    let path = config_path(&b);
    let put = |body: Value| {
        let (path, rat) = (path.clone(), rat.clone());
        let h = &h;
        async move { send(h, Method::PUT, &path, Some(&rat), Some(&body)).await }
    };

    // §2.2: client_id MUST be present and the current one; otherwise an RFC 7591 error.
    for body in [
        json!({"redirect_uris": ["https://rp.example.test/cb"]}),
        json!({"client_id": "someone-else", "redirect_uris": ["https://rp.example.test/cb"]}),
        json!({"client_id": 5, "redirect_uris": ["https://rp.example.test/cb"]}),
    ] {
        assert_error(
            &put(body).await,
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
        );
    }
    // A client_secret, if sent, must be the current one, and a string.
    for wrong in [json!("not-the-secret"), json!(42), json!(["x"])] {
        let body = json!({"client_id": id, "client_secret": wrong, "redirect_uris": ["https://rp.example.test/cb"]});
        assert_error(
            &put(body).await,
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
        );
    }
    // Invalid metadata: the RFC 7591 codes.
    let body = json!({"client_id": id, "redirect_uris": ["http://rp.example.test/cb"]});
    assert_error(
        &put(body).await,
        StatusCode::BAD_REQUEST,
        "invalid_redirect_uri",
    );

    // Omitted fields are deleted (§2.2: replace, not augment); the secret is kept.
    let body = json!({"client_id": id, "client_secret": secret, "client_name": "New", "redirect_uris": ["https://rp.example.test/cb"]});
    let (s, _, u) = put(body).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["client_id"], id.as_str());
    assert_eq!(u["client_name"], "New");
    assert!(u.get("logo_uri").is_none(), "{u}");
    assert_eq!(u["client_id_issued_at"], b["client_id_issued_at"]);
    let stored = h.engine.store.get_client(&id).await.unwrap().unwrap();
    assert!(stored.logo_uri.is_none());
    assert!(
        h.engine
            .master
            .verify_client_secret(&secret, stored.secret_hash.as_deref().unwrap())
    );
}

#[tokio::test]
async fn management_requires_the_clients_own_registration_access_token() {
    let h = server().await;
    let a = registered(&h, &json!({"grant_types": ["client_credentials"]})).await;
    let b = registered(&h, &json!({"grant_types": ["client_credentials"]})).await;
    let path = config_path(&a);
    let a_rat = a["registration_access_token"].as_str().unwrap();
    let b_rat = b["registration_access_token"].as_str().unwrap();
    let body = json!({"client_id": a["client_id"], "grant_types": ["client_credentials"]});
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(&body)),
        (Method::DELETE, None),
    ] {
        for token in [None, Some("wrong"), Some(b_rat), Some(IAT)] {
            let r = send(&h, method.clone(), &path, token, body).await;
            assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{method} {token:?}: {}", r.2);
            assert!(r.1.get(header::WWW_AUTHENTICATE).is_some());
        }
    }
    // An unknown client answers exactly like a wrong token (§2.1: 401, no enumeration).
    assert_invalid_token(
        &send(
            &h,
            Method::GET,
            "/register/no-such-client",
            Some(a_rat),
            None,
        )
        .await,
    );

    // §2.3: delete → 204; afterwards the client and its token are gone.
    let (s, _, body) = send(&h, Method::DELETE, &path, Some(a_rat), None).await;
    assert_eq!((s, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_invalid_token(&send(&h, Method::GET, &path, Some(a_rat), None).await);
    assert_invalid_token(&send(&h, Method::DELETE, &path, Some(a_rat), None).await);
    let id = a["client_id"].as_str().unwrap();
    let secret = a["client_secret"].as_str().unwrap();
    let (s, _, _) = h.call(common::cc_request(id, secret)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_omitted_id_token_alg_is_rs256_and_is_echoed() {
    // OIDC Registration §2: "The default, if omitted, is RS256." The server-wide default may
    // be another alg; a client that registers itself must get RS256 and be told so.
    let h = server_with(|s| s.id_token_alg = Algorithm::ES256).await;
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"]}),
    )
    .await;
    assert_eq!(b["id_token_signed_response_alg"], "RS256", "{b}");
    let client = h
        .engine
        .store
        .get_client(b["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.engine.id_token_alg(&client).unwrap(), Algorithm::RS256);

    // An explicit choice is kept; a client without ID tokens gets no ID-token alg.
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"], "id_token_signed_response_alg": "ES256"}),
    )
    .await;
    assert_eq!(b["id_token_signed_response_alg"], "ES256");
    let b = registered(&h, &json!({"grant_types": ["client_credentials"]})).await;
    assert!(b.get("id_token_signed_response_alg").is_none(), "{b}");
}

#[tokio::test]
async fn discovery_omits_empty_lists_and_names_its_own_issuer() {
    let h = server_with(|s| s.scopes_supported.clear()).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (s, headers, d) = send(&h, Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        // OIDC Discovery §3 / RFC 8414 §3.3: issuer is exactly the prefix the document is under.
        assert_eq!(d["issuer"], ISSUER);
        // OIDC Discovery §3 and RFC 8414 §2: REQUIRED members.
        for k in [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ] {
            assert!(d.get(k).is_some(), "{path}: {k} missing");
        }
        // "Claims with zero elements MUST be omitted from the response."
        for (k, v) in d.as_object().unwrap() {
            if let Some(a) = v.as_array() {
                assert!(!a.is_empty(), "{path}: {k} is an empty list");
            }
        }
        assert!(d.get("scopes_supported").is_none());
        // Endpoints are absolute URLs under the issuer.
        for (k, v) in d.as_object().unwrap() {
            if k.ends_with("_endpoint") || k == "jwks_uri" {
                assert!(
                    v.as_str().unwrap().starts_with(&format!("{ISSUER}/")),
                    "{k}"
                );
            }
        }
    }
}

#[tokio::test]
async fn dynamic_clients_are_told_every_provisioned_value() {
    // RFC 7591 §3.2.1: the response holds all registered metadata, including values the server
    // provisioned; reading it back returns the same metadata.
    let h = server().await;
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example.test/cb"], "application_type": "web"}),
    )
    .await;
    let rat = b["registration_access_token"].as_str().unwrap();
    let (_, _, read) = send(&h, Method::GET, &config_path(&b), Some(rat), None).await;
    let mut created = b.clone();
    created.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(read, created);
    let stored: Client = h
        .engine
        .store
        .get_client(b["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.id_token_signed_response_alg.as_deref(),
        b["id_token_signed_response_alg"].as_str()
    );
}

/// OIDC Discovery §3 / Registration §2: only ID-token algorithms with a signing key are offered
/// (this server has ES256 and RS256 keys, no EdDSA key), and a client asking for another one is
/// refused at registration instead of failing every code exchange later.
#[tokio::test]
async fn only_id_token_algs_with_a_key_are_offered_and_accepted() {
    let h = server().await;
    let (_, _, d) = send(
        &h,
        Method::GET,
        "/.well-known/openid-configuration",
        None,
        None,
    )
    .await;
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    let (s, _, b) = register(
        &h,
        &json!({"redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "EdDSA"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "invalid_client_metadata");
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("keys.algs"),
        "{b}"
    );
    let b = registered(
        &h,
        &json!({"redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "ES256"}),
    )
    .await;
    assert_eq!(b["id_token_signed_response_alg"], "ES256");
}
