//! Every failure class injected for real on loopback: a tinyproxy that refuses CONNECT with
//! 403 (`scripts/start-proxy.sh`), a proxy that is down, an unresolvable `.invalid` host, a TLS
//! server whose CA is unknown (certificates made with the `openssl` command, as the LDAP test
//! scripts do), and a server that accepts and never answers. Each report is written to
//! `tests/artifacts/diagnostics/` for `docs/diagnostics.md`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::proxy::{NoProxy, ProxyConfig};

fn require_services() -> bool {
    std::env::var("TESSERA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("TESSERA_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = base.join(format!("egress-probe-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write a report for the docs (`tests/artifacts/diagnostics/NAME.txt`).
fn artifact(name: &str, text: &str) {
    let dir = repo_root().join("tests/artifacts/diagnostics");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
    }
}

fn render(report: &ProbeReport) -> String {
    let mut out = format!(
        "probe {}{}\n{}\n",
        report.url,
        report
            .proxy
            .as_ref()
            .map(|p| format!(" (proxy {p})"))
            .unwrap_or_default(),
        render_steps(&report.steps)
    );
    match &report.failure {
        Some(f) => out.push_str(&format!(
            "✗ {} {}\n  remedy: {}\n",
            f.code, f.cause, f.remedy
        )),
        None => out.push_str("✓ reachable\n"),
    }
    // Timings vary run to run; the docs show them as they came.
    out
}

fn fast() -> ProbeOptions {
    ProbeOptions {
        connect_timeout: Duration::from_millis(1_000),
        timeout: Duration::from_millis(1_000),
        system_roots: false,
        ..ProbeOptions::default()
    }
}

/// A plain HTTP server answering every request with `body`.
fn http_server(status: &'static str, body: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Accepts connections and never answers.
fn silent_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    port
}

/// A loopback port that refuses connections for as long as the guard lives: bound but never
/// listening, so no other test can take it in the meantime (a port merely closed again was
/// seen taken by a parallel test's server, which then reset the connection).
fn closed_port() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap().port(), socket)
}

struct Pki {
    ca: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

/// A test CA and a leaf for `localhost` / `127.0.0.1`, made with the `openssl` command.
fn pki() -> Option<Pki> {
    pki_for("DNS:localhost,IP:127.0.0.1")
}

/// A test CA and a leaf whose subjectAltName is `san`.
fn pki_for(san: &str) -> Option<Pki> {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            !require_services(),
            "openssl is required (scripts/install-test-deps.sh)"
        );
        return None;
    }
    let dir = scratch("pki");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={san}\n"),
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Unknown Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    Some(Pki {
        ca: dir.join("ca.pem"),
        chain: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    })
}

/// An HTTPS server (rustls, blocking, one thread per connection) answering `body`.
fn tls_server(pki: &Pki, body: &'static str) -> u16 {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &std::fs::read(&pki.chain).unwrap()[..])
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut &std::fs::read(&pki.key).unwrap()[..])
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 4096];
                if tls.read(&mut buf).is_err() {
                    return;
                }
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// A private tinyproxy refusing CONNECT to `idp.example.test:443` and anything under
/// `.invalid`. Stopped on drop.
struct TestProxy {
    url: String,
    dir: PathBuf,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(self.dir.join("stop.sh")).output();
    }
}

fn test_proxy() -> Option<TestProxy> {
    let script = std::env::var_os("TESSERA_TEST_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("scripts"))
        .join("start-proxy.sh");
    let have_tinyproxy = Command::new("sh")
        .args(["-c", "command -v tinyproxy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_tinyproxy && !require_services() {
        eprintln!("skipped: tinyproxy is not installed (scripts/install-test-deps.sh)");
        return None;
    }
    let dir = scratch("proxy");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(r"^idp\.example\.test:443$")
        .arg(r"\.invalid(:[0-9]+)?(/|$)")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start-proxy.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some(TestProxy { url, dir })
}

fn via(proxy_url: &str, no_proxy: Option<Vec<String>>) -> ProbeOptions {
    let cfg = ProxyConfig {
        url: Some(proxy_url.to_owned()),
        no_proxy,
        from_env: false,
    };
    ProbeOptions {
        proxy: ProxySettings::from_config(&cfg, &|_| None).unwrap(),
        ..fast()
    }
}

#[tokio::test]
async fn direct_success_and_http_status() {
    let port = http_server("200 OK", r#"{"keys":[]}"#);
    let r = probe_get(&format!("http://127.0.0.1:{port}/jwks"), &fast()).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.response.as_ref().unwrap().body, br#"{"keys":[]}"#);
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, ["route", "dns", "tcp", "http"]);

    let port = http_server("404 Not Found", "{}");
    let r = probe_get(&format!("http://127.0.0.1:{port}/missing"), &fast()).await;
    assert_eq!(r.failure.as_ref().unwrap().code, codes::HTTP_STATUS);
    assert!(r.failure.as_ref().unwrap().cause.contains("404 Not Found"));
}

#[tokio::test]
async fn refused_port() {
    let (port, _refusing) = closed_port();
    let r = probe_get(&format!("http://127.0.0.1:{port}/"), &fast()).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::REFUSED, "{f}");
    assert!(f.cause.contains("Connection refused"), "{f}");
    artifact("net-refused", &render(&r));
}

#[tokio::test]
async fn unresolvable_host() {
    let r = probe_get("https://idp.no-such-host.invalid/", &fast()).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::DNS, "{f}");
    assert_eq!(f.step, "dns");
    assert!(
        f.cause
            .starts_with("cannot resolve idp.no-such-host.invalid"),
        "{f}"
    );
    artifact("net-dns", &render(&r));
}

