//! `tessera doctor`: the live configuration checked end to end, as a checklist (✓/✗, time
//! taken, and for every ✗ a stable code, the cause and the remedy; `--json`; exit 1 on any ✗).
//!
//! `tessera probe ISSUER_URL`: run on a relying party's host (the "Jira node" scenario): with
//! the proxy settings that host uses (given, Java `-D…` properties pasted verbatim, or the
//! environment), check that discovery, the JWKS and the token endpoint are reachable, and say
//! exactly which step blocks them; optionally make a real token request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tessera_core::clock::{Clock, SystemClock, UnixTime};
use tessera_core::diagnostics::catalog;
use tessera_core::keys::KeyManager;
use tessera_egress::probe::{self, ClientCredentials, ProbeOptions, ProbeReport};
use tessera_egress::proxy::{NoProxy, ProxyConfig, ProxySettings};

use crate::commands::{CliError, print_json};
use crate::config::{Config, MasterKeySource, ProviderSettings};

/// Largest clock difference to a reference clock that passes.
pub const CLOCK_TOLERANCE_SECS: i64 = 30;
/// Rotation counts as overdue this long after it was due (a node may be down for a while).
pub const ROTATION_GRACE_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Forward proxy, `http://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Hosts reached directly (curl NO_PROXY syntax; Java `a|*.b` also accepted).
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// Java system properties, pasted verbatim: `-Dhttps.proxyHost=… -Dhttps.proxyPort=…
    /// -Dhttp.nonProxyHosts=…` (repeatable).
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub java_props: Vec<String>,
    /// A whole JAVA_OPTS / setenv line with `-D…` proxy properties.
    #[arg(long, value_name = "TEXT")]
    pub java_opts: Option<String>,
    /// Read HTTPS_PROXY / http_proxy / ALL_PROXY / NO_PROXY from the environment.
    #[arg(long)]
    pub proxy_from_env: bool,
    /// Extra CA certificates (PEM) to trust.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Limit for each wait (connect, CONNECT answer, TLS, response), milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

impl ProxyArgs {
    /// Whether any outbound setting was given on the command line (else `tessera doctor` uses
    /// the server's own `[egress]` configuration).
    pub fn explicit(&self) -> bool {
        self.proxy.is_some()
            || self.no_proxy.is_some()
            || !self.java_props.is_empty()
            || self.java_opts.is_some()
            || self.proxy_from_env
            || self.ca_file.is_some()
    }

