//! OpenID Connect Back-Channel Logout 1.0 delivered over real HTTP: a user signed in to two
//! relying parties (single sign-on) logs out at the end-session endpoint, and each relying
//! party's `backchannel_logout_uri` — a receiver inside the test on 127.0.0.1 — gets exactly one
//! §2.5 request whose logout token is checked against §2.4 with the server's published JWKS.
//! Also: clients that answer 500 or never answer do not hold up or break the user's logout and
//! are reported in the log; the session is gone afterwards; refresh tokens follow §2.7.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_jose::{JwkSet, Limits, decode_compact};

use crate::support::browser::{Browser, Page, query};
use crate::support::logs::Logs;
use crate::support::{TestClient, TestServer, jwt_parts, toml_string};

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const RP: &str = "https://rp.example/cb";
const BYE: &str = "https://rp.example/bye";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The sender's timeout (`HttpBackchannel::direct` in `app.rs`).
const SENDER_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ the relying parties' side

/// One request as a relying party's back-channel endpoint received it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    content_type: String,
    body: String,
}

impl Received {
    /// The form parameters of the body, each name with all its values.
    fn form(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(self.body.as_bytes()) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        m
    }
}

/// Back-channel endpoints of several relying parties on one loopback listener. The answer
/// depends on the path: `/ok/…` 200, `/fail/…` 500, `/silent/…` never answers.
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    let path = uri.path().to_owned();
                    record.lock().unwrap().push(Received {
                        method,
                        path: path.clone(),
                        content_type: headers
                            .get(axum::http::header::CONTENT_TYPE)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default(),
                        body: String::from_utf8(body.to_vec()).unwrap(),
                    });
                    if path.starts_with("/silent/") {
                        std::future::pending::<()>().await;
                    }
                    if path.starts_with("/fail/") {
                        AxumStatus::INTERNAL_SERVER_ERROR
                    } else {
                        AxumStatus::OK
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, seen }
    }

    fn uri(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived, then a little longer so that a duplicate would show.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.received()
    }
}

// ------------------------------------------------------------------ the browser's side

fn authorize_url(server: &TestServer, client_id: &str, scope: &str, extra: &str) -> String {
    let scope = scope.replace(' ', "+");
    server.url(&format!(
        "/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code\
         &scope={scope}&state=st&nonce=n-{client_id}&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
    ))
}

/// A first-party web client (no consent page) with this back-channel logout URI.
async fn rp(server: &TestServer, name: &str, backchannel: &str) -> TestClient {
    let mut c = server
        .create_client(json!({
            "client_name": name,
            "redirect_uris": [RP],
            "post_logout_redirect_uris": [BYE],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
            "backchannel_logout_uri": backchannel,
        }))
        .await;
    c.client.first_party = true;
    server.store().put_client(&c.client).await.unwrap();
    c
}

async fn token(
    server: &TestServer,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = server.post_form("/token", Some((id, secret)), form).await;
    (r.status(), r.json().await.unwrap())
}

