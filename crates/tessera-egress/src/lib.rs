//! Tessera's one outbound HTTP client.
//!
//! Every request the server makes to another host (a client's `jwks_uri`, a trusted issuer's
//! keys, later upstream IdPs) goes through [`HttpClient`], built once from an [`EgressConfig`]:
//! fixed connect and total timeouts, a response size cap, no redirects, rustls with the
//! platform's roots plus an optional extra CA file. Proxy settings are not read from the
//! environment (deterministic behaviour); explicit proxy configuration is added to
//! [`EgressConfig`] by the diagnostics work.
//!
//! Failures are classified ([`EgressError::class`]) so callers can tell an administrator
//! *what kind* of problem occurred (DNS, refused, timeout, TLS, HTTP status, too large, not JSON)
//! while keeping the detailed cause out of client-facing messages.
//!
//! Dependency direction: this crate depends only on `tessera-jose` (to parse JWK Sets with
//! size limits). `tessera-core` defines the `JwksSource` trait and has no I/O; the binary's
//! composition root adapts [`HttpClient::fetch_jwks`] to that trait.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_jose::JwkSet;

mod upstream;
pub use upstream::Reply;

/// Outbound HTTP settings (the `[egress]` configuration block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// TCP + TLS connect timeout, milliseconds. Default 3000.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, send, headers and body), milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// Largest accepted response body, bytes. Default 256 KiB.
    pub max_response_bytes: usize,
    /// PEM file with extra CA certificates to trust in addition to the platform's roots.
    pub extra_ca_file: Option<PathBuf>,
    /// `User-Agent` header. Default `tessera/<version>`.
    pub user_agent: String,
    /// `[egress.proxy]`: forward proxy and no-proxy list (see [`ProxyConfig`]).
    pub proxy: ProxyConfig,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 3_000,
            timeout_ms: 10_000,
            max_response_bytes: 256 * 1024,
            extra_ca_file: None,
            user_agent: concat!("tessera/", env!("CARGO_PKG_VERSION")).to_owned(),
            proxy: ProxyConfig::default(),
        }
    }
}

/// Why an outbound request failed. `Display` is for logs and administrators; [`Self::class`]
/// is the short, safe word to put in a client-facing message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("DNS resolution failed for {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("connection refused by {host}")]
    ConnectionRefused { host: String },
    #[error("could not connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("timed out after {after_ms} ms talking to {host}")]
    Timeout { host: String, after_ms: u64 },
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("{host} answered HTTP {status}")]
    HttpStatus { host: String, status: u16 },
    #[error("the response from {host} is larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("the response from {host} is not valid JSON: {detail}")]
    NotJson { host: String, detail: String },
    #[error("the response from {host} is not a JWK Set: {detail}")]
    NotJwks { host: String, detail: String },
    #[error("request to {host} failed: {detail}")]
    Other { host: String, detail: String },
    #[error("outbound HTTP client configuration: {0}")]
    Config(String),
}

impl EgressError {
    /// A short class name, safe to show to clients ("timeout", "dns", "http status 404", ...).
    pub fn class(&self) -> String {
        match self {
            Self::InvalidUrl(_) => "invalid url".into(),
            Self::Dns { .. } => "dns".into(),
            Self::ConnectionRefused { .. } => "connection refused".into(),
            Self::Connect { .. } => "connect".into(),
            Self::Timeout { .. } => "timeout".into(),
            Self::Tls { .. } => "tls".into(),
            Self::HttpStatus { status, .. } => format!("http status {status}"),
            Self::TooLarge { .. } => "response too large".into(),
            Self::NotJson { .. } => "not json".into(),
            Self::NotJwks { .. } => "not a jwk set".into(),
            Self::Other { .. } => "request failed".into(),
            Self::Config(_) => "configuration".into(),
        }
    }
}

/// The outbound HTTP client. Cheap to clone (connection pool shared).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    config: EgressConfig,
    proxy: ProxySettings,
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        cur = s.source();
    }
    false
}

fn has_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        cur = s.source();
    }
    false
}