    /// The proxy settings these arguments describe; `default_env`: read the environment when
    /// nothing explicit was given.
    pub fn options(&self, default_env: bool) -> Result<ProbeOptions, CliError> {
        let env = |k: &str| std::env::var(k).ok();
        let mut java = self.java_opts.clone().unwrap_or_default();
        for p in &self.java_props {
            java.push_str(&format!(" -D{p}"));
        }
        // Java properties describe the whole proxy setting; combined with --proxy or
        // --proxy-from-env one of them used to be dropped without a word.
        if !java.trim().is_empty() && (self.proxy.is_some() || self.proxy_from_env) {
            return Err(CliError::user(
                "give the proxy either as Java properties (-D…, --java-opts) or with --proxy / --proxy-from-env, not both",
            ));
        }
        let mut proxy = if !java.trim().is_empty() {
            ProxySettings::from_java_properties(&java).map_err(CliError::user)?
        } else {
            let from_env = self.proxy_from_env || (default_env && self.proxy.is_none());
            ProxySettings::from_config(
                &ProxyConfig {
                    url: self.proxy.clone(),
                    no_proxy: None,
                    from_env,
                },
                &env,
            )
            .map_err(CliError::user)?
        };
        if let Some(list) = &self.no_proxy {
            proxy.no_proxy = NoProxy::parse(list);
        }
        for w in proxy.warnings() {
            eprintln!("warning: {w}");
        }
        Ok(ProbeOptions {
            proxy,
            extra_ca_file: self.ca_file.clone(),
            connect_timeout: Duration::from_millis(self.timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            ..ProbeOptions::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also look this user up in every LDAP provider (a search, never a bind).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Print JSON instead of the checklist.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The issuer the relying party uses (its `.well-known/openid-configuration` is read).
    pub issuer: String,
    /// Also make a real token request (client_credentials) with this client.
    #[arg(long, requires = "client_secret")]
    pub client_id: Option<String>,
    /// The client's secret (or TESSERA_PROBE_CLIENT_SECRET).
    #[arg(long, env = "TESSERA_PROBE_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Do not read proxy settings from the environment when none are given.
    #[arg(long)]
    pub no_env: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// One checklist item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub elapsed_ms: u64,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// For outbound checks that failed: every transport step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<probe::ProbeStep>,
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Check {
    fn pass(name: impl Into<String>, t: Instant, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            elapsed_ms: ms(t),
            detail: detail.into(),
            code: None,
            cause: None,
            remedy: None,
            steps: Vec::new(),
        }
    }
    /// A failure with a catalog code; the remedy defaults to the catalog's.
    fn fail(
        name: impl Into<String>,
        t: Instant,
        code: &str,
        cause: impl Into<String>,
        remedy: Option<String>,
    ) -> Self {
        let remedy = remedy.or_else(|| catalog::lookup(code).map(|e| e.remedy.to_owned()));
        Self {
            name: name.into(),
            ok: false,
            elapsed_ms: ms(t),
            detail: String::new(),
            code: Some(code.to_owned()),
            cause: Some(cause.into()),
            remedy,
            steps: Vec::new(),
        }
    }
    fn from_probe(name: String, report: &ProbeReport) -> Self {
        let via = report
            .proxy
            .as_ref()
            .map(|p| format!(" via proxy {p}"))
            .unwrap_or_default();
        match &report.failure {
            None => Self {
                name,
                ok: true,
                elapsed_ms: report.elapsed_ms,
                detail: format!(
                    "{}{via}: {}",
                    report.url,
                    report
                        .steps
                        .iter()
                        .map(|s| s.step)
                        .collect::<Vec<_>>()
                        .join(" → ")
                ),
                code: None,
                cause: None,
                remedy: None,
                steps: Vec::new(),
            },
            Some(f) => Self {
                name,
                ok: false,
                elapsed_ms: report.elapsed_ms,
                detail: format!("{}{via}: failed at {}", report.url, f.step),
                code: Some(f.code.to_owned()),
                cause: Some(f.cause.clone()),
                remedy: Some(f.remedy.clone()),
                steps: report.steps.clone(),
            },
        }
    }
}

/// The outbound settings of the server itself: `[egress]` and `[egress.proxy]` (the
/// environment only with `from_env = true`), so the doctor takes the server's route.
pub fn egress_options(config: &Config) -> Result<ProbeOptions, CliError> {
    let egress = &config.raw().egress;
    let proxy = ProxySettings::from_config(&egress.proxy, &|k| std::env::var(k).ok())
        .map_err(|e| CliError::user(format!("egress.proxy: {e}")))?;
    Ok(ProbeOptions::from_egress(egress, proxy))
}

/// One checklist item per check of [`probe::probe_issuer`], named `{prefix} {check} {url}`.
/// Failed items carry the transport steps (DNS → TCP → proxy CONNECT → TLS → HTTP).
pub fn issuer_items(prefix: &str, results: &[probe::IssuerCheck]) -> Vec<Check> {
    results
        .iter()
        .map(|r| {
            let name = if prefix.is_empty() {
                format!("{} {}", r.check, r.url)
            } else {
                format!("{prefix} {} {}", r.check, r.url)
            };
            let steps = r
                .steps
                .iter()
                .map(|s| s.step)
                .collect::<Vec<_>>()
                .join(" → ");
            match &r.failure {
                None => Check {
                    name,
                    ok: true,
                    elapsed_ms: r.elapsed_ms,
                    detail: if steps.is_empty() {
                        r.detail.clone()
                    } else {
                        format!("{} ({steps})", r.detail)
                    },
                    code: None,
                    cause: None,
                    remedy: None,
                    steps: Vec::new(),
                },
                Some(f) => Check {
                    name,
                    ok: false,
                    elapsed_ms: r.elapsed_ms,
                    detail: format!("failed at {}", f.step),
                    code: Some(f.code.to_owned()),
                    cause: Some(f.cause.clone()),
                    remedy: Some(f.remedy.clone()),
                    steps: r.steps.clone(),
                },
            }
        })
        .collect()
}

/// The checklist as text.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{} {} ({} ms){}\n",
            if c.ok { "✓" } else { "✗" },
            c.name,
            c.elapsed_ms,
            if c.detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", c.detail)
            }
        ));
        if !c.steps.is_empty() {
            out.push_str(&probe::render_steps(&c.steps));
            out.push('\n');
        }
        if let Some(code) = &c.code {
            out.push_str(&format!("    code:   {code}\n"));
        }
        if let Some(cause) = &c.cause {
            out.push_str(&format!("    cause:  {cause}\n"));
        }
        if let Some(r) = &c.remedy {
            out.push_str(&format!("    remedy: {r}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    out.push_str(&format!(
        "{} passed, {failed} failed\n",
        checks.len() - failed
    ));
    out
}

fn finish(checks: &[Check], json: bool) -> Result<(), CliError> {
    if json {
        print_json(&checks)?;
    } else {
        print!("{}", render(checks));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        return Err(CliError::user(format!("{failed} check(s) failed")));
    }
    Ok(())
}

/// The code of a failed LDAP diagnose step.
pub fn ldap_code(step: &str, cause: &str) -> &'static str {
    let c = cause.to_ascii_lowercase();
    // A name that does not resolve is not "the directory is down": say DNS (it was
    // TSR-LDAP-001, whose remedy sends the operator to check that slapd runs).
    if c.contains("failed to lookup")
        || c.contains("name or service not known")
        || c.contains("no address associated")
        || c.contains("dns error")
    {
        return "TSR-NET-DNS";
    }
    if c.contains("timeout") || c.contains("timed out") {
        return if step == "tcp" {
            "TSR-LDAP-001"
        } else {
            "TSR-LDAP-002"
        };
    }
    match step {
        "tcp" | "connect" => "TSR-LDAP-001",
        "tls" => "TSR-LDAP-006",
        "service_bind" => "TSR-LDAP-003",
        "search" if c.contains("(32)") || c.contains("nosuchobject") => "TSR-LDAP-004",
        "search" if c.contains("matched") => "TSR-LDAP-005",
        "search" if c.contains("not found") => "TSR-AUTHN-UNKNOWN-USER",
        _ => "TSR-LDAP-001",
    }
}

