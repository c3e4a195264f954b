//! Per-host checks for `tessera doctor`: TCP, TLS, service bind, test search.

use std::time::Instant;

use ldap3::{Scope, SearchResult};
use serde::Serialize;

use crate::classify::result_name;
use crate::filter;
use crate::pool::TlsMode;
use crate::provider::LdapProvider;

/// The checks of one configured host.
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub url: String,
    /// Every step passed.
    pub ok: bool,
    pub steps: Vec<CheckStep>,
}

/// One check. Steps after a failed one are not run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStep {
    /// "tcp", "tls" (StartTLS or LDAPS handshake), "connect" (plain LDAP), "service_bind",
    /// "search".
    pub step: String,
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What was checked or found (never a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub elapsed_ms: u64,
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl CheckStep {
    fn ok(step: &str, detail: String, t: Instant) -> Self {
        Self {
            step: step.into(),
            ok: true,
            cause: None,
            detail: Some(detail),
            elapsed_ms: ms(t),
        }
    }
    fn failed(step: &str, cause: String, detail: Option<String>, t: Instant) -> Self {
        Self {
            step: step.into(),
            ok: false,
            cause: Some(cause),
            detail,
            elapsed_ms: ms(t),
        }
    }
}

impl LdapProvider {
    /// Check every configured host independently of the pools and of host health: TCP
    /// connect, TLS (when configured), service bind, and a test search — for `lookup_user`
    /// (the user search, without binding as the user) or else a base-scope read of
    /// `user_base_dn`.
    pub async fn diagnose(&self, lookup_user: Option<&str>) -> Vec<HostCheck> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let mut out = Vec::with_capacity(inner.hosts.len());
        for host in &inner.hosts {
            let mut steps = Vec::new();
            let mut push = |s: CheckStep| {
                let ok = s.ok;
                steps.push(s);
                ok
            };
            let run = async {
                let t = Instant::now();
                let tcp = tokio::time::timeout(
                    cfg.connect_timeout,
                    tokio::net::TcpStream::connect(host.addr.as_str()),
                )
                .await;
                let ok = match tcp {
                    Ok(Ok(_)) => push(CheckStep::ok(
                        "tcp",
                        format!("connected to {}", host.addr),
                        t,
                    )),
                    Ok(Err(e)) => push(CheckStep::failed(
                        "tcp",
                        crate::classify::describe_io(&e).1,
                        Some(host.addr.clone()),
                        t,
                    )),
                    Err(_) => push(CheckStep::failed(
                        "tcp",
                        format!(
                            "connect timeout after {} ms",
                            cfg.connect_timeout.as_millis()
                        ),
                        Some(host.addr.clone()),
                        t,
                    )),
                };
                if !ok {
                    return;
                }
                let step = if host.tls == TlsMode::Plain {
                    "connect"
                } else {
                    "tls"
                };
                let t = Instant::now();
                let mut ldap = match inner.connect(host).await {
                    Ok(l) => {
                        push(CheckStep::ok(
                            step,
                            format!("mode {}", host.tls.as_str()),
                            t,
                        ));
                        l
                    }
                    Err((_, msg)) => {
                        push(CheckStep::failed(
                            step,
                            msg,
                            Some(format!("mode {}", host.tls.as_str())),
                            t,
                        ));
                        return;
                    }
                };
                let t = Instant::now();
                match inner
                    .op(ldap.simple_bind(&cfg.bind_dn, cfg.bind_password.expose()))
                    .await
                {
                    Ok(r) if r.rc == 0 => {
                        push(CheckStep::ok(
                            "service_bind",
                            format!("bound as {}", cfg.bind_dn),
                            t,
                        ));
                    }
                    Ok(r) => {
                        push(CheckStep::failed(
                            "service_bind",
                            format!(
                                "{} ({}) {}",
                                result_name(r.rc),
                                r.rc,
                                r.text.trim_end_matches('\0')
                            ),
                            Some(cfg.bind_dn.clone()),
                            t,
                        ));
                        return;
                    }
                    Err((_, msg)) => {
                        push(CheckStep::failed(
                            "service_bind",
                            msg,
                            Some(cfg.bind_dn.clone()),
                            t,
                        ));
                        return;
                    }
                }
                let (base, scope, filter, what) = match lookup_user {
                    Some(u) => (
                        cfg.user_base_dn.clone(),
                        cfg.user_scope.ldap(),
                        filter::user_filter(&cfg.user_filter, u),
                        "user search",
                    ),
                    None => (
                        cfg.user_base_dn.clone(),
                        Scope::Base,
                        "(objectClass=*)".to_string(),
                        "read of user_base_dn",
                    ),
                };
                let t = Instant::now();
                let res = inner
                    .op(ldap.search(&base, scope, &filter, vec!["1.1"]))
                    .await;
                match res {
                    Ok(SearchResult(entries, r)) if r.rc == 0 => {
                        let dns: Vec<String> = entries
                            .into_iter()
                            .map(|e| match crate::entry::search_entry(e) {
                                Ok(e) => e.dn,
                                Err(why) => format!("(undecodable entry: {why})"),
                            })
                            .collect();
                        let detail = format!(
                            "{what} base {base:?} filter {filter}: {} entr{}{}{}",
                            dns.len(),
                            if dns.len() == 1 { "y" } else { "ies" },
                            if dns.is_empty() { "" } else { ": " },
                            dns.join(" | ")
                        );
                        let ok = lookup_user.is_none() || dns.len() == 1;
                        if ok {
                            push(CheckStep::ok("search", detail, t));
                        } else {
                            let cause = if dns.is_empty() {
                                "user not found".to_string()
                            } else {
                                format!("matched {} entries: directory/config error", dns.len())
                            };
                            push(CheckStep::failed("search", cause, Some(detail), t));
                        }
                    }
                    Ok(SearchResult(_, r)) => {
                        push(CheckStep::failed(
                            "search",
                            format!(
                                "{} ({}) {}",
                                result_name(r.rc),
                                r.rc,
                                r.text.trim_end_matches('\0')
                            ),
                            Some(format!("{what} base {base:?} filter {filter}")),
                            t,
                        ));
                    }
                    Err((_, msg)) => {
                        push(CheckStep::failed(
                            "search",
                            msg,
                            Some(format!("{what} base {base:?} filter {filter}")),
                            t,
                        ));
                    }
                }
                let _ = inner.op(ldap.unbind()).await;
            };
            run.await;
            out.push(HostCheck {
                url: host.url.clone(),
                ok: !steps.is_empty() && steps.iter().all(|s| s.ok),
                steps,
            });
        }
        out
    }
}