#[tokio::test]
async fn server_that_never_answers() {
    let port = silent_server();
    let r = probe_get(&format!("http://127.0.0.1:{port}/"), &fast()).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::NO_ANSWER, "{f}");
    assert!(
        f.cause
            .contains("accepted the connection but sent no response within 1000 ms"),
        "{f}"
    );
    assert!(f.remedy.contains("hung"), "{f}");
    artifact("net-no-answer", &render(&r));

    // Over https the wait is in the handshake.
    let r = probe_get(&format!("https://127.0.0.1:{port}/"), &fast()).await;
    let f = r.failure.clone().unwrap();
    assert_eq!((f.code, f.step), (codes::NO_ANSWER, "tls"), "{f}");
    artifact("net-no-answer-tls", &render(&r));
}

#[tokio::test]
async fn tls_unknown_ca_then_trusted_with_ca_file() {
    let Some(pki) = pki() else { return };
    let port = tls_server(&pki, r#"{"ok":true}"#);
    let url = format!("https://127.0.0.1:{port}/.well-known/openid-configuration");
    let r = probe_get(&url, &fast()).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::TLS_UNTRUSTED, "{f}");
    assert!(f.cause.contains("UnknownIssuer"), "{f}");
    assert!(f.remedy.contains("--ca-file"), "{f}");
    artifact("tls-unknown-ca", &render(&r));

    let opts = ProbeOptions {
        extra_ca_file: Some(pki.ca.clone()),
        ..fast()
    };
    let r = probe_get(&url, &opts).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.response.unwrap().body, br#"{"ok":true}"#);
    // Name mismatch is a different class.
    let r = probe_get(&url.replace("127.0.0.1", "127.0.0.2"), &opts).await;
    if let Some(f) = &r.failure {
        assert!(
            matches!(f.code, codes::TLS_HANDSHAKE | codes::REFUSED),
            "{f}"
        );
    }
}

#[tokio::test]
async fn proxy_refuses_connect_with_403() {
    let Some(proxy) = test_proxy() else { return };
    let opts = via(&proxy.url, None);
    let r = probe_get(
        "https://idp.example.test/.well-known/openid-configuration",
        &opts,
    )
    .await;
    let f = r.failure.clone().unwrap();
    let authority = proxy.url.trim_start_matches("http://");
    assert_eq!(f.code, codes::PROXY_403, "{f}");
    assert_eq!(
        f.cause,
        format!("proxy {authority} answered CONNECT idp.example.test:443 with 403 Filtered")
    );
    assert_eq!(
        f.remedy,
        "add idp.example.test to NO_PROXY / http.nonProxyHosts, or allow it at the proxy"
    );
    let steps: Vec<_> = r.steps.iter().map(|s| (s.step, s.ok)).collect();
    assert_eq!(
        steps,
        [
            ("route", true),
            ("dns", true),
            ("tcp", true),
            ("proxy_connect", false)
        ]
    );
    artifact(
        "proxy-403",
        &render(&r).replace(authority, "127.0.0.1:PROXY_PORT"),
    );

    // The same through Java properties pasted verbatim.
    let (host, port) = authority.split_once(':').unwrap();
    let java = format!(
        "-Dhttps.proxyHost={host} -Dhttps.proxyPort={port} -Dhttp.nonProxyHosts=\"localhost|*.corp.example\""
    );
    let opts = ProbeOptions {
        proxy: ProxySettings::from_java_properties(&java).unwrap(),
        ..fast()
    };
    let r = probe_get("https://idp.example.test/", &opts).await;
    assert_eq!(r.failure.unwrap().code, codes::PROXY_403);
}

