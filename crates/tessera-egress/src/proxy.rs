//! Outbound proxy settings: a forward proxy URL, a no-proxy list with curl semantics, Java's
//! `http.nonProxyHosts` syntax translated to it, and opt-in import of the environment.
//!
//! No-proxy semantics (curl `CURLOPT_NOPROXY` / `NO_PROXY`, also reqwest and hyper-util):
//! comma- (or space-) separated entries, case-insensitive; `*` alone bypasses the proxy for every
//! host; a name matches itself and every subdomain (`example.com` matches `www.example.com`, not
//! `nonexample.com`); a leading dot is ignored (`.example.com` ≡ `example.com`); trailing dots
//! are ignored; an IP address matches that literal address; `ADDR/LEN` is a CIDR range (curl ≥
//! 7.86). Host names are never resolved for matching. Go differs (a leading dot there means
//! subdomains only); we follow curl.
//!
//! Default: loopback (`localhost`, `127.0.0.0/8`, `::1`) bypasses the proxy. A configured list
//! *replaces* the default (so a test, or a deployment, can route loopback through a proxy).
//!
//! Java (`java.net` networking properties): `http.nonProxyHosts` is `|`-separated, `*` only as a
//! leading or trailing wildcard, and an entry matches the whole host only. Translation:
//! `*.corp.example` → `.corp.example` (which, curl-style, also matches `corp.example` itself),
//! `127.*` → `127.0.0.0/8`, `[::1]` → `::1`, `localhost` → `localhost` (curl-style, it now also
//! matches subdomains); anything else with a wildcard cannot be expressed and is reported.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The `[egress.proxy]` configuration block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Forward proxy for outbound requests, `http://HOST:PORT` (CONNECT for https targets,
    /// absolute-URI requests for http). Unset: direct connections.
    pub url: Option<String>,
    /// Hosts reached directly (curl NO_PROXY semantics; Java `a|*.b` syntax also accepted and
    /// translated). Unset: loopback only. A list replaces that default.
    pub no_proxy: Option<Vec<String>>,
    /// Import `HTTPS_PROXY`/`https_proxy`, `http_proxy` (lowercase only, as curl), `ALL_PROXY`
    /// and `NO_PROXY`/`no_proxy` for what the keys above leave unset. Default false: the server's
    /// behaviour does not depend on its environment unless asked.
    pub from_env: bool,
}

/// One parsed no-proxy entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoProxyEntry {
    /// `*`: every host.
    All,
    /// A name, lowercased, without leading or trailing dots: itself and its subdomains.
    Domain(String),
    /// A literal address.
    Ip(IpAddr),
    /// An address range (`ADDR/LEN`).
    Cidr(IpAddr, u8),
}

impl std::fmt::Display for NoProxyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Domain(d) => f.write_str(d),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Cidr(ip, len) => write!(f, "{ip}/{len}"),
        }
    }
}

/// A parsed no-proxy list, with warnings about entries that were changed or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    pub entries: Vec<NoProxyEntry>,
    pub warnings: Vec<String>,
}

/// The default list: loopback.
pub const DEFAULT_NO_PROXY: &str = "localhost,127.0.0.0/8,::1";

fn parse_cidr(s: &str) -> Option<NoProxyEntry> {
    let (addr, len) = s.split_once('/')?;
    let ip: IpAddr = addr.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(NoProxyEntry::Cidr(ip, len))
}

fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        // An IPv4-mapped IPv6 address is compared as IPv4.
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_cidr(IpAddr::V4(v4), net, len)),
        _ => false,
    }
}

