//! Interactive sign-in end to end, over HTTP against the in-process server: the pages and
//! their headers and cookies, the code flow with PKCE, consent, single sign-on, refresh
//! rotation, UserInfo and logout — then real third parties: openid-client (Node), Authlib
//! (Python), Chromium driven by playwright-core, and a "Jira Data Center" relying party.
//!
//! The third-party scripts live in `tests/interop/`. When node, the venv or chromium is missing
//! the test prints why and passes, unless `TESSERA_TEST_REQUIRE_SERVICES=1` (then it fails).

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use tessera_core::clock::ManualClock;

use crate::support::browser::{Browser, Page, query};
use crate::support::interop::{artifacts_dir, interop_dir, node_with, python, tool};
use crate::support::{Options, TestClient, TestServer, jwt_parts};

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const RP: &str = "https://rp.example/cb";

fn authorize_url(server: &TestServer, client_id: &str, extra: &str) -> String {
    server.url(&format!(
        "/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code\
         &scope=openid+profile+email+groups+offline_access&state=st-1&nonce=no-1\
         &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
    ))
}

async fn web_client(server: &TestServer, first_party: bool) -> TestClient {
    server
        .create_web_client("Team Wiki", RP, "https://rp.example/bye", first_party)
        .await
}

fn assert_page_headers(p: &Page) {
    let csp = p.header("content-security-policy");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("base-uri 'none'"));
    assert_eq!(p.header("x-frame-options"), "DENY");
    assert_eq!(p.header("cache-control"), "no-store");
    assert!(p.header("content-type").starts_with("text/html"));
}

