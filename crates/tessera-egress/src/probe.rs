//! A step-by-step connectivity probe: DNS → TCP → proxy CONNECT → TLS → HTTP, each step timed,
//! the first failure named with a stable code (`docs/errors.md`), its cause and a remedy.
//!
//! Common HTTP clients hide the proxy's answer to CONNECT (hyper-util's `TunnelError` carries no
//! status; Java prints it only in the `Caused by:`), so the probe speaks the protocol itself: a
//! hand-written CONNECT (RFC 9110 §9.3.6) over a tokio `TcpStream`, whose status line is kept
//! verbatim ("403 Filtered" from tinyproxy, "403 Forbidden" from squid), then TLS with rustls
//! driven by hand over the same stream, then one HTTP/1.1 request (RFC 9112) with
//! `Connection: close`.
//!
//! Used by `tessera doctor` (remote JWKS, upstream IdPs), `tessera probe ISSUER_URL` (the relying
//! party's host) and the admin CLI (talking to a running server).

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::{ProxyEndpoint, ProxySettings, Route};

/// Stable failure codes (the catalog in `tessera_core::diagnostics` defines them all).
pub mod codes {
    pub const DNS: &str = "TSR-NET-DNS";
    pub const REFUSED: &str = "TSR-NET-REFUSED";
    pub const TIMEOUT: &str = "TSR-NET-TIMEOUT";
    pub const NO_ANSWER: &str = "TSR-NET-NO-ANSWER";
    pub const PROXY_DOWN: &str = "TSR-PROXY-DOWN";
    pub const PROXY_403: &str = "TSR-PROXY-403";
    pub const PROXY_407: &str = "TSR-PROXY-407";
    pub const PROXY_REFUSED: &str = "TSR-PROXY-REFUSED";
    pub const TLS_UNTRUSTED: &str = "TSR-TLS-UNTRUSTED";
    pub const TLS_HANDSHAKE: &str = "TSR-TLS-HANDSHAKE";
    pub const HTTP_STATUS: &str = "TSR-HTTP-STATUS";
    pub const OIDC_DISCOVERY: &str = "TSR-OIDC-DISCOVERY";
    pub const OIDC_ISSUER: &str = "TSR-OIDC-ISSUER";
    pub const JWKS_INVALID: &str = "TSR-JWKS-INVALID";
    /// Every code the probe can produce.
    pub const ALL: [&str; 14] = [
        DNS,
        REFUSED,
        TIMEOUT,
        NO_ANSWER,
        PROXY_DOWN,
        PROXY_403,
        PROXY_407,
        PROXY_REFUSED,
        TLS_UNTRUSTED,
        TLS_HANDSHAKE,
        HTTP_STATUS,
        OIDC_DISCOVERY,
        OIDC_ISSUER,
        JWKS_INVALID,
    ];
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub proxy: ProxySettings,
    /// PEM file of extra CAs to trust.
    pub extra_ca_file: Option<PathBuf>,
    /// Trust the platform's CA bundle too. Default true.
    pub system_roots: bool,
    pub connect_timeout: Duration,
    /// Limit for each wait on the peer (CONNECT answer, TLS handshake, HTTP response).
    pub timeout: Duration,
    pub max_body: usize,
    pub user_agent: String,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            proxy: ProxySettings::direct(),
            extra_ca_file: None,
            system_roots: true,
            connect_timeout: Duration::from_millis(3_000),
            timeout: Duration::from_millis(10_000),
            max_body: 1024 * 1024,
            user_agent: concat!("tessera-probe/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl ProbeOptions {
    /// The probe settings matching the server's outbound client.
    pub fn from_egress(cfg: &crate::EgressConfig, proxy: ProxySettings) -> Self {
        Self {
            proxy,
            extra_ca_file: cfg.extra_ca_file.clone(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_body: cfg.max_response_bytes,
            ..Self::default()
        }
    }
}

/// One step of the probe.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeStep {
    /// "route", "dns", "tcp", "proxy_connect", "tls", "http".
    pub step: &'static str,
    pub ok: bool,
    pub elapsed_ms: u64,
    pub detail: String,
}

/// Why the probe failed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeFailure {
    /// Stable code (`docs/errors.md`).
    pub code: &'static str,
    pub step: &'static str,
    pub cause: String,
    pub remedy: String,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.code, self.cause, self.remedy)
    }
}