/// Normalise a host for matching: lowercase, brackets and trailing dots removed.
fn norm_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl NoProxy {
    /// Parse a curl-style list (comma- or whitespace-separated). A `|` in the list means Java
    /// syntax: it is translated (with a warning naming the translation).
    pub fn parse(list: &str) -> Self {
        if list.contains('|') {
            let mut out = Self::default();
            let (entries, mut warnings) = translate_java_non_proxy_hosts(list);
            out.warnings.push(format!(
                "'{list}' uses Java http.nonProxyHosts syntax ('|'); read as '{}'",
                entries.join(",")
            ));
            out.warnings.append(&mut warnings);
            for e in entries {
                out.push(&e);
            }
            return out;
        }
        let mut out = Self::default();
        for e in list.split(|c: char| c == ',' || c.is_whitespace()) {
            out.push(e);
        }
        if out.entries.len() > 1 && out.entries.contains(&NoProxyEntry::All) {
            // Tools differ here: Go bypasses the proxy for every host, curl and Python only
            // when the whole value is '*'. Say which reading applies.
            out.warnings.push(format!(
                "'{list}' holds '*' among other entries: read as 'no proxy for any host' (as Go \
                 does; curl and Python honour '*' only as the whole value)"
            ));
        }
        out
    }

    /// Parse a list given as separate entries (configuration arrays). Entries may themselves be
    /// Java-style (`a|b`).
    pub fn from_entries<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Self {
        let mut out = Self::default();
        for e in entries {
            let mut one = Self::parse(e.as_ref());
            out.entries.append(&mut one.entries);
            out.warnings.append(&mut one.warnings);
        }
        out
    }

    pub fn loopback() -> Self {
        Self::parse(DEFAULT_NO_PROXY)
    }

    fn push(&mut self, raw: &str) {
        let e = raw.trim();
        if e.is_empty() {
            return;
        }
        if e == "*" {
            self.entries.push(NoProxyEntry::All);
            return;
        }
        if let Some(c) = parse_cidr(e) {
            self.entries.push(c);
            return;
        }
        let bare = e.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.entries.push(NoProxyEntry::Ip(ip));
            return;
        }
        let mut name = e.to_ascii_lowercase();
        if let Some(rest) = name.strip_prefix("*.") {
            self.warnings.push(format!(
                "no-proxy entry '{e}': curl has no wildcards; read as '.{rest}' (the domain and its subdomains)"
            ));
            name = rest.to_owned();
        }
        // `host:port` or `[v6]:port`: curl ignores ports here; so do we (with a word).
        if let Some((host, port)) = name.rsplit_once(':')
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
            && !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            self.warnings.push(format!(
                "no-proxy entry '{e}': ports are not matched; read as '{host}'"
            ));
            // The address without its port is an address entry: before, `127.0.0.1:8080`
            // became a *name* that no address ever matched, despite the warning.
            if let Ok(ip) = host.parse::<IpAddr>() {
                self.entries.push(NoProxyEntry::Ip(ip));
                return;
            }
            name = host.to_owned();
        }
        let name = name
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_owned();
        if name.is_empty() || name.contains('*') || name.contains('/') {
            self.warnings.push(format!(
                "no-proxy entry '{e}' is not a host, address, CIDR or '*': ignored"
            ));
            return;
        }
        self.entries.push(NoProxyEntry::Domain(name));
    }

    /// Whether `host` (a name or an IP literal, brackets allowed) bypasses the proxy.
    pub fn matches(&self, host: &str) -> bool {
        self.matching_entry(host).is_some()
    }

    /// The entry that makes `host` bypass the proxy, if any.
    pub fn matching_entry(&self, host: &str) -> Option<&NoProxyEntry> {
        let h = norm_host(host);
        let ip = h.parse::<IpAddr>().ok();
        self.entries.iter().find(|e| match (e, ip) {
            (NoProxyEntry::All, _) => true,
            // Compared like a full-length range, so `::ffff:10.0.0.1` matches `10.0.0.1` as
            // it matches `10.0.0.0/8`.
            (NoProxyEntry::Ip(a), Some(ip)) => {
                *a == ip || in_cidr(ip, *a, if a.is_ipv4() { 32 } else { 128 })
            }
            (NoProxyEntry::Cidr(net, len), Some(ip)) => in_cidr(ip, *net, *len),
            (NoProxyEntry::Domain(d), None) => {
                h == *d
                    || (h.len() > d.len()
                        && h.ends_with(d.as_str())
                        && h.as_bytes()[h.len() - d.len() - 1] == b'.')
            }
            _ => false,
        })
    }

    /// The list in curl syntax.
    pub fn to_curl(&self) -> String {
        self.entries
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Translate a Java `http.nonProxyHosts` value (`localhost|*.corp.example|127.*|[::1]`) into
/// curl entries, with a warning for every entry whose meaning changes or that cannot be kept.
pub fn translate_java_non_proxy_hosts(value: &str) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let value = value.trim().trim_matches('"').trim_matches('\'');
    for raw in value.split('|') {
        let e = raw.trim().to_ascii_lowercase();
        if e.is_empty() {
            continue;
        }
        if e == "*" {
            out.push("*".to_owned());
            continue;
        }
        let bare = e.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            out.push(bare.to_owned());
            continue;
        }
        // `127.*`, `10.1.*`: an IPv4 prefix.
        if let Some(prefix) = e.strip_suffix(".*")
            && !prefix.is_empty()
            && prefix.split('.').all(|o| o.parse::<u8>().is_ok())
        {
            let octets: Vec<&str> = prefix.split('.').collect();
            if octets.len() < 4 {
                let mut full: Vec<String> = octets.iter().map(|s| (*s).to_owned()).collect();
                let len = 8 * octets.len();
                while full.len() < 4 {
                    full.push("0".into());
                }
                out.push(format!("{}/{len}", full.join(".")));
                continue;
            }
        }
        if let Some(rest) = e.strip_prefix("*.")
            && !rest.contains('*')
        {
            out.push(format!(".{rest}"));
            continue;
        }
        if let Some(rest) = e.strip_prefix('*')
            && !rest.contains('*')
            && !rest.is_empty()
        {
            warnings.push(format!(
                    "Java entry '{e}' matches any host ending in '{rest}'; curl cannot say that, read as '{}'",
                    rest.trim_start_matches('.')
                ));
            out.push(rest.trim_start_matches('.').to_owned());
            continue;
        }
        if e.contains('*') {
            warnings.push(format!(
                "Java entry '{e}' (trailing or inner wildcard) cannot be expressed in curl syntax: ignored"
            ));
            continue;
        }
        out.push(e);
    }
    (out, warnings)
}

