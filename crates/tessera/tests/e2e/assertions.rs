//! JWT assertions end to end (RFC 7521 / RFC 7523), against the in-process server:
//!
//! - real third parties, unchanged: PyPI `google-auth` service-account credentials from a key
//!   file Tessera issued (with and without `with_subject`), PyPI Authlib `private_key_jwt`
//!   (ES256, RS256, PS256, EdDSA) and `client_secret_jwt` (HS256), npm openid-client
//!   `private_key_jwt` (ES256, RS256, PS256, and Ed25519 keys, which it signs with RFC 9864's
//!   `alg` "Ed25519");
//! - a client whose keys are published at a `jwks_uri` served by the test, and key rotation;
//! - `jti` replay across a restart (same SQLite file) and across two nodes (PostgreSQL);
//! - a trusted issuer configured with `[[trusted_issuers]]`, and its precise refusals;
//! - `tessera assertion check` from the real binary.
//!
//! Every issued token is checked by introspection. The scripts live in `tests/interop/`; when
//! node or the Python venv is missing the test prints why and passes, unless
//! `TESSERA_TEST_REQUIRE_SERVICES=1` (then it fails).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::assertion::GOOGLE_TOKEN_AUDIENCE;
use tessera_core::assertion::keyfile::{ServiceAccountKeyFile, create_service_account};
use tessera_core::clock::{Clock, ManualClock, SystemClock};
use tessera_jose::{Algorithm, SigningKey};

use crate::support::interop::{interop_dir, node_with, python};
use crate::support::{Options, Tessera, TestClient, TestServer, jwt_parts, toml_string};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Helpers.

struct ScriptRun {
    success: bool,
    stdout: String,
    stderr: String,
}

impl ScriptRun {
    /// The last JSON line of a successful run; panics with both streams otherwise.
    fn json(&self, script: &str) -> Value {
        assert!(
            self.success,
            "{script} failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        let last = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}");
        serde_json::from_str(last)
            .unwrap_or_else(|_| panic!("{script}: no JSON result in\n{}", self.stdout))
    }
}

async fn run_script(program: &Path, script: &str, env: Vec<(&str, String)>) -> ScriptRun {
    let dir = interop_dir();
    let script_path = dir.join(script);
    let program = program.to_owned();
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(&script_path)
            .current_dir(&dir)
            .envs(env)
            .output()
            .expect("run interop script")
    })
    .await
    .unwrap();
    ScriptRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn now() -> i64 {
    SystemClock.now()
}

fn jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `http://127.0.0.1:PORT`: where the server really listens (the issuer may be a fixed name).
fn listen_url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// RFC 7662 introspection by a fresh resource-server client (`client_secret_basic`).
async fn introspect(server: &TestServer, token: &str) -> Value {
    let rs = server.create_service_client().await;
    let resp = server
        .http
        .post(format!("{}/introspect", listen_url(server)))
        .basic_auth(&rs.client_id, rs.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// POST a form to the token endpoint: (status, JSON body).
async fn token_request(server: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = server
        .http
        .post(format!("{}/token", listen_url(server)))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// client_credentials with `private_key_jwt` / `client_secret_jwt`.
async fn client_credentials_with(server: &TestServer, assertion: &str) -> (u16, Value) {
    token_request(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

async fn jwt_bearer(server: &TestServer, assertion: &str) -> (u16, Value) {
    token_request(
        server,
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
    )
    .await
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"].as_str().unwrap_or_default(),
        body["error_description"].as_str().unwrap_or_default(),
    )
}

fn public_jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| serde_json::to_value(k.public_jwk()).unwrap()).collect::<Vec<_>>() })
}

/// A key pair and its PKCS#8 PEM written to `dir` (what the third-party scripts read).
fn key_with_pem(alg: Algorithm, kid: &str, dir: &Path) -> (SigningKey, PathBuf) {
    let key = SigningKey::generate(alg, kid).unwrap();
    let path = dir.join(format!("{kid}.pem"));
    std::fs::write(&path, key.to_pkcs8_pem().as_bytes()).unwrap();
    (key, path)
}