/// An HTTP response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line as received, e.g. `HTTP/1.1 403 Filtered`.
    pub status_line: String,
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeReport {
    pub url: String,
    /// `host:port` of the target.
    pub target: String,
    /// The proxy used, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub steps: Vec<ProbeStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ProbeFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    pub elapsed_ms: u64,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn get(url: &str) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("Accept".into(), "application/json".into())],
            body: Vec::new(),
        }
    }
    /// A form POST (`application/x-www-form-urlencoded`, RFC 6749 §3.2).
    pub fn post_form(url: &str, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes();
        Self {
            method: "POST".into(),
            url: url.into(),
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("Accept".into(), "application/json".into()),
            ],
            body,
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Base64 (RFC 4648 §4) for HTTP Basic credentials (RFC 7617 §2).
pub fn base64_encode(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Authorization: Basic` value for client credentials (RFC 6749 §2.3.1: form-urlencoded first).
pub fn basic_auth(user: &str, password: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64_encode(format!("{}:{}", enc(user), enc(password)).as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// TLS driven by hand over a tokio stream.
// ---------------------------------------------------------------------------------------------

enum Conn {
    Plain(TcpStream),
    Tls {
        tcp: TcpStream,
        tls: Box<rustls::ClientConnection>,
    },
}

async fn flush_tls(tcp: &mut TcpStream, tls: &mut rustls::ClientConnection) -> std::io::Result<()> {
    while tls.wants_write() {
        let mut out = Vec::new();
        tls.write_tls(&mut out)?;
        tcp.write_all(&out).await?;
    }
    Ok(())
}

enum HandshakeError {
    Tls(rustls::Error),
    Io(std::io::Error),
    Closed,
}

async fn handshake(
    tcp: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
) -> Result<(), HandshakeError> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        flush_tls(tcp, tls).await.map_err(HandshakeError::Io)?;
        if !tls.is_handshaking() {
            return Ok(());
        }
        let n = tcp.read(&mut buf).await.map_err(HandshakeError::Io)?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        tls.read_tls(&mut &buf[..n]).map_err(HandshakeError::Io)?;
        if let Err(e) = tls.process_new_packets() {
            // Send our alert so the server's log says why, then report.
            let _ = flush_tls(tcp, tls).await;
            return Err(HandshakeError::Tls(e));
        }
    }
}

impl Conn {
    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(t) => t.write_all(data).await,
            Self::Tls { tcp, tls } => {
                tls.writer().write_all(data)?;
                flush_tls(tcp, tls).await
            }
        }
    }

    /// Read some bytes; 0 = end of stream.
    async fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(t) => t.read(out).await,
            Self::Tls { tcp, tls } => {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match tls.reader().read(out) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // A peer that closes without close_notify: treat as the end.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) => return Err(e),
                    }
                    let n = tcp.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(0);
                    }
                    tls.read_tls(&mut &buf[..n])?;
                    tls.process_new_packets().map_err(std::io::Error::other)?;
                    flush_tls(tcp, tls).await?;
                }
            }
        }
    }
}

/// The certificates of the platform's bundle (`SSL_CERT_FILE`, else the usual locations).
fn system_bundle() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(p));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn load_pem_certs(
    path: &std::path::Path,
    roots: &mut rustls::RootCertStore,
) -> Result<usize, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .filter_map(Result::ok)
        .collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    Ok(added)
}

fn tls_config(opts: &ProbeOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if opts.system_roots
        && let Some(bundle) = system_bundle()
    {
        let _ = load_pem_certs(&bundle, &mut roots);
    }
    if let Some(ca) = &opts.extra_ca_file {
        let added = load_pem_certs(ca, &mut roots)?;
        if added == 0 {
            return Err(format!("{} holds no usable CA certificate", ca.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing (RFC 9112).
// ---------------------------------------------------------------------------------------------

const MAX_HEADER: usize = 64 * 1024;

/// Read until the end of the header block; returns (header text, bytes after it).
async fn read_head(conn: &mut Conn) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Some((String::from_utf8_lossy(&buf).into_owned(), rest)));
        }
        if buf.len() > MAX_HEADER {
            return Err(std::io::Error::other("response header larger than 64 KiB"));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some((String::from_utf8_lossy(&buf).into_owned(), Vec::new()))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// (status, status line, headers) of a response head.
type Head = (u16, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.trim().to_owned();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((status, status_line, headers))
}

/// The reason phrase part of a status line ("403 Filtered").
fn status_text(status_line: &str) -> &str {
    status_line
        .split_once(' ')
        .map_or(status_line, |(_, rest)| rest)
}

async fn read_body(
    conn: &mut Conn,
    mut have: Vec<u8>,
    headers: &[(String, String)],
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = get("content-length").and_then(|v| v.parse::<usize>().ok());
    let mut chunk = [0u8; 8192];
    // Read everything (to the length, or to the end), bounded by `max` plus framing.
    let limit = max.saturating_add(64 * 1024);
    loop {
        if let Some(len) = length
            && !chunked
            && have.len() >= len
        {
            have.truncate(len);
            break;
        }
        if chunked && have.windows(5).any(|w| w == b"0\r\n\r\n") {
            break;
        }
        if have.len() > limit {
            return Err(std::io::Error::other(format!(
                "response body larger than {max} bytes"
            )));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have.extend_from_slice(&chunk[..n]);
    }
    if chunked {
        have = dechunk(&have);
    }
    if have.len() > max {
        return Err(std::io::Error::other(format!(
            "response body larger than {max} bytes"
        )));
    }
    Ok(have)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..i]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[i + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The probe.
// ---------------------------------------------------------------------------------------------

struct Run {
    steps: Vec<ProbeStep>,
}

impl Run {
    fn ok(&mut self, step: &'static str, t: Instant, detail: String) {
        self.steps.push(ProbeStep {
            step,
            ok: true,
            elapsed_ms: ms(t),
            detail,
        });
    }
    fn fail(
        &mut self,
        step: &'static str,
        t: Instant,
        code: &'static str,
        cause: String,
        remedy: String,
    ) -> ProbeFailure {
        self.steps.push(ProbeStep {
            step,
            ok: false,
            elapsed_ms: ms(t),
            detail: cause.clone(),
        });
        ProbeFailure {
            code,
            step,
            cause,
            remedy,
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How to bypass the proxy for `host`, in the vocabulary of where the settings came from: a Java
/// host (properties pasted) is told `http.nonProxyHosts` first.
fn bypass_hint(host: &str, opts: &ProbeOptions) -> String {
    if opts.proxy.source == "Java properties" {
        format!("add {host} to http.nonProxyHosts / NO_PROXY")
    } else {
        format!("add {host} to NO_PROXY / http.nonProxyHosts")
    }
}

/// Send `req` and report every step. A response with any status is a success of the
/// transport; [`probe_get`] also requires 2xx.
pub async fn exchange(req: &HttpRequest, opts: &ProbeOptions) -> ProbeReport {
    let started = Instant::now();
    let mut run = Run { steps: Vec::new() };
    let mut report = ProbeReport {
        url: req.url.clone(),
        target: String::new(),
        proxy: None,
        steps: Vec::new(),
        failure: None,
        response: None,
        elapsed_ms: 0,
    };
    let result = exchange_inner(req, opts, &mut run, &mut report).await;
    match result {
        Ok(resp) => report.response = Some(resp),
        Err(f) => report.failure = Some(f),
    }
    report.steps = run.steps;
    report.elapsed_ms = ms(started);
    report
}

async fn exchange_inner(
    req: &HttpRequest,
    opts: &ProbeOptions,
    run: &mut Run,
    report: &mut ProbeReport,
) -> Result<HttpResponse, ProbeFailure> {
    let t = Instant::now();
    let url = url::Url::parse(&req.url).map_err(|e| {
        run.fail(
            "route",
            t,
            codes::HTTP_STATUS,
            format!("'{}' is not a valid URL: {e}", req.url),
            "give an absolute http:// or https:// URL".into(),
        )
    })?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(run.fail(
                "route",
                t,
                codes::HTTP_STATUS,
                format!("unsupported scheme '{other}'"),
                "give an http:// or https:// URL".into(),
            ));
        }
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let target = authority(&host, port);
    report.target = target.clone();
    let proxy: Option<ProxyEndpoint> = match opts.proxy.route(&url) {
        Route::Direct { reason } => {
            run.ok("route", t, format!("direct ({reason})"));
            None
        }
        Route::Proxy(p) => {
            run.ok(
                "route",
                t,
                format!("through proxy {p} (from {})", opts.proxy.source),
            );
            report.proxy = Some(p.to_string());
            Some(p.clone())
        }
    };
    let (connect_host, connect_port) = match &proxy {
        Some(p) => (p.host.clone(), p.port),
        None => (host.clone(), port),
    };
    let proxy_name = proxy.as_ref().map(ToString::to_string);

    // DNS.
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = if let Ok(ip) = connect_host.parse::<std::net::IpAddr>() {
        run.ok("dns", t, format!("{ip} is an address literal: no lookup"));
        vec![SocketAddr::new(ip, connect_port)]
    } else {
        let lookup = tokio::time::timeout(
            opts.connect_timeout,
            tokio::net::lookup_host((connect_host.as_str(), connect_port)),
        )
        .await;
        let err = match lookup {
            Ok(Ok(a)) => {
                let a: Vec<SocketAddr> = a.collect();
                if a.is_empty() {
                    Some("no address".to_owned())
                } else {
                    run.ok(
                        "dns",
                        t,
                        format!(
                            "{connect_host} → {}",
                            a.iter()
                                .map(|s| s.ip().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return finish_connect(req, opts, run, &url, https, &host, port, proxy, a)
                        .await;
                }
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer within {} ms",
                opts.connect_timeout.as_millis()
            )),
        };
        let detail = err.unwrap_or_default();
        return Err(match &proxy_name {
            Some(p) => run.fail(
                "dns",
                t,
                codes::PROXY_DOWN,
                format!("cannot resolve the proxy host of {p}: {detail}"),
                format!(
                    "check the proxy setting (from {}), or reach {host} directly: {}",
                    opts.proxy.source,
                    bypass_hint(&host, opts)
                ),
            ),
            None => run.fail(
                "dns",
                t,
                codes::DNS,
                format!("cannot resolve {host}: {detail}"),
                format!(
                    "check the host name; check this machine's resolver (getent hosts {host}); if {host} is only resolvable by the proxy, configure the proxy"
                ),
            ),
        });
    };
    finish_connect(req, opts, run, &url, https, &host, port, proxy, addrs).await
}

#[allow(clippy::too_many_arguments)]
async fn finish_connect(
    req: &HttpRequest,
    opts: &ProbeOptions,
    run: &mut Run,
    url: &url::Url,
    https: bool,
    host: &str,
    port: u16,
    proxy: Option<ProxyEndpoint>,
    addrs: Vec<SocketAddr>,
) -> Result<HttpResponse, ProbeFailure> {
    let target = authority(host, port);
    // TCP.
    let t = Instant::now();
    let mut last_err = String::new();
    let mut timed_out = false;
    let mut stream = None;
    for a in &addrs {
        match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                stream = Some((s, *a));
                break;
            }
            Ok(Err(e)) => last_err = format!("{a}: {e}"),
            Err(_) => {
                timed_out = true;
                last_err = format!(
                    "{a}: no answer within {} ms",
                    opts.connect_timeout.as_millis()
                );
            }
        }
    }
    let Some((tcp, addr)) = stream else {
        return Err(match &proxy {
            Some(p) => run.fail(
                "tcp",
                t,
                codes::PROXY_DOWN,
                format!("proxy {p} is not reachable: {last_err}"),
                format!(
                    "check that the proxy runs and the proxy setting (from {}); or reach {host} directly: {}",
                    opts.proxy.source,
                    bypass_hint(host, opts)
                ),
            ),
            None if timed_out => run.fail(
                "tcp",
                t,
                codes::TIMEOUT,
                format!("cannot connect to {target}: {last_err}"),
                "check routing and firewalls between this host and the target (a firewall that drops packets looks like this)".into(),
            ),
            None => run.fail(
                "tcp",
                t,
                codes::REFUSED,
                format!("cannot connect to {target}: {last_err}"),
                format!("check that a server listens on {target}; if this host must use a proxy, configure it"),
            ),
        });
    };
    let _ = tcp.set_nodelay(true);
    run.ok("tcp", t, format!("connected to {addr}"));
    let mut conn = Conn::Plain(tcp);

    // Proxy CONNECT (RFC 9110 §9.3.6), for https targets only.
    if let (Some(p), true) = (&proxy, https) {
        let t = Instant::now();
        let connect = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {}\r\n\r\n",
            opts.user_agent
        );
        let answer = tokio::time::timeout(opts.timeout, async {
            conn.write_all(connect.as_bytes()).await?;
            read_head(&mut conn).await
        })
        .await;
        let head = match answer {
            Ok(Ok(Some((head, _)))) => head,
            Ok(Ok(None)) => {
                return Err(run.fail(
                    "proxy_connect",
                    t,
                    codes::PROXY_REFUSED,
                    format!("proxy {p} closed the connection without answering CONNECT {target}"),
                    format!("check the proxy's log; or {}", bypass_hint(host, opts)),
                ));
            }
            Ok(Err(e)) => {
                return Err(run.fail(
                    "proxy_connect",
                    t,
                    codes::PROXY_REFUSED,
                    format!("proxy {p} failed during CONNECT {target}: {e}"),
                    format!("check the proxy's log; or {}", bypass_hint(host, opts)),
                ));
            }
            Err(_) => {
                return Err(run.fail(
                    "proxy_connect",
                    t,
                    codes::NO_ANSWER,
                    format!(
                        "proxy {p} did not answer CONNECT {target} within {} ms",
                        opts.timeout.as_millis()
                    ),
                    format!(
                        "the proxy is hung or cannot reach {target} itself: check the proxy; or {}",
                        bypass_hint(host, opts)
                    ),
                ));
            }
        };
        let Some((status, line, _)) = parse_head(&head) else {
            return Err(run.fail(
                "proxy_connect",
                t,
                codes::PROXY_REFUSED,
                format!("proxy {p} answered CONNECT {target} with something that is not HTTP"),
                "check that the proxy URL points at an HTTP forward proxy".into(),
            ));
        };
        let said = status_text(&line);
        if !(200..300).contains(&status) {
            let (code, remedy) = match status {
                403 => (
                    codes::PROXY_403,
                    format!("{}, or allow it at the proxy", bypass_hint(host, opts)),
                ),
                407 => (
                    codes::PROXY_407,
                    format!(
                        "configure proxy credentials, or {}",
                        bypass_hint(host, opts)
                    ),
                ),
                _ => (
                    codes::PROXY_REFUSED,
                    format!(
                        "the proxy could not open the tunnel (5xx: it cannot reach {target} either); check the proxy's log; or {}",
                        bypass_hint(host, opts)
                    ),
                ),
            };
            return Err(run.fail(
                "proxy_connect",
                t,
                code,
                format!("proxy {p} answered CONNECT {target} with {said}"),
                remedy,
            ));
        }
        run.ok(
            "proxy_connect",
            t,
            format!("proxy {p} answered CONNECT {target} with {said}"),
        );
    }

    // TLS.
    if https {
        let t = Instant::now();
        let cfg = tls_config(opts).map_err(|e| {
            run.fail(
                "tls",
                t,
                codes::TLS_UNTRUSTED,
                format!("CA bundle: {e}"),
                "give a PEM file with the CA certificate(s) (--ca-file / egress.extra_ca_file)"
                    .into(),
            )
        })?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            run.fail(
                "tls",
                t,
                codes::TLS_HANDSHAKE,
                format!("'{host}' is not a valid TLS server name: {e}"),
                "use a DNS name or an IP address in the URL".into(),
            )
        })?;
        let mut tls = rustls::ClientConnection::new(cfg, name).map_err(|e| {
            run.fail(
                "tls",
                t,
                codes::TLS_HANDSHAKE,
                format!("TLS setup: {e}"),
                "report this".into(),
            )
        })?;
        let Conn::Plain(mut tcp) = conn else {
            return Err(run.fail(
                "tls",
                t,
                codes::TLS_HANDSHAKE,
                "internal: TLS twice".into(),
                String::new(),
            ));
        };
        let via = proxy
            .as_ref()
            .map(|p| format!(" (through proxy {p})"))
            .unwrap_or_default();
        match tokio::time::timeout(opts.timeout, handshake(&mut tcp, &mut tls)).await {
            Ok(Ok(())) => {
                let version = tls
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                run.ok(
                    "tls",
                    t,
                    format!("{version} with {host}, certificate trusted"),
                );
            }
            Ok(Err(HandshakeError::Tls(e))) => {
                let untrusted = matches!(
                    e,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                        | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                );
                let (code, remedy) = if untrusted {
                    (
                        codes::TLS_UNTRUSTED,
                        format!(
                            "the certificate of {target} is signed by a CA this host does not trust: add that CA to --ca-file / egress.extra_ca_file (Java: import it into the truststore)"
                        ),
                    )
                } else {
                    use rustls::CertificateError as C;
                    // Name the actual problem: a generic "compare names and dates" left the
                    // operator to work out which of the two it was.
                    let check = format!("openssl s_client -connect {target} -servername {host}");
                    let remedy = match &e {
                        rustls::Error::InvalidCertificate(
                            C::NotValidForName | C::NotValidForNameContext { .. },
                        ) => format!(
                            "the certificate of {target} does not name '{host}': use a host name the certificate names in the URL, or reissue the certificate with '{host}' in its subjectAltName ({check})"
                        ),
                        rustls::Error::InvalidCertificate(
                            C::Expired | C::ExpiredContext { .. },
                        ) => {
                            format!(
                                "the certificate of {target} has expired: renew it on that server; if it looks valid, check this host's clock ({check})"
                            )
                        }
                        rustls::Error::InvalidCertificate(
                            C::NotValidYet | C::NotValidYetContext { .. },
                        ) => format!(
                            "the certificate of {target} is not valid yet: this host's clock is probably behind (check NTP), or the certificate was issued with a future date ({check})"
                        ),
                        _ => format!(
                            "compare the certificate's names and dates with the URL ({check})"
                        ),
                    };
                    (codes::TLS_HANDSHAKE, remedy)
                };
                return Err(run.fail(
                    "tls",
                    t,
                    code,
                    format!("TLS handshake with {target}{via} failed: {e}"),
                    remedy,
                ));
            }
            Ok(Err(HandshakeError::Io(e))) => {
                return Err(run.fail(
                    "tls",
                    t,
                    codes::TLS_HANDSHAKE,
                    format!("TLS handshake with {target}{via} failed: {e}"),
                    format!("check that {target} speaks TLS"),
                ));
            }
            Ok(Err(HandshakeError::Closed)) => {
                return Err(run.fail(
                    "tls",
                    t,
                    codes::TLS_HANDSHAKE,
                    format!("{target}{via} closed the connection during the TLS handshake"),
                    format!(
                        "check that {target} speaks TLS (not plain HTTP) and accepts TLS 1.2/1.3"
                    ),
                ));
            }
            Err(_) => {
                return Err(run.fail(
                    "tls",
                    t,
                    codes::NO_ANSWER,
                    format!(
                        "{target}{via} accepted the connection but did not answer the TLS handshake within {} ms",
                        opts.timeout.as_millis()
                    ),
                    format!("the server at {target} is hung or overloaded, or does not speak TLS: check its health"),
                ));
            }
        }
        conn = Conn::Tls {
            tcp,
            tls: Box::new(tls),
        };
    }

    // HTTP.
    let t = Instant::now();
    let path = match (&proxy, https) {
        // Through a proxy, plain http uses the absolute form (RFC 9112 §3.2.2).
        (Some(_), false) => url.as_str().to_owned(),
        _ => match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        },
    };
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n",
        req.method,
        authority_for_host_header(url),
        opts.user_agent
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let max = opts.max_body;
    let method = req.method.clone();
    let exchange = tokio::time::timeout(opts.timeout, async {
        conn.write_all(head.as_bytes()).await?;
        if !req.body.is_empty() {
            conn.write_all(&req.body).await?;
        }
        let Some((head, rest)) = read_head(&mut conn).await? else {
            return Ok(None);
        };
        let Some((status, line, headers)) = parse_head(&head) else {
            return Err(std::io::Error::other(format!(
                "not an HTTP response: {}",
                head.lines().next().unwrap_or_default()
            )));
        };
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(&mut conn, rest, &headers, max).await?
        };
        Ok(Some(HttpResponse {
            status,
            status_line: line,
            headers,
            body,
        }))
    })
    .await;
    match exchange {
        Ok(Ok(Some(resp))) => {
            // Through a proxy, plain http: a 403/407 comes from the proxy's policy.
            if let (Some(p), false, 403 | 407) = (&proxy, https, resp.status) {
                let code = if resp.status == 403 { codes::PROXY_403 } else { codes::PROXY_407 };
                return Err(run.fail(
                    "http",
                    t,
                    code,
                    format!(
                        "proxy {p} answered {} {} with {}",
                        req.method,
                        url,
                        status_text(&resp.status_line)
                    ),
                    format!("{}, or allow it at the proxy", bypass_hint(host, opts)),
                ));
            }
            run.ok(
                "http",
                t,
                format!("{} {} → {} ({} bytes)", req.method, url.path(), status_text(&resp.status_line), resp.body.len()),
            );
            Ok(resp)
        }
        Ok(Ok(None)) => Err(run.fail(
            "http",
            t,
            codes::NO_ANSWER,
            format!("{target} closed the connection without answering {} {}", req.method, url.path()),
            format!("check the server at {target} and its log"),
        )),
        Ok(Err(e)) => Err(run.fail(
            "http",
            t,
            codes::HTTP_STATUS,
            format!("{} {url} failed: {e}", req.method),
            format!("check the server at {target}"),
        )),
        Err(_) => Err(run.fail(
            "http",
            t,
            codes::NO_ANSWER,
            format!(
                "{target} accepted the connection but sent no response within {} ms",
                opts.timeout.as_millis()
            ),
            format!("the server at {target} is hung or overloaded: check its health (the timeout protects the caller meanwhile)"),
        )),
    }
}

fn authority_for_host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// GET `url`; anything but 2xx is a failure ([`codes::HTTP_STATUS`]).
pub async fn probe_get(url: &str, opts: &ProbeOptions) -> ProbeReport {
    let mut report = exchange(&HttpRequest::get(url), opts).await;
    if let Some(resp) = &report.response
        && !(200..300).contains(&resp.status)
    {
        report.failure = Some(ProbeFailure {
            code: codes::HTTP_STATUS,
            step: "http",
            cause: format!("GET {url} answered {}", status_text(&resp.status_line)),
            remedy: "check the URL (a redirect is not followed); open it with curl from this host through the same proxy".into(),
        });
    }
    report
}

// ---------------------------------------------------------------------------------------------
// OpenID Provider checks (`tessera probe ISSUER_URL`, `tessera doctor` upstreams).
// ---------------------------------------------------------------------------------------------

/// One check of [`probe_issuer`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IssuerCheck {
    /// "discovery", "issuer", "jwks", "token_endpoint", "token_request".
    pub check: &'static str,
    pub url: String,
    pub ok: bool,
    pub elapsed_ms: u64,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ProbeFailure>,
    /// The transport steps (DNS, TCP, CONNECT, TLS, HTTP).
    pub steps: Vec<ProbeStep>,
    /// The `Date` header of the answer, if any: a reference clock for `tessera doctor`.
    #[serde(skip)]
    pub date: Option<String>,
}

/// Client credentials for an optional real token request.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

fn check_from(check: &'static str, report: ProbeReport, detail: String) -> IssuerCheck {
    let date = report
        .response
        .as_ref()
        .and_then(|r| r.header("date"))
        .map(str::to_owned);
    IssuerCheck {
        date,
        check,
        url: report.url,
        ok: report.failure.is_none(),
        elapsed_ms: report.elapsed_ms,
        detail,
        failure: report.failure,
        steps: report.steps,
    }
}

fn failed_check(
    check: &'static str,
    url: &str,
    code: &'static str,
    cause: String,
    remedy: String,
) -> IssuerCheck {
    IssuerCheck {
        check,
        url: url.to_owned(),
        ok: false,
        elapsed_ms: 0,
        detail: cause.clone(),
        failure: Some(ProbeFailure {
            code,
            step: check,
            cause,
            remedy,
        }),
        steps: Vec::new(),
        date: None,
    }
}

/// Discovery (OIDC Discovery §4) → issuer identical (RFC 8414 §3.3) → JWKS (RFC 7517 §5) →
/// token endpoint reachable → optionally a real `client_credentials` request. Stops at the
/// first check that makes the next impossible.
pub async fn probe_issuer(
    issuer: &str,
    opts: &ProbeOptions,
    credentials: Option<&ClientCredentials>,
) -> Vec<IssuerCheck> {
    // OIDC Discovery §4.1: a terminating `/` is removed before appending the well-known path;
    // §4.3 / RFC 8414 §3.3: the published issuer must be identical to the issuer *as the relying
    // party has it*. Comparing against the trimmed form called an issuer published with its
    // trailing slash (as some providers do) a mismatch, and accepted a relying party configured
    // with a slash the provider does not publish (its ID tokens' `iss` would then be rejected).
    let issuer = issuer.trim();
    let mut out = Vec::new();
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let report = probe_get(&discovery_url, opts).await;
    let body = report.response.as_ref().map(|r| r.body.clone());
    if !report.ok() {
        out.push(check_from("discovery", report, String::new()));
        return out;
    }
    let meta: serde_json::Value = match body.as_deref().map(serde_json::from_slice) {
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        _ => {
            out.push(failed_check(
                "discovery",
                &discovery_url,
                codes::OIDC_DISCOVERY,
                format!("{discovery_url} did not return a JSON object"),
                "check that the issuer URL is right (the metadata lives at ISSUER/.well-known/openid-configuration)".into(),
            ));
            return out;
        }
    };
    out.push(check_from(
        "discovery",
        report,
        "provider metadata read".into(),
    ));
    let t = Instant::now();
    let published = meta
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if published != issuer {
        let mut c = failed_check(
            "issuer",
            &discovery_url,
            codes::OIDC_ISSUER,
            format!(
                "the metadata's issuer is '{published}', not '{issuer}' (RFC 8414 §3.3: must be identical)"
            ),
            format!(
                "configure the relying party with the issuer exactly as published: '{published}'"
            ),
        );
        c.elapsed_ms = ms(t);
        out.push(c);
        return out;
    }
    out.push(IssuerCheck {
        check: "issuer",
        url: discovery_url.clone(),
        ok: true,
        elapsed_ms: ms(t),
        detail: format!("issuer '{published}' matches"),
        failure: None,
        steps: Vec::new(),
        date: None,
    });
    let url_of = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match url_of("jwks_uri") {
        None => out.push(failed_check(
            "jwks",
            &discovery_url,
            codes::OIDC_DISCOVERY,
            "the metadata has no jwks_uri".into(),
            "the provider must publish jwks_uri (OIDC Discovery §3)".into(),
        )),
        Some(jwks_uri) => {
            let report = probe_get(&jwks_uri, opts).await;
            let body = report.response.as_ref().map(|r| r.body.clone());
            if !report.ok() {
                out.push(check_from("jwks", report, String::new()));
            } else {
                let keys = body
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v.get("keys").and_then(|k| k.as_array()).map(Vec::len));
                match keys {
                    Some(n) if n > 0 => {
                        out.push(check_from("jwks", report, format!("{n} key(s) published")))
                    }
                    _ => {
                        let mut c = check_from("jwks", report, String::new());
                        c.ok = false;
                        c.failure = Some(ProbeFailure {
                            code: codes::JWKS_INVALID,
                            step: "jwks",
                            cause: format!("{jwks_uri} is not a JWK Set with at least one key"),
                            remedy:
                                "check what the jwks_uri returns (RFC 7517 §5: {\"keys\": [...]})"
                                    .into(),
                        });
                        c.detail = c
                            .failure
                            .as_ref()
                            .map(|f| f.cause.clone())
                            .unwrap_or_default();
                        out.push(c);
                    }
                }
            }
        }
    }
    let Some(token_endpoint) = url_of("token_endpoint") else {
        out.push(failed_check(
            "token_endpoint",
            &discovery_url,
            codes::OIDC_DISCOVERY,
            "the metadata has no token_endpoint".into(),
            "the provider must publish token_endpoint for the code flow".into(),
        ));
        return out;
    };
    // Reachability: an empty POST must get an OAuth error answer (400/401), proving the path.
    let report = exchange(&HttpRequest::post_form(&token_endpoint, &[]), opts).await;
    let answered = report.response.as_ref().map(|r| {
        let oauth_error = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .is_some_and(|v| v.get("error").is_some_and(|e| e.is_string()));
        (
            r.status,
            status_text(&r.status_line).to_owned(),
            oauth_error,
        )
    });
    let mut check = check_from("token_endpoint", report, String::new());
    match answered {
        // RFC 6749 §5.2: 400 (or 401 for client authentication) with an `error` member. Any
        // other answer (404 from a wrong path, 405, a 3xx, a 5xx from a gateway) used to pass as
        // "reachable" although the relying party's code exchange would fail there.
        Some((status, said, oauth_error)) if matches!(status, 400 | 401) || oauth_error => {
            check.detail =
                format!("reachable: an empty POST was answered {said} (expected: an OAuth error)");
        }
        Some((_, said, _)) => {
            let cause = format!(
                "{token_endpoint} answered an empty POST with {said}, not an OAuth error (RFC 6749 §5.2: 400 or 401 with an \"error\" member)"
            );
            check.ok = false;
            check.detail = cause.clone();
            check.failure = Some(ProbeFailure {
                code: codes::HTTP_STATUS,
                step: "token_endpoint",
                cause,
                remedy: "check the token_endpoint the provider publishes, and any gateway or reverse proxy in front of it (a redirect is not followed)".into(),
            });
        }
        None => {}
    }
    out.push(check);
    if let Some(c) = credentials {
        let req = HttpRequest::post_form(&token_endpoint, &[("grant_type", "client_credentials")])
            .with_header("Authorization", &basic_auth(&c.client_id, &c.client_secret));
        let report = exchange(&req, opts).await;
        let resp = report.response.clone();
        let mut check = check_from("token_request", report, String::new());
        if let Some(r) = resp {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let error = body
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let (ok, detail, failure) = match (r.status, error) {
                (200, _) => (true, "client authenticated, token issued".to_owned(), None),
                (_, "unauthorized_client" | "unsupported_grant_type" | "invalid_scope") => (
                    true,
                    format!("client authenticated (the client may not use client_credentials: {error}; fine for a code-flow client)"),
                    None,
                ),
                (_, "invalid_client") => (
                    false,
                    String::new(),
                    Some(ProbeFailure {
                        code: "TSR-CLIENT-SECRET",
                        step: "token_request",
                        cause: format!("the token endpoint rejected the client credentials of '{}' (invalid_client)", c.client_id),
                        remedy: "check client_id and client_secret against the registration (`tessera client show ID` on the server)".into(),
                    }),
                ),
                (s, e) => (
                    false,
                    String::new(),
                    Some(ProbeFailure {
                        code: codes::HTTP_STATUS,
                        step: "token_request",
                        cause: format!("the token endpoint answered {s} {e}"),
                        remedy: "look the request up in the server's traces (`tessera trace show ID`, X-Request-Id header)".into(),
                    }),
                ),
            };
            check.ok = ok;
            check.detail = failure.as_ref().map(|f| f.cause.clone()).unwrap_or(detail);
            check.failure = failure;
        }
        out.push(check);
    }
    out
}

/// Human-readable lines for a report (used by the CLI and the docs).
pub fn render_steps(steps: &[ProbeStep]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "  {} {:<13} {:>5} ms  {}",
                if s.ok { "✓" } else { "✗" },
                s.step,
                s.elapsed_ms,
                s.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
