//! Diagnostics end to end (`docs/diagnostics.md`): every failure is provoked for real over HTTP
//! against the in-process server with tracing switched on through the admin API, the trace is
//! fetched by the failing response's `X-Request-Id` (`GET /admin/traces/{id}`), and its stable
//! code, cause and remedy are asserted; the anonymous response must carry none of them.
//!
//! Each case writes what the client saw and the admin trace summary to
//! `tests/artifacts/diagnostics/<case>.txt` (pasted into `docs/diagnostics.md`).
//!
//! Also here: `tessera probe` (the real binary) against a running Tessera, directly and through
//! a real tinyproxy that refuses CONNECT (the Jira-node scenario, Java properties pasted
//! verbatim), and `tessera doctor` with an upstream IdP behind that proxy.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use serde_json::{Value, json};
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::diagnostics::catalog;
use tessera_jose::{Algorithm, SigningKey};

use crate::support::browser::{Browser, Page, query};
use crate::support::{Tessera, TestClient, TestServer, toml_string};

const ADMIN_TOKEN: &str = "diagnostics-admin-token-0123456789abcdef";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const RP: &str = "https://rp.example/cb";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Write `tests/artifacts/diagnostics/<case>.txt`.
fn artifact(case: &str, text: &str) {
    let dir = repo_root().join("tests/artifacts/diagnostics");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{case}.txt")), text).unwrap();
}

fn admin_config() -> String {
    format!("admin_token = \"{ADMIN_TOKEN}\"\n")
}