/// LDAP checks of one provider: one item per host and step.
pub async fn ldap_checks(
    name: &str,
    provider: &tessera_ldap::LdapProvider,
    user: Option<&str>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for host in provider.diagnose(user).await {
        for s in &host.steps {
            let label = format!("ldap {name} {} {}", host.url, s.step);
            let t = Instant::now();
            let mut c = if s.ok {
                Check::pass(label, t, s.detail.clone().unwrap_or_default())
            } else {
                let cause = s.cause.clone().unwrap_or_default();
                let cause_full = match &s.detail {
                    Some(d) => format!("{cause} ({d})"),
                    None => cause.clone(),
                };
                let code = ldap_code(&s.step, &cause);
                let remedy = (code == "TSR-NET-DNS").then(|| {
                    format!(
                        "the host name of {} does not resolve on this machine: check the provider's `urls` for typos and this machine's resolver (`getent hosts HOST`)",
                        host.url
                    )
                });
                Check::fail(label, t, code, cause_full, remedy)
            };
            c.elapsed_ms = s.elapsed_ms;
            out.push(c);
        }
        if host.steps.is_empty() {
            out.push(Check::fail(
                format!("ldap {name} {}", host.url),
                Instant::now(),
                "TSR-LDAP-001",
                "no check could run",
                None,
            ));
        }
    }
    out
}

