//! Token-endpoint load generator for the assertion scenarios of `bench/run.sh`.
//!
//! `wrk` cannot sign ES256, and a client assertion must carry a fresh `jti` for every
//! request, so this tool signs all assertions *before* the measurement (unique `jti`,
//! one-hour lifetime) and then replays them, each exactly once, over `--concurrency`
//! keep-alive HTTP/1.1 connections. Latency is recorded per request (send to last body
//! byte) in an HDR histogram.
//!
//! ```text
//! tessera-loadgen keygen --kid KID --key OUT.json --jwks OUT_PUBLIC.json
//! tessera-loadgen run --url TOKEN_ENDPOINT --mode client-assertion|jwt-bearer --key KEY.json
//!                     --aud AUD [--iss ISS] [--sub SUB] [--client-id ID] [--scope S]
//!                     [--authorization 'Basic …'] [--concurrency 16] [--duration 10]
//!                     [--warmup 2] [--assertions N] [--no-jti] [--json OUT.json]
//!                     [--pin-cpu N] [--server-pid PID]
//! ```
//!
//! `--pin-cpu N` signs on every CPU (the servers are idle then) and pins the load generator to
//! CPU N before the first request, so `bench/run.sh` need not run it under `taskset`.
//! `--server-pid PID` reads the CPU time of that process (`/proc/PID/task/*/schedstat`, all
//! its threads) at the start and the end of the measured window, and reports it as
//! `server_cpu_s`, `server_cpu_share` (CPU seconds per second) and `rps_per_server_cpu`
//! (requests per CPU second of the server: a figure other load on the machine disturbs far
//! less than requests per second).
//!
//! `--key` is either a file written by `keygen` (`{"alg":"ES256","kid":…,"pkcs8":…}`) or a
//! Google-format service-account key file (`type: service_account`, RSA `private_key` PEM,
//! `private_key_id`, `client_email`), which signs RS256 with `iss` = `client_email`.
//!
//! The `run` output is one JSON object (stdout, and `--json FILE`): requests, seconds, rps,
//! p50/p90/p99/p999/max in milliseconds, the non-2xx and connection-error counts, and the
//! first non-2xx response (status and body) as a sample, and the CPU figures above. Exit status: 0 when every measured
//! response was 2xx, 1 otherwise, 3 when the pre-signed assertions ran out before the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keygen") => keygen(&parse_flags(&args[1..])).map(|()| ExitCode::SUCCESS),
        Some("run") => run(&parse_flags(&args[1..])),
        _ => {
            Err("usage: tessera-loadgen keygen|run [--flag value]… (see the source header)".into())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tessera-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--name value` pairs; a flag without a value (`--no-jti`) maps to "true".
fn parse_flags(args: &[String]) -> HashMap<String, String> {
    let mut flags = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let name = args[i].trim_start_matches("--").to_owned();
        match args.get(i + 1) {
            Some(v) if !v.starts_with("--") => {
                flags.insert(name, v.clone());
                i += 2;
            }
            _ => {
                flags.insert(name, "true".to_owned());
                i += 1;
            }
        }
    }
    flags
}

fn need<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Error> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required").into())
}

fn num<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, Error> {
    match flags.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{name}: not a number: {v}").into()),
    }
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a new ES256 key (PKCS#8, for `run --key`) and its public JWK Set (to register
/// the client at both servers).
fn keygen(flags: &HashMap<String, String>) -> Result<(), Error> {
    let kid = need(flags, "kid")?;
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| "EC key generation failed")?;
    let pkcs8 = key.to_pkcs8v1().map_err(|_| "PKCS#8 export failed")?;
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    let point = key.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err("unexpected public key encoding".into());
    }
    let private = json!({"alg": "ES256", "kid": kid, "pkcs8": STANDARD.encode(pkcs8.as_ref())});
    let public = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64u(&point[1..33]), "y": b64u(&point[33..65]),
    }]});
    std::fs::write(need(flags, "key")?, serde_json::to_vec_pretty(&private)?)?;
    std::fs::write(need(flags, "jwks")?, serde_json::to_vec_pretty(&public)?)?;
    Ok(())
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

struct LoadedKey {
    signer: Signer,
    kid: Option<String>,
    /// `client_email` of a service-account key file.
    email: Option<String>,
}

fn load_key(path: &str) -> Result<LoadedKey, Error> {
    let file: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    if file["type"] == "service_account" {
        let pem = file["private_key"]
            .as_str()
            .ok_or("service account: no private_key")?;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body.trim())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| "service account: bad RSA key")?;
        return Ok(LoadedKey {
            signer: Signer::Rs256(key),
            kid: file["private_key_id"].as_str().map(str::to_owned),
            email: file["client_email"].as_str().map(str::to_owned),
        });
    }
    let der = STANDARD.decode(file["pkcs8"].as_str().ok_or("key file: no pkcs8")?)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| "key file: bad EC key")?;
    Ok(LoadedKey {
        signer: Signer::Es256(key),
        kid: file["kid"].as_str().map(str::to_owned),
        email: None,
    })
}

impl LoadedKey {
    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    fn sign(&self, rng: &SystemRandom, input: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.signer {
            Signer::Es256(k) => Ok(k
                .sign(rng, input)
                .map_err(|_| "ES256 sign failed")?
                .as_ref()
                .to_vec()),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, rng, input, &mut sig)
                    .map_err(|_| "RS256 sign failed")?;
                Ok(sig)
            }
        }
    }
}

struct Plan {
    /// The form body up to the assertion (which is appended, already URL-safe).
    body_prefix: String,
    header_b64: String,
    iss: String,
    sub: String,
    aud: String,
    scope_claim: Option<String>,
    jti: bool,
}

/// Signs `count` assertions on all cores (the servers are idle while this runs).
// A load generator reads the wall clock: the assertions' `iat`/`exp` are real times.
#[allow(clippy::disallowed_methods)]
fn presign(key: &LoadedKey, plan: &Plan, count: usize) -> Result<Vec<Bytes>, Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads);
    let chunks: Vec<Result<Vec<Bytes>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<Vec<Bytes>, Error> {
                    let rng = SystemRandom::new();
                    let n = per.min(count.saturating_sub(t * per));
                    let mut out = Vec::with_capacity(n);
                    for _ in 0..n {
                        let mut claims = json!({
                            "iss": plan.iss, "sub": plan.sub, "aud": plan.aud,
                            "iat": now, "exp": now + 3600,
                        });
                        if plan.jti {
                            let mut id = [0u8; 16];
                            rng.fill(&mut id).map_err(|_| "rng failed")?;
                            claims["jti"] = json!(b64u(&id));
                        }
                        if let Some(scope) = &plan.scope_claim {
                            claims["scope"] = json!(scope);
                        }
                        let input = format!(
                            "{}.{}",
                            plan.header_b64,
                            b64u(&serde_json::to_vec(&claims)?)
                        );
                        let sig = key.sign(&rng, input.as_bytes())?;
                        out.push(Bytes::from(format!(
                            "{}{input}.{}",
                            plan.body_prefix,
                            b64u(&sig)
                        )));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("signing thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for chunk in chunks {
        all.extend(chunk?);
    }
    Ok(all)
}

/// CPU time consumed so far by every thread of `pid`, in seconds (scheduler statistics: ns
/// precision, unlike the 10 ms ticks of `/proc/PID/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let mut ns: u128 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread exited meanwhile
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u128>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 / 1e9)
}