/// A forward proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyEndpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ProxyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ProxyEndpoint {
    /// `http://host:port`, `host:port` or `http://host` (port 80, the HTTP default; Java's
    /// `http.proxyPort` default too).
    pub fn parse(url: &str) -> Result<Self, String> {
        let t = url.trim();
        // Every message below names the URL without its user-info: a proxy URL from the
        // environment may carry a password (`http://user:secret@proxy:3128`).
        let redacted = redact_userinfo(t);
        let url = redacted.as_str();
        let with_scheme = if t.contains("://") {
            t.to_owned()
        } else {
            format!("http://{t}")
        };
        let u = url::Url::parse(&with_scheme).map_err(|e| format!("proxy URL '{url}': {e}"))?;
        if u.scheme() != "http" {
            return Err(format!(
                "proxy URL '{url}': only http:// forward proxies are supported (https targets are tunnelled with CONNECT)"
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "proxy URL '{url}': proxy credentials are not supported; allow this host at the proxy instead"
            ));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("proxy URL '{url}' has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            host,
            port: u.port().unwrap_or(80),
        })
    }
}

/// `scheme://user:password@host…` → `scheme://***@host…` (only the authority is looked at).
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Resolved proxy settings: what to use for which URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `http://` targets.
    pub http: Option<ProxyEndpoint>,
    /// For `https://` targets (tunnelled with CONNECT).
    pub https: Option<ProxyEndpoint>,
    pub no_proxy: NoProxy,
    /// Where the settings came from ("configuration", "environment", "Java properties").
    pub source: String,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self::direct()
    }
}