async fn private_key_jwt_client(server: &TestServer, alg: Algorithm, keys: Value) -> TestClient {
    let mut meta = json!({
        "client_name": format!("pkjwt {alg}"),
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": alg.as_str(),
        "scope": "profile email",
    });
    for (k, v) in keys.as_object().unwrap() {
        meta[k] = v.clone();
    }
    server.create_client(meta).await
}

/// A client assertion as the RFC draws it: iss = sub = client_id, one audience, a jti.
fn client_assertion(key: &SigningKey, client_id: &str, aud: &str, at: i64, jti: &str) -> String {
    key.sign_jwt(
        Some("JWT"),
        &json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": at, "exp": at + 60, "jti": jti}),
    )
    .unwrap()
}

/// Checks an issued access token by introspection: active, for this client and subject.
async fn assert_token_active(
    server: &TestServer,
    token: &str,
    client_id: &str,
    sub: &str,
    scope: Option<&str>,
) -> Value {
    let info = introspect(server, token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], client_id, "{info}");
    assert_eq!(info["sub"], sub, "{info}");
    if let Some(scope) = scope {
        assert_eq!(info["scope"], scope, "{info}");
    }
    info
}

/// A loopback HTTP server: `GET /jwks` serves a JWK Set the test can replace (and counts
/// fetches); `POST /token` forwards to a Tessera token endpoint and records what passed.
#[derive(Clone, Default)]
struct Loopback {
    jwks: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    forward_to: Arc<Mutex<String>>,
    /// (status answered, request body, had an Authorization header)
    token_requests: Arc<Mutex<Vec<(u16, String, bool)>>>,
}

impl Loopback {
    async fn start(self) -> String {
        async fn jwks(State(s): State<Loopback>) -> Response {
            s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let doc = s.jwks.lock().unwrap().clone();
            axum::Json(doc).into_response()
        }
        async fn token(State(s): State<Loopback>, headers: HeaderMap, body: Bytes) -> Response {
            let target = s.forward_to.lock().unwrap().clone();
            let mut req = reqwest::Client::new().post(target).body(body.to_vec());
            if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                req = req.header("content-type", ct.as_bytes());
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap();
            s.token_requests.lock().unwrap().push((
                status,
                String::from_utf8_lossy(&body).into_owned(),
                headers.contains_key(header::AUTHORIZATION),
            ));
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                bytes.to_vec(),
            )
                .into_response()
        }
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(jwks))
            .route("/token", axum::routing::post(token))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }
}