/// Store reachable and migrated (without migrating it).
async fn store_check(config: &Config) -> (Check, Option<Arc<dyn tessera_core::store::Store>>) {
    let t = Instant::now();
    let store = match tessera_store::open_store_without_migrating(&config.store.url).await {
        Ok(s) => s,
        Err(e) => {
            return (
                Check::fail(
                    "store reachable",
                    t,
                    "TSR-STORE-DOWN",
                    format!("{}: {e}", config.store.display),
                    None,
                ),
                None,
            );
        }
    };
    match store.schema_version().await {
        Ok((applied, expected)) if applied == expected => (
            Check::pass(
                "store reachable and migrated",
                t,
                format!("{} at schema version {applied}", config.store.display),
            ),
            Some(store),
        ),
        Ok((applied, expected)) => (
            Check::fail(
                "store migrated",
                t,
                "TSR-STORE-SCHEMA",
                format!(
                    "{} is at schema version {applied}, this build expects {expected}",
                    config.store.display
                ),
                Some(if applied < expected {
                    "run `tessera migrate` (a starting server also migrates)".into()
                } else {
                    "this build is older than the database: use the matching build".into()
                }),
            ),
            Some(store),
        ),
        Err(e) => (
            Check::fail(
                "store reachable",
                t,
                "TSR-STORE-DOWN",
                format!("{}: {e}", config.store.display),
                None,
            ),
            None,
        ),
    }
}