async fn token(server: &TestServer, c: &TestClient, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = server
        .post_form(
            "/token",
            Some((&c.client_id, c.secret.as_deref().unwrap())),
            form,
        )
        .await;
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn code_flow_through_the_pages() {
    let server = TestServer::start("").await;
    server.create_user("alice", "correct horse").await;
    let c = web_client(&server, false).await;
    let mut b = Browser::new();

    // 1. Authorization request → login page.
    let p = b
        .get(&authorize_url(&server, &c.client_id, "&login_hint=alice"))
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let login_url = p.location();
    assert!(login_url.starts_with(&server.url("/login?tx=")));
    let bind = b.last_set_cookie("tessera_bind").to_owned();
    assert!(bind.contains("HttpOnly") && bind.contains("SameSite=Lax") && bind.contains("Path=/"));
    assert!(
        !bind.contains("Secure"),
        "plain-http loopback issuer: not Secure"
    );
    let login = b.get(login_url).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_page_headers(&login);
    assert!(
        login
            .header("content-security-policy")
            .contains("form-action 'self' https:;")
    );
    assert!(
        login.body.contains("value=\"alice\""),
        "login_hint pre-fills the username"
    );
    assert!(
        login.body.contains("<label for=\"username\">")
            && login.body.contains("<label for=\"password\">")
    );
    assert!(login.body.contains("Team Wiki"));
    let tx = login.field("tx");
    let csrf = login.field("csrf_token");

    // 2. Wrong password and unknown user: the same generic message, announced.
    for (user, pw) in [
        ("alice", "wrong"),
        ("mallory", "correct horse"),
        ("alice", ""),
    ] {
        let p = b
            .post(
                &server.url("/login"),
                &[
                    ("tx", &tx),
                    ("csrf_token", &csrf),
                    ("username", user),
                    ("password", pw),
                ],
            )
            .await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.body.contains("role=\"alert\""));
        assert!(
            p.body.contains("Invalid username or password."),
            "{}",
            p.body
        );
        assert!(
            !p.body.contains("mallory\" does not"),
            "never says whether the account exists"
        );
    }
    // A forged CSRF token is refused.
    let p = b
        .post(
            &server.url("/login"),
            &[
                ("tx", &tx),
                ("csrf_token", "forged"),
                ("username", "alice"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);

    // 3. Right password → session cookie → consent page (third-party client).
    let p = b
        .post(
            &server.url("/login"),
            &[
                ("tx", &tx),
                ("csrf_token", &csrf),
                ("username", "alice"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let session = b.last_set_cookie("tessera_session").to_owned();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    let consent_url = p.location();
    assert!(consent_url.starts_with(&server.url("/consent?tx=")));
    let consent = b.get(consent_url).await;
    assert_page_headers(&consent);
    assert!(consent.body.contains("Team Wiki") && consent.body.contains("Stay signed in"));
    let p = b.submit_consent(&consent, "allow").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let callback = p.location();
    assert!(callback.starts_with(RP));
    assert_eq!(query(callback, "state").as_deref(), Some("st-1"));
    assert_eq!(
        query(callback, "iss").as_deref(),
        Some(server.base_url.as_str()),
        "RFC 9207"
    );
    let code = query(callback, "code").unwrap();

    // 4. Code exchange (client_secret_basic + PKCE).
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", RP),
        ("code_verifier", VERIFIER),
    ];
    let (status, t) = token(&server, &c, &exchange).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (h, id) = jwt_parts(t["id_token"].as_str().unwrap());
    assert_eq!(h["alg"], "RS256");
    assert_eq!(id["iss"], Value::String(server.base_url.clone()));
    assert_eq!(id["aud"], Value::String(c.client_id.clone()));
    assert_eq!(id["nonce"], "no-1");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert!(id["at_hash"].is_string() && id["sid"].is_string() && id["auth_time"].is_number());
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"]
        .as_str()
        .expect("offline_access after consent")
        .to_owned();

    // 5. UserInfo: GET with a header, POST with a form body, RFC 6750 errors.
    let u: Value = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["sub"], id["sub"]);
    assert_eq!(u["preferred_username"], "alice");
    let r = server
        .http
        .post(server.url("/userinfo"))
        .form(&[("access_token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = server
        .http
        .get(server.url("/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // 6. Refresh rotation; reuse revokes the family.
    let (status, t2) = token(
        &server,
        &c,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let (status, e) = token(
        &server,
        &c,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = token(
        &server,
        &c,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t2["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the whole family is revoked"
    );

    // 7. Code reuse: invalid_grant, and the tokens issued from it die.
    let (status, e) = token(&server, &c, &exchange).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let r = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // 8. Single sign-on: consent remembered, no page at all.
    let p = b
        .get(&authorize_url(&server, &c.client_id, "&prompt=none"))
        .await;
    assert!(p.location().starts_with(RP));
    assert!(query(p.location(), "code").is_some());

    // 9. RP-initiated logout with id_token_hint → registered post-logout URI with state.
    let hint = t["id_token"].as_str().unwrap();
    let p = b
        .get(&server.url(&format!(
            "/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=bye-1"
        )))
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "https://rp.example/bye?state=bye-1");
    assert!(
        b.cookie(&server.base_url, "tessera_session").is_none(),
        "session cookie cleared"
    );
    let p = b
        .get(&authorize_url(&server, &c.client_id, "&prompt=none"))
        .await;
    assert_eq!(
        query(p.location(), "error").as_deref(),
        Some("login_required")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn errors_before_the_redirect_uri_is_verified_are_pages() {
    let server = TestServer::start("").await;
    let c = web_client(&server, true).await;
    let mut b = Browser::new();
    for url in [
        server.url("/authorize?client_id=nobody&response_type=code&scope=openid"),
        server.url(&format!("/authorize?client_id={}&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid", c.client_id)),
        server.url("/authorize?client_id=a&client_id=b"),
    ] {
        let p = b.get(&url).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{url}");
        assert_page_headers(&p);
        let id = p.header("x-request-id");
        assert!(p.body.contains(&id[..12]), "the page shows the request reference");
        assert!(!p.body.contains("evil.example\">"));
    }
    // After verification: redirected with error, state and iss.
    let p = b
        .get(&server.url(&format!("/authorize?client_id={}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=token&scope=openid&state=s1", c.client_id)))
        .await;
    let loc = p.location();
    assert!(loc.starts_with(RP));
    assert_eq!(
        query(loc, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(query(loc, "state").as_deref(), Some("s1"));
    assert_eq!(query(loc, "iss").as_deref(), Some(server.base_url.as_str()));
    // The stylesheet is served.
    let css = server
        .http
        .get(server.url("/assets/tessera.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn a_transaction_belongs_to_its_browser() {
    let server = TestServer::start("").await;
    server.create_user("alice", "pw-alice-1").await;
    let c = web_client(&server, true).await;
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let p = attacker
        .get(&authorize_url(&server, &c.client_id, ""))
        .await;
    let login = attacker.get(p.location()).await;
    // The victim's browser cannot use the attacker's transaction (login CSRF).
    victim.get(&authorize_url(&server, &c.client_id, "")).await;
    let p = victim.submit_login(&login, "alice", "pw-alice-1").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("another browser"));
}

#[tokio::test]
async fn logout_without_a_hint_asks_first() {
    let server = TestServer::start("").await;
    server.create_user("alice", "pw-alice-2").await;
    let c = web_client(&server, true).await;
    let mut b = Browser::new();
    let p = b.get(&authorize_url(&server, &c.client_id, "")).await;
    let login = b.get(p.location()).await;
    let p = b.submit_login(&login, "alice", "pw-alice-2").await;
    assert!(p.location().starts_with(RP), "first-party: no consent page");
    let page = b
        .get(&server.url(&format!(
            "/logout?client_id={}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye",
            c.client_id
        )))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page_headers(&page);
    assert!(
        page.header("content-security-policy")
            .contains("form-action 'self' https:;")
    );
    // An unregistered target is an error page, never a redirect.
    let bad = b
        .get(&server.url(&format!(
            "/logout?client_id={}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            c.client_id
        )))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let p = b
        .post(
            &server.url("/logout"),
            &[
                ("confirm_token", &page.field("confirm_token")),
                ("client_id", &c.client_id),
                ("post_logout_redirect_uri", "https://rp.example/bye"),
            ],
        )
        .await;
    assert_eq!(p.location(), "https://rp.example/bye");
    let p = b
        .get(&authorize_url(&server, &c.client_id, "&prompt=none"))
        .await;
    assert_eq!(
        query(p.location(), "error").as_deref(),
        Some("login_required")
    );
}

// ---------------------------------------------------------------------------------------------
// Real third parties.

/// Run an interop script against the server with `env`; fail with its output if it fails.
async fn run_script(program: PathBuf, script: &str, env: Vec<(&str, String)>) -> Value {
    let dir = interop_dir();
    let script_path = dir.join(script);
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    serde_json::from_str(last).unwrap_or_else(|_| panic!("{script}: no JSON result in\n{stdout}"))
}

fn rp_env(
    server: &TestServer,
    c: &TestClient,
    redirect: &str,
    user: &str,
    pw: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("TESSERA_ISSUER", server.base_url.clone()),
        ("CLIENT_ID", c.client_id.clone()),
        ("CLIENT_SECRET", c.secret.clone().unwrap_or_default()),
        ("REDIRECT_URI", redirect.to_owned()),
        ("TEST_USERNAME", user.to_owned()),
        ("TEST_PASSWORD", pw.to_owned()),
    ]
}

async fn rp_client(server: &TestServer, redirect: &str, first_party: bool) -> TestClient {
    server
        .create_web_client(
            "Interop RP",
            redirect,
            &format!("{redirect}/bye"),
            first_party,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_completes_the_code_flow() {
    let Some(node) = node_with("openid-client") else {
        return;
    };
    let server = TestServer::start("").await;
    server.create_user("oc-user", "oc-password-1").await;
    let c = rp_client(&server, "http://127.0.0.1:9/cb", false).await;
    let r = run_script(
        node,
        "node/openid_client_code_flow.mjs",
        rp_env(
            &server,
            &c,
            "http://127.0.0.1:9/cb",
            "oc-user",
            "oc-password-1",
        ),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["userinfo"]["preferred_username"], "oc-user");
    assert_eq!(r["refreshed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_completes_the_code_flow() {
    let Some(python) = python() else { return };
    let server = TestServer::start("").await;
    server.create_user("al-user", "al-password-1").await;
    let c = rp_client(&server, "http://127.0.0.1:9/cb", false).await;
    let r = run_script(
        python,
        "python/authlib_code_flow.py",
        rp_env(
            &server,
            &c,
            "http://127.0.0.1:9/cb",
            "al-user",
            "al-password-1",
        ),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["userinfo"]["preferred_username"], "al-user");
    assert_eq!(r["refreshed"], true);
}

/// Atlassian's OIDC app for Jira/Confluence Data Center: `client_secret_basic`, no PKCE, RS256
/// ID tokens checked with 60 s of skew, the username read from a configured claim with
/// userinfo as fallback. The server's clock runs 45 s ahead of the relying party's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_data_center_profile() {
    let Some(python) = python() else { return };
    #[allow(clippy::disallowed_methods)] // the relying party's wall clock, shifted
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let server = TestServer::start_with(Options {
        clock: Some(ManualClock::new(now + 45)),
        ..Options::default()
    })
    .await
    .unwrap();
    server.create_user("jdoe", "jira-password-1").await;
    let c = rp_client(
        &server,
        "https://jira.example/plugins/servlet/oidc/callback",
        true,
    )
    .await;
    for (claim, scope, expect) in [
        ("preferred_username", "openid profile email", "jdoe"),
        ("email", "openid email", "jdoe@example.com"),
    ] {
        let mut env = rp_env(
            &server,
            &c,
            "https://jira.example/plugins/servlet/oidc/callback",
            "jdoe",
            "jira-password-1",
        );
        env.push(("USERNAME_CLAIM", claim.to_owned()));
        env.push(("SCOPE", scope.to_owned()));
        let r = run_script(python.clone(), "python/jira_profile.py", env).await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["username"], expect, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_the_real_pages() {
    let Some(node) = node_with("openid-client") else {
        return;
    };
    let chromium = std::env::var_os("TESSERA_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let Some(chromium) = tool(chromium, "chromium") else {
        return;
    };
    let Some(_) = tool(
        interop_dir().join("node_modules/playwright-core"),
        "playwright-core",
    ) else {
        return;
    };
    let server = TestServer::start("").await;
    server.create_user("alice", "browser-password-1").await;
    // The script listens on the redirect URI's port: take a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let c = rp_client(&server, &redirect, false).await;
    let profile = tempfile::tempdir().unwrap();
    let mut env = rp_env(&server, &c, &redirect, "alice", "browser-password-1");
    env.push(("CHROMIUM", chromium.display().to_string()));
    env.push(("ARTIFACTS", artifacts_dir().display().to_string()));
    env.push(("USER_DATA_DIR", profile.path().display().to_string()));
    let r = run_script(node, "node/browser_login.mjs", env).await;
    assert_eq!(r["ok"], true, "{r}");
    for shot in ["login.png", "login-error.png", "consent.png", "error.png"] {
        assert!(artifacts_dir().join(shot).exists(), "{shot}");
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark (run by bench/login.sh; ignored in the normal test run).

/// Full password-login round trips per second against raw argon2id verifications per second
/// at the same parameters on the same cores, and the timing of an unknown user against a wrong
/// password. Prints one JSON line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/login.sh"]
async fn bench_password_logins() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let server = TestServer::start("").await;
    let user = server.create_user("bench", "bench-password-1").await;
    let phc = user.password_hash.clone().unwrap();
    let c = web_client(&server, true).await;
    let params = server.engine().passwords.params();

    // The transaction the login phase reuses (it is not single-use).
    let mut b = Browser::new();
    let p = b.get(&authorize_url(&server, &c.client_id, "")).await;
    let login = b.get(p.location()).await;
    let (tx, csrf) = (login.field("tx"), login.field("csrf_token"));
    let bind = b.cookie(&server.base_url, "tessera_bind").unwrap();
    let cookie = format!("tessera_bind={bind}");

    // Raw and login phases alternate in short windows, so load from elsewhere on the machine
    // hits both alike.
    let hasher = server.engine().passwords.clone();
    let window = Duration::from_secs(2);
    let (mut raw, mut logins, mut elapsed) = (0u64, 0u64, 0u64);
    while elapsed < secs {
        // 1. Raw argon2id verifications, one thread per core.
        let stop = Instant::now() + window;
        raw += std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (hasher, phc) = (hasher.clone(), phc.clone());
                    s.spawn(move || {
                        let pw = tessera_core::secret::Secret::new("bench-password-1");
                        let mut n = 0u64;
                        while Instant::now() < stop {
                            assert!(hasher.verify(&pw, &phc));
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        // 2. Full login round trips: POST /login with the right password → chain → session →
        //    code → 303 to the client; two connections per core.
        let count = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + window;
        let mut tasks = Vec::new();
        for _ in 0..threads * 2 {
            let (http, url, tx, csrf, cookie, count) = (
                server.http.clone(),
                server.url("/login"),
                tx.clone(),
                csrf.clone(),
                cookie.clone(),
                count.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let r = http
                        .post(&url)
                        .header("cookie", &cookie)
                        .form(&[
                            ("tx", tx.as_str()),
                            ("csrf_token", &csrf),
                            ("username", "bench"),
                            ("password", "bench-password-1"),
                        ])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::SEE_OTHER);
                    assert!(r.headers()[LOCATION].to_str().unwrap().starts_with(RP));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        logins += count.load(Ordering::Relaxed);
        elapsed += window.as_secs();
    }
    let raw_per_sec = raw as f64 / elapsed as f64;
    let logins_per_sec = logins as f64 / elapsed as f64;

    // 3. Unknown user vs wrong password, interleaved on one connection. One attempt per
    //    account, so lockout (which answers without running the chain) never kicks in.
    let rounds = 40;
    for i in 0..rounds {
        server
            .create_user(&format!("victim-{i}"), "victim-password-1")
            .await;
    }
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..rounds * 2 {
        let user = if i % 2 == 0 {
            format!("nobody-{i}")
        } else {
            format!("victim-{}", i / 2)
        };
        let user = user.as_str();
        let t0 = Instant::now();
        let r = server
            .http
            .post(server.url("/login"))
            .header("cookie", &cookie)
            .form(&[
                ("tx", tx.as_str()),
                ("csrf_token", &csrf),
                ("username", user),
                ("password", "wrong-password"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.text().await.unwrap();
        assert!(body.contains("Invalid username or password."));
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if i % 2 == 0 {
            unknown.push(ms)
        } else {
            wrong.push(ms)
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mu, mw) = (mean(&unknown), mean(&wrong));
    let (du, dw) = (median(&mut unknown), median(&mut wrong));
    let ratio = logins_per_sec / raw_per_sec;
    println!(
        "{}",
        json!({
            "argon2id": {"m_kib": params.memory_kib, "t": params.iterations, "p": params.parallelism},
            "cores": threads,
            "seconds_each": elapsed,
            "raw_verifications_per_sec": (raw_per_sec * 10.0).round() / 10.0,
            "login_round_trips_per_sec": (logins_per_sec * 10.0).round() / 10.0,
            "login_to_raw_ratio": (ratio * 1000.0).round() / 1000.0,
            "unknown_user_ms": {"median": du, "mean": mu},
            "wrong_password_ms": {"median": dw, "mean": mw},
            "unknown_vs_wrong_median_diff_pct": ((du - dw) / dw * 1000.0).round() / 10.0,
        })
    );
    assert!(
        ratio >= 0.8,
        "login round trips at {:.0}% of raw argon2id",
        ratio * 100.0
    );
    assert!(
        ((du - dw) / dw).abs() < 0.15,
        "unknown user {du:.2} ms vs wrong password {dw:.2} ms"
    );
}
