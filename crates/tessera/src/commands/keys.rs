//! `tessera keys list|rotate`.

use tessera_jose::Algorithm;

use super::{CliError, format_time, print_json, print_table};
use crate::app::App;
use crate::cli::KeysCommand;

pub(super) async fn run(app: &App, command: KeysCommand) -> Result<(), CliError> {
    let engine = &app.engine;
    match command {
        KeysCommand::List(output) => {
            let now = engine.now();
            engine
                .keys
                .reload(engine.store.as_ref(), now)
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?;
            let keys = engine.keys.status(now);
            if output.json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.kid.clone(),
                        k.alg.clone(),
                        k.state.into(),
                        format_time(Some(k.created_at)),
                        format_time(Some(k.activate_at)),
                        format_time(k.retire_at),
                        format_time(k.remove_at),
                    ]
                })
                .collect();
            print_table(
                &[
                    "KID",
                    "ALG",
                    "STATE",
                    "CREATED",
                    "SIGNS_FROM",
                    "RETIRES",
                    "UNPUBLISHED",
                ],
                &rows,
            );
            if keys.is_empty() {
                println!("(no keys yet: `tessera serve` creates them on first start)");
            }
            Ok(())
        }
        KeysCommand::Rotate { alg } => {
            let algs = match alg {
                Some(a) => {
                    let parsed: Algorithm = a.parse().map_err(|_| {
                        CliError::user(format!(
                            "unknown algorithm '{a}' (e.g. ES256, RS256, EdDSA)"
                        ))
                    })?;
                    if matches!(
                        parsed,
                        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                    ) {
                        return Err(CliError::user(format!(
                            "{a} is symmetric: signing keys are public-key keys"
                        )));
                    }
                    vec![parsed]
                }
                None => app.config.signing_algs(),
            };
            let now = engine.now();
            for alg in algs {
                let kid = engine
                    .keys
                    .rotate(engine.store.as_ref(), alg, now)
                    .await
                    .map_err(|e| CliError::Internal(e.to_string()))?;
                let activate = now + engine.settings.jwks_max_age as i64;
                println!(
                    "{alg}: key {kid} is published now and signs from {} (after keys.jwks_max_age); the current key retires then",
                    format_time(Some(activate))
                );
            }
            println!(
                "Running servers pick the change up within keys.refresh_interval ({} s).",
                app.config.key_refresh_interval.as_secs()
            );
            Ok(())
        }
    }
}
