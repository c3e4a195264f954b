//! The search-then-bind flow over the pools.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ldap3::controls::RawControl;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions, SearchResult,
};
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value};
use tessera_core::authn::{AccountState, AuthProvider, Outcome, PasswordCredentials, Principal};
use tessera_core::detail;
use tessera_core::trace::Trace;

use crate::LdapError;
use crate::cache::{CachedLogin, LoginCache};
use crate::classify::{Class, Transport, classify, describe, result_name};
use crate::config::LdapConfig;
use crate::filter;
use crate::pool::{Conn, Host, Pool, TlsMode};

/// OID of the password policy request/response control (draft-behera-ldap-password-policy).
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// The user search asks the server for at most this many entries (more than one is an error).
const USER_SEARCH_SIZE_LIMIT: i32 = 10;

/// The LDAP authentication provider. Cheap to clone (shared state).
#[derive(Clone)]
pub struct LdapProvider {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapProvider")
            .field("name", &self.inner.name)
            .field(
                "urls",
                &self.inner.hosts.iter().map(|h| &h.url).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The health of one configured host, as seen by the provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostStatus {
    pub url: String,
    /// Milliseconds until the host is tried again; `None` when healthy.
    pub retry_in_ms: Option<u64>,
    pub last_cause: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// Bound as `bind_dn`: searches only.
    Service,
    /// Used only for user binds; never searches, never returned to the service pool.
    Bind,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) component: String,
    pub(crate) cfg: LdapConfig,
    pub(crate) hosts: Vec<Host>,
    tls: Option<Arc<rustls::ClientConfig>>,
    service: Pool,
    binds: Pool,
    user_attrs: Vec<String>,
    reaper: AtomicBool,
    cache: LoginCache,
}

/// One search request on a service connection.
pub(crate) struct Search<'a> {
    pub base: &'a str,
    pub scope: Scope,
    pub filter: &'a str,
    pub attrs: Vec<&'a str>,
    /// 0 = no limit.
    pub size_limit: i32,
}

/// Why the provider could not perform the authentication.
#[derive(Debug)]
pub(crate) struct Failure {
    pub cause: String,
    pub host: Option<String>,
    /// A directory or configuration error (logged at error) rather than an outage (warn).
    pub config: bool,
}

