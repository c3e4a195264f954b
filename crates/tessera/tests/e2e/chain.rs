//! The provider chain end to end (issue 4): local + LDAP + LDAP built from `[[providers]]`
//! configuration, against real `slapd` instances, driven through the login page
//! (`/authorize` → `/login`) of the in-process server.
//!
//! - every JAAS control flag at every position, users present in neither, one or both
//!   directories (verdict over HTTP; the providers that ran from the server's own chain);
//! - a local break-glass account first and SUFFICIENT keeps working while every directory is
//!   stopped; LDAP-only chains with every directory down answer "temporarily unavailable" (503),
//!   never "invalid username or password", and the log and trace name the provider and host; on
//!   an API path the decision becomes HTTP 503 `temporarily_unavailable`;
//! - a paused `slapd` (SIGSTOP): the login answers within the operation timeout while logins on
//!   the other directory proceed;
//! - failover to the second URL of a provider;
//! - LDAP groups in the `groups` claim of the ID token and UserInfo; merged attributes.
//!
//! Each test starts its own `slapd` instance(s) with `start-ldap.sh` (from
//! `TESSERA_TEST_SCRIPTS`, by default the repository's `scripts/`) in a temporary directory.
//! When slapd cannot be started the test prints why and passes, unless
//! `TESSERA_TEST_REQUIRE_SERVICES=1`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use tessera_core::authn::{ControlFlag, Decision, PasswordCredentials};
use tessera_core::oauth::RequestContext;
use tessera_core::trace::{Trace, TraceHandle};

use crate::support::browser::{field, query};
use crate::support::logs::Logs;
use crate::support::slapd::Slapd;
use crate::support::{TestClient, TestServer, jwt_parts};

// ------------------------------------------------------------------ slapd instances

macro_rules! slapd {
    ($test:expr, $ldif:expr) => {
        match Slapd::start($test, $ldif) {
            Some(s) => s,
            None => return,
        }
    };
}

/// A user only this directory has (`uid=<uid>`, password `<uid>-secret`).
fn extra_user(uid: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,dc=example,dc=com\nchangetype: add\nobjectClass: inetOrgPerson\n\
         uid: {uid}\ncn: {uid} Only\nsn: Only\nmail: {uid}@example.com\nuserPassword: {uid}-secret\n"
    )
}

fn local_provider(flag: &str) -> String {
    format!("\n[[providers]]\nkind = \"local\"\nname = \"local\"\nflag = \"{flag}\"\n")
}

// ------------------------------------------------------------------ the login page

/// What the login page answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 303 onwards (to the client or the consent page): signed in.
    SignedIn,
    /// 200 "Invalid username or password."
    Invalid,
    /// 503 "temporarily unavailable".
    Unavailable,
    /// 403 account state.
    AccountState,
}

struct LoginResult {
    answer: Answer,
    status: StatusCode,
    location: Option<String>,
    cookies: BTreeMap<String, String>,
    body: String,
}