/// Why a URL goes direct or through a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Direct { reason: String },
    Proxy(&'a ProxyEndpoint),
}

fn env_first(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
}

impl ProxySettings {
    pub fn direct() -> Self {
        Self {
            http: None,
            https: None,
            no_proxy: NoProxy::loopback(),
            source: "none".into(),
        }
    }

    /// From the configuration block; `env` is consulted only with `from_env = true`.
    pub fn from_config(
        cfg: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut s = if cfg.from_env {
            Self::from_env(env)?
        } else {
            Self::direct()
        };
        if let Some(url) = &cfg.url {
            let p = ProxyEndpoint::parse(url)?;
            s.http = Some(p.clone());
            s.https = Some(p);
            s.source = "configuration".into();
        }
        if let Some(list) = &cfg.no_proxy {
            s.no_proxy = NoProxy::from_entries(list);
        }
        Ok(s)
    }

    /// curl's environment conventions: `https_proxy`/`HTTPS_PROXY`, `http_proxy` (lowercase
    /// only: HTTPoxy), `all_proxy`/`ALL_PROXY` as fallback, `no_proxy`/`NO_PROXY`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let all = env_first(env, &["all_proxy", "ALL_PROXY"]);
        let https = env_first(env, &["https_proxy", "HTTPS_PROXY"]).or_else(|| all.clone());
        let http = env_first(env, &["http_proxy"]).or(all);
        let no_proxy = env_first(env, &["no_proxy", "NO_PROXY"]);
        Ok(Self {
            http: http.as_deref().map(ProxyEndpoint::parse).transpose()?,
            https: https.as_deref().map(ProxyEndpoint::parse).transpose()?,
            no_proxy: no_proxy
                .as_deref()
                .map_or_else(NoProxy::loopback, NoProxy::parse),
            source: "environment".into(),
        })
    }

    /// Java system properties pasted verbatim: `-Dhttp.proxyHost=proxy -Dhttp.proxyPort=3128
    /// -Dhttps.proxyHost=… -Dhttps.proxyPort=… -Dhttp.nonProxyHosts="localhost|*.corp"`, in any
    /// order, optionally inside `JAVA_OPTS="…"`; other tokens are ignored. Java defaults: port 80
    /// for http, 443 for https; `http.nonProxyHosts` defaults to `localhost|127.*|[::1]` and
    /// applies to https too.
    pub fn from_java_properties(text: &str) -> Result<Self, String> {
        let props = parse_java_properties(text);
        let get = |k: &str| {
            props
                .iter()
                .rev()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        let endpoint = |host: Option<String>, port: Option<String>, default: u16| {
            host.filter(|h| !h.is_empty())
                .map(|h| {
                    let port = match port {
                        Some(p) => p
                            .parse::<u16>()
                            .map_err(|_| format!("proxy port '{p}' is not a number"))?,
                        None => default,
                    };
                    Ok::<_, String>(ProxyEndpoint {
                        host: h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                        port,
                    })
                })
                .transpose()
        };
        let http = endpoint(get("http.proxyHost"), get("http.proxyPort"), 80)?;
        let https = endpoint(get("https.proxyHost"), get("https.proxyPort"), 443)?;
        if http.is_none() && https.is_none() && get("http.nonProxyHosts").is_none() {
            return Err(
                "no proxy property found (expected -Dhttp.proxyHost=…, -Dhttps.proxyHost=… or -Dhttp.nonProxyHosts=…)"
                    .into(),
            );
        }
        let non_proxy = get("http.nonProxyHosts").unwrap_or_else(|| "localhost|127.*|[::1]".into());
        let (entries, warnings) = translate_java_non_proxy_hosts(&non_proxy);
        let mut no_proxy = NoProxy::from_entries(&entries);
        no_proxy.warnings.extend(warnings);
        Ok(Self {
            http,
            https,
            no_proxy,
            source: "Java properties".into(),
        })
    }

    /// How `url` is reached.
    pub fn route(&self, url: &url::Url) -> Route<'_> {
        let host = url.host_str().unwrap_or_default();
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        };
        let Some(proxy) = proxy else {
            return Route::Direct {
                reason: format!("no proxy configured for {}", url.scheme()),
            };
        };
        if let Some(e) = self.no_proxy.matching_entry(host) {
            return Route::Direct {
                reason: format!("{host} matches no-proxy entry '{e}'"),
            };
        }
        Route::Proxy(proxy)
    }

    pub fn warnings(&self) -> &[String] {
        &self.no_proxy.warnings
    }
}

