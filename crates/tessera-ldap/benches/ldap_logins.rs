//! LDAP password logins per second through Tessera against raw `ldap3` simple binds per second,
//! on the same `slapd`, at the same concurrency, in the same run (issue 4, item 4a).
//!
//! Measured, for each concurrency C (C tasks, C connections per pool):
//! - `raw bind`: C tasks, each with its own `ldap3` connection, binding as the user in a loop;
//! - `raw search+bind`: the same work a search-then-bind login does, hand-written with `ldap3`
//!   (service connection: search the user; user connection: bind as the DN found);
//! - `provider`: `LdapProvider::authenticate` (search-then-bind through the pool, groups from
//!   `memberOf`, password-policy control, health tracking);
//! - `provider+groups`: the same with a group search (`groupOfNames`, one more operation);
//! - `chain`: the full chain (`Chain::authenticate`, one SUFFICIENT LDAP provider), as the
//!   login page runs it.
//!
//! The three provider lines are measured twice: with `cache_ttl = 0` (every login searches) and
//! with the default `cache_ttl` (60 s: after the warm-up, every login of the benchmark user is
//! a cache hit, i.e. one user bind).
//!
//! ```text
//! cargo bench -p tessera-ldap --bench ldap_logins
//! ```
//!
//! Uses the slapd of `TESSERA_TEST_LDAP_URL` when set (e.g. under `scripts/test`), otherwise
//! starts a private one with `scripts/start-ldap.sh` in a temporary directory and stops it at
//! the end. `LDAP_BENCH_SECS` sets the time per measurement (default 2), `LDAP_BENCH_ROUNDS` the
//! interleaved rounds whose median is reported (default 3), `LDAP_BENCH_CONC` the
//! concurrencies (default `4,16`). A plain binary (`harness = false`) printing logins/s.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, Scope, SearchEntry};
use tessera_core::authn::{
    AuthProvider, Chain, ChainEntry, ControlFlag, Decision, Outcome, PasswordCredentials,
};
use tessera_core::secret::Secret;
use tessera_core::trace::Trace;
use tessera_ldap::{LdapConfig, LdapProvider};

type BoxError = Box<dyn Error + Send + Sync>;

/// The directory under test: its variables, and the instance directory when we started it.
struct Directory {
    env: HashMap<String, String>,
    started: Option<PathBuf>,
}

impl Directory {
    fn open() -> Result<Directory, BoxError> {
        if let Ok(url) = std::env::var("TESSERA_TEST_LDAP_URL") {
            let mut env: HashMap<String, String> = std::env::vars()
                .filter(|(k, _)| k.starts_with("TESSERA_TEST_LDAP_"))
                .collect();
            env.insert("TESSERA_TEST_LDAP_URL".into(), url);
            return Ok(Directory { env, started: None });
        }
        let scripts = std::env::var_os("TESSERA_TEST_SCRIPTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts"));
        let dir = std::env::temp_dir().join(format!("tessera-ldap-bench-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(scripts.join("start-ldap.sh"))
            .arg(&dir)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "start-ldap.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let env = std::fs::read_to_string(dir.join("env"))?
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Directory {
            env,
            started: Some(dir),
        })
    }