impl Failure {
    fn backend(cause: impl Into<String>, host: Option<&Host>) -> Self {
        Self {
            cause: cause.into(),
            host: host.map(|h| h.url.clone()),
            config: false,
        }
    }
    fn config(cause: impl Into<String>, host: Option<&Host>) -> Self {
        Self {
            config: true,
            ..Self::backend(cause, host)
        }
    }
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn with_text(text: &str) -> String {
    let t = text.trim_end_matches('\0').trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

impl LdapProvider {
    /// Validate the configuration, parse the URLs and load the TLS roots. No network traffic.
    pub fn new(name: String, config: LdapConfig) -> Result<LdapProvider, LdapError> {
        config.validate().map_err(LdapError::Config)?;
        let mut hosts = Vec::with_capacity(config.urls.len());
        for raw in &config.urls {
            hosts.push(parse_url(raw, config.starttls)?);
        }
        for h in &hosts {
            if h.tls == TlsMode::Plain {
                tracing::warn!(provider = %name, host = %h.url,
                    "LDAP without TLS: user passwords cross the network in clear text (set starttls = true or use ldaps://)");
            }
        }
        let needs_tls = hosts.iter().any(|h| h.tls != TlsMode::Plain);
        let tls = if needs_tls || config.ca_file.is_some() {
            Some(tls_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        let mut user_attrs: Vec<String> = Vec::new();
        for a in [
            Some(&config.subject_attr),
            Some(&config.username_attr),
            Some(&config.name_attr),
            Some(&config.given_name_attr),
            Some(&config.family_name_attr),
            Some(&config.email_attr),
            config.memberof_attr.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !user_attrs.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                user_attrs.push(a.clone());
            }
        }
        let inner = Inner {
            component: format!("provider:{name}"),
            name,
            hosts,
            tls,
            service: Pool::new("service", config.pool_size),
            binds: Pool::new("bind", config.pool_size),
            user_attrs,
            reaper: AtomicBool::new(false),
            cache: LoginCache::new(config.cache_ttl, config.cache_size),
            cfg: config,
        };
        Ok(LdapProvider {
            inner: Arc::new(inner),
        })
    }

    /// The health of every configured host, in configuration order.
    pub fn host_status(&self) -> Vec<HostStatus> {
        self.inner
            .hosts
            .iter()
            .map(|h| match h.down_for() {
                Some((left, cause)) => HostStatus {
                    url: h.url.clone(),
                    retry_in_ms: Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
                    last_cause: Some(cause),
                },
                None => HostStatus {
                    url: h.url.clone(),
                    retry_in_ms: None,
                    last_cause: None,
                },
            })
            .collect()
    }

    /// Entries in the login cache (`cache_ttl`), expired ones included until next looked up.
    pub fn cached_logins(&self) -> usize {
        self.inner.cache.len()
    }

    /// Idle connections kept for reuse: (service pool, user-bind pool).
    pub fn idle_connections(&self) -> (usize, usize) {
        (self.inner.service.idle_len(), self.inner.binds.idle_len())
    }
}

fn parse_url(raw: &str, starttls: bool) -> Result<Host, LdapError> {
    let bad = |why: &str| LdapError::Config(format!("invalid LDAP URL {raw:?}: {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    let (tls, default_port) = match url.scheme() {
        "ldap" if starttls => (TlsMode::StartTls, 389),
        "ldap" => (TlsMode::Plain, 389),
        "ldaps" => (TlsMode::Ldaps, 636),
        other => return Err(bad(&format!("scheme {other} (use ldap:// or ldaps://)"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL (use bind_dn and bind_password)",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("only scheme://host:port is accepted"));
    }
    let port = url.port().unwrap_or(default_port);
    let addr = format!("{host}:{port}");
    Ok(Host::new(format!("{}://{addr}", url.scheme()), addr, tls))
}

fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| LdapError::CaFile {
                path: path.display().to_string(),
                cause: e.to_string(),
            })?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| LdapError::CaFile {
                    path: path.display().to_string(),
                    cause: format!("not PEM: {e}"),
                })?;
            if certs.is_empty() {
                return Err(LdapError::CaFile {
                    path: path.display().to_string(),
                    cause: "no CERTIFICATE block".into(),
                });
            }
            for c in certs {
                roots.add(c).map_err(|e| LdapError::CaFile {
                    path: path.display().to_string(),
                    cause: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // Unparseable system certificates are skipped, as every TLS client does.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(LdapError::Tls(
                    "no system CA certificates found; set ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Inner {
    fn step(
        &self,
        trace: &mut Trace,
        step: &str,
        outcome: &str,
        detail: impl FnOnce() -> Map<String, Value>,
    ) {
        trace.step(self.component.as_str(), step, outcome, detail);
    }

    fn pool(&self, kind: PoolKind) -> &Pool {
        match kind {
            PoolKind::Service => &self.service,
            PoolKind::Bind => &self.binds,
        }
    }

    /// Start the idle-connection reaper once, on the current runtime.
    fn ensure_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.reaper.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(self);
        let period =
            (self.cfg.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        handle.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { break };
                let max = inner.cfg.idle_timeout;
                let n = inner.service.reap(max, &inner.hosts) + inner.binds.reap(max, &inner.hosts);
                if n > 0 {
                    tracing::debug!(provider = %inner.name, closed = n, "closed idle LDAP connections");
                }
            }
        });
    }

    /// Run one LDAP operation under `operation_timeout`.
    pub(crate) async fn op<T>(
        &self,
        fut: impl Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T, (Transport, String)> {
        match tokio::time::timeout(self.cfg.operation_timeout, fut).await {
            Err(_) => Err((
                Transport::Timeout,
                format!(
                    "no answer within {} ms (operation_timeout)",
                    self.cfg.operation_timeout.as_millis()
                ),
            )),
            Ok(Err(e)) => Err(describe(&e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// TCP + TLS/StartTLS, under `connect_timeout`. The connection driver runs as a task;
    /// dropping every `Ldap` handle closes the connection.
    pub(crate) async fn connect(&self, host: &Host) -> Result<Ldap, (Transport, String)> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.connect_timeout)
            .set_starttls(host.tls == TlsMode::StartTls);
        if host.tls != TlsMode::Plain
            && let Some(tls) = &self.tls
        {
            settings = settings.set_config(tls.clone());
        }
        let fut = LdapConnAsync::with_settings(settings, &host.url);
        match tokio::time::timeout(self.cfg.connect_timeout, fut).await {
            Err(_) => Err((
                Transport::Timeout,
                format!(
                    "connect timeout after {} ms (connect_timeout)",
                    self.cfg.connect_timeout.as_millis()
                ),
            )),
            Ok(Err(e)) => {
                let (kind, msg) = describe(&e);
                let msg = match kind {
                    Transport::Timeout => format!(
                        "connect timeout after {} ms (connect_timeout)",
                        self.cfg.connect_timeout.as_millis()
                    ),
                    Transport::Refused if host.tls == TlsMode::StartTls => {
                        format!("StartTLS refused: {msg}")
                    }
                    _ => msg,
                };
                Err((kind, msg))
            }
            Ok(Ok((conn, ldap))) => {
                let url = host.url.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn.drive().await {
                        tracing::debug!(host = %url, error = %e, "LDAP connection ended");
                    }
                });
                Ok(ldap)
            }
        }
    }

    /// A host failed: put it in back-off and drop its idle connections.
    fn host_failed(&self, i: usize, cause: &str, trace: &mut Trace) {
        let Some(host) = self.hosts.get(i) else {
            return;
        };
        let backoff = host.mark_down(cause);
        let max = self.cfg.idle_timeout;
        self.service.reap(max, &self.hosts);
        self.binds.reap(max, &self.hosts);
        tracing::warn!(provider = %self.name, host = %host.url, cause = %cause,
            retry_in_s = backoff.as_secs(), "LDAP host marked unavailable");
        self.step(trace, "host", "marked_down", || {
            detail! {"host" => host.url, "cause" => cause, "retry_in_ms" => backoff.as_millis() as u64}
        });
    }

    /// After a transport error on `conn`: mark what failed, and say whether one retry is
    /// worthwhile (a stale pooled connection, or another healthy host to fail over to).
    fn transport_failed(&self, conn: &Conn, kind: Transport, msg: &str, trace: &mut Trace) -> bool {
        let url = self
            .hosts
            .get(conn.host)
            .map(|h| h.url.clone())
            .unwrap_or_default();
        if kind == Transport::Closed && conn.reused {
            self.step(trace, "connection", "stale", || {
                detail! {"host" => url, "error" => msg, "action" => "discarded, retrying on a new connection"}
            });
            return true;
        }
        self.host_failed(conn.host, msg, trace);
        self.hosts
            .iter()
            .enumerate()
            .any(|(i, h)| i != conn.host && !h.is_down())
    }

    /// A connection from `kind`'s pool: a healthy idle one, or a new one on the first host not
    /// in back-off (all of them, in order, when every host is in back-off and `only_healthy`
    /// is false).
    async fn checkout(
        &self,
        kind: PoolKind,
        trace: &mut Trace,
        mut only_healthy: bool,
    ) -> Result<Conn, Failure> {
        let pool = self.pool(kind);
        let t = Instant::now();
        let Some((permit, queued)) = pool.permit(self.cfg.operation_timeout).await else {
            self.step(trace, "connection", "pool_exhausted", || {
                detail! {"pool" => pool.name, "size" => pool.size, "ms" => ms(t)}
            });
            return Err(Failure::backend(
                format!(
                    "connection pool exhausted: all {} {} connections busy for {} ms",
                    pool.size,
                    pool.name,
                    ms(t)
                ),
                None,
            ));
        };
        if queued {
            // Having waited for a connection (up to operation_timeout), this login does not
            // also probe hosts in back-off: that could cost a second operation_timeout. Logins
            // that find a free connection still probe them, so a recovered host is used at once.
            only_healthy = true;
        }
        while let Some(mut idle) = pool.pop() {
            let age = idle.since.elapsed();
            let Some(host) = self.hosts.get(idle.host) else {
                continue;
            };
            let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            if age >= self.cfg.idle_timeout {
                self.step(trace, "connection", "expired", || {
                    detail! {"host" => host.url, "pool" => pool.name, "idle_ms" => age_ms}
                });
                continue;
            }
            if idle.ldap.is_closed() {
                self.step(trace, "connection", "stale", || {
                    detail! {"host" => host.url, "pool" => pool.name, "idle_ms" => age_ms,
                    "action" => "closed by the server; discarded"}
                });
                continue;
            }
            if host.is_down() {
                continue;
            }
            if age >= self.cfg.health_check_after {
                let t = Instant::now();
                let check = self
                    .op(idle
                        .ldap
                        .search("", Scope::Base, "(objectClass=*)", vec!["1.1"]))
                    .await;
                match check {
                    Ok(SearchResult(_, r)) if r.rc == 0 => {
                        self.step(trace, "connection", "health_check_ok", || {
                            detail! {"host" => host.url, "pool" => pool.name, "idle_ms" => age_ms, "ms" => ms(t)}
                        });
                    }
                    other => {
                        let err = match &other {
                            Ok(SearchResult(_, r)) => format!("{} ({})", result_name(r.rc), r.rc),
                            Err((_, m)) => m.clone(),
                        };
                        self.step(trace, "connection", "health_check_failed", || {
                            detail! {"host" => host.url, "pool" => pool.name, "idle_ms" => age_ms,
                            "error" => err, "ms" => ms(t)}
                        });
                        if let Err((Transport::Timeout, m)) = &other {
                            self.host_failed(idle.host, m, trace);
                            // Do not probe the host that just hung again in this request.
                            only_healthy = true;
                        }
                        continue;
                    }
                }
            }
            self.step(trace, "connection", "reused", || {
                detail! {"host" => host.url, "pool" => pool.name, "idle_ms" => age_ms}
            });
            return Ok(Conn::new(idle.ldap, idle.host, true, permit));
        }
        self.open(kind, permit, trace, only_healthy).await
    }

    async fn open(
        &self,
        kind: PoolKind,
        permit: tokio::sync::OwnedSemaphorePermit,
        trace: &mut Trace,
        only_healthy: bool,
    ) -> Result<Conn, Failure> {
        let pool = self.pool(kind);
        let mut candidates = Vec::with_capacity(self.hosts.len());
        for (i, h) in self.hosts.iter().enumerate() {
            match h.down_for() {
                Some((left, cause)) => self.step(trace, "host", "skipped", || {
                    detail! {"host" => h.url, "retry_in_ms" => left.as_millis() as u64, "last_cause" => cause}
                }),
                None => candidates.push(i),
            }
        }
        if candidates.is_empty() {
            if only_healthy {
                let causes: Vec<String> = self
                    .hosts
                    .iter()
                    .filter_map(|h| h.down_for().map(|(_, c)| format!("{}: {c}", h.url)))
                    .collect();
                return Err(Failure::backend(
                    format!("no healthy LDAP host left: {}", causes.join("; ")),
                    self.hosts.first(),
                ));
            }
            // Every host is in back-off: probe them anyway rather than fail without trying, so
            // that a directory that comes back is used at once.
            self.step(trace, "host", "probe_all", || {
                detail! {"reason" => "every host is in back-off"}
            });
            candidates = (0..self.hosts.len()).collect();
        }
        let mut errors = Vec::new();
        let mut last = None;
        for i in candidates {
            let Some(host) = self.hosts.get(i) else {
                continue;
            };
            self.step(trace, "host", "chosen", || {
                detail! {"host" => host.url, "pool" => pool.name, "tls" => host.tls.as_str()}
            });
            match self.open_on(host, kind, trace).await {
                Ok(ldap) => {
                    if host.mark_up() {
                        tracing::info!(provider = %self.name, host = %host.url, "LDAP host available again");
                        self.step(trace, "host", "recovered", || detail! {"host" => host.url});
                    }
                    return Ok(Conn::new(ldap, i, false, permit));
                }
                Err(f) if f.config => return Err(f),
                Err(f) => {
                    self.host_failed(i, &f.cause, trace);
                    errors.push(format!("{}: {}", host.url, f.cause));
                    last = Some(host);
                }
            }
        }
        Err(Failure::backend(errors.join("; "), last))
    }

    /// Connect to one host; for the service pool, bind as the service account.
    async fn open_on(
        &self,
        host: &Host,
        kind: PoolKind,
        trace: &mut Trace,
    ) -> Result<Ldap, Failure> {
        let t = Instant::now();
        let mut ldap = match self.connect(host).await {
            Ok(l) => {
                self.step(trace, "connect", "ok", || {
                    detail! {"host" => host.url, "tls" => host.tls.as_str(), "ms" => ms(t)}
                });
                l
            }
            Err((_, msg)) => {
                self.step(trace, "connect", "failed", || {
                    detail! {"host" => host.url, "tls" => host.tls.as_str(), "error" => msg, "ms" => ms(t)}
                });
                return Err(Failure::backend(msg, Some(host)));
            }
        };
        if kind == PoolKind::Bind {
            return Ok(ldap);
        }
        let dn = &self.cfg.bind_dn;
        let t = Instant::now();
        match self
            .op(ldap.simple_bind(dn, self.cfg.bind_password.expose()))
            .await
        {
            Ok(r) if r.rc == 0 => {
                self.step(trace, "service_bind", "ok", || {
                    detail! {"dn" => dn, "host" => host.url, "ms" => ms(t)}
                });
                Ok(ldap)
            }
            Ok(r) => {
                self.step(trace, "service_bind", "failed", || {
                    detail! {"dn" => dn, "host" => host.url, "code" => r.rc,
                    "result" => result_name(r.rc), "diagnostic" => r.text, "ms" => ms(t)}
                });
                let cause = format!(
                    "service account bind as {dn} rejected: {} ({}){}",
                    result_name(r.rc),
                    r.rc,
                    with_text(&r.text)
                );
                Err(match classify(r.rc, &r.text) {
                    Class::Unavailable => Failure::backend(cause, Some(host)),
                    _ => Failure::config(cause, Some(host)),
                })
            }
            Err((_, msg)) => {
                self.step(trace, "service_bind", "failed", || {
                    detail! {"dn" => dn, "host" => host.url, "error" => msg, "ms" => ms(t)}
                });
                Err(Failure::backend(format!("service bind: {msg}"), Some(host)))
            }
        }
    }

    /// A search on a service connection, with one retry (stale connection, or failover).
    /// `step` names the trace step. Returns the entries, the result and the host used.
    pub(crate) async fn service_search(
        &self,
        trace: &mut Trace,
        step: &str,
        search: Search<'_>,
    ) -> Result<(Vec<SearchEntry>, ldap3::LdapResult, String), Failure> {
        let Search {
            base,
            scope,
            filter,
            attrs,
            size_limit,
        } = search;
        let scope_name = match scope {
            Scope::Base => "base",
            Scope::OneLevel => "one",
            Scope::Subtree => "subtree",
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.checkout(PoolKind::Service, trace, attempt > 1).await?;
            let Some(host) = self.hosts.get(conn.host) else {
                return Err(Failure::backend("internal: unknown host index", None));
            };
            let t = Instant::now();
            let fut = conn
                .ldap
                .with_search_options(SearchOptions::new().sizelimit(size_limit))
                .search(base, scope, filter, attrs.clone());
            match self.op(fut).await {
                Ok(SearchResult(entries, res)) => {
                    let entries: Vec<SearchEntry> = match entries
                        .into_iter()
                        .map(crate::entry::search_entry)
                        .collect()
                    {
                        Ok(entries) => entries,
                        Err(why) => {
                            let msg = format!("the directory sent an undecodable entry: {why}");
                            self.step(trace, step, "failed", || {
                                detail! {"base" => base, "filter" => filter, "scope" => scope_name,
                                "host" => host.url, "error" => msg, "ms" => ms(t)}
                            });
                            drop(conn);
                            return Err(Failure::backend(format!("{step}: {msg}"), Some(host)));
                        }
                    };
                    let outcome = if res.rc == 0 {
                        "ok"
                    } else {
                        result_name(res.rc)
                    };
                    self.step(trace, step, outcome, || {
                        detail! {"base" => base, "filter" => filter, "scope" => scope_name,
                                 "entries" => entries.len(), "code" => res.rc, "host" => host.url, "ms" => ms(t)}
                    });
                    let url = host.url.clone();
                    if matches!(classify(res.rc, &res.text), Class::Unavailable) && res.rc != 4 {
                        drop(conn);
                    } else {
                        self.service.put(conn);
                    }
                    return Ok((entries, res, url));
                }
                Err((kind, msg)) => {
                    self.step(trace, step, "failed", || {
                        detail! {"base" => base, "filter" => filter, "scope" => scope_name,
                        "host" => host.url, "error" => msg, "ms" => ms(t)}
                    });
                    let retry = self.transport_failed(&conn, kind, &msg, trace);
                    drop(conn);
                    if retry && attempt < 2 {
                        continue;
                    }
                    return Err(Failure::backend(format!("{step}: {msg}"), Some(host)));
                }
            }
        }
    }

    /// Bind as the user on a connection of the bind pool. Retried once only on a stale pooled
    /// connection (the request never reached a live server): a timed-out bind is not repeated
    /// elsewhere, so one attempt never counts twice against the directory's own lockout.
    async fn user_bind(
        &self,
        dn: &str,
        password: &str,
        trace: &mut Trace,
    ) -> Result<(Class, u32, String, String), Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.checkout(PoolKind::Bind, trace, attempt > 1).await?;
            let Some(host) = self.hosts.get(conn.host) else {
                return Err(Failure::backend("internal: unknown host index", None));
            };
            let t = Instant::now();
            if self.cfg.password_policy_control {
                conn.ldap.with_controls(RawControl {
                    ctype: PPOLICY_OID.into(),
                    crit: false,
                    val: None,
                });
            }
            match self.op(conn.ldap.simple_bind(dn, password)).await {
                Ok(r) => {
                    let ppolicy = r
                        .ctrls
                        .iter()
                        .find(|c| c.1.ctype == PPOLICY_OID)
                        .and_then(|c| c.1.val.as_deref())
                        .and_then(ppolicy_error);
                    let mut class = classify(r.rc, &r.text);
                    if let Some(state) = ppolicy.and_then(ppolicy_state)
                        && matches!(class, Class::Success | Class::BadCredentials)
                    {
                        class = Class::AccountState(state);
                    }
                    let ppolicy_name = ppolicy.map(ppolicy_error_name);
                    let outcome = match class {
                        Class::Success => "ok",
                        Class::BadCredentials => "bad_credentials",
                        Class::UnknownUser => "unknown_user",
                        Class::AccountState(_) => "account_state",
                        Class::Config => "config_error",
                        Class::Unavailable => "unavailable",
                    };
                    let text = r.text.trim_end_matches('\0').to_string();
                    self.step(trace, "user_bind", outcome, || {
                        detail! {"dn" => dn, "host" => host.url, "code" => r.rc,
                        "result" => result_name(r.rc), "diagnostic" => text,
                        "ppolicy" => ppolicy_name, "ms" => ms(t)}
                    });
                    let url = host.url.clone();
                    if class == Class::Unavailable {
                        drop(conn);
                    } else {
                        // Only ever reused for another bind, which replaces this identity.
                        self.binds.put(conn);
                    }
                    return Ok((class, r.rc, text, url));
                }
                Err((kind, msg)) => {
                    self.step(trace, "user_bind", "failed", || {
                        detail! {"dn" => dn, "host" => host.url, "error" => msg, "ms" => ms(t)}
                    });
                    if kind == Transport::Closed && conn.reused && attempt < 2 {
                        self.transport_failed(&conn, kind, &msg, trace);
                        continue;
                    }
                    self.host_failed(conn.host, &msg, trace);
                    return Err(Failure::backend(format!("user bind: {msg}"), Some(host)));
                }
            }
        }
    }

    async fn groups(&self, entry: &SearchEntry, trace: &mut Trace) -> Result<Vec<String>, Failure> {
        let mut set = BTreeSet::new();
        if let Some(attr) = &self.cfg.memberof_attr {
            for dn in attr_values(entry, attr) {
                if let Some(name) = filter::first_rdn_value(&dn) {
                    set.insert(name);
                }
            }
            let groups: Vec<String> = set.into_iter().collect();
            self.step(trace, "groups", "ok", || {
                detail! {"source" => attr, "count" => groups.len(), "groups" => groups}
            });
            return Ok(groups);
        }
        let Some(base) = &self.cfg.group_base_dn else {
            return Ok(Vec::new());
        };
        let filter = filter::group_filter(&self.cfg.group_filter, &entry.dn);
        let name_attr = self.cfg.group_name_attr.as_str();
        let (entries, res, url) = self
            .service_search(
                trace,
                "group_search",
                Search {
                    base,
                    scope: Scope::Subtree,
                    filter: &filter,
                    attrs: vec![name_attr],
                    size_limit: 0,
                },
            )
            .await?;
        if res.rc != 0 {
            let cause = format!(
                "group search under {base} failed: {} ({}){}",
                result_name(res.rc),
                res.rc,
                with_text(&res.text)
            );
            return Err(Failure {
                // A server size limit below the user's group count (4) fails every login of
                // that user until the limit is raised: a configuration error, not an outage.
                // The login fails closed rather than with part of the groups.
                config: res.rc == 4 || classify(res.rc, &res.text) == Class::Config,
                cause,
                host: Some(url),
            });
        }
        for e in &entries {
            match first_attr(e, name_attr).or_else(|| filter::first_rdn_value(&e.dn)) {
                Some(n) => {
                    set.insert(n);
                }
                None => continue,
            }
        }
        let groups: Vec<String> = set.into_iter().collect();
        self.step(trace, "groups", "ok", || {
            detail! {"source" => "search", "count" => groups.len(), "groups" => groups}
        });
        Ok(groups)
    }

    fn unavailable(&self, f: Failure, trace: &mut Trace, started: Instant) -> Outcome {
        if f.config {
            tracing::error!(provider = %self.name, host = f.host.as_deref().unwrap_or("-"),
                cause = %f.cause, "LDAP provider cannot authenticate: directory or configuration error");
        } else {
            tracing::warn!(provider = %self.name, host = f.host.as_deref().unwrap_or("-"),
                cause = %f.cause, "LDAP provider unavailable");
        }
        self.step(trace, "result", "unavailable", || {
            detail! {"cause" => f.cause, "host" => f.host, "config_error" => f.config, "ms" => ms(started)}
        });
        Outcome::Unavailable {
            cause: f.cause,
            host: f.host,
        }
    }

    async fn authenticate(
        self: &Arc<Self>,
        credentials: &PasswordCredentials,
        trace: &mut Trace,
    ) -> Outcome {
        let started = Instant::now();
        let password = credentials.password.expose();
        // RFC 4513 §5.1.2: a DN with an empty password is an unauthenticated bind that can
        // "succeed". Refuse before any LDAP traffic.
        if password.trim().is_empty() {
            self.step(trace, "password_check", "empty_password", || {
                detail! {"action" => "rejected before any LDAP traffic"}
            });
            return Outcome::EmptyPassword;
        }
        let username = credentials.username.as_str();
        if let Err(why) = filter::check_username(username) {
            self.step(trace, "username_check", "rejected", || {
                detail! {"reason" => why.as_str(), "bytes" => username.len(),
                "action" => "unknown user, no LDAP traffic"}
            });
            return Outcome::UnknownUser;
        }
        self.ensure_reaper();

        // 0. The login cache: a hit skips the search and the group read, never the bind.
        match self.cache.get(username) {
            Ok((hit, age)) => {
                self.step(trace, "cache", "hit", || {
                    detail! {"dn" => hit.dn,
                    "age_ms" => u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    "ttl_ms" => u64::try_from(self.cache.ttl().as_millis()).unwrap_or(u64::MAX)}
                });
                return self
                    .cached_login(username, password, hit, trace, started)
                    .await;
            }
            Err(miss) => self.step(trace, "cache", "miss", || {
                detail! {"reason" => miss.as_str()}
            }),
        }

        // 1. Find the user's DN (service connection).
        let filter = filter::user_filter(&self.cfg.user_filter, username);
        let base = self.cfg.user_base_dn.as_str();
        let attrs: Vec<&str> = self.user_attrs.iter().map(String::as_str).collect();
        let search = self
            .service_search(
                trace,
                "search",
                Search {
                    base,
                    scope: self.cfg.user_scope.ldap(),
                    filter: &filter,
                    attrs,
                    size_limit: USER_SEARCH_SIZE_LIMIT,
                },
            )
            .await;
        let (entries, res, url) = match search {
            Ok(v) => v,
            Err(f) => return self.unavailable(f, trace, started),
        };
        if !matches!(res.rc, 0 | 4) {
            let cause = match res.rc {
                32 => format!(
                    "user_base_dn {base} does not exist or the service account cannot see it (noSuchObject)"
                ),
                50 => "service account cannot search: insufficientAccessRights (50)".to_string(),
                // RFC 4511 §4.1.10: the base DN is held by another server. Tessera does not
                // chase referrals, so this is a configuration error, not an outage.
                10 => format!(
                    "user_base_dn {base} is held by another server (referral to {}); referrals are not followed: add that server to urls or change user_base_dn",
                    if res.refs.is_empty() {
                        "an unnamed server".to_string()
                    } else {
                        res.refs.join(" ")
                    }
                ),
                rc => format!(
                    "user search failed: {} ({rc}){}",
                    result_name(rc),
                    with_text(&res.text)
                ),
            };
            let f = Failure {
                config: classify(res.rc, &res.text) == Class::Config,
                cause,
                host: Some(url),
            };
            return self.unavailable(f, trace, started);
        }
        // sizeLimitExceeded (4) means the server had more matching entries than it returned
        // (RFC 4511 §4.5.1.5: servers may enforce their own limit; Appendix A.2), so even one
        // returned entry is not "exactly one" (spec B4 / WebLogic getDNForUser): with a
        // server-side size limit of 1, a name held by two users would otherwise log in as
        // whichever the server sent first.
        let truncated = res.rc == 4;
        let entry = match entries.len() {
            0 if !truncated => {
                self.step(
                    trace,
                    "result",
                    "unknown_user",
                    || detail! {"ms" => ms(started)},
                );
                return Outcome::UnknownUser;
            }
            1 if !truncated => entries.into_iter().next(),
            n => {
                let dns: Vec<&str> = entries.iter().map(|e| e.dn.as_str()).collect();
                let matched = if truncated {
                    format!(
                        "more entries than the server returned ({n} returned, sizeLimitExceeded)"
                    )
                } else {
                    format!("{n} entries")
                };
                let f = Failure::config(
                    format!(
                        "user search {filter} under {base} matched {matched} ({}): directory/config error",
                        dns.join(" | ")
                    ),
                    None,
                );
                return self.unavailable(
                    Failure {
                        host: Some(url),
                        ..f
                    },
                    trace,
                    started,
                );
            }
        };
        let Some(entry) = entry else {
            return self.unavailable(
                Failure::backend("internal: empty search result", None),
                trace,
                started,
            );
        };

        // 2. Bind as the user (bind pool: never a service connection).
        let bind = match self.user_bind(&entry.dn, password, trace).await {
            Ok(v) => v,
            Err(f) => return self.unavailable(f, trace, started),
        };
        if let Some(denied) = self.bind_denied(&entry.dn, bind, trace, started) {
            return denied;
        }

        // 3. Groups (service connection), then the principal.
        let groups = match self.groups(&entry, trace).await {
            Ok(g) => g,
            Err(f) => return self.unavailable(f, trace, started),
        };
        let Some(subject) = first_attr(&entry, &self.cfg.subject_attr) else {
            let f = Failure::config(
                format!(
                    "entry {} has no {} attribute (subject_attr)",
                    entry.dn, self.cfg.subject_attr
                ),
                None,
            );
            return self.unavailable(f, trace, started);
        };
        let mut attributes = Map::new();
        attributes.insert("dn".into(), Value::String(entry.dn.clone()));
        let principal = Principal {
            subject,
            username: first_attr(&entry, &self.cfg.username_attr)
                .unwrap_or_else(|| username.to_string()),
            provider: self.name.clone(),
            name: first_attr(&entry, &self.cfg.name_attr),
            given_name: first_attr(&entry, &self.cfg.given_name_attr),
            family_name: first_attr(&entry, &self.cfg.family_name_attr),
            email: first_attr(&entry, &self.cfg.email_attr),
            email_verified: false,
            groups,
            amr: vec!["pwd".into()],
            attributes,
        };
        self.cache.insert(
            username,
            CachedLogin {
                dn: entry.dn.clone(),
                principal: principal.clone(),
            },
        );
        self.step(trace, "result", "authenticated", || {
            detail! {"subject" => principal.subject, "dn" => entry.dn, "cache" => "miss", "ms" => ms(started)}
        });
        Outcome::Authenticated(principal)
    }

    /// A login whose DN, attributes and groups come from the cache: only the user bind, which
    /// checks the password and the account state. Any non-success drops the entry.
    async fn cached_login(
        &self,
        username: &str,
        password: &str,
        hit: CachedLogin,
        trace: &mut Trace,
        started: Instant,
    ) -> Outcome {
        let bind = match self.user_bind(&hit.dn, password, trace).await {
            Ok(v) => v,
            Err(f) => {
                self.evict(username, trace);
                return self.unavailable(f, trace, started);
            }
        };
        if bind.0 != Class::Success {
            self.evict(username, trace);
        }
        if let Some(denied) = self.bind_denied(&hit.dn, bind, trace, started) {
            return denied;
        }
        let principal = hit.principal;
        self.step(trace, "result", "authenticated", || {
            detail! {"subject" => principal.subject, "dn" => hit.dn, "cache" => "hit", "ms" => ms(started)}
        });
        Outcome::Authenticated(principal)
    }

    fn evict(&self, username: &str, trace: &mut Trace) {
        if self.cache.remove(username) {
            self.step(trace, "cache", "evicted", || {
                detail! {"reason" => "user bind did not succeed; the next attempt searches again"}
            });
        }
    }

    /// The outcome of a user bind that did not succeed (`None` on success).
    fn bind_denied(
        &self,
        dn: &str,
        (class, rc, text, url): (Class, u32, String, String),
        trace: &mut Trace,
        started: Instant,
    ) -> Option<Outcome> {
        let denied = |outcome: Outcome, trace: &mut Trace| {
            self.step(
                trace,
                "result",
                outcome.label(),
                || detail! {"ms" => ms(started)},
            );
            Some(outcome)
        };
        match class {
            Class::Success => None,
            Class::BadCredentials => denied(Outcome::BadCredentials, trace),
            Class::UnknownUser => denied(Outcome::UnknownUser, trace),
            Class::AccountState(s) => denied(Outcome::AccountState(s), trace),
            Class::Config | Class::Unavailable => {
                let f = Failure {
                    cause: format!(
                        "user bind as {dn} refused: {} ({rc}){}",
                        result_name(rc),
                        with_text(&text)
                    ),
                    host: Some(url),
                    config: class == Class::Config,
                };
                Some(self.unavailable(f, trace, started))
            }
        }
    }
}

/// The `error` of a PasswordPolicyResponseValue (BER):
/// `SEQUENCE { warning [0] CHOICE {…} OPTIONAL, error [1] ENUMERATED OPTIONAL }`.
pub(crate) fn ppolicy_error(val: &[u8]) -> Option<u8> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let l0 = *b.get(1)?;
        let (len, hdr) = if l0 < 0x80 {
            (usize::from(l0), 2usize)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | usize::from(*b.get(2 + i)?);
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        Some((tag, b.get(hdr..end)?, b.get(end..)?))
    }
    let (tag, mut seq, _) = tlv(val)?;
    if tag != 0x30 {
        return None;
    }
    while !seq.is_empty() {
        let (t, v, rest) = tlv(seq)?;
        if t == 0x81 {
            return v.last().copied();
        }
        seq = rest;
    }
    None
}

fn ppolicy_state(error: u8) -> Option<AccountState> {
    match error {
        0 => Some(AccountState::PasswordExpired),
        1 => Some(AccountState::LockedAtDirectory),
        2 => Some(AccountState::MustChangePassword),
        _ => None,
    }
}

fn ppolicy_error_name(error: u8) -> &'static str {
    match error {
        0 => "passwordExpired",
        1 => "accountLocked",
        2 => "changeAfterReset",
        3 => "passwordModNotAllowed",
        4 => "mustSupplyOldPassword",
        5 => "insufficientPasswordQuality",
        6 => "passwordTooShort",
        7 => "passwordTooYoung",
        8 => "passwordInHistory",
        _ => "unknown",
    }
}

/// Values of an attribute, matched case-insensitively (servers return their own spelling).
/// Binary values are rendered as lower-case hex.
fn attr_values(entry: &SearchEntry, name: &str) -> Vec<String> {
    if let Some((_, v)) = entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        return v.clone();
    }
    if let Some((_, v)) = entry
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        return v
            .iter()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
            .collect();
    }
    Vec::new()
}

