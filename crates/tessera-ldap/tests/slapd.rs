//! Integration tests against real OpenLDAP `slapd` instances on loopback, each test with its
//! own instance (started by `scripts/start-ldap.sh` in a temporary directory) so that it can
//! stop, pause and restart it freely.
//!
//! When slapd cannot be started (script missing, slapd not installable), every test prints a
//! SKIP line and passes, unless `TESSERA_TEST_REQUIRE_SERVICES=1`. The scripts directory is
//! `TESSERA_TEST_SCRIPTS`, by default `<crate>/../../scripts`.

// Test harness helpers outside `#[test]` functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tessera_core::authn::{AccountState, AuthProvider, Outcome, PasswordCredentials, Principal};
use tessera_core::secret::Secret;
use tessera_core::trace::Trace;
use tessera_ldap::{LdapConfig, LdapProvider};

// ---------------------------------------------------------------- harness

struct Slapd {
    dir: PathBuf,
    env: HashMap<String, String>,
}

fn require_services() -> bool {
    std::env::var("TESSERA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn scripts_dir() -> PathBuf {
    std::env::var_os("TESSERA_TEST_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts"))
}

/// Where extra instances live: the run's `TESSERA_TEST_TMP` (scripts/README.md), else the
/// system temporary directory.
fn tmp_dir() -> PathBuf {
    std::env::var_os("TESSERA_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn skip(test: &str, why: &str) -> Option<Slapd> {
    if require_services() {
        panic!("{test}: slapd is required (TESSERA_TEST_REQUIRE_SERVICES=1) but {why}");
    }
    eprintln!("SKIP {test}: {why} (set TESSERA_TEST_REQUIRE_SERVICES=1 to make this fatal)");
    None
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Slapd {
    /// Start a private slapd; `None` (after a SKIP message) when that is impossible.
    fn start(test: &str, ldaps: bool, env: &[(&str, &str)]) -> Option<Slapd> {
        let script = scripts_dir().join("start-ldap.sh");
        if !script.is_file() {
            return skip(test, &format!("{} not found", script.display()));
        }
        let dir = tmp_dir().join(format!(
            "tessera-ldap-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            test
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&dir);
        if ldaps {
            cmd.arg("--ldaps");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => return skip(test, &format!("cannot run bash: {e}")),
        };
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return skip(
                test,
                &format!(
                    "start-ldap.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
        }
        let text = std::fs::read_to_string(dir.join("env")).expect("DIR/env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Slapd { dir, env })
    }

    fn var(&self, k: &str) -> String {
        self.env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing in DIR/env"))
    }
    fn url(&self) -> String {
        self.var("TESSERA_TEST_LDAP_URL")
    }
    fn ldaps_url(&self) -> String {
        self.var("TESSERA_TEST_LDAPS_URL")
    }
    fn ca(&self) -> PathBuf {
        PathBuf::from(self.var("TESSERA_TEST_LDAP_CA"))
    }
    fn pid(&self) -> String {
        std::fs::read_to_string(self.var("TESSERA_TEST_LDAP_PID_FILE"))
            .expect("pid file")
            .trim()
            .to_string()
    }
    fn config(&self, urls: Vec<String>) -> LdapConfig {
        let mut c = LdapConfig::new(
            urls,
            self.var("TESSERA_TEST_LDAP_BIND_DN"),
            Secret::new(self.var("TESSERA_TEST_LDAP_BIND_PASSWORD")),
            self.var("TESSERA_TEST_LDAP_BASE"),
        );
        c.group_base_dn = Some(format!("ou=groups,{}", self.var("TESSERA_TEST_LDAP_BASE")));
        c
    }
    fn provider(&self) -> LdapProvider {
        LdapProvider::new("corp".into(), self.config(vec![self.url()])).expect("provider")
    }
    fn run(&self, script: &str, args: &[&str]) {
        let st = Command::new("bash")
            .arg(self.dir.join(script))
            .args(args)
            .status()
            .expect("run script");
        assert!(st.success(), "{script} failed");
    }
    fn stop(&self) {
        self.run("stop.sh", &[]);
    }
    fn start_again(&self) {
        let out = Command::new("bash")
            .arg(self.dir.join("start-again.sh"))
            .output()
            .expect("start-again");
        assert!(
            out.status.success(),
            "start-again.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// Sends `sig` and, for STOP/CONT, waits (bounded) until the kernel reports the new state:
    /// `kill` returns once the signal is queued, and under load slapd has been seen to answer
    /// one more request after that.
    fn signal(&self, sig: &str) {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(&pid)
            .status()
            .expect("kill");
        assert!(st.success());
        wait_for_process_state(&pid, sig);
    }
    /// Restart this instance with `lines` appended to the database section of its generated
    /// `slapd.conf`, for server settings the start script does not offer (e.g. `limits`). The
    /// copy is named `slapd.conf.extra`, so `stop.sh` (which looks for `DIR/slapd.conf` in the
    /// command line) still stops it.
    fn restart_with_conf(&self, lines: &[&str]) {
        self.stop();
        let mut conf = std::fs::read_to_string(self.dir.join("slapd.conf")).expect("slapd.conf");
        for l in lines {
            conf.push_str(l);
            conf.push('\n');
        }
        let extra = self.dir.join("slapd.conf.extra");
        std::fs::write(&extra, conf).expect("write slapd.conf.extra");
        let url = self.url();
        // Daemonizes once listening; PATH as in scripts/lib/common.sh.
        let st = Command::new("bash")
            .arg("-c")
            .arg(r#"PATH="$PATH:/usr/sbin:/sbin" exec slapd -h "$1/" -f "$2""#)
            .arg("slapd")
            .arg(&url)
            .arg(&extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("slapd");
        assert!(st.success(), "slapd -f slapd.conf.extra failed");
        let addr = url.trim_start_matches("ldap://").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd did not come back on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Connections accepted so far (needs `LDAP_DEBUG=stats`).
    fn accepted(&self) -> usize {
        std::fs::read_to_string(self.dir.join("slapd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" ACCEPT "))
            .count()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.dir.join("stop.sh"))
            .arg("--kill")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

macro_rules! slapd {
    ($name:expr) => {
        slapd!($name, false, &[])
    };
    ($name:expr, $ldaps:expr, $env:expr) => {
        match Slapd::start($name, $ldaps, $env) {
            Some(s) => s,
            None => return,
        }
    };
}

fn creds(user: &str, pw: &str) -> PasswordCredentials {
    PasswordCredentials {
        username: user.into(),
        password: Secret::new(pw),
    }
}

async fn login(p: &LdapProvider, user: &str, pw: &str) -> (Outcome, Trace) {
    let mut trace = Trace::new(true);
    let out = p.authenticate(&creds(user, pw), &mut trace).await;
    let dump = serde_json::to_string(trace.steps()).expect("json");
    // Never a password in the trace: neither the user's nor the service account's.
    if pw.len() >= 6 {
        assert!(!dump.contains(pw), "password in trace: {dump}");
    }
    assert!(
        !dump.contains("svc-secret"),
        "bind_password in trace: {dump}"
    );
    (out, trace)
}

fn principal(out: Outcome, trace: &Trace) -> Principal {
    match out {
        Outcome::Authenticated(p) => p,
        other => panic!(
            "expected Authenticated, got {other:?}\ntrace: {:#?}",
            trace.steps()
        ),
    }
}

fn unavailable(out: &Outcome) -> (String, Option<String>) {
    match out {
        Outcome::Unavailable { cause, host } => (cause.clone(), host.clone()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Waits up to 2 s until every thread of `pid` is stopped (after STOP) or none is (after CONT).
fn wait_for_process_state(pid: &str, sig: &str) {
    let want_stopped = match sig {
        "STOP" => true,
        "CONT" => false,
        _ => return,
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                    // The state follows the parenthesised command name.
                    .filter_map(|stat| stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
                    .collect()
            })
            .unwrap_or_default();
        let stopped = !states.is_empty() && states.iter().all(|&c| c == 'T' || c == 't');
        let running = states.iter().all(|&c| c != 'T' && c != 't');
        if (want_stopped && stopped) || (!want_stopped && running) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slapd {pid} did not reach state after {sig}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn has_step(trace: &Trace, step: &str, outcome: &str) -> bool {
    trace
        .steps()
        .iter()
        .any(|s| s.step == step && s.outcome == outcome)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- flows

#[tokio::test]
async fn good_login_claims_and_groups() {
    let s = slapd!("good_login");
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let a = principal(out, &trace);
    assert_eq!(a.subject, "alice");
    assert_eq!(a.username, "alice");
    assert_eq!(a.provider, "corp");
    assert_eq!(a.name.as_deref(), Some("Alice Anderson"));
    assert_eq!(a.given_name.as_deref(), Some("Alice"));
    assert_eq!(a.family_name.as_deref(), Some("Anderson"));
    assert_eq!(a.email.as_deref(), Some("alice@example.com"));
    assert!(!a.email_verified);
    assert_eq!(a.groups, vec!["admins", "staff"]);
    assert_eq!(a.amr, vec!["pwd"]);
    assert_eq!(
        a.attributes.get("dn").and_then(|v| v.as_str()),
        Some("uid=alice,ou=people,dc=example,dc=com")
    );
    // Every step of the flow is traced, under the provider's component.
    for (step, outcome) in [
        ("host", "chosen"),
        ("connect", "ok"),
        ("service_bind", "ok"),
        ("search", "ok"),
        ("user_bind", "ok"),
        ("group_search", "ok"),
        ("groups", "ok"),
        ("result", "authenticated"),
    ] {
        assert!(
            has_step(&trace, step, outcome),
            "{step}/{outcome}: {:#?}",
            trace.steps()
        );
    }
    assert!(trace.steps().iter().all(|s| s.component == "provider:corp"));
    let search = trace
        .steps()
        .iter()
        .find(|s| s.step == "search")
        .expect("search");
    assert_eq!(
        search.detail["filter"],
        "(&(uid=alice)(objectClass=inetOrgPerson))"
    );
    assert_eq!(search.detail["entries"], 1);
    let bind = trace
        .steps()
        .iter()
        .find(|s| s.step == "user_bind")
        .expect("bind");
    assert_eq!(bind.detail["dn"], "uid=alice,ou=people,dc=example,dc=com");
    assert_eq!(bind.detail["code"], 0);

    // Second login: pooled connections are reused; bob is in staff only; carol in none.
    let (out, trace) = login(&p, "bob", "bob-secret").await;
    let b = principal(out, &trace);
    assert_eq!(b.groups, vec!["staff"]);
    assert!(
        has_step(&trace, "connection", "reused"),
        "{:#?}",
        trace.steps()
    );
    assert!(!has_step(&trace, "connect", "ok"));
    let (out, trace) = login(&p, "carol", "carol-secret").await;
    assert!(principal(out, &trace).groups.is_empty());
    assert_eq!(p.idle_connections(), (1, 1));

    // memberOf instead of a group search (the script loads the memberof overlay).
    let mut c = s.config(vec![s.url()]);
    c.group_base_dn = None;
    c.memberof_attr = Some("memberOf".into());
    let p2 = LdapProvider::new("corp-memberof".into(), c).expect("provider");
    let (out, trace) = login(&p2, "alice", "alice-secret").await;
    let a2 = principal(out, &trace);
    assert_eq!(a2.groups, vec!["admins", "staff"]);
    assert!(!has_step(&trace, "group_search", "ok"));

    // A connection idle longer than health_check_after is checked before reuse.
    let mut c = s.config(vec![s.url()]);
    c.health_check_after = Duration::ZERO;
    let p3 = LdapProvider::new("corp-hc".into(), c).expect("provider");
    let _ = login(&p3, "alice", "alice-secret").await;
    let (out, trace) = login(&p3, "alice", "alice-secret").await;
    principal(out, &trace);
    assert!(
        has_step(&trace, "connection", "health_check_ok"),
        "{:#?}",
        trace.steps()
    );

    // diagnose: every step passes; the user lookup finds exactly alice.
    let checks = p.diagnose(Some("alice")).await;
    assert_eq!(checks.len(), 1);
    assert!(checks[0].ok, "{checks:#?}");
    let steps: Vec<&str> = checks[0].steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, vec!["tcp", "connect", "service_bind", "search"]);
    let checks = p.diagnose(Some("nobody")).await;
    assert!(!checks[0].ok);
}

#[tokio::test]
async fn credential_failures() {
    let s = slapd!("credentials", false, &[("LDAP_DEBUG", "stats")]);
    let p = s.provider();

    let (out, trace) = login(&p, "alice", "wrong").await;
    assert_eq!(out, Outcome::BadCredentials, "{:#?}", trace.steps());
    let bind = trace
        .steps()
        .iter()
        .find(|s| s.step == "user_bind")
        .expect("bind");
    assert_eq!(bind.detail["code"], 49);
    assert_eq!(bind.detail["result"], "invalidCredentials");

    let (out, trace) = login(&p, "nobody", "whatever").await;
    assert_eq!(out, Outcome::UnknownUser);
    assert!(!trace.steps().iter().any(|s| s.step == "user_bind"));

    // Empty or blank password: no LDAP traffic at all (slapd's accepted connections unchanged,
    // a single trace step).
    let fresh = s.provider();
    let before = s.accepted();
    for pw in ["", " ", "\t \n"] {
        let (out, trace) = login(&fresh, "alice", pw).await;
        assert_eq!(out, Outcome::EmptyPassword);
        assert_eq!(trace.steps().len(), 1, "{:#?}", trace.steps());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.accepted(), before, "empty password must not touch slapd");
    assert!(before > 0, "the stats log counts connections");

    // Right password after wrong ones still works (OpenLDAP without a policy for alice).
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
}

#[tokio::test]
async fn injection_attempts_never_match() {
    let s = slapd!("injection", false, &[("LDAP_DEBUG", "stats")]);
    let p = s.provider();
    let long = "a".repeat(10 * 1024);
    let attempts = [
        "*",
        "a*",
        ")(uid=*",
        "alice)(|(uid=*",
        "*)(objectClass=*",
        "alice)(uid=*))(|(uid=*",
        "\\",
        "alice\\",
        "\\2a",
        "alice\0",
        long.as_str(),
    ];
    for user in attempts {
        for pw in ["alice-secret", "wrong-password"] {
            let (out, trace) = login(&p, user, pw).await;
            assert_eq!(out, Outcome::UnknownUser, "{user:?}: {:#?}", trace.steps());
            assert!(
                !trace.steps().iter().any(|s| s.step == "user_bind"),
                "{user:?} reached a bind"
            );
            if let Some(search) = trace.steps().iter().find(|s| s.step == "search") {
                assert_eq!(search.detail["entries"], 0);
                let f = search.detail["filter"].as_str().expect("filter");
                let value = f
                    .strip_prefix("(&(uid=")
                    .and_then(|v| v.strip_suffix(")(objectClass=inetOrgPerson))"))
                    .expect("template structure kept");
                assert!(!value.contains(['*', '(', ')', '\0']), "unescaped in {f}");
            }
        }
    }
    // NUL and over-long names never reach slapd.
    let fresh = s.provider();
    let before = s.accepted();
    for user in ["alice\0", long.as_str(), "alice\u{7}"] {
        let (out, trace) = login(&fresh, user, "alice-secret").await;
        assert_eq!(out, Outcome::UnknownUser);
        assert_eq!(trace.steps().len(), 1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.accepted(), before);
    let ok = login(&p, "alice", "alice-secret").await;
    principal(ok.0, &ok.1);
}

#[tokio::test]
async fn ambiguous_user_is_a_config_error() {
    let s = slapd!("twin");
    let p = s.provider();
    let (out, trace) = login(&p, "twin", "twin-secret").await;
    let (cause, host) = unavailable(&out);
    assert!(cause.contains("matched 2 entries"), "{cause}");
    assert!(cause.contains("directory/config error"), "{cause}");
    assert_eq!(host, Some(s.url()));
    assert!(!trace.steps().iter().any(|s| s.step == "user_bind"));
    assert!(!out.is_credential_failure());
}

/// "Exactly one entry or a configuration error" (spec B4) also when the *server* truncates the
/// answer: with a size limit of 1 for the service account, slapd returns one of the two twins
/// and sizeLimitExceeded (4). That is at least two matches (RFC 4511 §4.5.1.5, Appendix A.2),
/// never a login as whichever twin came first.
#[tokio::test]
async fn user_search_truncated_by_a_server_size_limit_is_a_config_error() {
    let s = slapd!("size_limit");
    let svc = s.var("TESSERA_TEST_LDAP_BIND_DN");
    s.restart_with_conf(&[&format!("limits dn.exact=\"{svc}\" size=1")]);
    let mut c = s.config(vec![s.url()]);
    c.cache_ttl = Duration::ZERO;
    let p = LdapProvider::new("corp".into(), c).expect("provider");
    let (out, trace) = login(&p, "twin", "twin-secret").await;
    let search = trace
        .steps()
        .iter()
        .find(|s| s.step == "search")
        .expect("search");
    assert_eq!(search.detail["code"], 4, "{:#?}", trace.steps());
    assert_eq!(search.detail["entries"], 1);
    let (cause, host) = unavailable(&out);
    assert!(
        cause.contains("sizeLimitExceeded") && cause.contains("directory/config error"),
        "{cause}"
    );
    assert_eq!(host, Some(s.url()));
    assert!(!trace.steps().iter().any(|s| s.step == "user_bind"));
    // alice is in two groups: her group search is truncated too. The login fails closed
    // (never with part of her groups), as a configuration error.
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let (cause, _) = unavailable(&out);
    assert!(cause.contains("group search"), "{cause}");
    let result = trace
        .steps()
        .iter()
        .find(|s| s.step == "result")
        .expect("result");
    assert_eq!(result.detail["config_error"], true, "{:#?}", trace.steps());
    // A name held by one user (in one group) is unaffected by the limit.
    let (out, trace) = login(&p, "bob", "bob-secret").await;
    assert_eq!(principal(out, &trace).groups, vec!["staff"]);
}

/// A user base DN that the server refers elsewhere (RFC 4511 §4.1.10, result 10): Tessera does
/// not chase referrals, so that is a configuration error naming the referral, never an
/// unknown user; a subordinate referral inside the base (a continuation reference) is not an
/// entry and does not make a user "found twice".
#[tokio::test]
async fn referral_base_is_a_config_error() {
    let ldif = tmp_dir().join(format!(
        "tessera-ldap-test-{}-referral.ldif",
        std::process::id()
    ));
    std::fs::write(
        &ldif,
        "dn: ou=elsewhere,ou=people,dc=example,dc=com\nobjectClass: referral\n\
         objectClass: extensibleObject\nou: elsewhere\n\
         ref: ldap://ldap.other.invalid/ou=elsewhere,dc=example,dc=com\n",
    )
    .expect("write ldif");
    let s = slapd!(
        "referral",
        false,
        &[("LDAP_EXTRA_LDIF", ldif.to_str().expect("utf-8 path"))]
    );
    let _ = std::fs::remove_file(&ldif);
    // The continuation reference under ou=people is not an entry: alice is found once.
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);

    let mut c = s.config(vec![s.url()]);
    c.user_base_dn = "ou=elsewhere,ou=people,dc=example,dc=com".into();
    let p = LdapProvider::new("corp".into(), c).expect("provider");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let (cause, _) = unavailable(&out);
    assert!(
        cause.contains("referral") && cause.contains("ldap://ldap.other.invalid/"),
        "{cause}"
    );
    let result = trace
        .steps()
        .iter()
        .find(|s| s.step == "result")
        .expect("result");
    assert_eq!(result.detail["config_error"], true, "{:#?}", trace.steps());
    // Not an outage: the host stays healthy.
    assert!(p.host_status()[0].retry_in_ms.is_none());
}

#[tokio::test]
async fn service_account_problems_are_unavailable() {
    let s = slapd!("service_account");
    let mut c = s.config(vec![s.url()]);
    c.bind_password = Secret::new("not-the-password");
    let p = LdapProvider::new("corp".into(), c).expect("provider");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let (cause, _) = unavailable(&out);
    assert!(
        cause.contains("service account bind") && cause.contains("invalidCredentials"),
        "{cause}"
    );
    assert!(has_step(&trace, "service_bind", "failed"));
    let dump = serde_json::to_string(trace.steps()).expect("json");
    assert!(!dump.contains("not-the-password"));
    // A configuration error does not put the host in back-off.
    assert!(p.host_status()[0].retry_in_ms.is_none());

    // Wrong base DN: noSuchObject, a configuration cause.
    let mut c = s.config(vec![s.url()]);
    c.user_base_dn = "ou=nowhere,dc=example,dc=com".into();
    let p = LdapProvider::new("corp".into(), c).expect("provider");
    let (out, _) = login(&p, "alice", "alice-secret").await;
    let (cause, _) = unavailable(&out);
    assert!(cause.contains("noSuchObject"), "{cause}");
}

// ---------------------------------------------------------------- outages

#[tokio::test]
async fn stopped_server_is_unavailable_fast() {
    let s = slapd!("stopped");
    let p = s.provider();
    let warm = login(&p, "alice", "alice-secret").await;
    principal(warm.0, &warm.1);
    s.stop();
    let t = Instant::now();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let took = t.elapsed();
    let (cause, host) = unavailable(&out);
    eprintln!("stopped slapd: Unavailable in {took:?}: {cause}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(cause.contains("connection refused"), "{cause}");
    assert_eq!(host, Some(s.url()));
    assert!(!out.is_credential_failure());
    assert!(
        has_step(&trace, "host", "marked_down"),
        "{:#?}",
        trace.steps()
    );
    // A cold provider too.
    let cold = s.provider();
    let t = Instant::now();
    let (out, _) = login(&cold, "alice", "alice-secret").await;
    unavailable(&out);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn paused_server_times_out_while_another_proceeds() {
    let a = slapd!("paused_a");
    let b = slapd!("paused_b");
    let mut ca = a.config(vec![a.url()]);
    ca.operation_timeout = Duration::from_secs(1);
    ca.connect_timeout = Duration::from_secs(1);
    // The warm-up login would be cached and the paused one would only bind: this test is
    // about the search on a pooled service connection.
    ca.cache_ttl = Duration::ZERO;
    let pa = LdapProvider::new("paused".into(), ca).expect("provider");
    let pb = b.provider();
    let warm = login(&pa, "alice", "alice-secret").await;
    principal(warm.0, &warm.1);

    a.signal("STOP");
    let ta = Instant::now();
    let paused = tokio::spawn(async move {
        let r = login(&pa, "alice", "alice-secret").await;
        (r, ta.elapsed(), pa)
    });
    // Meanwhile, logins against the healthy server are not held up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tb = Instant::now();
    for _ in 0..5 {
        let (out, trace) = login(&pb, "bob", "bob-secret").await;
        principal(out, &trace);
    }
    let healthy = tb.elapsed();
    let ((out, trace), took, pa) = paused.await.expect("join");
    a.signal("CONT");
    eprintln!(
        "paused slapd: Unavailable in {took:?}; 5 logins on the healthy slapd meanwhile took {healthy:?}"
    );
    let (cause, host) = unavailable(&out);
    assert!(cause.contains("no answer within 1000 ms"), "{cause}");
    assert_eq!(host, Some(a.url()));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "{took:?}"
    );
    assert!(healthy < Duration::from_millis(900), "{healthy:?}");
    assert!(has_step(&trace, "search", "failed"), "{:#?}", trace.steps());

    // Paused on a fresh connection (connect succeeds through the kernel backlog, the service
    // bind hangs): also bounded.
    let mut cold = a.config(vec![a.url()]);
    cold.operation_timeout = Duration::from_secs(1);
    cold.connect_timeout = Duration::from_secs(1);
    let cold = LdapProvider::new("cold".into(), cold).expect("provider");
    a.signal("STOP");
    let t = Instant::now();
    let (out, _) = login(&cold, "alice", "alice-secret").await;
    let took_cold = t.elapsed();
    a.signal("CONT");
    eprintln!("paused slapd, cold provider: Unavailable in {took_cold:?}");
    unavailable(&out);
    assert!(took_cold < Duration::from_millis(1800), "{took_cold:?}");

    // A health check that hangs costs one operation_timeout, not two (the hung host is not
    // probed again within the same request).
    let mut hc = a.config(vec![a.url()]);
    hc.operation_timeout = Duration::from_secs(1);
    hc.connect_timeout = Duration::from_secs(1);
    hc.health_check_after = Duration::ZERO;
    let hc = LdapProvider::new("hc".into(), hc).expect("provider");
    let warm = login(&hc, "alice", "alice-secret").await;
    principal(warm.0, &warm.1);
    a.signal("STOP");
    let t = Instant::now();
    let (out, trace) = login(&hc, "alice", "alice-secret").await;
    let took_hc = t.elapsed();
    a.signal("CONT");
    eprintln!("paused slapd, health check on reuse: Unavailable in {took_hc:?}");
    unavailable(&out);
    assert!(
        has_step(&trace, "connection", "health_check_failed"),
        "{:#?}",
        trace.steps()
    );
    assert!(took_hc < Duration::from_millis(1800), "{took_hc:?}");

    // Two logins on a one-connection pool while the only host hangs: the second waits for the
    // connection (bounded by operation_timeout) and then fails at once instead of probing the
    // hung host again, so both answer within about one operation_timeout.
    let mut one = a.config(vec![a.url()]);
    one.operation_timeout = Duration::from_secs(1);
    one.connect_timeout = Duration::from_secs(1);
    one.pool_size = 1;
    let one = std::sync::Arc::new(LdapProvider::new("one".into(), one).expect("provider"));
    a.signal("STOP");
    let t = Instant::now();
    let first = tokio::spawn({
        let one = one.clone();
        async move { login(&one, "alice", "alice-secret").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (out, trace) = login(&one, "bob", "bob-secret").await;
    let took_queued = t.elapsed();
    let (first_out, _) = first.await.expect("join");
    a.signal("CONT");
    eprintln!("paused slapd, one-connection pool: queued login answered in {took_queued:?}");
    unavailable(&first_out);
    let (cause, _) = unavailable(&out);
    assert!(
        cause.contains("no healthy LDAP host left"),
        "{cause} {:#?}",
        trace.steps()
    );
    assert!(took_queued < Duration::from_millis(1800), "{took_queued:?}");

    // Failover from a paused first host to a healthy second one, within one login.
    let mut fo = a.config(vec![a.url(), b.url()]);
    fo.operation_timeout = Duration::from_secs(1);
    fo.connect_timeout = Duration::from_secs(1);
    let fo = LdapProvider::new("fo".into(), fo).expect("provider");
    a.signal("STOP");
    let t = Instant::now();
    let (out, trace) = login(&fo, "alice", "alice-secret").await;
    let took_fo = t.elapsed();
    let a_login = principal(out, &trace);
    let t = Instant::now();
    let (out, trace2) = login(&fo, "bob", "bob-secret").await;
    let took_fo2 = t.elapsed();
    a.signal("CONT");
    eprintln!("paused first host: failover login in {took_fo:?}, next login {took_fo2:?}");
    assert_eq!(a_login.subject, "alice");
    // The paused host fails at the service bind (or, had the pause landed a moment later, at
    // the search) and is marked down; the same login then succeeds on the second host.
    assert!(
        has_step(&trace, "service_bind", "failed") || has_step(&trace, "search", "failed"),
        "{:#?}",
        trace.steps()
    );
    assert!(
        has_step(&trace, "host", "marked_down"),
        "{:#?}",
        trace.steps()
    );
    assert!(took_fo < Duration::from_millis(1800), "{took_fo:?}");
    principal(out, &trace2);
    assert!(has_step(&trace2, "host", "skipped") || has_step(&trace2, "connection", "reused"));
    assert!(took_fo2 < Duration::from_millis(500), "{took_fo2:?}");

    // Resumed: the provider recovers by itself (the host is probed when all are in back-off).
    let (out, trace) = login(&pa, "alice", "alice-secret").await;
    principal(out, &trace);
}

#[tokio::test]
async fn ppolicy_lockout_is_an_account_state() {
    let s = slapd!("ppolicy", false, &[("LDAP_PPOLICY_MAX_FAILURE", "3")]);
    let p = s.provider();
    let (out, _) = login(&p, "dave", "dave-secret").await;
    principal(out, &Trace::new(false));
    for _ in 0..3 {
        let (out, trace) = login(&p, "dave", "wrong-password").await;
        assert!(
            matches!(
                out,
                Outcome::BadCredentials | Outcome::AccountState(AccountState::LockedAtDirectory)
            ),
            "{out:?} {:#?}",
            trace.steps()
        );
    }
    // Under load slapd has been seen to answer the third failure before the lock it causes is
    // visible, and a right password bound in that moment succeeds and clears the failures.
    // So first wait (bounded) until a wrong password is answered with the lock itself.
    let mut locked_seen = false;
    for _ in 0..20 {
        let (out, _) = login(&p, "dave", "wrong-password").await;
        if out == Outcome::AccountState(AccountState::LockedAtDirectory) {
            locked_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(locked_seen, "ppolicy never reported accountLocked");
    // Locked by ppolicy: the right password is answered 49 too, but the response control says
    // accountLocked, so this is an account state (not counted as a bad password).
    let (out, trace) = login(&p, "dave", "dave-secret").await;
    assert_eq!(
        out,
        Outcome::AccountState(AccountState::LockedAtDirectory),
        "{:#?}",
        trace.steps()
    );
    let bind = trace
        .steps()
        .iter()
        .find(|s| s.step == "user_bind")
        .expect("bind");
    assert_eq!(bind.detail["code"], 49);
    assert_eq!(bind.detail["ppolicy"], "accountLocked");
    assert!(!out.is_credential_failure());
    // Without the control, OpenLDAP's plain 49 is all there is: BadCredentials.
    let mut c = s.config(vec![s.url()]);
    c.password_policy_control = false;
    let plain = LdapProvider::new("plain".into(), c).expect("provider");
    let (out, _) = login(&plain, "dave", "dave-secret").await;
    assert_eq!(out, Outcome::BadCredentials);
    // Other users are unaffected.
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
}

#[tokio::test]
async fn failover_to_second_url() {
    let s = slapd!("failover");
    let dead = format!("ldap://127.0.0.1:{}", free_port());
    let p = LdapProvider::new("corp".into(), s.config(vec![dead.clone(), s.url()])).expect("p");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    let connects: Vec<_> = trace
        .steps()
        .iter()
        .filter(|s| s.step == "connect")
        .map(|s| {
            (
                s.outcome.clone(),
                s.detail["host"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        connects[0],
        ("failed".to_string(), dead.clone()),
        "{connects:?}"
    );
    assert_eq!(connects[1], ("ok".to_string(), s.url()));
    let status = p.host_status();
    assert!(status[0].retry_in_ms.is_some() && status[1].retry_in_ms.is_none());
    assert!(
        status[0]
            .last_cause
            .as_deref()
            .unwrap_or("")
            .contains("refused")
    );

    // The dead host is now skipped while in back-off (a fresh provider state is not needed).
    let mut c = s.config(vec![dead.clone(), s.url()]);
    c.pool_size = 1;
    let p1 = LdapProvider::new("corp".into(), c).expect("p");
    let _ = login(&p1, "alice", "alice-secret").await;
    let (out, trace) = login(&p1, "bob", "bob-secret").await;
    principal(out, &trace);
    assert!(
        !trace
            .steps()
            .iter()
            .any(|s| s.step == "connect" && s.outcome == "failed")
    );

    // diagnose reports the dead host and the good one.
    let checks = p.diagnose(None).await;
    assert!(!checks[0].ok && checks[0].steps[0].step == "tcp");
    assert!(checks[1].ok, "{checks:#?}");
}

#[tokio::test]
async fn recovery_after_restart_without_new_provider() {
    let s = slapd!("recovery");
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    s.stop();
    let (out, _) = login(&p, "alice", "alice-secret").await;
    unavailable(&out);
    assert!(p.host_status()[0].retry_in_ms.is_some());
    s.start_again();
    // Well within the 5 s back-off: the only host is probed anyway.
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    assert!(
        has_step(&trace, "host", "recovered"),
        "{:#?}",
        trace.steps()
    );
    assert!(p.host_status()[0].retry_in_ms.is_none());
}

#[tokio::test]
async fn stale_pooled_connection_is_replaced() {
    let s = slapd!("stale");
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    assert_eq!(p.idle_connections(), (1, 1));
    s.stop();
    s.start_again();
    let (out, trace) = login(&p, "bob", "bob-secret").await;
    principal(out, &trace);
    assert!(
        has_step(&trace, "connection", "stale"),
        "expected a stale connection to be detected: {:#?}",
        trace.steps()
    );
    assert!(has_step(&trace, "connect", "ok"));
    // Same after a crash (SIGKILL) and restart.
    s.run("stop.sh", &["--kill"]);
    s.start_again();
    let (out, trace) = login(&p, "carol", "carol-secret").await;
    principal(out, &trace);
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn starttls_and_ldaps_with_the_test_ca() {
    let s = slapd!("tls", true, &[]);
    let mut c = s.config(vec![s.url()]);
    c.starttls = true;
    c.ca_file = Some(s.ca());
    let p = LdapProvider::new("starttls".into(), c).expect("provider");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    let connect = trace
        .steps()
        .iter()
        .find(|s| s.step == "connect")
        .expect("connect");
    assert_eq!(connect.detail["tls"], "starttls");
    let checks = p.diagnose(Some("alice")).await;
    assert!(checks[0].ok, "{checks:#?}");
    assert_eq!(checks[0].steps[1].step, "tls");

    let mut c = s.config(vec![s.ldaps_url()]);
    c.ca_file = Some(s.ca());
    let p = LdapProvider::new("ldaps".into(), c).expect("provider");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    let connect = trace
        .steps()
        .iter()
        .find(|s| s.step == "connect")
        .expect("connect");
    assert_eq!(connect.detail["tls"], "ldaps");
}

#[tokio::test]
async fn wrong_ca_is_unavailable_with_a_tls_cause() {
    let s = slapd!("wrong_ca", true, &[]);
    // Another CA: a fresh self-signed one.
    let other = s.dir.join("other-ca.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Some Other CA",
            "-keyout",
        ])
        .arg(s.dir.join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for (url, starttls) in [(s.ldaps_url(), false), (s.url(), true)] {
        let mut c = s.config(vec![url.clone()]);
        c.starttls = starttls;
        c.ca_file = Some(other.clone());
        let p = LdapProvider::new("tls".into(), c).expect("provider");
        let t = Instant::now();
        let (out, trace) = login(&p, "alice", "alice-secret").await;
        let (cause, host) = unavailable(&out);
        assert!(
            cause.contains("TLS") && cause.contains("UnknownIssuer"),
            "{cause}"
        );
        assert_eq!(host, Some(url));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(has_step(&trace, "connect", "failed"));
        let checks = p.diagnose(None).await;
        let tls = checks[0]
            .steps
            .iter()
            .find(|s| s.step == "tls")
            .expect("tls step");
        assert!(!tls.ok && tls.cause.as_deref().unwrap_or("").contains("UnknownIssuer"));
    }
}

// ---------------------------------------------------------------- login cache (cache_ttl)

fn count_steps(trace: &Trace, step: &str) -> usize {
    trace.steps().iter().filter(|s| s.step == step).count()
}

#[tokio::test]
async fn second_login_is_a_cache_hit_and_still_binds() {
    let s = slapd!("cache_hit");
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let first = principal(out, &trace);
    assert!(has_step(&trace, "cache", "miss"), "{:#?}", trace.steps());
    assert_eq!(p.cached_logins(), 1);
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let second = principal(out, &trace);
    assert_eq!(first, second);
    assert!(has_step(&trace, "cache", "hit"), "{:#?}", trace.steps());
    // One bind as the cached DN; no user search, no group search.
    assert!(has_step(&trace, "user_bind", "ok"));
    assert_eq!(count_steps(&trace, "search"), 0, "{:#?}", trace.steps());
    assert_eq!(count_steps(&trace, "group_search"), 0);
    let hit = trace
        .steps()
        .iter()
        .find(|s| s.step == "cache")
        .expect("cache step");
    assert_eq!(hit.detail["dn"], "uid=alice,ou=people,dc=example,dc=com");
    // The key is the exact login name: another user, or another spelling, is a miss.
    let (out, trace) = login(&p, "bob", "bob-secret").await;
    principal(out, &trace);
    assert!(has_step(&trace, "cache", "miss"));
    // An empty password is still refused before the cache and any traffic.
    let (out, trace) = login(&p, "alice", "").await;
    assert_eq!(out, Outcome::EmptyPassword);
    assert_eq!(trace.steps().len(), 1);
}

#[tokio::test]
async fn wrong_password_on_a_cached_user_is_bad_credentials_and_evicts() {
    let s = slapd!("cache_evict");
    let p = s.provider();
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    let (out, trace) = login(&p, "alice", "wrong-password").await;
    assert_eq!(out, Outcome::BadCredentials, "{:#?}", trace.steps());
    assert!(has_step(&trace, "cache", "hit"));
    assert!(has_step(&trace, "user_bind", "bad_credentials"));
    assert!(has_step(&trace, "cache", "evicted"), "{:#?}", trace.steps());
    assert_eq!(p.cached_logins(), 0);
    // The next attempt searches again (and is cached again once it succeeds).
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    principal(out, &trace);
    assert!(has_step(&trace, "cache", "miss"));
    assert!(has_step(&trace, "search", "ok"));
    assert_eq!(p.cached_logins(), 1);
    // A failed login is never cached.
    let (out, _) = login(&p, "bob", "wrong-password").await;
    assert_eq!(out, Outcome::BadCredentials);
    let (out, _) = login(&p, "nobody", "whatever-pw").await;
    assert_eq!(out, Outcome::UnknownUser);
    assert_eq!(p.cached_logins(), 1);
}

#[tokio::test]
async fn cache_ttl_zero_never_hits() {
    let s = slapd!("cache_off");
    let mut cfg = s.config(vec![s.url()]);
    cfg.cache_ttl = Duration::ZERO;
    let p = LdapProvider::new("corp".into(), cfg).expect("provider");
    for _ in 0..3 {
        let (out, trace) = login(&p, "alice", "alice-secret").await;
        principal(out, &trace);
        assert!(!has_step(&trace, "cache", "hit"), "{:#?}", trace.steps());
        assert!(has_step(&trace, "cache", "miss"));
        assert!(has_step(&trace, "search", "ok"));
        assert!(has_step(&trace, "group_search", "ok"));
    }
    assert_eq!(p.cached_logins(), 0);
}

/// Documented behaviour: within `cache_ttl` a group change is not seen; after it, it is.
#[tokio::test]
async fn group_change_is_seen_after_the_ttl() {
    let s = slapd!("cache_groups");
    let ttl = Duration::from_millis(1500);
    let mut cfg = s.config(vec![s.url()]);
    cfg.cache_ttl = ttl;
    let p = LdapProvider::new("corp".into(), cfg).expect("provider");
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    assert_eq!(principal(out, &trace).groups, vec!["admins", "staff"]);
    let stored = Instant::now();

    // Remove alice from cn=staff (bob stays: groupOfNames needs a member), as the admin.
    let (conn, mut admin) = ldap3::LdapConnAsync::new(&s.url()).await.expect("connect");
    ldap3::drive!(conn);
    admin
        .simple_bind(
            &s.var("TESSERA_TEST_LDAP_ADMIN_DN"),
            &s.var("TESSERA_TEST_LDAP_ADMIN_PASSWORD"),
        )
        .await
        .expect("bind")
        .success()
        .expect("admin bind");
    let base = s.var("TESSERA_TEST_LDAP_BASE");
    let alice = format!("uid=alice,ou=people,{base}");
    admin
        .modify(
            &format!("cn=staff,ou=groups,{base}"),
            vec![ldap3::Mod::Delete(
                "member",
                std::collections::HashSet::from([alice.as_str()]),
            )],
        )
        .await
        .expect("modify")
        .success()
        .expect("remove alice from staff");

    // Within the TTL: the cached (old) groups.
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    let groups = principal(out, &trace).groups;
    if stored.elapsed() < ttl {
        assert!(has_step(&trace, "cache", "hit"), "{:#?}", trace.steps());
        assert_eq!(groups, vec!["admins", "staff"]);
    }
    // After it: searched again, the new groups.
    tokio::time::sleep(ttl.saturating_sub(stored.elapsed()) + Duration::from_millis(100)).await;
    let (out, trace) = login(&p, "alice", "alice-secret").await;
    assert_eq!(principal(out, &trace).groups, vec!["admins"]);
    let miss = trace
        .steps()
        .iter()
        .find(|s| s.step == "cache")
        .expect("cache step");
    assert_eq!(miss.outcome, "miss");
    assert_eq!(miss.detail["reason"], "expired");
}