    fn var(&self, k: &str) -> Result<String, BoxError> {
        self.env
            .get(k)
            .cloned()
            .ok_or_else(|| format!("{k} is not set").into())
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        if let Some(dir) = &self.started {
            let _ = Command::new("bash").arg(dir.join("stop.sh")).status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `concurrency` copies of `op` (each gets its task index) for `secs` seconds and returns
/// the completed operations per second. A failed operation aborts the measurement.
async fn rate<F, Fut>(concurrency: usize, secs: f64, op: F) -> Result<f64, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    // Warm-up: connections opened, pools filled.
    for i in 0..concurrency {
        op(i).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                op(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), BoxError>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret";

struct Setup {
    url: String,
    base: String,
    bind_dn: String,
    bind_password: String,
    user_dn: String,
}

async fn connect(url: &str) -> Result<ldap3::Ldap, BoxError> {
    let (conn, ldap) = LdapConnAsync::new(url).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// One `ldap3` connection per task, reused.
async fn raw_binds(s: &Arc<Setup>, c: usize, secs: f64) -> Result<f64, BoxError> {
    let mut conns = Vec::new();
    for _ in 0..c {
        conns.push(tokio::sync::Mutex::new(connect(&s.url).await?));
    }
    let conns = Arc::new(conns);
    let s = s.clone();
    rate(c, secs, move |i| {
        let (conns, s) = (conns.clone(), s.clone());
        async move {
            let mut ldap = conns[i].lock().await;
            ldap.simple_bind(&s.user_dn, PASSWORD).await?.success()?;
            Ok(())
        }
    })
    .await
}

/// Search-then-bind by hand: a service connection and a user connection per task.
async fn raw_search_bind(s: &Arc<Setup>, c: usize, secs: f64) -> Result<f64, BoxError> {
    let mut conns = Vec::new();
    for _ in 0..c {
        let mut service = connect(&s.url).await?;
        service
            .simple_bind(&s.bind_dn, &s.bind_password)
            .await?
            .success()?;
        let user = connect(&s.url).await?;
        conns.push(tokio::sync::Mutex::new((service, user)));
    }
    let conns = Arc::new(conns);
    let s = s.clone();
    rate(c, secs, move |i| {
        let (conns, s) = (conns.clone(), s.clone());
        async move {
            let mut guard = conns[i].lock().await;
            let (service, user) = &mut *guard;
            let filter = format!(
                "(&(uid={})(objectClass=inetOrgPerson))",
                ldap3::ldap_escape(USER)
            );
            let (entries, _) = service
                .search(
                    &s.base,
                    Scope::Subtree,
                    &filter,
                    vec!["uid", "cn", "givenName", "sn", "mail", "memberOf"],
                )
                .await?
                .success()?;
            let [entry] = entries.as_slice() else {
                return Err("expected exactly one entry".into());
            };
            let dn = SearchEntry::construct(entry.clone()).dn;
            user.simple_bind(&dn, PASSWORD).await?.success()?;
            Ok(())
        }
    })
    .await
}

fn creds() -> PasswordCredentials {
    PasswordCredentials {
        username: USER.into(),
        password: Secret::new(PASSWORD),
    }
}

async fn provider_logins(p: Arc<LdapProvider>, c: usize, secs: f64) -> Result<f64, BoxError> {
    rate(c, secs, move |_| {
        let p = p.clone();
        async move {
            match p.authenticate(&creds(), &mut Trace::new(false)).await {
                Outcome::Authenticated(_) => Ok(()),
                other => Err(format!("login failed: {other:?}").into()),
            }
        }
    })
    .await
}

async fn chain_logins(chain: Arc<Chain>, c: usize, secs: f64) -> Result<f64, BoxError> {
    rate(c, secs, move |_| {
        let chain = chain.clone();
        async move {
            match chain
                .authenticate(&creds(), &mut Trace::new(false))
                .await
                .decision
            {
                Decision::Authenticated(_) => Ok(()),
                other => Err(format!("login failed: {other:?}").into()),
            }
        }
    })
    .await
}

async fn run() -> Result<(), BoxError> {
    let secs: f64 = std::env::var("LDAP_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let concurrencies: Vec<usize> = std::env::var("LDAP_BENCH_CONC")
        .unwrap_or_else(|_| "4,16".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let rounds = std::env::var("LDAP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let dir = Directory::open()?;
    let base = dir.var("TESSERA_TEST_LDAP_BASE")?;
    let setup = Arc::new(Setup {
        url: dir.var("TESSERA_TEST_LDAP_URL")?,
        user_dn: format!("uid={USER},ou=people,{base}"),
        bind_dn: dir.var("TESSERA_TEST_LDAP_BIND_DN")?,
        bind_password: dir.var("TESSERA_TEST_LDAP_BIND_PASSWORD")?,
        base,
    });
    println!(
        "ldap_logins: slapd {}, {secs} s per measurement, median of {rounds} rounds, {} worker threads",
        setup.url,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>4}  {:>9}  {:>10}  {:>15}  {:>10}  {:>15}  {:>10}  {:>9}  {:>14}",
        "conc",
        "cache_ttl",
        "raw bind/s",
        "raw search+bind",
        "provider/s",
        "provider+groups",
        "chain/s",
        "chain/raw",
        "chain/raw s+b"
    );
    for c in concurrencies {
        let config = |groups: bool, cached: bool| {
            let mut cfg = LdapConfig::new(
                vec![setup.url.clone()],
                setup.bind_dn.clone(),
                Secret::new(setup.bind_password.clone()),
                setup.base.clone(),
            );
            cfg.pool_size = c;
            if groups {
                cfg.group_base_dn = Some(format!("ou=groups,{}", setup.base));
            } else {
                cfg.memberof_attr = Some("memberOf".into());
            }
            if !cached {
                cfg.cache_ttl = Duration::ZERO;
            }
            cfg
        };
        let mut providers = Vec::new();
        for cached in [false, true] {
            let provider = Arc::new(LdapProvider::new("bench".into(), config(false, cached))?);
            let grouped = Arc::new(LdapProvider::new("bench".into(), config(true, cached))?);
            let chain = Arc::new(Chain::new(vec![ChainEntry {
                flag: ControlFlag::Sufficient,
                provider: Arc::new(LdapProvider::new("bench".into(), config(false, cached))?)
                    as Arc<dyn AuthProvider>,
            }]));
            providers.push((cached, provider, grouped, chain));
        }
        // The machine is shared: interleave the measurements over several rounds and report
        // each one's median, so that a burst of background load does not favour one line.
        let mut raw: [Vec<f64>; 2] = Default::default();
        let mut m: [[Vec<f64>; 3]; 2] = Default::default();
        for _ in 0..rounds {
            raw[0].push(raw_binds(&setup, c, secs).await?);
            raw[1].push(raw_search_bind(&setup, c, secs).await?);
            for (i, (_, provider, grouped, chain)) in providers.iter().enumerate() {
                m[i][0].push(provider_logins(provider.clone(), c, secs).await?);
                m[i][1].push(provider_logins(grouped.clone(), c, secs).await?);
                m[i][2].push(chain_logins(chain.clone(), c, secs).await?);
            }
        }
        let [raw, raw_sb] = raw.map(|mut v| median(&mut v));
        for (i, (cached, ..)) in providers.iter().enumerate() {
            let [prov, prov_g, ch] = std::mem::take(&mut m[i]).map(|mut v| median(&mut v));
            let ttl = if *cached { "60 s" } else { "0" };
            println!(
                "{c:>4}  {ttl:>9}  {raw:>10.0}  {raw_sb:>15.0}  {prov:>10.0}  {prov_g:>15.0}  {ch:>10.0}  {:>8.0}%  {:>13.0}%",
                100.0 * ch / raw,
                100.0 * ch / raw_sb
            );
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