/// Signing keys valid (unsealable) and rotation on schedule.
async fn key_checks(
    config: &Config,
    store: &dyn tessera_core::store::Store,
    now: UnixTime,
) -> Vec<Check> {
    let t = Instant::now();
    // Never create a key file from the doctor.
    let source = match &config.master_key {
        MasterKeySource::File { path, .. } => MasterKeySource::File {
            path: path.clone(),
            generate: false,
        },
        other => other.clone(),
    };
    let master = match crate::app::load_master_key(&source) {
        Ok(m) => m,
        Err(e) => {
            return vec![Check::fail(
                "master key",
                t,
                "TSR-KEYS",
                e.to_string(),
                Some("provide the master key the database was created with (first `tessera serve` creates one)".into()),
            )];
        }
    };
    let settings = config.settings(&config.issuer_for(config.listen));
    let keys = KeyManager::new(
        master,
        settings.key_rotation_period,
        settings.jwks_max_age,
        settings.longest_token_ttl() + settings.jwks_max_age,
    );
    let mut out = Vec::new();
    match keys.reload(store, now).await {
        Ok(errors) if errors.is_empty() => {}
        Ok(errors) => out.push(Check::fail(
            "signing keys readable",
            t,
            "TSR-KEYS",
            format!(
                "{} key(s) cannot be unsealed: {}",
                errors.len(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Some(
                "the master key differs from the one that sealed them: use the original key".into(),
            ),
        )),
        Err(e) => {
            out.push(Check::fail(
                "signing keys readable",
                t,
                "TSR-KEYS",
                e.to_string(),
                None,
            ));
            return out;
        }
    }
    let status = keys.status(now);
    for alg in config.signing_algs() {
        let name = format!("signing key {alg}");
        let Some(k) = status
            .iter()
            .find(|k| k.state == "signing" && k.alg == alg.to_string())
        else {
            out.push(Check::fail(
                name,
                t,
                "TSR-KEYS",
                format!("no active signing key for {alg}"),
                Some("start the server once or run `tessera keys rotate`".into()),
            ));
            continue;
        };
        let due = k.activate_at + settings.key_rotation_period as i64;
        let next = status.iter().any(|n| n.alg == k.alg && n.state == "next");
        if now > due + ROTATION_GRACE_SECS && !next {
            out.push(Check::fail(
                name,
                t,
                "TSR-KEYS",
                format!(
                    "key {} has signed since {} and its rotation was due {}",
                    k.kid,
                    crate::commands::format_time(Some(k.activate_at)),
                    crate::commands::format_time(Some(due))
                ),
                Some("check that a server runs (it rotates on schedule) or run `tessera keys rotate`".into()),
            ));
        } else {
            out.push(Check::pass(
                name,
                t,
                format!(
                    "{} signing; rotation due {}{}",
                    k.kid,
                    crate::commands::format_time(Some(due)),
                    if next { " (next key published)" } else { "" }
                ),
            ));
        }
    }
    out
}

/// Parse an HTTP `Date` (IMF-fixdate, RFC 9110 §5.6.7).
fn http_date(v: &str) -> Option<UnixTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v.trim(), &fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}

/// Clock sanity: compared with the `Date` of remote answers when there are any.
fn clock_check(now: UnixTime, references: &[(String, UnixTime)]) -> Check {
    let t = Instant::now();
    let Some((host, theirs)) = references.first() else {
        return Check::pass(
            "clock",
            t,
            format!(
                "system time {} (no reference clock reachable: the store has no clock API and no remote host answered; check NTP with `timedatectl`)",
                crate::commands::format_time(Some(now))
            ),
        );
    };
    let diff = now - theirs;
    if diff.abs() > CLOCK_TOLERANCE_SECS {
        Check::fail(
            "clock",
            t,
            "TSR-CLOCK",
            format!("this host's clock is {diff:+} s off {host}'s (Date header)"),
            None,
        )
    } else {
        Check::pass(
            "clock",
            t,
            format!("within {diff:+} s of {host} (Date header)"),
        )
    }
}

/// `tessera doctor`.
pub async fn run(config: Arc<Config>, args: DoctorArgs) -> Result<(), CliError> {
    let now = SystemClock.now();
    let mut checks = Vec::new();
    let (c, store) = store_check(&config).await;
    checks.push(c);
    let mut jwks_urls: Vec<(String, String)> = Vec::new();
    if let Some(store) = &store {
        checks.extend(key_checks(&config, store.as_ref(), now).await);
        if let Ok(clients) = store.list_clients().await {
            for c in clients {
                if let Some(u) = c.jwks_uri {
                    jwks_urls.push((format!("client {} jwks_uri", c.client_id), u));
                }
            }
        }
    }
    let settings = config.settings(&config.issuer_for(config.listen));
    for ti in &settings.trusted_issuers {
        if let Some(u) = &ti.jwks_uri {
            jwks_urls.push((format!("trusted issuer {} jwks_uri", ti.issuer), u.clone()));
        }
    }
    for p in &config.providers {
        if let ProviderSettings::Ldap(cfg) = &p.settings {
            match tessera_ldap::LdapProvider::new(p.name.clone(), (**cfg).clone()) {
                Ok(provider) => {
                    checks.extend(ldap_checks(&p.name, &provider, args.user.as_deref()).await)
                }
                Err(e) => checks.push(Check::fail(
                    format!("ldap {}", p.name),
                    Instant::now(),
                    "TSR-LDAP-001",
                    e.to_string(),
                    Some("fix the provider's configuration (`tessera config check`)".into()),
                )),
            }
        }
    }
    // The server's own outbound route unless the command line gives another.
    let opts = if args.proxy.explicit() {
        args.proxy.options(false)?
    } else {
        egress_options(&config)?
    };
    let mut references = Vec::new();
    // Upstream IdPs: DNS → TCP → proxy CONNECT → TLS → discovery → issuer → JWKS → token
    // endpoint, through the configured egress proxy.
    for u in &config.upstreams {
        let results = probe::probe_issuer(&u.issuer, &opts, None).await;
        // The upstreams' `Date` headers are reference clocks too (before, only client JWKS
        // answers were, so a doctor with upstreams but no remote JWKS never checked the clock).
        if let Some((url, d)) = results
            .iter()
            .find_map(|r| Some((r.url.clone(), http_date(r.date.as_deref()?)?)))
        {
            let host = url::Url::parse(&url)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or(url);
            references.push((host, d));
        }
        let prefix = if u.enabled {
            format!("upstream {}", u.name)
        } else {
            format!("upstream {} (disabled)", u.name)
        };
        checks.extend(issuer_items(&prefix, &results));
    }
    for (name, url) in jwks_urls {
        let report = probe::probe_get(&url, &opts).await;
        if let Some(d) = report
            .response
            .as_ref()
            .and_then(|r| r.header("date"))
            .and_then(http_date)
        {
            references.push((report.target.clone(), d));
        }
        checks.push(Check::from_probe(name, &report));
    }
    checks.push(clock_check(SystemClock.now(), &references));
    finish(&checks, args.json)
}

/// `tessera probe ISSUER_URL`.
pub async fn run_probe(args: ProbeArgs) -> Result<(), CliError> {
    let opts = args.proxy.options(!args.no_env)?;
    if !args.json {
        let p = &opts.proxy;
        let describe = |e: &Option<tessera_egress::proxy::ProxyEndpoint>| {
            e.as_ref()
                .map_or_else(|| "direct".to_owned(), ToString::to_string)
        };
        println!(
            "# proxy settings ({}): https {}, http {}, no-proxy {}",
            p.source,
            describe(&p.https),
            describe(&p.http),
            if p.no_proxy.entries.is_empty() {
                "(none)".to_owned()
            } else {
                p.no_proxy.to_curl()
            }
        );
    }
    let creds = match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) => Some(ClientCredentials {
            client_id: id.clone(),
            client_secret: secret.clone(),
        }),
        _ => None,
    };
    let results = probe::probe_issuer(&args.issuer, &opts, creds.as_ref()).await;
    let checks = issuer_items("", &results);
    finish(&checks, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_code_is_in_the_catalog() {
        for code in tessera_egress::probe::codes::ALL {
            assert!(
                catalog::lookup(code).is_some(),
                "{code} missing from the catalog"
            );
        }
        for (step, cause) in [
            ("tcp", "connection refused"),
            ("service_bind", "invalidCredentials (49)"),
            ("search", "noSuchObject (32) "),
            ("search", "matched 2 entries: directory/config error"),
            ("search", "user not found"),
            ("search", "operation timed out"),
        ] {
            assert!(catalog::lookup(ldap_code(step, cause)).is_some());
        }
        assert_eq!(ldap_code("search", "matched 2 entries"), "TSR-LDAP-005");
        // An unresolvable directory host is a DNS problem, not a directory that is down.
        assert_eq!(
            ldap_code(
                "tcp",
                "failed to lookup address information: Name or service not known"
            ),
            "TSR-NET-DNS"
        );
        assert_eq!(
            ldap_code("service_bind", "timed out after 1000 ms"),
            "TSR-LDAP-002"
        );
    }

    #[test]
    fn http_dates_and_clock() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        let c = clock_check(1000, &[("idp:443".into(), 900)]);
        assert_eq!(c.code.as_deref(), Some("TSR-CLOCK"));
        assert!(clock_check(1000, &[("idp:443".into(), 990)]).ok);
        assert!(clock_check(1000, &[]).ok);
    }

    #[test]
    fn checklist_rendering() {
        let t = Instant::now();
        let text = render(&[
            Check::pass(
                "store reachable and migrated",
                t,
                "sqlite at schema version 3",
            ),
            Check::fail(
                "ldap corp",
                t,
                "TSR-LDAP-003",
                "invalidCredentials (49)",
                None,
            ),
        ]);
        assert!(text.contains("✓ store reachable and migrated"), "{text}");
        assert!(text.contains("✗ ldap corp"), "{text}");
        assert!(text.contains("code:   TSR-LDAP-003"), "{text}");
        assert!(text.contains("remedy: Fix bind_dn"), "{text}");
        assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
    }

    // ----------------------------------------------------------- real slapd on loopback

    use std::path::Path;
    use std::process::Command;
    use tessera_core::authn::{AuthProvider, PasswordCredentials};
    use tessera_core::diagnostics::AttemptError;
    use tessera_core::secret::Secret;
    use tessera_core::trace::Trace;
    use tessera_ldap::{LdapConfig, LdapProvider};

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn artifact(name: &str, text: &str) {
        let dir = repo_root().join("tests/artifacts/diagnostics");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
        }
    }

    struct Slapd {
        dir: PathBuf,
        env: std::collections::HashMap<String, String>,
    }

    impl Drop for Slapd {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(self.dir.join("stop.sh"))
                .arg("--kill")
                .output();
        }
    }

    fn slapd() -> Option<Slapd> {
        let scripts = std::env::var_os("TESSERA_TEST_SCRIPTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("scripts"));
        let base = std::env::var_os("TESSERA_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("doctor-ldap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(scripts.join("start-ldap.sh"))
            .arg(&dir)
            .env("LDAP_PPOLICY_MAX_FAILURE", "2")
            .output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        if !ok {
            let require = std::env::var("TESSERA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(!require, "start-ldap.sh failed: {out:?}");
            eprintln!("SKIP: slapd could not be started");
            return None;
        }
        let text = std::fs::read_to_string(dir.join("env")).unwrap();
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Slapd { dir, env })
    }

    impl Slapd {
        fn var(&self, k: &str) -> String {
            self.env[k].clone()
        }
        fn config(&self) -> LdapConfig {
            let mut c = LdapConfig::new(
                vec![self.var("TESSERA_TEST_LDAP_URL")],
                self.var("TESSERA_TEST_LDAP_BIND_DN"),
                Secret::new(self.var("TESSERA_TEST_LDAP_BIND_PASSWORD")),
                self.var("TESSERA_TEST_LDAP_BASE"),
            );
            c.connect_timeout = Duration::from_millis(1000);
            c.operation_timeout = Duration::from_millis(1000);
            c
        }
        fn signal(&self, sig: &str) {
            let pid = std::fs::read_to_string(self.var("TESSERA_TEST_LDAP_PID_FILE")).unwrap();
            let st = Command::new("kill")
                .arg(sig)
                .arg(pid.trim())
                .status()
                .unwrap();
            assert!(st.success());
        }
    }

    async fn doctor(name: &str, cfg: LdapConfig, user: Option<&str>) -> Vec<Check> {
        let p = LdapProvider::new("corp".into(), cfg).unwrap();
        let checks = ldap_checks("corp", &p, user).await;
        let text = render(&checks);
        let port_free = text.replace('\r', "");
        artifact(&format!("doctor-ldap-{name}"), &port_free);
        checks
    }

    fn failed_code(checks: &[Check]) -> Option<String> {
        checks.iter().find(|c| !c.ok).and_then(|c| c.code.clone())
    }

    /// A login through the provider, its trace classified as the trace recorder does.
    async fn login(name: &str, cfg: LdapConfig, user: &str, password: &str) -> Option<String> {
        let p = LdapProvider::new("corp".into(), cfg).unwrap();
        let mut trace = Trace::new(true);
        let creds = PasswordCredentials {
            username: user.into(),
            password: Secret::new(password),
        };
        let outcome = p.authenticate(&creds, &mut trace).await;
        let steps = trace.into_steps();
        let dump = serde_json::to_string(&steps).unwrap();
        assert!(!dump.contains(password), "the trace holds the password");
        assert!(
            !dump.contains("svc-secret"),
            "the trace holds the service password"
        );
        let entry = catalog::classify(&steps, &AttemptError::default());
        let mut text = format!("login {user}: {}\n", outcome.label());
        if let Some(e) = entry {
            text.push_str(&format!(
                "code: {} — {}\nremedy: {}\n",
                e.code, e.title, e.remedy
            ));
        }
        for s in &steps {
            text.push_str(&format!(
                "  {:<14} {:<14} {:<16} {}\n",
                s.component,
                s.step,
                s.outcome,
                serde_json::Value::Object(s.detail.clone())
            ));
        }
        artifact(&format!("login-ldap-{name}"), &text);
        entry.map(|e| e.code.to_owned())
    }

    #[tokio::test]
    async fn ldap_failures_are_named_with_cause_and_remedy() {
        let Some(ldap) = slapd() else { return };
        let port = ldap.var("TESSERA_TEST_LDAP_URL");
        let port = port.rsplit(':').next().unwrap_or_default().to_owned();
        let good = doctor("ok", ldap.config(), Some("alice")).await;
        assert!(good.iter().all(|c| c.ok), "{}", render(&good));

        // LDAP down: nothing listens.
        let mut cfg = ldap.config();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = free.local_addr().unwrap().port();
        drop(free);
        cfg.urls = vec![format!("ldap://127.0.0.1:{closed}")];
        let c = doctor("down", cfg, None).await;
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-LDAP-001"),
            "{}",
            render(&c)
        );

        // Wrong service-account password.
        let mut cfg = ldap.config();
        cfg.bind_password = Secret::new("not-the-password");
        let c = doctor("service-password", cfg, None).await;
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-LDAP-003"),
            "{}",
            render(&c)
        );
        assert!(render(&c).contains("invalidCredentials"), "{}", render(&c));

        // Wrong base DN.
        let mut cfg = ldap.config();
        cfg.user_base_dn = "ou=nobody,dc=example,dc=com".into();
        let c = doctor("base-dn", cfg, Some("alice")).await;
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-LDAP-004"),
            "{}",
            render(&c)
        );

        // Unknown and ambiguous users.
        let c = doctor("unknown-user", ldap.config(), Some("nobody")).await;
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-AUTHN-UNKNOWN-USER"),
            "{}",
            render(&c)
        );
        let c = doctor("ambiguous-user", ldap.config(), Some("twin")).await;
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-LDAP-005"),
            "{}",
            render(&c)
        );

        // Logins: bad password, locked account (ppolicy after 2 failures), unknown, ambiguous.
        assert_eq!(
            login("bad-password", ldap.config(), "alice", "wrong-pw-1")
                .await
                .as_deref(),
            Some("TSR-AUTHN-BAD-PASSWORD")
        );
        assert_eq!(
            login("unknown-user", ldap.config(), "nobody", "whatever-1")
                .await
                .as_deref(),
            Some("TSR-AUTHN-UNKNOWN-USER")
        );
        assert_eq!(
            login("ambiguous-user", ldap.config(), "twin", "twin-secret")
                .await
                .as_deref(),
            Some("TSR-LDAP-005")
        );
        for _ in 0..2 {
            login("dave-failure", ldap.config(), "dave", "wrong-pw-2").await;
        }
        assert_eq!(
            login("locked", ldap.config(), "dave", "dave-secret")
                .await
                .as_deref(),
            Some("TSR-AUTHN-LOCKED")
        );

        // Paused: TCP still connects (kernel backlog), LDAP never answers.
        ldap.signal("-STOP");
        let c = doctor("paused", ldap.config(), None).await;
        let l = login("paused", ldap.config(), "alice", "alice-secret").await;
        ldap.signal("-CONT");
        assert_eq!(
            failed_code(&c).as_deref(),
            Some("TSR-LDAP-002"),
            "{}",
            render(&c)
        );
        assert_eq!(l.as_deref(), Some("TSR-LDAP-002"));

        // Down, through the login path.
        let _ = Command::new("bash").arg(ldap.dir.join("stop.sh")).output();
        assert_eq!(
            login("down", ldap.config(), "alice", "alice-secret")
                .await
                .as_deref(),
            Some("TSR-LDAP-001")
        );
        let _ = port;
    }
}