impl HttpClient {
    /// Build the client once at start-up.
    pub fn new(config: EgressConfig) -> Result<Self, EgressError> {
        // The environment is read only when `[egress.proxy] from_env = true`.
        let proxy = ProxySettings::from_config(&config.proxy, &|k| std::env::var(k).ok())
            .map_err(|e| EgressError::Config(format!("egress proxy: {e}")))?;
        let route = proxy.clone();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| match route.route(url) {
                proxy::Route::Proxy(p) => Some(format!("http://{p}")),
                proxy::Route::Direct { .. } => None,
            }))
            .user_agent(config.user_agent.clone())
            .tls_backend_rustls();
        if let Some(path) = &config.extra_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                EgressError::Config(format!("cannot read extra_ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                EgressError::Config(format!("extra_ca_file {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(EgressError::Config(format!(
                    "extra_ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let inner = builder
            .build()
            .map_err(|e| EgressError::Config(chain_text(&e)))?;
        Ok(Self {
            inner,
            config,
            proxy,
        })
    }

    /// The proxy settings in force (for diagnostics: which route a URL takes).
    pub fn proxy_settings(&self) -> &ProxySettings {
        &self.proxy
    }

    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    fn classify(&self, host: &str, e: reqwest::Error) -> EgressError {
        let host = host.to_owned();
        let detail = chain_text(&e);
        if e.is_timeout() {
            return EgressError::Timeout {
                host,
                after_ms: self.config.timeout_ms,
            };
        }
        if has_rustls_error(&e) {
            return EgressError::Tls { host, detail };
        }
        if has_io_kind(&e, std::io::ErrorKind::ConnectionRefused) {
            return EgressError::ConnectionRefused { host };
        }
        if has_io_kind(&e, std::io::ErrorKind::TimedOut) {
            return EgressError::Timeout {
                host,
                after_ms: self.config.connect_timeout_ms,
            };
        }
        if e.is_connect() {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("dns error") || lower.contains("failed to lookup") {
                return EgressError::Dns { host, detail };
            }
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                return EgressError::Tls { host, detail };
            }
            return EgressError::Connect { host, detail };
        }
        EgressError::Other { host, detail }
    }

    /// [`Self::classify`] for a failed send, plus what reqwest hides: when the request went
    /// through the proxy and failed while connecting, the proxy's own answer to CONNECT (hyper's
    /// `TunnelError` drops the status line, so "unsuccessful tunnel" was all an administrator
    /// got). One hand-written CONNECT to the same target ([`probe::probe_get`]) recovers it.
    pub(crate) async fn explain(&self, url: &url::Url, e: reqwest::Error) -> EgressError {
        let host = url.host_str().unwrap_or_default().to_owned();
        let err = self.classify(&host, e);
        if !matches!(err, EgressError::Connect { .. } | EgressError::Other { .. })
            || !matches!(self.proxy.route(url), proxy::Route::Proxy(_))
        {
            return err;
        }
        let opts = probe::ProbeOptions::from_egress(&self.config, self.proxy.clone());
        let report = probe::probe_get(url.as_str(), &opts).await;
        match report.failure {
            Some(f) if f.step == "proxy_connect" => EgressError::Connect {
                host,
                detail: format!("[{}] {}", f.code, f.cause),
            },
            _ => err,
        }
    }

    /// GET `url` and return the body, at most `max_response_bytes`. Non-2xx is an error;
    /// redirects are not followed (a 3xx is reported as its status).
    pub async fn get_bytes(&self, url: &str, accept: &str) -> Result<Vec<u8>, EgressError> {
        let parsed =
            url::Url::parse(url).map_err(|e| EgressError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EgressError::InvalidUrl(format!(
                "{url}: only http and https are supported"
            )));
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let limit = self.config.max_response_bytes;
        let sent = self
            .inner
            .get(parsed.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.explain(&parsed, e).await),
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(EgressError::HttpStatus {
                host,
                status: status.as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(EgressError::TooLarge { host, limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(&host, e))? {
            if body.len() + chunk.len() > limit {
                return Err(EgressError::TooLarge { host, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GET `url` and parse the body as JSON.
    pub async fn fetch_json(&self, url: &str) -> Result<Value, EgressError> {
        let body = self.get_bytes(url, "application/json").await?;
        serde_json::from_slice(&body).map_err(|e| EgressError::NotJson {
            host: host_of(url),
            detail: e.to_string(),
        })
    }

    /// GET a JWK Set (RFC 7517 §5) and parse it strictly (duplicate members rejected).
    pub async fn fetch_jwks(&self, url: &str) -> Result<JwkSet, EgressError> {
        let body = self
            .get_bytes(url, "application/jwk-set+json, application/json")
            .await?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(EgressError::NotJson {
                host: host_of(url),
                detail: "invalid JSON".into(),
            });
        }
        JwkSet::from_slice(&body, self.config.max_response_bytes).map_err(|e| {
            EgressError::NotJwks {
                host: host_of(url),
                detail: e.to_string(),
            }
        })
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server answering every connection with `response`.
    async fn serve(response: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        format!("http://{addr}/jwks")
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn client() -> HttpClient {
        HttpClient::new(EgressConfig {
            timeout_ms: 500,
            connect_timeout_ms: 500,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn fetches_json_and_jwks() {
        let url = serve(http("200 OK", r#"{"keys":[]}"#)).await;
        assert_eq!(
            client().fetch_json(&url).await.unwrap(),
            serde_json::json!({"keys": []})
        );
        assert!(client().fetch_jwks(&url).await.unwrap().keys.is_empty());
    }

    #[tokio::test]
    async fn classifies_status_size_and_json() {
        let url = serve(http("404 Not Found", "{}")).await;
        let e = client().fetch_json(&url).await.unwrap_err();
        assert_eq!(e.class(), "http status 404");

        let url = serve(http("302 Found", "")).await;
        assert_eq!(
            client().fetch_json(&url).await.unwrap_err().class(),
            "http status 302"
        );

        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(300 * 1024));
        let url = serve(http("200 OK", &big)).await;
        assert_eq!(
            client().fetch_json(&url).await.unwrap_err().class(),
            "response too large"
        );

        let url = serve(http("200 OK", "<html>")).await;
        assert_eq!(
            client().fetch_json(&url).await.unwrap_err().class(),
            "not json"
        );

        let url = serve(http("200 OK", r#"{"nokeys":1}"#)).await;
        assert_eq!(
            client().fetch_jwks(&url).await.unwrap_err().class(),
            "not a jwk set"
        );
    }

    #[tokio::test]
    async fn classifies_refused_and_timeout() {
        // Bound but never listening: refuses connections, and no parallel test can take it.
        let refusing = tokio::net::TcpSocket::new_v4().unwrap();
        refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = refusing.local_addr().unwrap();
        let e = client()
            .fetch_json(&format!("http://{addr}/"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), "connection refused", "{e}");

        // Accepts but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = client()
            .fetch_json(&format!("http://{addr}/"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), "timeout", "{e}");
    }

    #[tokio::test]
    async fn classifies_dns_and_bad_urls() {
        let e = client()
            .fetch_json("http://no-such-host.invalid/")
            .await
            .unwrap_err();
        assert_eq!(e.class(), "dns", "{e}");
        assert_eq!(
            client().fetch_json("ftp://x/").await.unwrap_err().class(),
            "invalid url"
        );
        assert_eq!(
            client().fetch_json("not a url").await.unwrap_err().class(),
            "invalid url"
        );
    }

    #[tokio::test]
    async fn classifies_tls_failures() {
        // A plain-HTTP server spoken to with https: the handshake fails.
        let url = serve(http("200 OK", "{}"))
            .await
            .replace("http://", "https://");
        let e = client().fetch_json(&url).await.unwrap_err();
        assert!(matches!(e.class().as_str(), "tls" | "connect"), "{e}");
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let ok: EgressConfig = serde_json::from_str(r#"{"timeout_ms": 5}"#).unwrap();
        assert_eq!(ok.timeout_ms, 5);
        assert_eq!(ok.connect_timeout_ms, 3000);
        assert!(serde_json::from_str::<EgressConfig>(r#"{"proxy_url": "x"}"#).is_err());
        let e = HttpClient::new(EgressConfig {
            extra_ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.class(), "configuration");
    }
}

// Proxy settings and the connectivity probe (diagnostics work).
pub mod probe;
pub mod proxy;
pub use proxy::{NoProxy, ProxyConfig, ProxySettings};
