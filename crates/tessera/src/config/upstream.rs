//! `[[upstreams]]`: upstream OpenID providers Tessera signs users in through (see
//! `tessera_core::federation`; the keys are documented on
//! `tessera_core::federation::config::RawUpstream`).
//!
//! Wiring (three lines, applied by the owner of these files):
//! - `config/raw.rs`, in `RawConfig`: `pub upstreams: Vec<tessera_core::federation::config::RawUpstream>,`
//!   (and `upstreams: Vec::new(),` in its `Default`);
//! - `config/validate.rs`, before `if !errors.is_empty()`: collect [`validate_upstreams`]'s errors
//!   with `loc.error(&path, msg)` and keep the configs in `Config::upstreams`;
//! - `app.rs`, after `engine.jwks = …`: `crate::config::upstream::install(&engine,
//!   &config.upstreams, http.clone(), proxy_settings)`.

use std::path::Path;
use std::sync::Arc;

use tessera_core::Engine;
use tessera_core::federation::config::RawUpstream;
use tessera_core::federation::{Upstream, UpstreamConfig};
use tessera_egress::{HttpClient, ProxySettings};

use super::Env;

/// Validate every entry; errors are `(key path, message)` like `upstreams[0].issuer`.
pub fn validate_upstreams(
    raw: &[RawUpstream],
    env: &Env,
    base_dir: &Path,
) -> (Vec<UpstreamConfig>, Vec<(String, String)>) {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        if !seen.insert(r.name.clone()) {
            errors.push((
                format!("upstreams[{i}].name"),
                format!("upstream name '{}' is used twice", r.name),
            ));
        }
        let read = |p: &str| {
            let path = base_dir.join(p);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        match r.build(&|k| env.get(k).map(str::to_owned), &read) {
            Ok(c) => configs.push(c),
            Err(es) => errors.extend(
                es.into_iter()
                    .map(|(k, m)| (format!("upstreams[{i}].{k}"), m)),
            ),
        }
    }
    // A REQUIRED or REQUISITE upstream is mandatory (tessera_core::federation, "Control
    // flags"): with another enabled upstream, sign-ins through that one could never succeed.
    let enabled: Vec<&UpstreamConfig> = configs.iter().filter(|c| c.enabled).collect();
    if enabled.len() > 1 {
        for (i, c) in configs.iter().enumerate() {
            if c.enabled && c.is_mandatory() {
                errors.push((
                    format!("upstreams[{i}].flag"),
                    format!(
                        "upstream '{}' is {}: every sign-in must come through it, so it must be the only enabled upstream (use SUFFICIENT for alternatives)",
                        c.name,
                        c.flag.as_str()
                    ),
                ));
            }
        }
    }
    (configs, errors)
}

/// Install the upstreams into the engine, all sharing the one egress client. `proxy` must be
/// the proxy settings `http` was built with (used to explain failures through the proxy).
pub fn install(
    engine: &Engine,
    upstreams: &[UpstreamConfig],
    http: HttpClient,
    proxy: ProxySettings,
) {
    let transport: Arc<dyn tessera_core::federation::UpstreamHttp> =
        Arc::new(tessera_http::EgressUpstreamHttp::new(http, proxy));
    engine.upstreams.install(
        upstreams
            .iter()
            .map(|c| Arc::new(Upstream::new(c.clone(), transport.clone())))
            .collect(),
    );
}