#[tokio::test]
async fn proxy_tunnels_to_an_allowed_tls_server() {
    let Some(proxy) = test_proxy() else { return };
    let Some(pki) = pki() else { return };
    let port = tls_server(&pki, r#"{"keys":[{"kty":"EC"}]}"#);
    // An explicit (empty-ish) no-proxy list replaces the loopback default: loopback goes
    // through the proxy.
    let mut opts = via(&proxy.url, Some(vec!["only.example".into()]));
    opts.extra_ca_file = Some(pki.ca.clone());
    let r = probe_get(&format!("https://127.0.0.1:{port}/jwks"), &opts).await;
    assert!(r.ok(), "{r:?}");
    let connect = r.steps.iter().find(|s| s.step == "proxy_connect").unwrap();
    assert!(connect.detail.contains("200"), "{connect:?}");
    // With the default no-proxy list the same URL goes direct.
    let mut opts = via(&proxy.url, None);
    opts.extra_ca_file = Some(pki.ca);
    let r = probe_get(&format!("https://127.0.0.1:{port}/jwks"), &opts).await;
    assert!(r.ok() && r.proxy.is_none(), "{r:?}");
}

#[tokio::test]
async fn proxy_down() {
    let (port, _refusing) = closed_port();
    let opts = via(&format!("http://127.0.0.1:{port}"), Some(vec![]));
    let r = probe_get("https://idp.example.test/", &opts).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::PROXY_DOWN, "{f}");
    assert!(
        f.cause
            .starts_with(&format!("proxy 127.0.0.1:{port} is not reachable")),
        "{f}"
    );
    assert!(f.remedy.contains("add idp.example.test to NO_PROXY"), "{f}");
    artifact(
        "proxy-down",
        &render(&r).replace(&port.to_string(), "PROXY_PORT"),
    );
}

#[tokio::test]
async fn issuer_probe_names_the_blocked_step() {
    // A tiny OP on loopback: discovery with a matching issuer, JWKS and a token endpoint.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let meta = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "token_endpoint": format!("{issuer}/token"),
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let meta = meta.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, body) = if req.starts_with("GET /.well-known/openid-configuration") {
                    ("200 OK", meta)
                } else if req.starts_with("GET /jwks.json") {
                    (
                        "200 OK",
                        r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}"#.to_owned(),
                    )
                } else if req.contains("Authorization: Basic") {
                    (
                        "401 Unauthorized",
                        r#"{"error":"invalid_client"}"#.to_owned(),
                    )
                } else {
                    (
                        "400 Bad Request",
                        r#"{"error":"invalid_request"}"#.to_owned(),
                    )
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let checks = probe_issuer(&issuer, &fast(), None).await;
    let names: Vec<_> = checks.iter().map(|c| (c.check, c.ok)).collect();
    assert_eq!(
        names,
        [
            ("discovery", true),
            ("issuer", true),
            ("jwks", true),
            ("token_endpoint", true)
        ],
        "{checks:#?}"
    );
    let creds = ClientCredentials {
        client_id: "rp".into(),
        client_secret: "wrong".into(),
    };
    let checks = probe_issuer(&issuer, &fast(), Some(&creds)).await;
    let last = checks.last().unwrap();
    assert_eq!(last.check, "token_request");
    assert_eq!(last.failure.as_ref().unwrap().code, "TSR-CLIENT-SECRET");

    // Issuer mismatch: a relying party configured with a trailing slash the provider does not
    // publish would reject every ID token (`iss` differs): the probe says so.
    let checks = probe_issuer(&format!("{issuer}/"), &fast(), None).await;
    let f = checks.last().unwrap().failure.clone().unwrap();
    assert_eq!(f.code, codes::OIDC_ISSUER, "{checks:#?}");
    assert!(f.remedy.contains(&format!("'{issuer}'")), "{f}");
    let checks = probe_issuer(&issuer.replace("127.0.0.1", "localhost"), &fast(), None).await;
    assert_eq!(
        checks.last().unwrap().failure.as_ref().unwrap().code,
        codes::OIDC_ISSUER
    );
}

#[test]
fn base64_and_basic_auth() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    // RFC 6749 §2.3.1: form-urlencode before Basic.
    assert_eq!(
        basic_auth("a b", "c:d"),
        format!("Basic {}", base64_encode(b"a+b:c%3Ad"))
    );
}

#[test]
fn dechunks() {
    assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
}

#[test]
fn loopback_default_no_proxy() {
    assert!(NoProxy::loopback().matches("127.0.0.1"));
}

