//! Token-endpoint throughput while the LDAP directory hangs (issue 4, item 4b): no
//! head-of-line blocking. The whole server runs in process (the composition root of `tessera
//! serve`, SQLite, an LDAP provider in the chain); `wrk` loads `POST /token`
//! (`client_credentials`, `client_secret_basic`) three times:
//!
//! 1. normal;
//! 2. with `slapd` paused (SIGSTOP) and `LOGINS` browsers signing in through the login page
//!    in a loop, each login stuck until the provider's `operation_timeout`;
//! 3. normal again (resumed).
//!
//! The figure is phase 2 over the mean of phases 1 and 3 (target ≥ 90 %).
//!
//! ```text
//! cargo bench -p tessera --bench token_paused_ldap
//! ```
//!
//! Needs `wrk` and `slapd` (`scripts/install-test-deps.sh`); starts its own slapd with
//! `scripts/start-ldap.sh`. Environment: `BENCH_SECS` (default 5) per phase, `BENCH_CONNS`
//! (wrk connections, default 32), `BENCH_LOGINS` (stuck logins, default 8).

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera::app::{App, start};
use tessera::config::{Config, ConfigFile, Env, Overrides};
use tessera_core::clock::{SharedClock, SystemClock};
use tessera_core::model::ClientOrigin;
use tessera_core::registration::{client_from_metadata, set_new_secret};

type BoxError = Box<dyn Error + Send + Sync>;

const MASTER_KEY: &str = "be4c000000000000000000000000000000000000000000000000000000000be4";
const RP: &str = "https://rp.example/cb";

struct Slapd {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Slapd {
    fn start(dir: PathBuf) -> Result<Slapd, BoxError> {
        let scripts = std::env::var_os("TESSERA_TEST_SCRIPTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts"));
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
        Ok(Slapd { dir, env })
    }
    fn var(&self, k: &str) -> Result<String, BoxError> {
        self.env
            .get(k)
            .cloned()
            .ok_or_else(|| format!("{k} missing").into())
    }
    fn signal(&self, sig: &str) -> Result<(), BoxError> {
        let pid = std::fs::read_to_string(self.var("TESSERA_TEST_LDAP_PID_FILE")?)?;
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.trim())
            .status()?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("kill -{sig} failed").into())
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(self.dir.join("stop.sh")).status();
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn env_num(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs wrk against `/token`; returns (requests/s, non-2xx responses).
async fn wrk(
    url: String,
    auth: String,
    conns: u64,
    secs: u64,
    dir: &Path,
) -> Result<(f64, u64), BoxError> {
    let script = dir.join("token.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"grant_type=client_credentials\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {auth}\"\n"
        ),
    )?;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args(["-t2", &format!("-c{conns}"), &format!("-d{secs}s"), "-s"])
            .arg(&script)
            .arg(format!("{url}/token"))
            .output()
    })
    .await??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok((rps, non_2xx))
}

fn field(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = start + body[start..].find('"')?;
    Some(body[start..end].replace("&amp;", "&"))
}