const RP: &str = "https://rp.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn web_client(server: &TestServer) -> TestClient {
    let mut c = server
        .create_client(json!({
            "client_name": "Chain Test",
            "redirect_uris": [RP],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    c.client.first_party = true;
    server.store().put_client(&c.client).await.unwrap();
    c
}

fn cookie_header(cookies: &BTreeMap<String, String>) -> String {
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn absorb_cookies(resp: &reqwest::Response, cookies: &mut BTreeMap<String, String>) {
    for c in resp.headers().get_all("set-cookie") {
        let c = c.to_str().unwrap();
        let kv = c.split(';').next().unwrap();
        if let Some((k, v)) = kv.split_once('=') {
            cookies.insert(k.to_owned(), v.to_owned());
        }
    }
}

/// `/authorize` → `GET /login` → `POST /login` with a fresh browser.
async fn login(server: &TestServer, client: &TestClient, user: &str, pw: &str) -> LoginResult {
    let mut cookies = BTreeMap::new();
    let authorize = server.url(&format!(
        "/authorize?client_id={}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code\
         &scope=openid+profile+email+groups&state=st&nonce=no\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        client.client_id
    ));
    let r = server.http.get(&authorize).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "authorize");
    absorb_cookies(&r, &mut cookies);
    let login_url = url::Url::parse(&authorize)
        .unwrap()
        .join(r.headers()[LOCATION].to_str().unwrap())
        .unwrap();
    let r = server
        .http
        .get(login_url.as_str())
        .header("cookie", cookie_header(&cookies))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login page");
    absorb_cookies(&r, &mut cookies);
    let page = r.text().await.unwrap();
    let r = server
        .http
        .post(server.url("/login"))
        .header("cookie", cookie_header(&cookies))
        .form(&[
            ("tx", field(&page, "tx").as_str()),
            ("csrf_token", field(&page, "csrf_token").as_str()),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .unwrap();
    absorb_cookies(&r, &mut cookies);
    let status = r.status();
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| login_url.join(l.to_str().unwrap()).unwrap().to_string());
    let body = r.text().await.unwrap_or_default();
    let answer = match status {
        StatusCode::SEE_OTHER => Answer::SignedIn,
        StatusCode::OK if body.contains("Invalid username or password.") => Answer::Invalid,
        StatusCode::SERVICE_UNAVAILABLE if body.contains("temporarily unavailable") => {
            Answer::Unavailable
        }
        StatusCode::FORBIDDEN => Answer::AccountState,
        other => panic!("unexpected login answer {other}:\n{body}"),
    };
    // Never both messages, never the password.
    if answer == Answer::Unavailable {
        assert!(!body.contains("Invalid username or password"), "{body}");
    }
    if pw.len() >= 6 {
        assert!(!body.contains(pw), "password echoed");
    }
    LoginResult {
        answer,
        status,
        location,
        cookies,
        body,
    }
}

fn creds(user: &str, pw: &str) -> PasswordCredentials {
    PasswordCredentials {
        username: user.into(),
        password: pw.into(),
    }
}

/// The providers the server's chain runs for this login (no lockout accounting).
async fn providers_run(server: &TestServer, user: &str, pw: &str) -> Vec<String> {
    let r = server
        .engine()
        .chain
        .authenticate(&creds(user, pw), &mut Trace::new(false))
        .await;
    r.outcomes.into_iter().map(|(n, _, _)| n).collect()
}

// ------------------------------------------------------------------ the flag table

/// Who exists where. Directory A has `onlya`, directory B has `onlyb`, both have the seeded
/// `alice`; the local store has `alice` (same password) and `breakglass`.
const USERS: [(&str, &str); 4] = [
    ("nobody", "nobody-secret"),
    ("onlya", "onlya-secret"),
    ("onlyb", "onlyb-secret"),
    ("alice", "alice-secret"),
];

struct Row {
    flags: [&'static str; 3],
    /// Per user of [`USERS`]: signed in, and which providers ran ("L", "A", "B").
    expect: [(bool, &'static str); 4],
}

/// Every flag at every position; expectations worked out by hand from the JAAS rules.
/// Answers: nobody = L✗ A✗ B✗; onlya = L✗ A✓ B✗; onlyb = L✗ A✗ B✓; alice = L✓ A✓ B✓.
const TABLE: [Row; 12] = [
    // The typical multi-directory setup: the first success wins.
    Row {
        flags: ["SUFFICIENT", "SUFFICIENT", "SUFFICIENT"],
        expect: [(false, "LAB"), (true, "LA"), (true, "LAB"), (true, "L")],
    },
    Row {
        flags: ["REQUIRED", "REQUIRED", "REQUIRED"],
        expect: [
            (false, "LAB"),
            (false, "LAB"),
            (false, "LAB"),
            (true, "LAB"),
        ],
    },
    // OPTIONAL only: one success is needed.
    Row {
        flags: ["OPTIONAL", "OPTIONAL", "OPTIONAL"],
        expect: [(false, "LAB"), (true, "LAB"), (true, "LAB"), (true, "LAB")],
    },
    // A REQUISITE failure stops at once; its success continues to the SUFFICIENT.
    Row {
        flags: ["REQUISITE", "SUFFICIENT", "SUFFICIENT"],
        expect: [(false, "L"), (false, "L"), (false, "L"), (true, "LA")],
    },
    Row {
        flags: ["SUFFICIENT", "REQUISITE", "SUFFICIENT"],
        expect: [(false, "LA"), (true, "LAB"), (false, "LA"), (true, "L")],
    },
    // A SUFFICIENT success cannot rescue an earlier REQUIRED failure (and does not stop).
    Row {
        flags: ["OPTIONAL", "REQUIRED", "SUFFICIENT"],
        expect: [(false, "LAB"), (true, "LAB"), (false, "LAB"), (true, "LAB")],
    },
    Row {
        flags: ["REQUIRED", "SUFFICIENT", "OPTIONAL"],
        expect: [(false, "LAB"), (false, "LAB"), (false, "LAB"), (true, "LA")],
    },
    Row {
        flags: ["SUFFICIENT", "OPTIONAL", "REQUISITE"],
        expect: [(false, "LAB"), (false, "LAB"), (true, "LAB"), (true, "L")],
    },
    Row {
        flags: ["OPTIONAL", "SUFFICIENT", "REQUIRED"],
        expect: [(false, "LAB"), (true, "LA"), (true, "LAB"), (true, "LA")],
    },
    // The WebLogic pitfall: a REQUIRED provider after SUFFICIENT ones still runs when they fail.
    Row {
        flags: ["SUFFICIENT", "SUFFICIENT", "REQUIRED"],
        expect: [(false, "LAB"), (true, "LA"), (true, "LAB"), (true, "L")],
    },
    Row {
        flags: ["REQUIRED", "OPTIONAL", "REQUISITE"],
        expect: [
            (false, "LAB"),
            (false, "LAB"),
            (false, "LAB"),
            (true, "LAB"),
        ],
    },
    Row {
        flags: ["OPTIONAL", "REQUISITE", "OPTIONAL"],
        expect: [(false, "LA"), (true, "LAB"), (false, "LA"), (true, "LAB")],
    },
];

#[tokio::test]
async fn all_four_flags_in_a_chain_of_local_and_two_directories() {
    let a = slapd!("flags_a", Some(&extra_user("onlya")));
    let b = slapd!("flags_b", Some(&extra_user("onlyb")));
    for f in ["REQUIRED", "REQUISITE", "SUFFICIENT", "OPTIONAL"] {
        for pos in 0..3 {
            assert!(
                TABLE.iter().any(|r| r.flags[pos] == f),
                "{f} at position {pos} is not covered"
            );
        }
    }
    let mut logins = 0;
    for row in &TABLE {
        let config = format!(
            "{}{}{}",
            local_provider(row.flags[0]),
            a.provider("A", row.flags[1], &[], ""),
            b.provider("B", row.flags[2], &[], "")
        );
        let server = TestServer::start(&config).await;
        server.create_user("alice", "alice-secret").await;
        server.create_user("breakglass", "breakglass-secret").await;
        let client = web_client(&server).await;
        let flags: Vec<(String, ControlFlag)> = server
            .engine()
            .chain
            .entries()
            .iter()
            .map(|e| (e.provider.name().to_owned(), e.flag))
            .collect();
        assert_eq!(
            flags.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["local", "A", "B"],
            "chain in configuration order"
        );
        for (i, (user, pw)) in USERS.iter().enumerate() {
            let (ok, ran) = row.expect[i];
            let got = login(&server, &client, user, pw).await;
            let want = if ok {
                Answer::SignedIn
            } else {
                Answer::Invalid
            };
            assert_eq!(
                got.answer, want,
                "{:?}: {user}: {} {}",
                row.flags, got.status, got.body
            );
            let run: String = providers_run(&server, user, pw)
                .await
                .iter()
                .map(|n| if n == "local" { "L" } else { n.as_str() })
                .collect();
            assert_eq!(run, ran, "{:?}: {user}: providers run", row.flags);
            // A wrong password is a denial whatever the flags (no directory is down).
            if i == 3 {
                let wrong = login(&server, &client, user, "not-the-password").await;
                assert_eq!(wrong.answer, Answer::Invalid, "{:?}", row.flags);
            }
            logins += 1;
        }
    }
    assert_eq!(logins, 48);
}

// ------------------------------------------------------------------ outages

fn ctx_traced() -> RequestContext {
    RequestContext {
        request_id: "e2e-chain".into(),
        source_ip: Some([127, 0, 0, 1].into()),
        trace: TraceHandle::on(),
    }
}

#[tokio::test]
async fn break_glass_first_survives_when_every_directory_is_down() {
    let a = slapd!("breakglass_a", None);
    let b = slapd!("breakglass_b", None);
    let config = format!(
        "{}{}{}",
        local_provider("SUFFICIENT"),
        a.provider("dir-a", "SUFFICIENT", &[], ""),
        b.provider("dir-b", "SUFFICIENT", &[], "")
    );
    let server = TestServer::start(&config).await;
    server.create_user("breakglass", "breakglass-secret").await;
    let client = web_client(&server).await;
    // Working directories first (warm pools), then both stopped.
    assert_eq!(
        login(&server, &client, "alice", "alice-secret")
            .await
            .answer,
        Answer::SignedIn
    );
    a.stop();
    b.stop();
    let (logs, _guard) = Logs::capture();
    for _ in 0..3 {
        let t = Instant::now();
        let r = login(&server, &client, "breakglass", "breakglass-secret").await;
        assert_eq!(r.answer, Answer::SignedIn, "{}", r.body);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the break-glass login never touches the directories: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        providers_run(&server, "breakglass", "breakglass-secret").await,
        ["local"]
    );
    // A wrong break-glass password while the directories are down cannot be decided: a
    // directory might know this user with this password.
    let r = login(&server, &client, "breakglass", "wrong-password").await;
    assert_eq!(r.answer, Answer::Unavailable);
    // A directory user: temporarily unavailable, with provider and host in the log.
    let r = login(&server, &client, "alice", "alice-secret").await;
    assert_eq!(r.answer, Answer::Unavailable, "{}", r.body);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = logs.text();
    assert!(
        text.contains("login_unavailable") && text.contains("dir-a") && text.contains(&a.url()),
        "log must name the provider and host:\n{text}"
    );
}

#[tokio::test]
async fn directories_down_is_temporarily_unavailable_never_a_bad_password() {
    let a = slapd!("down_a", None);
    let b = slapd!("down_b", None);
    let config = format!(
        "{}{}",
        a.provider("dir-a", "SUFFICIENT", &[], ""),
        b.provider("dir-b", "SUFFICIENT", &[], "")
    );
    let server = TestServer::start(&config).await;
    let client = web_client(&server).await;
    a.stop();
    b.stop();
    let (logs, _guard) = Logs::capture();
    for (user, pw) in [
        ("alice", "alice-secret"),
        ("alice", "wrong-password"),
        ("nobody", "whatever-pw"),
    ] {
        let t = Instant::now();
        let r = login(&server, &client, user, pw).await;
        assert_eq!(r.answer, Answer::Unavailable, "{user}: {}", r.body);
        assert!(r.body.contains("Sign-in is temporarily unavailable"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "refused connections answer fast: {:?}",
            t.elapsed()
        );
    }
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("login_unavailable"))
        .unwrap_or_else(|| panic!("no login_unavailable in the log:\n{text}"));
    assert!(
        line.contains("provider=dir-a") && line.contains(&a.url()),
        "the log names the provider and host: {line}"
    );
    assert!(!text.contains("alice-secret") && !text.contains("wrong-password"));

    // The trace names both providers and their hosts; nothing is counted by lockout.
    let ctx = ctx_traced();
    let r = server
        .engine()
        .authenticate_user(&creds("alice", "alice-secret"), &ctx)
        .await;
    let Decision::Unavailable { provider, host, .. } = &r.decision else {
        panic!("expected Unavailable, got {:?}", r.decision)
    };
    assert_eq!((provider.as_str(), host.clone()), ("dir-a", Some(a.url())));
    let steps = ctx.trace.steps();
    for (name, url) in [("dir-a", a.url()), ("dir-b", b.url())] {
        assert!(
            steps.iter().any(|s| s.component == "chain"
                && s.step == format!("provider:{name}")
                && s.outcome == "unavailable"
                && s.detail.get("host") == Some(&Value::String(url.clone()))),
            "{steps:#?}"
        );
    }
    let status = server.engine().lockout_status("alice").await.unwrap();
    assert!(
        status.iter().all(|s| s.failure_count == 0 && !s.locked),
        "an outage counts nothing: {status:?}"
    );

    // On an API path the decision becomes HTTP 503 temporarily_unavailable; the cause the
    // edge logs names provider and host, the client sees neither.
    let err = r.decision.unavailable_error().expect("an API error");
    let resp =
        axum::response::IntoResponse::into_response(tessera_http::error::ApiError::from(err));
    assert_eq!(resp.status().as_u16(), 503);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("dependency unavailable")
            && l.contains("dir-a")
            && l.contains(&a.url())),
        "{text}"
    );
}

#[tokio::test]
async fn paused_directory_answers_within_the_timeout_while_the_other_proceeds() {
    let a = slapd!("paused_a", Some(&extra_user("onlya")));
    let b = slapd!("paused_b", None);
    // B first: a B user never reaches A; an A user goes through B (unknown) to A.
    let config = format!(
        "{}{}",
        b.provider("dir-b", "SUFFICIENT", &[], ""),
        a.provider("dir-a", "SUFFICIENT", &[], "")
    );
    let server = TestServer::start(&config).await;
    let client = web_client(&server).await;
    assert_eq!(
        login(&server, &client, "onlya", "onlya-secret")
            .await
            .answer,
        Answer::SignedIn,
        "warm"
    );
    let (logs, _guard) = Logs::capture();
    a.signal("STOP");
    let stuck = async {
        let t = Instant::now();
        let r = login(&server, &client, "onlya", "onlya-secret").await;
        (r, t.elapsed())
    };
    let others = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        for _ in 0..5 {
            let r = login(&server, &client, "bob", "bob-secret").await;
            assert_eq!(r.answer, Answer::SignedIn, "{}", r.body);
        }
        t.elapsed()
    };
    let ((stuck, took), others) = tokio::join!(stuck, others);
    a.signal("CONT");
    let _ = writeln!(
        std::io::stderr(),
        "paused slapd: login answered in {took:?}; 5 logins on the other directory took {others:?}"
    );
    assert_eq!(stuck.answer, Answer::Unavailable, "{}", stuck.body);
    // operation_timeout = 1 s.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "{took:?}"
    );
    assert!(others < Duration::from_millis(900), "{others:?}");
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("login_unavailable")
            && l.contains("dir-a")
            && l.contains(&a.url())),
        "{text}"
    );
    // Resumed: A users sign in again without restarting Tessera.
    let r = login(&server, &client, "onlya", "onlya-secret").await;
    assert_eq!(r.answer, Answer::SignedIn, "{}", r.body);
}