/// A tiny OP whose discovery document publishes `issuer` verbatim and whose token endpoint
/// answers every POST with `token_status` / `token_body`.
async fn tiny_op(
    issuer_suffix: &'static str,
    token_status: &'static str,
    token_body: &'static str,
) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let meta = serde_json::json!({
        "issuer": format!("{base}{issuer_suffix}"),
        "jwks_uri": format!("{base}/jwks.json"),
        "token_endpoint": format!("{base}/token"),
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let meta = meta.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, body) = if req.starts_with("GET /.well-known/openid-configuration") {
                    ("200 OK", meta)
                } else if req.starts_with("GET /jwks.json") {
                    ("200 OK", r#"{"keys":[{"kty":"EC"}]}"#.to_owned())
                } else {
                    (token_status, token_body.to_owned())
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    base
}

#[tokio::test]
async fn issuer_published_with_a_trailing_slash_matches_itself() {
    // Some providers publish their issuer with a trailing slash; the relying party configured
    // with exactly that value is right, and the discovery URL has no double slash.
    let base = tiny_op("/", "400 Bad Request", r#"{"error":"invalid_request"}"#).await;
    let checks = probe_issuer(&format!("{base}/"), &fast(), None).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert_eq!(
        checks[0].url,
        format!("{base}/.well-known/openid-configuration")
    );
    // The answer's Date header is kept for the doctor's clock check.
    assert_eq!(
        checks[0].date.as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    // Configured without the slash: a mismatch, and the remedy quotes the published value.
    let checks = probe_issuer(&base, &fast(), None).await;
    let f = checks.last().unwrap().failure.clone().unwrap();
    assert_eq!(f.code, codes::OIDC_ISSUER, "{checks:#?}");
    assert!(f.remedy.contains(&format!("'{base}/'")), "{f}");
}

#[tokio::test]
async fn token_endpoint_must_answer_like_a_token_endpoint() {
    // A wrong path behind a gateway: 404 is not "reachable".
    let base = tiny_op("", "404 Not Found", "<html>no</html>").await;
    let checks = probe_issuer(&base, &fast(), None).await;
    let last = checks.last().unwrap();
    assert_eq!(last.check, "token_endpoint");
    assert!(!last.ok, "{last:#?}");
    let f = last.failure.as_ref().unwrap();
    assert_eq!(f.code, codes::HTTP_STATUS);
    assert!(f.cause.contains("404 Not Found"), "{f}");
    // 401 without a body (some servers) and 400 with an OAuth error both pass.
    let base = tiny_op("", "401 Unauthorized", "").await;
    assert!(
        probe_issuer(&base, &fast(), None)
            .await
            .iter()
            .all(|c| c.ok)
    );
    let base = tiny_op("", "502 Bad Gateway", "").await;
    let checks = probe_issuer(&base, &fast(), None).await;
    assert!(!checks.last().unwrap().ok, "{checks:#?}");
}

#[tokio::test]
async fn tls_name_mismatch_is_named_with_its_remedy() {
    let Some(pki) = pki_for("DNS:other.example") else {
        return;
    };
    let port = tls_server(&pki, "{}");
    let opts = ProbeOptions {
        extra_ca_file: Some(pki.ca.clone()),
        ..fast()
    };
    let r = probe_get(&format!("https://127.0.0.1:{port}/"), &opts).await;
    let f = r.failure.clone().unwrap();
    assert_eq!(f.code, codes::TLS_HANDSHAKE, "{f}");
    assert!(f.cause.contains("not valid for name"), "{f}");
    assert!(
        f.remedy.starts_with(&format!(
            "the certificate of 127.0.0.1:{port} does not name '127.0.0.1'"
        )),
        "{f}"
    );
    artifact(
        "tls-wrong-name",
        &render(&r).replace(&port.to_string(), "PORT"),
    );
}

#[tokio::test]
async fn outbound_client_names_the_proxy_status_line() {
    // The server's own client (reqwest) through a proxy that refuses CONNECT: hyper reports
    // only "unsuccessful tunnel"; the error must carry the proxy's answer.
    let Some(proxy) = test_proxy() else { return };
    let client = crate::HttpClient::new(crate::EgressConfig {
        connect_timeout_ms: 2_000,
        timeout_ms: 2_000,
        proxy: ProxyConfig {
            url: Some(proxy.url.clone()),
            no_proxy: Some(vec![]),
            from_env: false,
        },
        ..Default::default()
    })
    .unwrap();
    let e = client
        .fetch_jwks("https://idp.example.test/jwks.json")
        .await
        .unwrap_err();
    let authority = proxy.url.trim_start_matches("http://");
    assert_eq!(e.class(), "connect", "{e}");
    assert!(
        e.to_string().contains(&format!(
            "[TSR-PROXY-403] proxy {authority} answered CONNECT idp.example.test:443 with 403 Filtered"
        )),
        "{e}"
    );
    let e = client
        .post_form("https://idp.example.test/token", &[], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403 Filtered"), "{e}");
}