fn form_fields(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// google-auth service-account credentials.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_service_account_obtains_tokens_unchanged() {
    let Some(python) = python() else { return };
    let server = TestServer::start("").await;
    let engine = server.engine();
    let key_file = create_service_account(
        engine,
        "reporter",
        vec!["*@example.com".into()],
        None,
        engine.now(),
    )
    .await
    .unwrap();
    let account = key_file.client_email.clone();
    assert_eq!(key_file.token_uri, server.url("/token"));
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("reporter.json");
    std::fs::write(&key_path, key_file.to_string()).unwrap();
    let script = "python/google_auth_service_account.py";
    let env = |path: &Path, scopes: &str, subject: &str| {
        vec![
            ("TESSERA_KEY_FILE", path.display().to_string()),
            ("TESSERA_SCOPES", scopes.to_owned()),
            ("TESSERA_SUBJECT", subject.to_owned()),
        ]
    };

    // The key file exactly as issued; no scopes: google-auth sends scope "" (the account's
    // default applies).
    let out = run_script(&python, script, env(&key_path, "", ""))
        .await
        .json(script);
    let claims = &out["claims"];
    assert_eq!(claims["sub"], account.as_str(), "{out}");
    assert_eq!(claims["client_id"], account.as_str(), "{out}");
    assert_eq!(claims["iss"], server.base_url.as_str(), "{out}");
    assert!(claims.get("act").is_none(), "{out}");
    assert!(
        out["expiry"].is_string(),
        "expires_in was understood: {out}"
    );
    let default_scope = claims["scope"].as_str().unwrap().to_owned();
    assert!(
        default_scope.contains("profile") && !default_scope.contains("openid"),
        "{out}"
    );
    let token = out["access_token"].as_str().unwrap();
    assert_token_active(&server, token, &account, &account, Some(&default_scope)).await;

    // Through a recording proxy from now on, to see exactly what google-auth sends and what it
    // gets back.
    let loopback = Loopback::default();
    *loopback.forward_to.lock().unwrap() = server.url("/token");
    let proxy = loopback.clone().start().await;
    let proxied = ServiceAccountKeyFile {
        token_uri: format!("{proxy}/token"),
        ..key_file.clone()
    };
    let proxied_path = dir.path().join("reporter-proxied.json");
    std::fs::write(&proxied_path, proxied.to_string()).unwrap();

    // Requested scopes; the token works.
    let out = run_script(&python, script, env(&proxied_path, "profile email", ""))
        .await
        .json(script);
    let token_claims = &out["claims"];
    assert_eq!(token_claims["scope"], "profile email", "{out}");
    {
        let seen = loopback.token_requests.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (status, body, had_authorization) = &seen[0];
        assert_eq!(*status, 200);
        assert!(
            !had_authorization,
            "google-auth sends no client authentication"
        );
        let fields = form_fields(body);
        let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["assertion", "grant_type"], "only these two: {body}");
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(field("grant_type"), JWT_BEARER);
        let (header, claims) = jwt_parts(&field("assertion"));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], key_file.private_key_id.as_str());
        assert_eq!(
            claims["aud"], GOOGLE_TOKEN_AUDIENCE,
            "hard-coded by google-auth"
        );
        assert_eq!(claims["iss"], account.as_str());
        assert_eq!(claims["scope"], "profile email");
        assert!(claims.get("jti").is_none() && claims.get("sub").is_none());
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
    }
    let token = out["access_token"].as_str().unwrap();
    assert_token_active(&server, token, &account, &account, Some("profile email")).await;

    // Impersonation allowed by the account's pattern: the token's subject is the user.
    let out = run_script(&python, script, env(&proxied_path, "", "alice@example.com"))
        .await
        .json(script);
    let claims = &out["claims"];
    assert_eq!(claims["sub"], "alice@example.com", "{out}");
    assert_eq!(claims["act"]["sub"], account.as_str(), "{out}");
    let token = out["access_token"].as_str().unwrap();
    assert_token_active(&server, token, &account, "alice@example.com", None).await;

    // Not allowed: google-auth raises RefreshError with the server's invalid_grant, after
    // exactly one attempt (a 5xx would have been retried).
    let before = loopback.token_requests.lock().unwrap().len();
    let run = run_script(
        &python,
        script,
        env(&proxied_path, "", "mallory@evil.example"),
    )
    .await;
    assert!(
        !run.success,
        "impersonation must be refused: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("RefreshError")
            && run.stderr.contains(
                "invalid_grant: service account may not impersonate 'mallory@evil.example'"
            ),
        "{}",
        run.stderr
    );
    let seen = loopback.token_requests.lock().unwrap();
    let statuses: Vec<u16> = seen[before..].iter().map(|(s, _, _)| *s).collect();
    assert_eq!(statuses, [400], "one attempt, answered 400");
    assert!(seen.iter().all(|(s, _, _)| *s < 500), "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// Relying-party libraries: private_key_jwt and client_secret_jwt.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_authenticates_with_private_key_jwt_and_client_secret_jwt() {
    let Some(python) = python() else { return };
    let server = TestServer::start("").await;
    let dir = tempfile::tempdir().unwrap();
    for alg in [
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ] {
        let (key, pem) = key_with_pem(alg, &format!("authlib-{alg}"), dir.path());
        // Authlib sends no kid: the server must find the right key among several (a client
        // in the middle of a rotation publishes two).
        let previous = SigningKey::generate(alg, format!("previous-{alg}")).unwrap();
        let client = private_key_jwt_client(
            &server,
            alg,
            json!({ "jwks": public_jwks(&[&previous, &key]) }),
        )
        .await;
        let script = "python/authlib_private_key_jwt.py";
        let out = run_script(
            &python,
            script,
            vec![
                ("TESSERA_TOKEN_ENDPOINT", server.url("/token")),
                ("TESSERA_CLIENT_ID", client.client_id.clone()),
                ("TESSERA_PRIVATE_KEY", pem.display().to_string()),
                ("TESSERA_ALG", alg.as_str().to_owned()),
                ("TESSERA_SCOPE", "profile".into()),
            ],
        )
        .await
        .json(script);
        let token = out["token"]["access_token"].as_str().unwrap();
        assert_eq!(out["token"]["token_type"], "Bearer", "{out}");
        assert_token_active(
            &server,
            token,
            &client.client_id,
            &client.client_id,
            Some("profile"),
        )
        .await;
    }

    let client = server
        .create_client(json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_jwt",
            "token_endpoint_auth_signing_alg": "HS256",
        }))
        .await;
    let script = "python/authlib_client_secret_jwt.py";
    let out = run_script(
        &python,
        script,
        vec![
            ("TESSERA_TOKEN_ENDPOINT", server.url("/token")),
            ("TESSERA_CLIENT_ID", client.client_id.clone()),
            ("TESSERA_CLIENT_SECRET", client.secret.clone().unwrap()),
            ("TESSERA_ALG", "HS256".into()),
            ("TESSERA_SCOPE", "email".into()),
        ],
    )
    .await
    .json(script);
    let token = out["token"]["access_token"].as_str().unwrap();
    assert_token_active(
        &server,
        token,
        &client.client_id,
        &client.client_id,
        Some("email"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_authenticates_with_private_key_jwt() {
    let Some(node) = node_with("openid-client") else {
        return;
    };
    let server = TestServer::start("").await;
    let dir = tempfile::tempdir().unwrap();
    for alg in [
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ] {
        let kid = format!("oidc-client-{alg}");
        let (key, pem) = key_with_pem(alg, &kid, dir.path());
        let client =
            private_key_jwt_client(&server, alg, json!({ "jwks": public_jwks(&[&key]) })).await;
        let script = "node/openid_client_private_key_jwt.mjs";
        let out = run_script(
            &node,
            script,
            vec![
                ("TESSERA_ISSUER", server.base_url.clone()),
                ("TESSERA_CLIENT_ID", client.client_id.clone()),
                ("TESSERA_PRIVATE_KEY", pem.display().to_string()),
                ("TESSERA_ALG", alg.as_str().to_owned()),
                ("TESSERA_KID", kid.clone()),
                ("TESSERA_SCOPE", "profile email".into()),
            ],
        )
        .await
        .json(script);
        let token = out["token"]["access_token"].as_str().unwrap();
        assert_token_active(
            &server,
            token,
            &client.client_id,
            &client.client_id,
            Some("profile email"),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Keys published at a jwks_uri.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_at_a_jwks_uri_are_fetched_and_refetched_on_an_unknown_kid() {
    let clock = ManualClock::new(now());
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await
    .unwrap();
    let loopback = Loopback::default();
    let old = SigningKey::generate(Algorithm::ES256, "2024-key").unwrap();
    let new = SigningKey::generate(Algorithm::ES256, "2025-key").unwrap();
    *loopback.jwks.lock().unwrap() = public_jwks(&[&old]);
    let base = loopback.clone().start().await;
    let client = private_key_jwt_client(
        &server,
        Algorithm::ES256,
        json!({ "jwks_uri": format!("{base}/jwks") }),
    )
    .await;
    let aud = server.url("/token");
    let id = client.client_id.as_str();

    let t = clock.now();
    let (status, body) =
        client_credentials_with(&server, &client_assertion(&old, id, &aud, t, &jti())).await;
    assert_eq!(status, 200, "{body}");
    assert_token_active(
        &server,
        body["access_token"].as_str().unwrap(),
        id,
        id,
        None,
    )
    .await;
    assert_eq!(loopback.jwks_fetches.load(Ordering::SeqCst), 1);
    // Cached: no fetch for the next assertion.
    let (status, body) =
        client_credentials_with(&server, &client_assertion(&old, id, &aud, t, &jti())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(loopback.jwks_fetches.load(Ordering::SeqCst), 1);

    // The client rotates: only the new key is published.
    *loopback.jwks.lock().unwrap() = public_jwks(&[&new]);
    // Right after a fetch, the refetch on an unknown kid is rate-limited (30 s).
    let (status, body) =
        client_credentials_with(&server, &client_assertion(&new, id, &aud, t, &jti())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        ("invalid_client", "no key of this client has kid '2025-key'")
    );
    assert_eq!(loopback.jwks_fetches.load(Ordering::SeqCst), 1);
    // Later (still within the cache lifetime): the unknown kid triggers one refetch.
    clock.advance(45);
    let t = clock.now();
    let (status, body) =
        client_credentials_with(&server, &client_assertion(&new, id, &aud, t, &jti())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(loopback.jwks_fetches.load(Ordering::SeqCst), 2);
    assert_token_active(
        &server,
        body["access_token"].as_str().unwrap(),
        id,
        id,
        None,
    )
    .await;
    // The retired key no longer works.
    clock.advance(45);
    let t = clock.now();
    let (status, body) =
        client_credentials_with(&server, &client_assertion(&old, id, &aud, t, &jti())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        ("invalid_client", "no key of this client has kid '2024-key'")
    );
}

// ---------------------------------------------------------------------------------------------
// Replay.

/// A fixed issuer, so assertions made for one server are valid at another (a restarted node,
/// a second node) — requests still go to the real listening address.
const FIXED_ISSUER: &str = "http://localhost:9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_assertion_is_single_use_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let config = format!(
        "issuer = \"{FIXED_ISSUER}\"\ndatabase_url = {}\n",
        toml_string(&format!("sqlite:{}", db.display()))
    );
    let first = TestServer::start(&config).await;
    let key = SigningKey::generate(Algorithm::ES256, "replay").unwrap();
    let client = private_key_jwt_client(
        &first,
        Algorithm::ES256,
        json!({ "jwks": public_jwks(&[&key]) }),
    )
    .await;
    let id = client.client_id.as_str();
    let assertion = client_assertion(&key, id, FIXED_ISSUER, now(), &jti());
    let (status, body) = client_credentials_with(&first, &assertion).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = client_credentials_with(&first, &assertion).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        ("invalid_client", "jti has already been used")
    );
    // A grant assertion's jti is single use too.
    let engine = first.engine();
    let sa = create_service_account(engine, "replayer", Vec::new(), None, engine.now())
        .await
        .unwrap();
    let grant = tessera_core::assertion::keyfile::mint(
        &sa.to_string(),
        &tessera_core::assertion::keyfile::MintOptions {
            jti: true,
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    let (status, body) = jwt_bearer(&first, &grant).await;
    assert_eq!(status, 200, "{body}");
    first.shutdown().await;

    // Restart on the same SQLite file: the replay cache survived.
    let second = TestServer::start(&config).await;
    let (status, body) = client_credentials_with(&second, &assertion).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        ("invalid_client", "jti has already been used")
    );
    let (status, body) = jwt_bearer(&second, &grant).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        ("invalid_grant", "jti has already been used")
    );
    // The client itself still authenticates with a fresh assertion.
    let fresh = client_assertion(&key, id, FIXED_ISSUER, now(), &jti());
    let (status, body) = client_credentials_with(&second, &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert_token_active(
        &second,
        body["access_token"].as_str().unwrap(),
        id,
        id,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_assertion_is_single_use_across_two_postgres_nodes() {
    let Some((node_a, node_b)) =
        TestServer::start_postgres_pair(&format!("issuer = \"{FIXED_ISSUER}\"\n")).await
    else {
        return;
    };
    let key = SigningKey::generate(Algorithm::ES256, "nodes").unwrap();
    let client = private_key_jwt_client(
        &node_a,
        Algorithm::ES256,
        json!({ "jwks": public_jwks(&[&key]) }),
    )
    .await;
    let id = client.client_id.as_str();
    for (first, second) in [(&node_a, &node_b), (&node_b, &node_a)] {
        let assertion = client_assertion(&key, id, FIXED_ISSUER, now(), &jti());
        let (status, body) = client_credentials_with(first, &assertion).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = client_credentials_with(second, &assertion).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            error_of(&body),
            ("invalid_client", "jti has already been used")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Trusted issuers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_issuer_from_the_configuration_is_accepted_and_refused_precisely() {
    const STS: &str = "https://sts.example.com";
    let sts_key = SigningKey::generate(Algorithm::ES256, "sts-1").unwrap();
    // The JWK Set as an inline TOML table, as an operator would write it.
    let jwks_toml = toml::Value::try_from(public_jwks(&[&sts_key])).unwrap();
    let server = TestServer::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{STS}"
jwks = {jwks_toml}
allowed_subjects = ["svc-*"]
allowed_scopes = ["profile", "email"]
allowed_clients = "any"
max_lifetime = 600
"#
    ))
    .await;
    assert_eq!(server.engine().settings.trusted_issuers.len(), 1);
    let token_endpoint = server.url("/token");
    let t = now();
    let claims = |sub: &str, aud: &str, iat: i64, exp: i64| json!({"iss": STS, "sub": sub, "aud": aud, "iat": iat, "exp": exp, "jti": jti()});
    let sign = |key: &SigningKey, c: Value| key.sign_jwt(Some("JWT"), &c).unwrap();

    // Accepted: allowed subject, the token endpoint as audience, scope from the parameter.
    let ok = sign(&sts_key, claims("svc-batch", &token_endpoint, t, t + 300));
    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &ok),
            ("scope", "profile"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "profile");
    assert!(body["expires_in"].as_i64().unwrap() <= 300, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (_, at) = jwt_parts(token);
    assert!(
        at["exp"].as_i64().unwrap() <= t + 300,
        "never outlives the assertion: {at}"
    );
    // Not authenticated: the token's client is the issuer.
    assert_token_active(&server, token, STS, "svc-batch", Some("profile")).await;
    // The issuer identifier as audience works too.
    let ok = sign(&sts_key, claims("svc-report", &server.base_url, t, t + 300));
    let (status, body) = jwt_bearer(&server, &ok).await;
    assert_eq!(status, 200, "{body}");

    let audiences = format!(
        "Audience validation failed: expected {} or {token_endpoint}",
        server.base_url
    );
    let other_key = SigningKey::generate(Algorithm::ES256, "sts-1").unwrap();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "wrong audience",
            sign(
                &sts_key,
                claims("svc-batch", "https://elsewhere.example/token", t, t + 300),
            ),
            audiences.clone(),
        ),
        (
            "Google's audience (only for this server's own service accounts)",
            sign(
                &sts_key,
                claims("svc-batch", GOOGLE_TOKEN_AUDIENCE, t, t + 300),
            ),
            audiences.clone(),
        ),
        (
            "expired",
            sign(
                &sts_key,
                claims("svc-batch", &token_endpoint, t - 1000, t - 400),
            ),
            "assertion has expired".into(),
        ),
        (
            "lifetime above the issuer's max_lifetime",
            sign(&sts_key, claims("svc-batch", &token_endpoint, t, t + 3600)),
            "assertion lifetime exceeds 600 seconds".into(),
        ),
        (
            "unknown issuer",
            sign(
                &sts_key,
                json!({"iss": "https://unknown.example", "sub": "svc-batch", "aud": token_endpoint, "iat": t, "exp": t + 300}),
            ),
            "unknown issuer".into(),
        ),
        (
            "bad signature (another key with the same kid)",
            sign(&other_key, claims("svc-batch", &token_endpoint, t, t + 300)),
            "signature invalid".into(),
        ),
        (
            "subject not allowed",
            sign(&sts_key, claims("alice", &token_endpoint, t, t + 300)),
            "subject 'alice' is not allowed for this issuer".into(),
        ),
    ];
    for (what, assertion, description) in cases {
        let (status, body) = jwt_bearer(&server, &assertion).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(
            error_of(&body),
            ("invalid_grant", description.as_str()),
            "{what}"
        );
    }
    // A scope outside the trust entry's allowed scopes.
    let ok = sign(&sts_key, claims("svc-batch", &token_endpoint, t, t + 300));
    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &ok),
            ("scope", "groups"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).0, "invalid_scope", "{body}");
}

// ---------------------------------------------------------------------------------------------
// `tessera assertion check`, the real binary.

#[test]
fn assertion_check_prints_every_check_and_fails_an_expired_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let tessera = Tessera::new(dir.path());
    tessera
        .run(&[
            "--data-dir",
            "data",
            "service-account",
            "create",
            "ci",
            "--out",
            "ci.json",
        ])
        .ok();
    let key_file: ServiceAccountKeyFile =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ci.json")).unwrap())
            .unwrap();

    // Valid: minted by the CLI from the key file; accepted, every check shown.
    let jwt = tessera
        .run(&[
            "assertion",
            "mint",
            "--key-file",
            "ci.json",
            "--scope",
            "profile",
        ])
        .ok()
        .stdout();
    let run = tessera
        .run(&[
            "--data-dir",
            "data",
            "assertion",
            "check",
            jwt.trim(),
            "--as",
            "grant",
        ])
        .ok();
    let out = run.stdout();
    assert!(out.contains("ACCEPTED: service account"), "{out}");
    for check in [
        "✓ signature",
        "✓ aud",
        "✓ exp",
        "✓ iat",
        "✓ issuer",
        "✓ scope",
    ] {
        assert!(out.contains(check), "{check} missing:\n{out}");
    }

    // Expired an hour ago: rejected, exit status 1, the exp line says what was expected.
    let key = SigningKey::from_pkcs8_pem(
        Algorithm::RS256,
        key_file.private_key_id.clone(),
        &key_file.private_key,
    )
    .unwrap();
    let t = now();
    let expired = key
        .sign_jwt(
            Some("JWT"),
            &json!({"iss": key_file.client_email, "aud": key_file.token_uri, "iat": t - 7200, "exp": t - 3600, "scope": ""}),
        )
        .unwrap();
    let run = tessera.run(&[
        "--data-dir",
        "data",
        "assertion",
        "check",
        &expired,
        "--as",
        "grant",
    ]);
    let out = run.stdout();
    assert_eq!(run.code(), 1, "stdout:\n{out}\nstderr:\n{}", run.stderr());
    assert!(
        out.contains("REJECTED: invalid_grant: assertion has expired"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let exp_at = lines
        .iter()
        .position(|l| l.starts_with("✗ exp"))
        .unwrap_or_else(|| panic!("no failed exp check:\n{out}"));
    assert!(lines[exp_at].contains("expected:"), "{out}");
    assert!(
        lines[exp_at + 1].contains("actual:")
            && lines[exp_at + 1].contains(&(t - 3600).to_string()),
        "{out}"
    );
    // Every check has an expected and an actual line; the signature is still verified.
    let checks = lines
        .iter()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .count();
    let actuals = lines.iter().filter(|l| l.contains("actual:")).count();
    assert!(checks >= 8 && checks == actuals, "{out}");
    assert!(out.contains("✓ signature"), "{out}");
    assert!(run.stderr().contains("rejected"), "{}", run.stderr());
}

/// `[oauth] accept_google_audience = false`: service-account assertions must name this server.
#[tokio::test]
async fn google_audience_can_be_turned_off() {
    let server = TestServer::start("[oauth]\naccept_google_audience = false\n").await;
    let engine = server.engine();
    let key_file = create_service_account(engine, "strict", Vec::new(), None, engine.now())
        .await
        .unwrap();
    let mint = |aud: Option<&str>| {
        tessera_core::assertion::keyfile::mint(
            &key_file.to_string(),
            &tessera_core::assertion::keyfile::MintOptions {
                audience: aud.map(str::to_owned),
                ..Default::default()
            },
            now(),
        )
        .unwrap()
    };
    let (status, body) = jwt_bearer(&server, &mint(Some(GOOGLE_TOKEN_AUDIENCE))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        (
            "invalid_grant",
            format!(
                "Audience validation failed: expected {} or {}",
                server.base_url,
                server.url("/token")
            )
            .as_str()
        )
    );
    // The key file's token_uri still works.
    let (status, body) = jwt_bearer(&server, &mint(None)).await;
    assert_eq!(status, 200, "{body}");
    let id = key_file.client_email.as_str();
    assert_token_active(
        &server,
        body["access_token"].as_str().unwrap(),
        id,
        id,
        None,
    )
    .await;
}