/// `-Dname=value` pairs from a pasted command line: `-D` at a word start (or after a quote or
/// `=`, as in `JAVA_OPTS="-D…"`), the value up to whitespace or a quote, or quoted itself.
pub fn parse_java_properties(text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().filter(|c| *c != '\\').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < chars.len() {
        let at_start =
            i == 0 || matches!(chars[i - 1], '"' | '\'' | '=') || chars[i - 1].is_whitespace();
        if !(chars[i] == '-' && chars[i + 1] == 'D' && at_start) {
            i += 1;
            continue;
        }
        i += 2;
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            key.push(chars[i]);
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            continue;
        }
        i += 1;
        let mut value = String::new();
        if i < chars.len() && matches!(chars[i], '"' | '\'') {
            let q = chars[i];
            i += 1;
            while i < chars.len() && chars[i] != q {
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '"' | '\'') {
                value.push(chars[i]);
                i += 1;
            }
        }
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn np(s: &str) -> NoProxy {
        NoProxy::parse(s)
    }

    #[test]
    fn curl_domain_semantics() {
        let n = np("example.com, .corp.test,Other.ORG.");
        assert!(n.matches("example.com"));
        assert!(n.matches("www.example.com"));
        assert!(n.matches("a.b.example.com"));
        assert!(!n.matches("nonexample.com"));
        assert!(!n.matches("example.com.evil"));
        // A leading dot is ignored: the domain itself matches too (curl, unlike Go).
        assert!(n.matches("corp.test"));
        assert!(n.matches("idp.corp.test"));
        assert!(n.matches("other.org"));
        assert!(n.matches("WWW.OTHER.ORG."));
        assert!(n.warnings.is_empty(), "{:?}", n.warnings);
    }

    #[test]
    fn star_ip_and_cidr() {
        assert!(np("*").matches("anything.example"));
        assert!(np("*").warnings.is_empty());
        let mixed = np("corp.example,*");
        assert!(mixed.matches("anything.example"));
        assert!(
            mixed.warnings[0].contains("no proxy for any host"),
            "{:?}",
            mixed.warnings
        );
        let n = np("10.0.0.0/8,192.168.1.7,::1,fd00::/8");
        assert!(n.matches("10.20.30.40"));
        assert!(!n.matches("11.0.0.1"));
        assert!(n.matches("192.168.1.7"));
        assert!(!n.matches("192.168.1.8"));
        assert!(n.matches("[::1]"));
        assert!(n.matches("fd12::1"));
        assert!(!n.matches("fe80::1"));
        // Names are never resolved for matching.
        assert!(!np("127.0.0.0/8").matches("localhost"));
    }

    #[test]
    fn default_is_loopback_and_an_explicit_list_replaces_it() {
        let d = NoProxy::loopback();
        assert!(d.matches("localhost"));
        assert!(d.matches("127.0.0.1"));
        assert!(d.matches("::1"));
        assert!(!d.matches("idp.example.com"));
        let cfg = ProxyConfig {
            url: Some("http://127.0.0.1:3128".into()),
            no_proxy: Some(vec!["internal.example".into()]),
            from_env: false,
        };
        let s = ProxySettings::from_config(&cfg, &|_| None).unwrap();
        let u = url::Url::parse("https://127.0.0.1:8443/").unwrap();
        assert!(matches!(s.route(&u), Route::Proxy(_)));
        let cfg = ProxyConfig {
            no_proxy: None,
            ..cfg
        };
        let s = ProxySettings::from_config(&cfg, &|_| None).unwrap();
        assert!(matches!(s.route(&u), Route::Direct { .. }));
    }

    #[test]
    fn wildcards_and_ports_are_translated_with_a_warning() {
        let n = np("*.corp.example,host.example:8443,foo*bar");
        assert!(n.matches("corp.example"));
        assert!(n.matches("a.corp.example"));
        assert!(n.matches("host.example"));
        assert!(!n.matches("foobar"));
        assert_eq!(n.warnings.len(), 3, "{:?}", n.warnings);
    }

    #[test]
    fn java_non_proxy_hosts() {
        let (e, w) = translate_java_non_proxy_hosts(
            "localhost|*.corp.example|127.*|10.1.*|[::1]|*foo.com|web*",
        );
        assert_eq!(
            e,
            [
                "localhost",
                ".corp.example",
                "127.0.0.0/8",
                "10.1.0.0/16",
                "::1",
                "foo.com"
            ]
        );
        assert_eq!(w.len(), 2, "{w:?}");
        let n = np("localhost|*.corp.example");
        assert!(n.matches("idp.corp.example"));
        assert!(n.matches("localhost"));
        assert!(n.warnings[0].contains("Java"));
    }

    #[test]
    fn java_properties_pasted_verbatim() {
        let s = ProxySettings::from_java_properties(
            r#"JAVA_OPTS="-Xmx2g -Dhttp.proxyHost=proxy.corp -Dhttp.proxyPort=3128 -Dhttps.proxyHost=proxy.corp -Dhttps.proxyPort=3129 -Dhttp.nonProxyHosts=localhost|*.corp.example""#,
        )
        .unwrap();
        assert_eq!(s.http.as_ref().unwrap().to_string(), "proxy.corp:3128");
        assert_eq!(s.https.as_ref().unwrap().to_string(), "proxy.corp:3129");
        let u = url::Url::parse("https://idp.corp.example/").unwrap();
        assert!(matches!(s.route(&u), Route::Direct { .. }));
        let u = url::Url::parse("https://idp.example.com/").unwrap();
        assert!(matches!(s.route(&u), Route::Proxy(p) if p.port == 3129));
        // Java defaults: https port 443, nonProxyHosts = localhost|127.*|[::1].
        let s = ProxySettings::from_java_properties("-Dhttps.proxyHost=p").unwrap();
        assert_eq!(s.https.as_ref().unwrap().port, 443);
        assert!(s.no_proxy.matches("127.0.0.5"));
        assert!(ProxySettings::from_java_properties("-Xmx1g").is_err());
        assert!(
            ProxySettings::from_java_properties("-Dhttp.proxyHost=p -Dhttp.proxyPort=x").is_err()
        );
    }

    #[test]
    fn environment_import_follows_curl() {
        let env = |k: &str| match k {
            "HTTPS_PROXY" => Some("http://p:3128".to_owned()),
            "HTTP_PROXY" => Some("http://cgi-injected:1".to_owned()),
            "NO_PROXY" => Some(".internal".to_owned()),
            _ => None,
        };
        let s = ProxySettings::from_env(&env).unwrap();
        assert_eq!(s.https.as_ref().unwrap().to_string(), "p:3128");
        // Uppercase HTTP_PROXY is ignored (HTTPoxy), as curl does.
        assert!(s.http.is_none());
        assert!(s.no_proxy.matches("a.internal"));
        // Opt-in: without from_env the environment is not read.
        let s = ProxySettings::from_config(&ProxyConfig::default(), &env).unwrap();
        assert!(s.https.is_none());
        let s = ProxySettings::from_config(
            &ProxyConfig {
                from_env: true,
                ..Default::default()
            },
            &env,
        )
        .unwrap();
        assert!(s.https.is_some());
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(
            ProxyEndpoint::parse("127.0.0.1:3128").unwrap().to_string(),
            "127.0.0.1:3128"
        );
        assert_eq!(ProxyEndpoint::parse("http://proxy").unwrap().port, 80);
        assert!(ProxyEndpoint::parse("https://proxy:1").is_err());
        assert!(ProxyEndpoint::parse("http://u:p@proxy:1").is_err());
    }

    #[test]
    fn address_entries_with_a_port_still_match_the_address() {
        // The warning says "read as '127.0.0.1'": the entry must then match that address.
        let n = np("127.0.0.1:8080,[::1]:8443,idp.example:443");
        assert!(n.matches("127.0.0.1"), "{:?}", n.entries);
        assert!(n.matches("[::1]"), "{:?}", n.entries);
        assert!(n.matches("idp.example"), "{:?}", n.entries);
        assert!(!n.matches("127.0.0.2"));
        assert_eq!(n.warnings.len(), 3, "{:?}", n.warnings);
        // IPv4-mapped IPv6 hosts match an IPv4 address entry, as they match a CIDR entry.
        assert!(np("10.0.0.1").matches("::ffff:10.0.0.1"));
        assert!(np("10.0.0.0/8").matches("::ffff:10.0.0.1"));
    }

    #[test]
    fn proxy_credentials_never_appear_in_errors() {
        for url in [
            "http://user:hunter2-secret@proxy:3128",
            "https://user:hunter2-secret@proxy:3128",
            "http://user:hunter2-secret@proxy:notaport",
        ] {
            let e = ProxyEndpoint::parse(url).unwrap_err();
            assert!(!e.contains("hunter2-secret"), "{e}");
            assert!(e.contains("***@proxy"), "{e}");
        }
        let env = |k: &str| (k == "HTTPS_PROXY").then(|| "http://u:hunter2-secret@p:1".to_owned());
        let e = ProxySettings::from_env(&env).unwrap_err();
        assert!(!e.contains("hunter2-secret"), "{e}");
        assert_eq!(redact_userinfo("http://p:1/a@b"), "http://p:1/a@b");
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,10}"
    }

    proptest! {
        /// A domain entry matches itself and every subdomain, with or without a leading dot,
        /// in any case, and never a host that merely ends with the same characters.
        #[test]
        fn domain_entries_match_subdomains_only(
            labels in proptest::collection::vec(label(), 1..4),
            sub in label(),
            prefix in "[a-z]{1,5}",
            dot in any::<bool>(),
            upper in any::<bool>(),
        ) {
            let domain = labels.join(".");
            let entry = if dot { format!(".{domain}") } else { domain.clone() };
            let entry = if upper { entry.to_uppercase() } else { entry };
            let n = NoProxy::parse(&entry);
            prop_assert!(n.matches(&domain));
            let subdomain = format!("{sub}.{domain}");
            prop_assert!(n.matches(&subdomain));
            let lookalike = format!("{prefix}{domain}");
            prop_assert!(!n.matches(&lookalike));
        }

        /// CIDR matching agrees with a prefix comparison of the address bits.
        #[test]
        fn cidr_matches_prefix(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32) {
            let net = std::net::Ipv4Addr::from(a);
            let ip = std::net::Ipv4Addr::from(b);
            let n = NoProxy::parse(&format!("{net}/{len}"));
            let shift = 32 - u32::from(len);
            let same = if len == 0 { true } else { (a >> shift) == (b >> shift) };
            prop_assert_eq!(n.matches(&ip.to_string()), same);
        }

        /// Parsing never panics and separators do not matter.
        #[test]
        fn parse_is_total(s in "[ -~]{0,60}") {
            let n = NoProxy::parse(&s);
            let _ = n.matches("example.com");
            let _ = n.to_curl();
        }

        /// A curl list round-trips through its printed form.
        #[test]
        fn to_curl_round_trips(labels in proptest::collection::vec(label(), 1..5)) {
            let n = NoProxy::parse(&labels.join(","));
            let again = NoProxy::parse(&n.to_curl());
            prop_assert_eq!(n.entries, again.entries);
        }
    }
}