/// Authorize `client_id` in this browser — signing in with the password only when the server
/// asks — and redeem the code: the token response.
async fn sign_in(
    server: &TestServer,
    b: &mut Browser,
    (client_id, secret): (&str, &str),
    scope: &str,
    login: Option<(&str, &str)>,
) -> Value {
    let p = b.get(&authorize_url(server, client_id, scope, "")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let mut callback = p.location().to_owned();
    if callback.starts_with(&server.url("/login?")) {
        let (user, pw) = login.expect("single sign-on expected, got the login page");
        let page = b.get(&callback).await;
        let p = b.submit_login(&page, user, pw).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        callback = p.location().to_owned();
    } else {
        assert!(login.is_none(), "expected the login page, got {callback}");
    }
    assert!(callback.starts_with(RP), "{callback}");
    let code = query(&callback, "code").expect("code");
    let (status, t) = token(
        server,
        client_id,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", RP),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    t
}

/// RP-initiated logout with an ID token hint (no confirmation page): the response and how long
/// it took.
async fn logout(server: &TestServer, b: &mut Browser, id_token: &str) -> (Page, Duration) {
    let started = Instant::now();
    let p = b
        .get(&server.url(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=bye-1"
        )))
        .await;
    (p, started.elapsed())
}

/// A silent authorization request (`prompt=none`) for `client_id`: refused with
/// `login_required`, the browser has no session.
async fn assert_signed_out(server: &TestServer, b: &mut Browser, client_id: &str) {
    let p = b
        .get(&authorize_url(server, client_id, "openid", "&prompt=none"))
        .await;
    assert_eq!(
        query(p.location(), "error").as_deref(),
        Some("login_required")
    );
}

/// Verify a logout token as a relying party does (§2.6): signature with a key of the server's
/// JWKS (found through discovery), then the header; the verified claims.
async fn verify_with_jwks(server: &TestServer, jwt: &str) -> serde_json::Map<String, Value> {
    let discovery = server.get_json("/.well-known/openid-configuration").await;
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    let bytes = server
        .http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let jwks = JwkSet::from_slice(&bytes, 1 << 20).unwrap();
    let token = decode_compact(jwt, &Limits::default()).expect("a compact JWS");
    let header = token.header().clone();
    let kid = header.kid.as_deref().expect("kid");
    let keys = jwks.find(Some(kid), header.alg);
    assert_eq!(keys.len(), 1, "exactly one JWKS key for kid {kid}");
    let key = keys[0].to_verifying_key().unwrap();
    let verified = token
        .verify(&key, &[header.alg])
        .expect("signature verifies with the published key");
    // §2.4 / RFC 8725 §3.11: explicitly typed.
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    verified.into_claims()
}

/// The logout token one relying party received, checked against §2.4 for this client and the
/// ID token it was issued in the same session.
async fn check_logout_token(
    server: &TestServer,
    got: &Received,
    client_id: &str,
    id_token: &Value,
) -> String {
    // §2.5: a POST with a form body holding the logout token and nothing else.
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.content_type, "application/x-www-form-urlencoded");
    let form = got.form();
    assert_eq!(
        form.keys().collect::<Vec<_>>(),
        vec!["logout_token"],
        "{}",
        got.body
    );
    assert_eq!(form["logout_token"].len(), 1);
    let jwt = &form["logout_token"][0];
    let (header, _) = jwt_parts(jwt);
    let (id_header, _) = jwt_parts(id_token["raw"].as_str().unwrap());
    assert_eq!(
        header["alg"], id_header["alg"],
        "signed like the client's ID tokens"
    );
    let c = verify_with_jwks(server, jwt).await;
    assert_eq!(c["iss"], Value::String(server.base_url.clone()));
    let aud_ok = match &c["aud"] {
        Value::String(a) => a == client_id,
        Value::Array(a) => a.iter().any(|a| a == client_id),
        _ => false,
    };
    assert!(aud_ok, "aud is the client: {}", c["aud"]);
    let now = server.engine().now();
    let iat = c["iat"].as_i64().expect("iat");
    let exp = c["exp"].as_i64().expect("exp");
    assert!((now - 30..=now + 5).contains(&iat), "iat {iat}, now {now}");
    assert!(
        exp > iat && exp - iat <= 120,
        "short-lived: iat {iat}, exp {exp}"
    );
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16), "jti");
    // The events claim: the back-channel logout event with an empty object.
    assert_eq!(c["events"], json!({ EVENT: {} }));
    // The same session and user the client's ID token named.
    assert_eq!(c["sid"], id_token["claims"]["sid"]);
    assert_eq!(c["sub"], id_token["claims"]["sub"]);
    assert!(
        !c.contains_key("nonce"),
        "§2.4: a logout token never has a nonce"
    );
    c["jti"].as_str().unwrap().to_owned()
}