/// Pins the calling thread (and the threads it starts later) to one CPU.
fn pin_to_cpu(cpu: usize) -> Result<(), Error> {
    // SAFETY: `set` is a plain bit set initialised by CPU_ZERO/CPU_SET and passed by pointer
    // with its exact size; pid 0 means the calling thread.
    #[allow(unsafe_code)]
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!("cannot pin to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    authorization: Option<String>,
}

fn parse_url(url: &str) -> Result<(SocketAddr, String, String), Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must be http://host:port/path")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = host.parse().map_err(|_| "--url host must be IP:port")?;
    Ok((addr, host.to_owned(), path))
}

#[derive(Default)]
struct ConnStats {
    hist: Option<Histogram<u64>>,
    measured: u64,
    non2xx: u64,
    errors: u64,
    sample: Option<(u16, String)>,
}

struct Shared {
    assertions: Vec<Bytes>,
    next: AtomicUsize,
    exhausted: AtomicBool,
    target: Target,
    measure_from: Instant,
    end: Instant,
}

async fn connection(shared: Arc<Shared>) -> ConnStats {
    let mut stats = ConnStats {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..ConnStats::default()
    };
    'reconnect: while Instant::now() < shared.end {
        let stream = match tokio::net::TcpStream::connect(shared.target.addr).await {
            Ok(s) => s,
            Err(_) => {
                stats.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            stats.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        loop {
            let start = Instant::now();
            if start >= shared.end {
                break 'reconnect;
            }
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            let Some(body) = shared.assertions.get(i) else {
                shared.exhausted.store(true, Ordering::Relaxed);
                break 'reconnect;
            };
            let mut req = Request::post(shared.target.path.as_str())
                .header("host", shared.target.host.as_str())
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(auth) = &shared.target.authorization {
                req = req.header("authorization", auth.as_str());
            }
            let Ok(req) = req.body(Full::new(body.clone())) else {
                stats.errors += 1;
                break 'reconnect;
            };
            if sender.ready().await.is_err() {
                stats.errors += 1;
                continue 'reconnect;
            }
            let response = match sender.send_request(req).await {
                Ok(r) => r,
                Err(_) => {
                    stats.errors += 1;
                    continue 'reconnect;
                }
            };
            let status = response.status().as_u16();
            let Ok(collected) = response.into_body().collect().await else {
                stats.errors += 1;
                continue 'reconnect;
            };
            let done = Instant::now();
            if start < shared.measure_from {
                continue; // warm-up
            }
            stats.measured += 1;
            if let Some(h) = stats.hist.as_mut() {
                let _ = h.record((done - start).as_micros().max(1) as u64);
            }
            if !(200..300).contains(&status) {
                stats.non2xx += 1;
                if stats.sample.is_none() {
                    let body = collected.to_bytes();
                    stats.sample = Some((status, String::from_utf8_lossy(&body).into_owned()));
                }
            }
        }
    }
    stats
}

fn run(flags: &HashMap<String, String>) -> Result<ExitCode, Error> {
    let url = need(flags, "url")?;
    let mode = need(flags, "mode")?;
    let key = load_key(need(flags, "key")?)?;
    let concurrency: usize = num(flags, "concurrency", 16)?;
    let duration: f64 = num(flags, "duration", 10.0)?;
    let warmup: f64 = num(flags, "warmup", 2.0)?;
    let count: usize = num(
        flags,
        "assertions",
        (30_000.0 * (duration + warmup)) as usize,
    )?;
    let jti = !flags.contains_key("no-jti");

    let mut header = json!({"alg": key.alg(), "typ": "JWT"});
    if let Some(kid) = &key.kid {
        header["kid"] = json!(kid);
    }
    let scope = flags.get("scope").cloned();
    let scope_param = scope
        .as_ref()
        .map(|s| format!("scope={}&", s.replace(' ', "+")))
        .unwrap_or_default();
    let plan = match mode {
        "client-assertion" => {
            let client_id = need(flags, "client-id")?.to_owned();
            Plan {
                body_prefix: format!(
                    "grant_type=client_credentials&{scope_param}client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="
                ),
                header_b64: b64u(&serde_json::to_vec(&header)?),
                iss: client_id.clone(),
                sub: client_id,
                aud: need(flags, "aud")?.to_owned(),
                scope_claim: None,
                jti,
            }
        }
        "jwt-bearer" => {
            let iss = flags
                .get("iss")
                .cloned()
                .or(key.email.clone())
                .ok_or("--iss is required")?;
            let sub = flags.get("sub").cloned().unwrap_or_else(|| iss.clone());
            Plan {
                body_prefix: format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&{scope_param}assertion="
                ),
                header_b64: b64u(&serde_json::to_vec(&header)?),
                iss,
                sub,
                aud: need(flags, "aud")?.to_owned(),
                scope_claim: None,
                jti,
            }
        }
        other => return Err(format!("--mode: unknown mode {other}").into()),
    };

    let t0 = Instant::now();
    let assertions = presign(&key, &plan, count)?;
    eprintln!(
        "tessera-loadgen: signed {} {} assertions in {:.1} s",
        assertions.len(),
        key.alg(),
        t0.elapsed().as_secs_f64()
    );

    if let Some(cpu) = flags.get("pin-cpu") {
        pin_to_cpu(cpu.parse().map_err(|_| "--pin-cpu takes a CPU number")?)?;
    }
    let server_pid: Option<u32> = match flags.get("server-pid") {
        Some(p) => Some(p.parse().map_err(|_| "--server-pid takes a process id")?),
        None => None,
    };

    let (addr, host, path) = parse_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        assertions,
        next: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
        target: Target {
            addr,
            host,
            path,
            authorization: flags.get("authorization").cloned(),
        },
        measure_from: start + Duration::from_secs_f64(warmup),
        end: start + Duration::from_secs_f64(warmup + duration),
    });
    let (results, cpu): (Vec<ConnStats>, Option<(f64, f64)>) = rt.block_on(async {
        // Samples the server's CPU time at the edges of the measured window.
        let sampler = server_pid.map(|pid| {
            let (from, end) = (shared.measure_from, shared.end);
            tokio::spawn(async move {
                tokio::time::sleep_until(from.into()).await;
                let (t0, c0) = (Instant::now(), process_cpu_seconds(pid)?);
                tokio::time::sleep_until(end.into()).await;
                let (t1, c1) = (Instant::now(), process_cpu_seconds(pid)?);
                Some((c1 - c0, (t1 - t0).as_secs_f64()))
            })
        });
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(connection(shared.clone())))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        let cpu = match sampler {
            Some(s) => s.await.ok().flatten(),
            None => None,
        };
        (out, cpu)
    });
    let measured_secs = (Instant::now().min(shared.end) - shared.measure_from).as_secs_f64();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut requests, mut non2xx, mut errors, mut sample) = (0u64, 0u64, 0u64, None);
    for s in results {
        if let Some(h) = &s.hist {
            hist.add(h)?;
        }
        requests += s.measured;
        non2xx += s.non2xx;
        errors += s.errors;
        if sample.is_none() {
            sample = s.sample;
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let exhausted = shared.exhausted.load(Ordering::Relaxed);
    let report = json!({
        "tool": "tessera-loadgen",
        "mode": mode,
        "alg": key.alg(),
        "concurrency": concurrency,
        "requests": requests,
        "seconds": measured_secs,
        "rps": if measured_secs > 0.0 { requests as f64 / measured_secs } else { 0.0 },
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": hist.max() as f64 / 1000.0,
        "non2xx": non2xx,
        "errors": errors,
        "assertions_signed": count,
        "assertions_used": shared.next.load(Ordering::Relaxed).min(count),
        "exhausted": exhausted,
        "sample_status": sample.as_ref().map(|s| s.0),
        "sample_body": sample.as_ref().map(|s| s.1.chars().take(500).collect::<String>()),
        "server_cpu_s": cpu.map(|c| c.0),
        "server_cpu_share": cpu.map(|(c, wall)| c / wall),
        // The window's idle edges cost the server next to no CPU, so this holds even when
        // the run ended early.
        "rps_per_server_cpu": cpu.filter(|c| c.0 > 0.0).map(|(c, _)| requests as f64 / c),
    });
    let text = serde_json::to_string(&report)?;
    println!("{text}");
    if let Some(path) = flags.get("json") {
        std::fs::write(path, &text)?;
    }
    if exhausted {
        eprintln!("tessera-loadgen: ran out of pre-signed assertions; raise --assertions");
        return Ok(ExitCode::from(3));
    }
    Ok(if non2xx == 0 && requests > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