/// One sign-in through `/authorize` and the login page; returns the final HTTP status.
async fn login(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<u16, BoxError> {
    let authorize = format!(
        "{base}/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Frp.example%2Fcb\
         &response_type=code&scope=openid&state=s&nonce=n\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    let r = http.get(&authorize).send().await?;
    let mut cookies = Vec::new();
    for c in r.headers().get_all("set-cookie") {
        if let Some(kv) = c.to_str()?.split(';').next() {
            cookies.push(kv.to_owned());
        }
    }
    let location = r
        .headers()
        .get("location")
        .ok_or("no redirect to the login page")?
        .to_str()?
        .to_owned();
    let login_url = url::Url::parse(&authorize)?.join(&location)?;
    let page = http
        .get(login_url.as_str())
        .header("cookie", cookies.join("; "))
        .send()
        .await?
        .text()
        .await?;
    let tx = field(&page, "tx").ok_or("no tx")?;
    let csrf = field(&page, "csrf_token").ok_or("no csrf_token")?;
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", cookies.join("; "))
        .form(&[
            ("tx", tx.as_str()),
            ("csrf_token", csrf.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await?;
    Ok(r.status().as_u16())
}

async fn run() -> Result<(), BoxError> {
    let secs = env_num("BENCH_SECS", 5);
    let conns = env_num("BENCH_CONNS", 32);
    let logins = env_num("BENCH_LOGINS", 8);
    let work = std::env::temp_dir().join(format!("tessera-bench-paused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let slapd = Slapd::start(work.join("slapd"))?;
    let base_dn = slapd.var("TESSERA_TEST_LDAP_BASE")?;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {}\nmaster_key = \"{MASTER_KEY}\"\n\
         [[providers]]\nkind = \"ldap\"\nname = \"corp\"\nflag = \"SUFFICIENT\"\nurls = [{}]\n\
         bind_dn = {}\nbind_password = {}\nuser_base_dn = {}\nmemberof_attr = \"memberOf\"\n\
         connect_timeout = 2\noperation_timeout = 2\n",
        toml_string(&work.join("data").display().to_string()),
        toml_string(&slapd.var("TESSERA_TEST_LDAP_URL")?),
        toml_string(&slapd.var("TESSERA_TEST_LDAP_BIND_DN")?),
        toml_string(&slapd.var("TESSERA_TEST_LDAP_BIND_PASSWORD")?),
        toml_string(&format!("ou=people,{base_dn}")),
    );
    let file = ConfigFile {
        path: "bench.toml".into(),
        contents: toml,
    };
    let config = Arc::new(
        Config::load(Some(&file), &Env::default(), &Overrides::default())
            .map_err(|e| format!("configuration: {e}"))?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let issuer = config.issuer_for(addr);
    let clock: SharedClock = Arc::new(SystemClock);
    let app = App::open(config, &issuer, clock).await?;
    app.prepare_to_serve().await?;
    let _server = start(&app, listener)?;
    let engine = app.engine.clone();

    // A service client for the load and a first-party web client for the logins.
    let mut service = client_from_metadata(
        &json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
        &engine.settings,
    )?;
    service.client_id = "bench-service".into();
    service.client_id_issued_at = engine.now();
    service.origin = ClientOrigin::Cli;
    let secret = set_new_secret(&engine, &mut service)?;
    engine.store.create_client(&service).await?;
    let mut web = client_from_metadata(
        &json!({"redirect_uris": [RP], "grant_types": ["authorization_code"], "token_endpoint_auth_method": "client_secret_basic"}),
        &engine.settings,
    )?;
    web.client_id = "bench-web".into();
    web.client_id_issued_at = engine.now();
    web.origin = ClientOrigin::Cli;
    web.first_party = true;
    set_new_secret(&engine, &mut web)?;
    engine.store.create_client(&web).await?;
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("bench-service:{secret}"),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Sanity: a token, and a login that works.
    let r = http
        .post(format!("{issuer}/token"))
        .header("authorization", format!("Basic {auth}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("token request failed: {}", r.status()).into());
    }
    let status = login(&http, &issuer, "bench-web", "alice", "alice-secret").await?;
    if status != 303 {
        return Err(format!("warm-up login answered {status}").into());
    }
    println!(
        "token_paused_ldap: {conns} wrk connections, {secs} s per phase, {logins} stuck logins, \
         operation_timeout 2 s"
    );

    let (before, e1) = wrk(issuer.clone(), auth.clone(), conns, secs, &work).await?;
    println!("normal:          {before:>8.0} req/s (non-2xx: {e1})");

    // Paused directory, logins stuck on it in a loop.
    slapd.signal("STOP")?;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    // Logins answered otherwise than 503 while the directory hangs (should be none).
    let other = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..logins {
        // One user per stuck browser: the soft lockout refuses concurrent attempts on one
        // username beyond its threshold ("saturated"), which would not reach the directory.
        let user = format!("user{i}");
        let (http, issuer) = (http.clone(), issuer.clone());
        let (stop, answered, unavailable, other) = (
            stop.clone(),
            answered.clone(),
            unavailable.clone(),
            other.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let status = login(&http, &issuer, "bench-web", &user, "some-password").await?;
                slowest = slowest.max(t.elapsed());
                answered.fetch_add(1, Ordering::Relaxed);
                if status == 503 {
                    unavailable.fetch_add(1, Ordering::Relaxed);
                } else {
                    other.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<Duration, BoxError>(slowest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = wrk(issuer.clone(), auth.clone(), conns, secs, &work).await;
    stop.store(true, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for t in tasks {
        slowest = slowest.max(t.await??);
    }
    slapd.signal("CONT")?;
    let (during, e2) = paused?;
    println!(
        "slapd paused:    {during:>8.0} req/s (non-2xx: {e2}); logins answered meanwhile: {} ({} × 503 temporarily unavailable, {} other), slowest {slowest:.2?}",
        answered.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );

    let (after, e3) = wrk(issuer.clone(), auth.clone(), conns, secs, &work).await?;
    println!("normal again:    {after:>8.0} req/s (non-2xx: {e3})");
    let normal = (before + after) / 2.0;
    println!(
        "paused / normal: {:.1} % (target >= 90 %)",
        100.0 * during / normal
    );
    let status = login(&http, &issuer, "bench-web", "alice", "alice-secret").await?;
    println!("login after resume: HTTP {status}");
    drop(slapd);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