#[tokio::test]
async fn failover_to_the_second_url() {
    let a = slapd!("failover_a", None);
    let b = slapd!("failover_b", None);
    let config = b.provider("corp", "REQUIRED", &[a.url(), b.url()], "");
    let server = TestServer::start(&config).await;
    let client = web_client(&server).await;
    assert_eq!(
        login(&server, &client, "alice", "alice-secret")
            .await
            .answer,
        Answer::SignedIn
    );
    a.stop();
    let mut trace = Trace::new(true);
    let t = Instant::now();
    let r = server
        .engine()
        .chain
        .authenticate(&creds("alice", "alice-secret"), &mut trace)
        .await;
    assert!(
        matches!(r.decision, Decision::Authenticated(ref p) if p.subject == "alice"),
        "{:?}\n{:#?}",
        r.decision,
        trace.steps()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let dump = serde_json::to_string(trace.steps()).unwrap();
    assert!(
        dump.contains(&a.url()) && dump.contains(&b.url()),
        "the trace shows the failover: {dump}"
    );
    for _ in 0..3 {
        let r = login(&server, &client, "bob", "bob-secret").await;
        assert_eq!(r.answer, Answer::SignedIn, "{}", r.body);
        let r = login(&server, &client, "bob", "wrong-password").await;
        assert_eq!(
            r.answer,
            Answer::Invalid,
            "a wrong password on the second URL"
        );
    }
    // Both down: unavailable, not invalid.
    b.stop();
    let r = login(&server, &client, "bob", "bob-secret").await;
    assert_eq!(r.answer, Answer::Unavailable, "{}", r.body);
}

// ------------------------------------------------------------------ claims

#[tokio::test]
async fn ldap_groups_reach_the_id_token_and_userinfo() {
    let a = slapd!("groups", None);
    let config = format!(
        "{}{}",
        local_provider("SUFFICIENT"),
        a.provider("corp", "SUFFICIENT", &[], "")
    );
    let server = TestServer::start(&config).await;
    let client = web_client(&server).await;
    let r = login(&server, &client, "alice", "alice-secret").await;
    assert_eq!(r.answer, Answer::SignedIn, "{}", r.body);
    let mut location = r.location.clone().unwrap();
    if location.starts_with(&server.url("/consent")) {
        // Not expected for a first-party client, but let the flow through if it asks.
        let page = server
            .http
            .get(&location)
            .header("cookie", cookie_header(&r.cookies))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let resp = server
            .http
            .post(server.url("/consent"))
            .header("cookie", cookie_header(&r.cookies))
            .form(&[
                ("tx", field(&page, "tx").as_str()),
                ("csrf_token", field(&page, "csrf_token").as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        location = resp.headers()[LOCATION].to_str().unwrap().to_owned();
    }
    assert!(location.starts_with(RP), "{location}");
    let code = query(&location, "code").expect("code");
    let resp = server
        .post_form(
            "/token",
            Some((&client.client_id, client.secret.as_deref().unwrap())),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", RP),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let t: Value = resp.json().await.unwrap();
    let (_, id) = jwt_parts(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    let mut groups: Vec<String> = serde_json::from_value(id["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["admins", "staff"], "{id}");
    let u: Value = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["sub"], "alice");
    let mut groups: Vec<String> = serde_json::from_value(u["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["admins", "staff"], "{u}");
}

#[tokio::test]
async fn attributes_of_several_successful_providers_merge() {
    let a = slapd!("merge", None);
    // Local REQUIRED first (subject, username, email), then the directory OPTIONAL (groups,
    // name: the local user has no display name).
    let config = format!(
        "{}{}",
        local_provider("REQUIRED"),
        a.provider("corp", "OPTIONAL", &[], "")
    );
    let server = TestServer::start(&config).await;
    let local = server.create_user("alice", "alice-secret").await;
    let r = server
        .engine()
        .chain
        .authenticate(&creds("alice", "alice-secret"), &mut Trace::new(false))
        .await;
    let Decision::Authenticated(p) = r.decision else {
        panic!("expected success: {:?}", r.decision)
    };
    assert_eq!(
        p.subject, local.subject,
        "the subject is the first provider's"
    );
    assert_eq!(p.provider, "local");
    assert_eq!(p.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        p.name.as_deref(),
        Some("Alice Anderson"),
        "the local user has no display name: the directory's"
    );
    let mut groups = p.groups.clone();
    groups.sort();
    assert!(groups.contains(&"admins".to_owned()) && groups.contains(&"staff".to_owned()));
    // Directory down: the OPTIONAL directory is a failure the chain can do without.
    a.stop();
    let r = server
        .engine()
        .chain
        .authenticate(&creds("alice", "alice-secret"), &mut Trace::new(false))
        .await;
    let Decision::Authenticated(p) = r.decision else {
        panic!("expected success: {:?}", r.decision)
    };
    assert!(p.groups.is_empty(), "a failed provider contributes nothing");
}