fn first_attr(entry: &SearchEntry, name: &str) -> Option<String> {
    attr_values(entry, name).into_iter().find(|v| !v.is_empty())
}

#[async_trait]
impl AuthProvider for LdapProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }

    async fn authenticate(&self, credentials: &PasswordCredentials, trace: &mut Trace) -> Outcome {
        self.inner.authenticate(credentials, trace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::secret::Secret;

    fn cfg(urls: &[&str]) -> LdapConfig {
        LdapConfig::new(
            urls.iter().map(|s| s.to_string()).collect(),
            "cn=svc,dc=example,dc=com",
            Secret::new("svc"),
            "ou=people,dc=example,dc=com",
        )
    }

    #[test]
    fn ppolicy_response_parsing() {
        // error: accountLocked
        assert_eq!(ppolicy_error(&[0x30, 0x03, 0x81, 0x01, 0x01]), Some(1));
        // warning (graceAuthNsRemaining 2) then error: changeAfterReset
        assert_eq!(
            ppolicy_error(&[0x30, 0x08, 0xa0, 0x03, 0x81, 0x01, 0x02, 0x81, 0x01, 0x02]),
            Some(2)
        );
        // long-form length
        assert_eq!(
            ppolicy_error(&[0x30, 0x81, 0x03, 0x81, 0x01, 0x00]),
            Some(0)
        );
        // warning only, empty, truncated, garbage
        assert_eq!(
            ppolicy_error(&[0x30, 0x05, 0xa0, 0x03, 0x80, 0x01, 0x05]),
            None
        );
        assert_eq!(ppolicy_error(&[0x30, 0x00]), None);
        assert_eq!(ppolicy_error(&[0x30, 0x05, 0x81]), None);
        assert_eq!(ppolicy_error(&[]), None);
        assert_eq!(ppolicy_error(&[0x04, 0x01, 0x01]), None);
        assert_eq!(ppolicy_state(1), Some(AccountState::LockedAtDirectory));
        assert_eq!(ppolicy_state(5), None);
    }

    #[test]
    fn urls_are_parsed() {
        let h = parse_url("ldap://dc1.example.com", false).unwrap();
        assert_eq!(
            (h.url.as_str(), h.tls),
            ("ldap://dc1.example.com:389", TlsMode::Plain)
        );
        let h = parse_url("ldap://dc1:1389/", true).unwrap();
        assert_eq!(
            (h.url.as_str(), h.tls),
            ("ldap://dc1:1389", TlsMode::StartTls)
        );
        let h = parse_url("ldaps://127.0.0.1", true).unwrap();
        assert_eq!(
            (h.url.as_str(), h.tls),
            ("ldaps://127.0.0.1:636", TlsMode::Ldaps)
        );
        let h = parse_url("ldap://[::1]:10389", false).unwrap();
        assert_eq!(h.addr, "[::1]:10389");
        for bad in [
            "http://x",
            "ldap://",
            "ldap://u:p@x",
            "ldap://x/dc=example?uid",
            "x",
        ] {
            assert!(parse_url(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_validates() {
        assert!(LdapProvider::new("p".into(), cfg(&["ldap://127.0.0.1:1"])).is_ok());
        assert!(LdapProvider::new("p".into(), cfg(&[])).is_err());
        let mut c = cfg(&["ldaps://127.0.0.1:1"]);
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = LdapProvider::new("p".into(), c).unwrap_err();
        assert!(matches!(e, LdapError::CaFile { .. }), "{e}");
    }

    #[tokio::test]
    async fn empty_password_and_bad_usernames_make_no_traffic() {
        // Port 1 on loopback: any connection attempt would show up as a connect step.
        let p = LdapProvider::new("corp".into(), cfg(&["ldap://127.0.0.1:1"])).unwrap();
        for pw in ["", "   ", "\t\n"] {
            let mut trace = Trace::new(true);
            let creds = PasswordCredentials {
                username: "alice".into(),
                password: Secret::new(pw),
            };
            assert_eq!(
                p.authenticate(&creds, &mut trace).await,
                Outcome::EmptyPassword
            );
            assert_eq!(trace.steps().len(), 1);
            assert_eq!(trace.steps()[0].step, "password_check");
            assert_eq!(trace.steps()[0].component, "provider:corp");
        }
        for user in ["", "a\0b", "a\u{1b}[0m", &"x".repeat(10_000)] {
            let mut trace = Trace::new(true);
            let creds = PasswordCredentials {
                username: user.to_string(),
                password: Secret::new("pw"),
            };
            assert_eq!(
                p.authenticate(&creds, &mut trace).await,
                Outcome::UnknownUser
            );
            assert_eq!(trace.steps().len(), 1, "{:?}", trace.steps());
            assert_eq!(trace.steps()[0].step, "username_check");
        }
        assert!(p.host_status().iter().all(|h| h.retry_in_ms.is_none()));
    }

    #[tokio::test]
    async fn refused_is_unavailable_with_host_and_backoff() {
        // A port bound but never listening: refuses connections, and no parallel test can
        // take it while the test runs.
        let refusing = tokio::net::TcpSocket::new_v4().unwrap();
        refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = refusing.local_addr().unwrap().port();
        let url = format!("ldap://127.0.0.1:{port}");
        let p = LdapProvider::new("corp".into(), cfg(&[&url])).unwrap();
        let mut trace = Trace::new(true);
        let creds = PasswordCredentials {
            username: "alice".into(),
            password: Secret::new("alice-secret"),
        };
        let out = p.authenticate(&creds, &mut trace).await;
        match out {
            Outcome::Unavailable { cause, host } => {
                assert!(cause.contains("connection refused"), "{cause}");
                assert_eq!(host.as_deref(), Some(url.as_str()));
            }
            other => panic!("{other:?}"),
        }
        assert!(p.host_status()[0].retry_in_ms.is_some());
        // The trace never contains a password.
        let dump = serde_json::to_string(trace.steps()).unwrap();
        assert!(
            !dump.contains("alice-secret") && !dump.contains("\"svc\""),
            "{dump}"
        );
        // Second attempt: the only host is in back-off, so it is probed anyway.
        let mut trace = Trace::new(true);
        assert!(matches!(
            p.authenticate(&creds, &mut trace).await,
            Outcome::Unavailable { .. }
        ));
        assert!(trace.steps().iter().any(|s| s.outcome == "probe_all"));
    }
}
