//! The single-core signature limit: how many JWS signatures and verifications one core
//! does per second with tessera-jose's own keys (aws-lc-rs underneath), each key parsed
//! once and reused, as the token endpoint does. These figures bound the token endpoint:
//! client_secret_basic + ES256 access token costs one ES256 signature per request;
//! private_key_jwt adds one ES256 verification.
//!
//! Run pinned to one core (docs/benchmarks.md):
//!
//! ```text
//! taskset -c 0 cargo bench -p tessera-jose --bench crypto_limit
//! ```
//!
//! `CRYPTO_LIMIT_SECS` sets the time per measurement (default 1.0). A plain binary
//! (`harness = false`) that prints ops/s: no benchmark framework needed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tessera_jose::{Algorithm, Limits, SigningKey, decode_compact};

/// A realistic RFC 9068 access-token signing input size (~300 bytes of header.claims).
const CLAIMS: &str = r#"{"iss":"https://id.example.com","sub":"bench-client","aud":"https://api.example.com","client_id":"bench-client","scope":"api:read api:write","iat":1767225600,"exp":1767226500,"jti":"0f6d8d1c2b9a4e7f8a1b2c3d4e5f6071"}"#;

/// Runs `op` repeatedly for about `secs` and returns operations per second.
fn rate<E>(secs: f64, mut op: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    // Short warm-up so the first measurement does not pay for cold caches.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        op()?;
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        // Check the clock every 32 operations: negligible next to a signature.
        for _ in 0..32 {
            op()?;
        }
        n += 32;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return Ok(n as f64 / elapsed.as_secs_f64());
        }
    }
}

fn main() -> Result<(), tessera_jose::Error> {
    let secs = std::env::var("CRYPTO_LIMIT_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let claims: serde_json::Value =
        serde_json::from_str(CLAIMS).map_err(|_| tessera_jose::Error::Malformed("bench claims"))?;

    println!("tessera-jose crypto limit: one thread, {secs} s per measurement, keys parsed once");
    println!(
        "{:<8} {:>14} {:>14} {:>18} {:>22}",
        "alg", "sign ops/s", "verify ops/s", "sign_jwt ops/s", "decode+verify ops/s"
    );
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg, "bench")?;
        let public = key.verifying_key();
        let token = key.sign_jwt(Some("at+jwt"), &claims)?;
        let (input, _) = token
            .rsplit_once('.')
            .ok_or(tessera_jose::Error::Malformed("signed token"))?;
        let signature = key.sign(input.as_bytes())?;
        let allowed = [alg];

        // Raw primitive over a realistic signing input.
        let sign = rate(secs, || {
            key.sign(black_box(input.as_bytes()))
                .map(|s| drop(black_box(s)))
        })?;
        let verify = rate(secs, || {
            public.verify(alg, black_box(input.as_bytes()), &signature)
        })?;
        // What the token endpoint does: claims → compact JWS; compact JWS → verified claims.
        let sign_jwt = rate(secs, || {
            key.sign_jwt(Some("at+jwt"), black_box(&claims))
                .map(|t| drop(black_box(t)))
        })?;
        let decode_verify = rate(secs, || {
            decode_compact(black_box(&token), &Limits::DEFAULT)?
                .verify(&public, &allowed)
                .map(|v| drop(black_box(v)))
        })?;
        println!(
            "{:<8} {:>14.0} {:>14.0} {:>18.0} {:>22.0}",
            alg.to_string(),
            sign,
            verify,
            sign_jwt,
            decode_verify
        );
    }
    Ok(())
}