/// The ID token of a token response, raw and decoded.
fn id_token(t: &Value) -> Value {
    let raw = t["id_token"].as_str().expect("id_token");
    let (_, claims) = jwt_parts(raw);
    json!({ "raw": raw, "claims": claims })
}

// ------------------------------------------------------------------ the tests

#[tokio::test]
async fn logout_reaches_each_client_of_the_session_once_with_a_valid_logout_token() {
    let receiver = Receiver::start().await;
    // "wiki" comes from the configuration file, "chat" and "idle" from client metadata (the
    // rules of dynamic registration): both ways accept an http receiver on loopback.
    let server = TestServer::start(&format!(
        r#"
[[clients]]
client_id = "wiki"
client_name = "Team Wiki"
client_secret = "wiki-secret-for-tests-0123456789abcdef"
redirect_uris = ["{RP}"]
post_logout_redirect_uris = ["{BYE}"]
grant_types = ["authorization_code", "refresh_token"]
first_party = true
backchannel_logout_uri = {}
backchannel_logout_session_required = true
"#,
        toml_string(&receiver.uri("/ok/wiki"))
    ))
    .await;
    let wiki = ("wiki", "wiki-secret-for-tests-0123456789abcdef");
    let stored = server.store().get_client("wiki").await.unwrap().unwrap();
    assert!(stored.backchannel_logout_session_required);
    let chat = rp(&server, "Chat", &receiver.uri("/ok/chat")).await;
    let chat = (chat.client_id.as_str(), chat.secret.as_deref().unwrap());
    let idle = rp(&server, "Never used", &receiver.uri("/ok/idle")).await;
    server.create_user("alice", "alice-password-1").await;
    let discovery = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    // Sign in to the wiki (password, offline access), then to the chat by single sign-on
    // (no offline access).
    let mut b = Browser::new();
    let wiki_tokens = sign_in(
        &server,
        &mut b,
        wiki,
        "openid profile offline_access",
        Some(("alice", "alice-password-1")),
    )
    .await;
    let chat_tokens = sign_in(&server, &mut b, chat, "openid profile", None).await;
    let (wiki_id, chat_id) = (id_token(&wiki_tokens), id_token(&chat_tokens));
    assert!(wiki_id["claims"]["sid"].is_string());
    assert_eq!(
        wiki_id["claims"]["sid"], chat_id["claims"]["sid"],
        "one session, one sid"
    );
    let wiki_refresh = wiki_tokens["refresh_token"]
        .as_str()
        .expect("offline_access: a refresh token")
        .to_owned();
    assert!(
        chat_tokens.get("refresh_token").is_none(),
        "refresh tokens are issued only with offline_access: {chat_tokens}"
    );
    let old_session = b
        .cookie(&server.base_url, "tessera_session")
        .expect("a session cookie");
    assert!(receiver.received().is_empty(), "nothing before logout");

    // RP-initiated logout from the chat: the browser goes on at once.
    let (p, took) = logout(&server, &mut b, chat_id["raw"].as_str().unwrap()).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("{BYE}?state=bye-1"));
    assert!(
        b.cookie(&server.base_url, "tessera_session").is_none(),
        "cookie cleared"
    );
    assert!(took < Duration::from_secs(2), "logout took {took:?}");

    // Each relying party of the session: exactly one request; the unused client: none.
    let got = receiver.wait_for(2).await;
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(got.len(), 2, "{paths:?}");
    let to = |path: &str| -> &Received {
        let hits: Vec<&Received> = got.iter().filter(|r| r.path == path).collect();
        assert_eq!(hits.len(), 1, "{path}: {paths:?}");
        hits[0]
    };
    let jti_wiki = check_logout_token(&server, to("/ok/wiki"), wiki.0, &wiki_id).await;
    let jti_chat = check_logout_token(&server, to("/ok/chat"), chat.0, &chat_id).await;
    assert_ne!(jti_wiki, jti_chat, "a fresh jti per token");
    assert!(
        !paths.contains(&"/ok/idle"),
        "{} was never signed in to",
        idle.client_id
    );

    // The session is gone on the server, not just the cookie: a new authorization request
    // needs the password again, even with the old cookie put back.
    assert_signed_out(&server, &mut b, wiki.0).await;
    b.set_cookie(&server.base_url, "tessera_session", &old_session);
    let p = b.get(&authorize_url(&server, wiki.0, "openid", "")).await;
    assert!(
        p.location().starts_with(&server.url("/login?")),
        "{}",
        p.location()
    );
    assert_signed_out(&server, &mut b, chat.0).await;

    // §2.7: refresh tokens issued with offline_access normally survive a logout (and Tessera
    // issues refresh tokens only with offline_access, so there is nothing else to revoke).
    let (status, t) = token(
        &server,
        wiki.0,
        wiki.1,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &wiki_refresh),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "offline access survives logout: {t}"
    );

    // Logging out again (no session any more) notifies nobody a second time.
    let (p, _) = logout(&server, &mut b, wiki_id["raw"].as_str().unwrap()).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(receiver.wait_for(3).await.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn failing_and_silent_clients_do_not_hold_up_logout_and_are_logged() {
    let receiver = Receiver::start().await;
    let server = TestServer::start("").await;
    let ok = rp(&server, "Fine", &receiver.uri("/ok/fine")).await;
    let fail = rp(&server, "Broken", &receiver.uri("/fail/broken")).await;
    let silent = rp(&server, "Silent", &receiver.uri("/silent/hung")).await;
    server.create_user("bob", "bob-password-1").await;
    let mut b = Browser::new();
    let mut first = true;
    let mut hint = String::new();
    for c in [&fail, &silent, &ok] {
        let login = first.then_some(("bob", "bob-password-1"));
        first = false;
        let t = sign_in(
            &server,
            &mut b,
            (&c.client_id, c.secret.as_deref().unwrap()),
            "openid",
            login,
        )
        .await;
        hint = t["id_token"].as_str().unwrap().to_owned();
    }

    let (logs, _guard) = Logs::capture();
    let (p, took) = logout(&server, &mut b, &hint).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("{BYE}?state=bye-1"));
    assert!(b.cookie(&server.base_url, "tessera_session").is_none());
    assert!(
        took < Duration::from_secs(2),
        "the user does not wait for the clients: {took:?}"
    );
    let got = receiver.wait_for(3).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/fail/broken", "/ok/fine", "/silent/hung"]);

    // The operator sees which client did not take the logout, and why: a warning of the
    // security log with a stable event name.
    let failed = |l: &String| {
        l.contains("WARN")
            && l.contains("tessera::security")
            && l.contains("event=\"backchannel_logout_failed\"")
    };
    let broken = logs
        .lines_with(&fail.client_id, Duration::from_secs(2))
        .await;
    assert!(
        broken.iter().any(|l| failed(l) && l.contains("HTTP 500")),
        "{}",
        logs.text()
    );
    let started = Instant::now();
    let hung = logs
        .lines_with(&silent.client_id, SENDER_TIMEOUT + Duration::from_secs(5))
        .await;
    assert!(
        hung.iter().any(|l| failed(l) && l.contains("timed out")),
        "{}",
        logs.text()
    );
    assert!(
        started.elapsed() < SENDER_TIMEOUT + Duration::from_secs(2),
        "given up after the sender's timeout"
    );
    let fine = logs.lines_with(&ok.client_id, Duration::from_secs(1)).await;
    assert!(
        fine.iter()
            .any(|l| l.contains("INFO") && l.contains("delivered")),
        "{}",
        logs.text()
    );

    // And the user is signed out all the same.
    assert_signed_out(&server, &mut b, &ok.client_id).await;
    server.shutdown().await;
}