/// Switch detailed tracing on for everybody, through the admin API.
async fn tracing_on(server: &TestServer) {
    let r = server
        .http
        .post(server.url("/admin/debug/authn"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "on": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let state: Value = r.json().await.unwrap();
    assert_eq!(state["global"], true, "{state}");
}

/// `GET /admin/traces/{id}`: the kept trace.
async fn trace(server: &TestServer, request_id: &str) -> Value {
    let r = server
        .http
        .get(server.url(&format!("/admin/traces/{request_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "trace {request_id}: {body}");
    body
}

/// What the anonymous caller received.
struct Seen {
    status: StatusCode,
    request_id: String,
    location: Option<String>,
    body: String,
}

impl Seen {
    async fn of(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        Self::new(status, &headers, body)
    }

    /// The `Location` as sent (not resolved).
    fn new(status: StatusCode, headers: &HeaderMap, body: String) -> Self {
        let request_id = headers
            .get("x-request-id")
            .expect("X-Request-Id")
            .to_str()
            .unwrap()
            .to_owned();
        let location = headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        Self {
            status,
            request_id,
            location,
            body,
        }
    }

    /// The client's view, for the capture: status, request id, body (HTML pages reduced to the
    /// visible message lines).
    fn render(&self) -> String {
        let mut out = format!("HTTP {}\nX-Request-Id: {}\n", self.status, self.request_id);
        if let Some(l) = &self.location {
            out.push_str(&format!("Location: {l}\n"));
        }
        if self.body.trim_start().starts_with('<') {
            for line in visible_text(&self.body) {
                out.push_str(&format!("  | {line}\n"));
            }
        } else if !self.body.is_empty() {
            out.push_str(&self.body);
            out.push('\n');
        }
        out
    }
}

impl From<Page> for Seen {
    fn from(p: Page) -> Self {
        Seen::new(p.status, &p.headers, p.body)
    }
}

/// The text a user reads on an HTML page: `<title>`, the heading, paragraphs and the alert, in
/// document order.
fn visible_text(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (open, close) in [
        ("<title", "</title>"),
        ("<h1", "</h1>"),
        ("<p>", "</p>"),
        ("<p ", "</p>"),
        ("<div class=\"alert\"", "</div>"),
    ] {
        let mut from = 0;
        while let Some(i) = html[from..].find(open) {
            let at = from + i;
            let Some(gt) = html[at..].find('>') else {
                break;
            };
            let Some(end) = html[at..].find(close) else {
                break;
            };
            if end > gt {
                let inner = strip_tags(&html[at + gt + 1..at + end]);
                if !inner.is_empty() {
                    found.push((at, inner));
                }
            }
            from = at + end.max(gt) + 1;
        }
    }
    found.sort();
    found.into_iter().map(|(_, t)| t).collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The admin trace as a short summary: the decision, code, cause, remedy, then one line per
/// step.
fn summary(t: &Value) -> String {
    let s = |k: &str| t[k].as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "GET /admin/traces/{}\n  attempt:     {}\n  decision:    {} ({})\n",
        s("request_id"),
        s("attempt"),
        s("decision"),
        s("error"),
    );
    for k in ["user", "client"] {
        if let Some(v) = t[k].as_str() {
            out.push_str(&format!("  {k}:{:width$}{v}\n", "", width = 12 - k.len()));
        }
    }
    out.push_str(&format!(
        "  code:        {}\n  explanation: {}\n  cause:       {}\n  remedy:      {}\n  steps:\n",
        s("code"),
        s("explanation"),
        s("cause"),
        s("remedy")
    ));
    let steps = t["steps"].as_array().cloned().unwrap_or_default();
    if steps.is_empty() {
        out.push_str("    (none recorded: the protocol check itself decided, see cause)\n");
    }
    for step in &steps {
        out.push_str(&format!(
            "    {:<15} {:<20} {:<16} {}\n",
            step["component"].as_str().unwrap_or_default(),
            step["step"].as_str().unwrap_or_default(),
            step["outcome"].as_str().unwrap_or_default(),
            step["detail"]
        ));
    }
    out
}

/// Assert the trace names `code` with the catalog's explanation and remedy and a cause holding
/// `cause_has`; assert the anonymous response holds no cause, code or remedy; write the capture.
async fn capture(
    server: &TestServer,
    case: &str,
    seen: &Seen,
    code: &str,
    cause_has: &str,
) -> Value {
    let t = trace(server, &seen.request_id).await;
    let entry = catalog::lookup(code).unwrap();
    let text = format!(
        "# {case}\n\n## what the client received\n{}\n## what the administrator sees\n{}",
        seen.render(),
        summary(&t)
    );
    artifact(case, &text);
    assert_eq!(t["request_id"], seen.request_id.as_str(), "{text}");
    assert_eq!(t["decision"], "failure", "{text}");
    assert_eq!(t["code"], code, "{text}");
    assert_eq!(t["explanation"], entry.explanation, "{text}");
    assert_eq!(t["remedy"], entry.remedy, "{text}");
    let cause = t["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains(cause_has),
        "{case}: the cause should contain {cause_has:?}:\n{text}"
    );
    // Cause propagation: the anonymous caller gets the standard error only.
    assert!(!seen.body.contains(cause), "{case}: cause leaked:\n{text}");
    assert!(!seen.body.contains("TSR-"), "{case}: code leaked:\n{text}");
    assert!(
        !seen.body.contains(entry.remedy),
        "{case}: remedy leaked:\n{text}"
    );
    if let Some(l) = &seen.location {
        assert!(!l.contains("TSR-"), "{case}: code in the redirect:\n{text}");
    }
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&seen.body) {
        let keys: Vec<&String> = m.keys().collect();
        assert!(
            keys.iter()
                .all(|k| *k == "error" || *k == "error_description"),
            "{case}: RFC 6749 §5.2 body only: {keys:?}"
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Client assertions (RFC 7523 §2.2, private_key_jwt).

fn now() -> i64 {
    SystemClock.now()
}

fn jti() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn signed(key: &SigningKey, claims: Value) -> String {
    key.sign_jwt(Some("JWT"), &claims).unwrap()
}

async fn client_credentials_with(server: &TestServer, assertion: &str) -> Seen {
    let r = server
        .http
        .post(server.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    Seen::of(r).await
}

#[tokio::test]
async fn client_assertion_failures_are_traced_with_code_cause_and_remedy() {
    let server = TestServer::start(&admin_config()).await;
    tracing_on(&server).await;
    let key = SigningKey::generate(Algorithm::ES256, "rp-key-1").unwrap();
    let jwks = json!({ "keys": [serde_json::to_value(key.public_jwk()).unwrap()] });
    let client = server
        .create_client(json!({
            "client_name": "assertion client",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": jwks,
        }))
        .await;
    let id = client.client_id.as_str();
    let aud = server.url("/token");
    let t = now();
    let claims = |aud: &str, iat: i64, exp: i64| json!({"iss": id, "sub": id, "aud": aud, "iat": iat, "exp": exp, "jti": jti()});

    // A good one works (the baseline).
    let ok = client_credentials_with(&server, &signed(&key, claims(&aud, t, t + 60))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    // Expired.
    let seen =
        client_credentials_with(&server, &signed(&key, claims(&aud, t - 1000, t - 400))).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{}", seen.body);
    capture(&server, "assertion-expired", &seen, "TSR-ASSERT-EXP", "exp").await;

    // Wrong audience.
    let seen = client_credentials_with(
        &server,
        &signed(&key, claims("https://elsewhere.example/token", t, t + 60)),
    )
    .await;
    capture(
        &server,
        "assertion-audience",
        &seen,
        "TSR-ASSERT-AUD",
        "elsewhere.example",
    )
    .await;

    // Bad signature: another key under the registered kid.
    let impostor = SigningKey::generate(Algorithm::ES256, "rp-key-1").unwrap();
    let seen = client_credentials_with(&server, &signed(&impostor, claims(&aud, t, t + 60))).await;
    capture(
        &server,
        "assertion-signature",
        &seen,
        "TSR-ASSERT-SIG",
        "signature",
    )
    .await;

    // Unknown kid.
    let rotated = SigningKey::generate(Algorithm::ES256, "rp-key-2").unwrap();
    let seen = client_credentials_with(&server, &signed(&rotated, claims(&aud, t, t + 60))).await;
    capture(
        &server,
        "assertion-kid",
        &seen,
        "TSR-ASSERT-KID",
        "rp-key-2",
    )
    .await;

    // Replayed: the same assertion twice.
    let once = signed(&key, claims(&aud, t, t + 60));
    let first = client_credentials_with(&server, &once).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let seen = client_credentials_with(&server, &once).await;
    capture(
        &server,
        "assertion-replayed",
        &seen,
        "TSR-ASSERT-JTI",
        "jti",
    )
    .await;

    // Clock skew: the client's clock is 10 minutes ahead (iat in the future beyond the 60 s).
    let ahead = t + 600;
    let seen =
        client_credentials_with(&server, &signed(&key, claims(&aud, ahead, ahead + 60))).await;
    capture(
        &server,
        "assertion-clock-skew",
        &seen,
        "TSR-ASSERT-SKEW",
        "iat",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The code flow: redirect URI mismatch at /authorize, reused code, PKCE mismatch.

fn authorize_url(server: &TestServer, client_id: &str, redirect_uri: &str) -> String {
    let redirect: String = url::form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect();
    server.url(&format!(
        "/authorize?client_id={client_id}&redirect_uri={redirect}&response_type=code\
         &scope=openid&state=st-1&nonce=no-1&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ))
}

async fn web_client(server: &TestServer) -> TestClient {
    let mut c = server
        .create_client(json!({
            "client_name": "Team Wiki",
            "redirect_uris": [RP],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    c.client.first_party = true;
    server.store().put_client(&c.client).await.unwrap();
    c
}

/// The login page of a fresh authorization request.
async fn login_page(server: &TestServer, b: &mut Browser, c: &TestClient) -> (String, String) {
    let p = b.get(&authorize_url(server, &c.client_id, RP)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let login = b.get(p.location()).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    (login.field("tx"), login.field("csrf_token"))
}

async fn submit_login(
    server: &TestServer,
    b: &mut Browser,
    c: &TestClient,
    user: &str,
    pw: &str,
) -> Seen {
    let (tx, csrf) = login_page(server, b, c).await;
    b.post(
        &server.url("/login"),
        &[
            ("tx", &tx),
            ("csrf_token", &csrf),
            ("username", user),
            ("password", pw),
        ],
    )
    .await
    .into()
}

/// Sign in (in a fresh browser) and return a fresh authorization code.
async fn code(server: &TestServer, c: &TestClient) -> String {
    let mut b = Browser::new();
    let p = submit_login(server, &mut b, c, "alice", "correct horse").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let callback = p.location.unwrap();
    assert!(callback.starts_with(RP), "{callback}");
    query(&callback, "code").unwrap()
}

async fn exchange(server: &TestServer, c: &TestClient, code: &str, verifier: &str) -> Seen {
    let r = server
        .post_form(
            "/token",
            Some((&c.client_id, c.secret.as_deref().unwrap())),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", RP),
                ("code_verifier", verifier),
            ],
        )
        .await;
    Seen::of(r).await
}

#[tokio::test]
async fn code_flow_failures_are_traced_with_code_cause_and_remedy() {
    let server = TestServer::start(&admin_config()).await;
    tracing_on(&server).await;
    server.create_user("alice", "correct horse").await;
    let c = web_client(&server).await;
    let mut b = Browser::new();

    // Redirect URI mismatch at /authorize: an error page, never a redirect (RFC 6749 §4.1.2.1).
    let seen: Seen = b
        .get(&authorize_url(
            &server,
            &c.client_id,
            "https://rp.example/callback/",
        ))
        .await
        .into();
    assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{}", seen.body);
    assert!(seen.location.is_none());
    assert!(
        seen.body.contains(&seen.request_id[..12]),
        "the error page shows the request reference"
    );
    capture(
        &server,
        "authorize-redirect-uri",
        &seen,
        "TSR-AUTHZ-REDIRECT",
        "https://rp.example/callback/",
    )
    .await;

    // A code redeemed twice.
    let first = code(&server, &c).await;
    let ok = exchange(&server, &c, &first, VERIFIER).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let seen = exchange(&server, &c, &first, VERIFIER).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{}", seen.body);
    capture(
        &server,
        "code-reused",
        &seen,
        "TSR-GRANT-CODE-REUSED",
        "already",
    )
    .await;

    // PKCE: a verifier that does not hash to the challenge.
    let second = code(&server, &c).await;
    let wrong = "wrong-verifier-wrong-verifier-wrong-verifier-0123";
    let seen = exchange(&server, &c, &second, wrong).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{}", seen.body);
    capture(
        &server,
        "pkce-mismatch",
        &seen,
        "TSR-GRANT-PKCE",
        "code_challenge",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Password logins on the sign-in page: unknown user, bad password, locked account.

#[tokio::test]
async fn login_failures_are_traced_with_code_cause_and_remedy() {
    let server = TestServer::start(&admin_config()).await;
    tracing_on(&server).await;
    server.create_user("alice", "correct horse").await;
    server.create_user("lena", "battery staple").await;
    let c = web_client(&server).await;
    let mut b = Browser::new();

    let seen = submit_login(&server, &mut b, &c, "mallory", "some password").await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.contains("Invalid username or password."));
    capture(
        &server,
        "login-unknown-user",
        &seen,
        "TSR-AUTHN-UNKNOWN-USER",
        "mallory",
    )
    .await;

    let seen = submit_login(&server, &mut b, &c, "alice", "wrong password").await;
    assert!(seen.body.contains("Invalid username or password."));
    capture(
        &server,
        "login-bad-password",
        &seen,
        "TSR-AUTHN-BAD-PASSWORD",
        "alice",
    )
    .await;
    assert!(
        !serde_json::to_string(&trace(&server, &seen.request_id).await)
            .unwrap()
            .contains("wrong password"),
        "never a password in a trace"
    );

    // Tessera's soft lockout: the fifth failure locks; then even the right password is refused.
    for _ in 0..5 {
        submit_login(&server, &mut b, &c, "lena", "guess").await;
    }
    let seen = submit_login(&server, &mut b, &c, "lena", "battery staple").await;
    assert!(!seen.body.contains("battery staple"));
    capture(&server, "login-locked", &seen, "TSR-AUTHN-LOCKED", "lena").await;
}

// ---------------------------------------------------------------------------------------------
// `tessera probe` and `tessera doctor`, the real binary, against a running Tessera and through a
// real tinyproxy that refuses CONNECT.

/// A private tinyproxy (`scripts/start-proxy.sh DIR DENY…`), stopped when dropped.
struct Proxy {
    /// `http://127.0.0.1:PORT`.
    url: String,
    port: String,
    _dir: tempfile::TempDir,
    stop: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.stop).arg("--kill").output();
    }
}

/// `None` (test skipped, after saying why) when tinyproxy is missing and services are not
/// required.
fn start_proxy(deny: &[&str]) -> Option<Proxy> {
    let scripts = std::env::var_os("TESSERA_TEST_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("scripts"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(scripts.join("start-proxy.sh"))
        .arg(dir.path())
        .args(deny)
        .output()
        .unwrap();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            std::env::var("TESSERA_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "start-proxy.sh: {why}"
        );
        eprintln!("SKIPPED: start-proxy.sh: {why}");
        return None;
    }
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let stop = dir.path().join("stop.sh");
    Some(Proxy {
        url,
        port,
        _dir: dir,
        stop,
    })
}

/// Run the real binary without blocking the runtime the in-process server runs on.
async fn run_tessera(cwd: &Path, args: Vec<String>) -> crate::support::process::Run {
    let cwd = cwd.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tessera::new(&cwd).run(&args)
    })
    .await
    .unwrap()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// The command line as a shell would show it, and its output, for the docs.
fn transcript(
    args: &[String],
    run: &crate::support::process::Run,
    proxy_port: Option<&str>,
) -> String {
    let mut text = format!(
        "$ tessera {}\n{}{}(exit code {})\n",
        args.iter()
            .map(|a| if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
            .join(" "),
        run.stdout(),
        run.stderr(),
        run.code()
    );
    if let Some(p) = proxy_port {
        text = text.replace(&format!(":{p}"), ":PROXY_PORT");
        text = text.replace(&format!("proxyPort={p}"), "proxyPort=PROXY_PORT");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_passes_against_a_running_tessera_and_makes_a_real_token_request() {
    let server = TestServer::start("").await;
    let client = server.create_service_client().await;
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "probe".to_owned(),
        server.base_url.clone(),
        "--no-env".into(),
        "--client-id".into(),
        client.client_id.clone(),
        "--client-secret".into(),
        client.secret.clone().unwrap(),
    ];
    let run = run_tessera(dir.path(), args.clone()).await;
    let mut shown = args.clone();
    shown[6] = "CLIENT_SECRET".into();
    let text = transcript(&shown, &run, None);
    artifact("probe-running-tessera", &text);
    assert_eq!(run.code(), 0, "{text}");
    let out = run.stdout();
    for line in [
        "✓ discovery ",
        "✓ issuer ",
        "✓ jwks ",
        "✓ token_endpoint ",
        "✓ token_request ",
    ] {
        assert!(out.contains(line), "{line}: {text}");
    }
    assert!(out.contains("client authenticated, token issued"), "{text}");
    assert!(out.contains("5 passed, 0 failed"), "{text}");
    assert!(
        !out.contains(client.secret.as_deref().unwrap()),
        "never the secret"
    );

    // --json is parsable and says the same.
    let mut json_args = args.clone();
    json_args.push("--json".into());
    let run = run_tessera(dir.path(), json_args).await;
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let checks: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert!(
        checks.as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{checks}"
    );

    // Through the proxy (Java properties, loopback not in nonProxyHosts): plain http through
    // tinyproxy still works.
    let Some(proxy) = start_proxy(&[r"^idp\.example\.invalid:443$"]) else {
        return;
    };
    let args = vec![
        "probe".to_owned(),
        server.base_url.clone(),
        "-Dhttp.proxyHost=127.0.0.1".into(),
        format!("-Dhttp.proxyPort={}", proxy.port),
        "-Dhttps.proxyHost=127.0.0.1".into(),
        format!("-Dhttps.proxyPort={}", proxy.port),
        "-Dhttp.nonProxyHosts=\"localhost\"".into(),
    ];
    let run = run_tessera(dir.path(), args.clone()).await;
    let text = transcript(&args, &run, Some(&proxy.port));
    artifact("probe-running-tessera-through-proxy", &text);
    assert_eq!(run.code(), 0, "{text}");
    assert!(
        run.stdout().contains(&format!(
            "# proxy settings (Java properties): https 127.0.0.1:{}",
            proxy.port
        )),
        "{text}"
    );
    assert!(run.stdout().contains("4 passed, 0 failed"), "{text}");
}

/// The Jira-node scenario: the relying party's JVM options pasted verbatim; the proxy refuses
/// CONNECT to the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_the_proxy_its_403_the_target_and_the_remedy() {
    let Some(proxy) = start_proxy(&[r"^idp\.example\.invalid:443$"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "probe".to_owned(),
        "https://idp.example.invalid".into(),
        "-Dhttp.proxyHost=127.0.0.1".into(),
        format!("-Dhttp.proxyPort={}", proxy.port),
        "-Dhttps.proxyHost=127.0.0.1".into(),
        format!("-Dhttps.proxyPort={}", proxy.port),
        "-Dhttp.nonProxyHosts=\"localhost\"".into(),
    ];
    let run = run_tessera(dir.path(), args.clone()).await;
    let text = transcript(&args, &run, Some(&proxy.port));
    artifact("probe-jira-node-proxy-403", &text);
    assert_ne!(run.code(), 0, "{text}");
    let out = run.stdout();
    let p = &proxy.port;
    assert!(
        out.contains(&format!(
            "proxy 127.0.0.1:{p} answered CONNECT idp.example.invalid:443 with 403 Filtered"
        )),
        "{text}"
    );
    assert!(out.contains("code:   TSR-PROXY-403"), "{text}");
    assert!(
        out.contains(
            "remedy: add idp.example.invalid to http.nonProxyHosts / NO_PROXY, or allow it at the proxy"
        ),
        "{text}"
    );
    assert!(out.contains("✗ proxy_connect"), "{text}");
    assert!(out.contains("0 passed, 1 failed"), "{text}");

    // --proxy next to Java properties: refused, rather than one of them silently ignored.
    let mut both = args.clone();
    both.extend(["--proxy".to_owned(), "http://127.0.0.1:9".to_owned()]);
    let run = run_tessera(dir.path(), both).await;
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("not both"), "{}", run.stderr());
}

/// `tessera doctor` checks each upstream IdP through the configured egress proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_upstreams_through_the_egress_proxy() {
    let Some(proxy) = start_proxy(&[r"^idp\.example\.invalid:443$"]) else {
        return;
    };
    // A healthy upstream: a running Tessera on loopback (reached directly: loopback is in the
    // default no-proxy list).
    let upstream = TestServer::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"listen = "127.0.0.1:0"
data_dir = {data}
master_key = "{key}"

[egress.proxy]
url = "{proxy}"

[[upstreams]]
name = "corp"
issuer = "https://idp.example.invalid"
client_id = "tessera"
client_secret = "upstream-secret-0123456789abcdef"

[[upstreams]]
name = "partner"
issuer = "{partner}"
client_id = "tessera"
client_secret = "upstream-secret-0123456789abcdef"
"#,
        data = toml_string(&dir.path().join("data").display().to_string()),
        key = crate::support::TEST_MASTER_KEY,
        proxy = proxy.url,
        partner = upstream.base_url,
    );
    std::fs::write(dir.path().join("tessera.toml"), &config).unwrap();
    // The store and keys exist once a server ran.
    let tessera = Tessera::new(dir.path());
    let serve = tokio::task::spawn_blocking({
        let t = tessera.clone();
        move || t.serve(&["serve", "--config", "tessera.toml"])
    })
    .await
    .unwrap();
    drop(serve);

    let args = strings(&["doctor", "--config", "tessera.toml"]);
    let run = run_tessera(dir.path(), args.clone()).await;
    // No machine paths in the capture: the data directory relative to the config file.
    let tmp = format!("{}/", dir.path().display());
    let text = transcript(&args, &run, Some(&proxy.port)).replace(&tmp, "");
    artifact("doctor-upstream-proxy-403", &text);
    assert_eq!(run.code(), 1, "{text}");
    let out = run.stdout();
    let p = &proxy.port;
    assert!(out.contains("✓ store reachable and migrated"), "{text}");
    assert!(
        out.contains(
            "✗ upstream corp discovery https://idp.example.invalid/.well-known/openid-configuration"
        ),
        "{text}"
    );
    assert!(
        out.contains(&format!(
            "cause:  proxy 127.0.0.1:{p} answered CONNECT idp.example.invalid:443 with 403 Filtered"
        )),
        "{text}"
    );
    assert!(
        out.contains("remedy: add idp.example.invalid to NO_PROXY / http.nonProxyHosts, or allow it at the proxy"),
        "{text}"
    );
    for check in ["discovery", "issuer", "jwks", "token_endpoint"] {
        assert!(
            out.contains(&format!("✓ upstream partner {check} ")),
            "{check}: {text}"
        );
    }
    // The upstream's Date header is the reference clock (there is no remote JWKS here).
    let partner = upstream.base_url.trim_start_matches("http://");
    assert!(
        out.contains("✓ clock (") && out.contains(&format!(" of {partner} (Date header)")),
        "{text}"
    );
    assert!(
        !text.contains("upstream-secret-0123456789abcdef"),
        "never the secret: {text}"
    );

    // --json: parsable, the failed item has code, cause, remedy and every transport step.
    let args = strings(&["doctor", "--config", "tessera.toml", "--json"]);
    let run = run_tessera(dir.path(), args.clone()).await;
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let checks: Vec<Value> = serde_json::from_str(&run.stdout()).unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    let f = failed[0];
    assert!(
        f["name"]
            .as_str()
            .unwrap()
            .starts_with("upstream corp discovery")
    );
    assert_eq!(f["code"], "TSR-PROXY-403");
    assert!(f["cause"].as_str().unwrap().contains("403 Filtered"), "{f}");
    assert!(
        f["remedy"]
            .as_str()
            .unwrap()
            .ends_with("or allow it at the proxy"),
        "{f}"
    );
    let steps: Vec<(&str, bool)> = f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("route", true),
            ("dns", true),
            ("tcp", true),
            ("proxy_connect", false)
        ],
        "{f}"
    );
    let json_text = transcript(&args, &run, Some(&proxy.port)).replace(&tmp, "");
    artifact("doctor-upstream-proxy-403-json", &json_text);
}
