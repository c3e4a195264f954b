//! Two stateless nodes on one PostgreSQL database behind a load balancer: every step of a
//! sign-in may land on either node. Sessions, codes, refresh-token families, signing keys,
//! logout and lockout counters are shared through the store, so the user and the relying
//! party never notice which node answered.
//!
//! The load balancer is a TCP forwarder on 127.0.0.1 that sends each new connection to the
//! node the test selects; the clients open one connection per request. Without PostgreSQL
//! the test prints why and passes, unless `TESSERA_TEST_REQUIRE_SERVICES=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use tessera_core::authn::PasswordCredentials;
use tessera_core::oauth::RequestContext;

use crate::support::browser::{Browser, query};
use crate::support::{TestClient, TestServer, jwt_parts, toml_string};

const RP: &str = "https://rp.example/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const A: usize = 0;
const B: usize = 1;

/// Forwards each accepted connection to `backends[selected]`; counts connections per node.
struct LoadBalancer {
    url: String,
    selected: Arc<AtomicUsize>,
    served: Arc<[AtomicUsize; 2]>,
    backends: Arc<std::sync::OnceLock<[std::net::SocketAddr; 2]>>,
}

impl LoadBalancer {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let selected = Arc::new(AtomicUsize::new(A));
        let served: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let backends = Arc::new(std::sync::OnceLock::<[std::net::SocketAddr; 2]>::new());
        let (sel, count, to) = (selected.clone(), served.clone(), backends.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let node = sel.load(Ordering::SeqCst);
                let Some(addr) = to.get().map(|b| b[node]) else {
                    continue;
                };
                count[node].fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            url,
            selected,
            served,
            backends,
        }
    }

    fn to(&self, node: usize) {
        self.selected.store(node, Ordering::SeqCst);
    }

    fn served(&self, node: usize) -> usize {
        self.served[node].load(Ordering::SeqCst)
    }
}

/// One connection per request, so that every request meets the load balancer afresh.
fn fresh_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn token(lb: &LoadBalancer, c: &TestClient, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = fresh_http()
        .post(format!("{}/token", lb.url))
        .basic_auth(&c.client_id, c.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn userinfo(lb: &LoadBalancer, access_token: &str) -> StatusCode {
    fresh_http()
        .get(format!("{}/userinfo", lb.url))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
}

fn authorize_url(lb: &LoadBalancer, client_id: &str, extra: &str) -> String {
    format!(
        "{}/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code\
         &scope=openid+profile+offline_access&state=st&nonce=nn\
         &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        lb.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_sessions_codes_tokens_keys_logout_and_lockout() {
    let lb = LoadBalancer::bind().await;
    let shared = format!(
        "issuer = {}\n[lockout.users]\nthreshold = 3\n",
        toml_string(&lb.url)
    );
    let Some((node_a, node_b)) = TestServer::start_postgres_pair(&shared).await else {
        return;
    };
    lb.backends.set([node_a.addr, node_b.addr]).unwrap();

    node_a.create_user("carol", "carol-password-1").await;
    let c = node_a
        .create_web_client("Cluster RP", RP, "https://rp.example/bye", true)
        .await;

    // Sign in on node A: authorization request, login page, password.
    let mut b = Browser::fresh_connections();
    lb.to(A);
    let login_url = b
        .follow_to(
            &authorize_url(&lb, &c.client_id, ""),
            &format!("{}/login", lb.url),
        )
        .await;
    let login = b.get(&login_url).await;
    // The password form is posted to node B: the transaction lives in the store.
    lb.to(B);
    let p = b.submit_login(&login, "carol", "carol-password-1").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let callback = if p.location().starts_with(RP) {
        p.location().to_owned()
    } else {
        b.follow_to(p.location(), RP).await
    };
    let code = query(&callback, "code").expect("code");

    // The code is redeemed on node A, once: node B refuses it afterwards.
    lb.to(A);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", RP),
        ("code_verifier", VERIFIER),
    ];
    let (status, t) = token(&lb, &c, &form).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    lb.to(B);
    let (status, e) = token(&lb, &c, &form).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Node B publishes the key node A signed with, and accepts A's access token.
    let (header, claims) = jwt_parts(t["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], lb.url.as_str());
    let jwks: Value = fresh_http()
        .get(format!("{}/jwks.json", lb.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "node B's JWKS holds node A's signing key {}",
        header["kid"]
    );
    // The access token was revoked with the reused code (RFC 6749 §4.1.2); take a fresh one.
    assert_eq!(
        userinfo(&lb, t["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // Single sign-on: the session cookie set by node B is honoured by node A (prompt=none).
    lb.to(A);
    let callback = b
        .follow_to(&authorize_url(&lb, &c.client_id, "&prompt=none"), RP)
        .await;
    let code = query(&callback, "code").expect("silent SSO code");
    lb.to(B);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", RP),
        ("code_verifier", VERIFIER),
    ];
    let (status, t) = token(&lb, &c, &form).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    lb.to(A);
    assert_eq!(
        userinfo(&lb, t["access_token"].as_str().unwrap()).await,
        StatusCode::OK,
        "node A accepts node B's access token"
    );

    // Refresh rotation across nodes; the spent token replayed on the other node revokes the
    // family (RFC 9700 §4.14.2).
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    lb.to(B);
    let (status, r) = token(
        &lb,
        &c,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let rt2 = r["refresh_token"].as_str().unwrap().to_owned();
    lb.to(A);
    let (status, _) = token(
        &lb,
        &c,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a spent refresh token");
    lb.to(B);
    let (status, e) = token(
        &lb,
        &c,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "the family was revoked on reuse"
    );

    // Logout on node B ends the session for node A too.
    let id_token = t["id_token"].as_str().unwrap();
    let p = b
        .get(&format!(
            "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=bye",
            lb.url
        ))
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location().starts_with("https://rp.example/bye"));
    lb.to(A);
    let callback = b
        .follow_to(&authorize_url(&lb, &c.client_id, "&prompt=none"), RP)
        .await;
    assert_eq!(query(&callback, "error").as_deref(), Some("login_required"));

    // Lockout counters are shared: two failures on A and one on B lock the name on both.
    let ctx = RequestContext {
        request_id: "e2e-cluster".into(),
        source_ip: Some([127, 0, 0, 1].into()),
        ..RequestContext::default()
    };
    let creds = |pw: &str| PasswordCredentials {
        username: "carol".into(),
        password: pw.into(),
    };
    for node in [&node_a, &node_a, &node_b] {
        let r = node.engine().authenticate_user(&creds("wrong"), &ctx).await;
        assert!(!r.is_locked() || std::ptr::eq(node, &node_b));
    }
    for node in [&node_a, &node_b] {
        let r = node
            .engine()
            .authenticate_user(&creds("carol-password-1"), &ctx)
            .await;
        assert!(r.is_locked(), "locked on every node");
    }
    let status = node_a.engine().lockout_status("carol").await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].failure_count, 3);
    assert_eq!(
        node_b.engine().lockout_clear("carol").await.unwrap().len(),
        1
    );
    let r = node_a
        .engine()
        .authenticate_user(&creds("carol-password-1"), &ctx)
        .await;
    assert!(!r.is_locked(), "cleared on B, usable on A");

    assert!(
        lb.served(A) >= 5 && lb.served(B) >= 5,
        "both nodes answered: A {} B {}",
        lb.served(A),
        lb.served(B)
    );
}
