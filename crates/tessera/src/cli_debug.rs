//! `tessera debug authn on|off [--user U] [--client C]` and `tessera trace show ID | list`: the
//! run-time authentication trace of a *running* server, through its admin API
//! (`POST /admin/debug/authn`, `GET /admin/traces/{id}`, `GET /admin/traces`). The server keeps
//! the last traces in memory, so these talk to it rather than to the store.
//!
//! `--url` (or `TESSERA_URL`) names the server, default `http://127.0.0.1:8080`; the admin
//! bearer token comes from `TESSERA_ADMIN_TOKEN` (never a flag, so it stays out of shell
//! history and `ps`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use tessera_egress::probe::{self, HttpRequest, ProbeOptions};

use crate::commands::{CliError, format_time, print_json};

/// Environment variable holding the admin API bearer token.
pub const ADMIN_TOKEN_VAR: &str = "TESSERA_ADMIN_TOKEN";

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the running server.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Extra CA (PEM) to trust for an https URL.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Switch detailed authentication tracing on or off (globally, or for one user / client).
    Authn(DebugAuthn),
}

#[derive(Debug, Args)]
pub struct DebugAuthn {
    /// `on` or `off`.
    #[arg(value_parser = ["on", "off"])]
    pub state: String,
    /// Only this username.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this client_id.
    #[arg(long)]
    pub client: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Show the trace of one request (the id is on the error page and in `X-Request-Id`).
    Show {
        request_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the newest kept traces.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn admin_token() -> Result<String, CliError> {
    std::env::var(ADMIN_TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            CliError::user(format!(
                "set {ADMIN_TOKEN_VAR} to the server's admin token (admin_token in its configuration)"
            ))
        })
}

/// Call the admin API; returns (status, JSON body).
async fn call(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), CliError> {
    let token = admin_token()?;
    let url = format!("{}{path}", server.url.trim_end_matches('/'));
    let mut req = HttpRequest::get(&url).with_header("Authorization", &format!("Bearer {token}"));
    req.method = method.to_owned();
    if let Some(b) = body {
        req.body = serde_json::to_vec(&b).map_err(|e| CliError::Internal(e.to_string()))?;
        req = req.with_header("Content-Type", "application/json");
    }
    let opts = ProbeOptions {
        extra_ca_file: server.ca_file.clone(),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        ..ProbeOptions::default()
    };
    let report = probe::exchange(&req, &opts).await;
    let Some(resp) = report.response else {
        let why = report
            .failure
            .map(|f| f.to_string())
            .unwrap_or_else(|| "no response".into());
        return Err(CliError::user(format!(
            "cannot reach the server at {}: {why}",
            server.url
        )));
    };
    match resp.status {
        401 => {
            return Err(CliError::user(format!(
                "the server refused the admin token in {ADMIN_TOKEN_VAR}"
            )));
        }
        404 if !path.starts_with("/admin/traces/") => {
            return Err(CliError::user(
                "the server's admin API is off (no admin_token configured) or this is not Tessera",
            ));
        }
        _ => {}
    }
    let json = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    Ok((resp.status, json))
}

pub async fn run_debug(cmd: DebugCommand) -> Result<(), CliError> {
    let DebugCommand::Authn(a) = cmd;
    let body = serde_json::json!({ "on": a.state == "on", "user": a.user, "client": a.client });
    let (status, state) = call(&a.server, "POST", "/admin/debug/authn", Some(body)).await?;
    if status != 200 {
        return Err(CliError::user(format!(
            "the server answered {status}: {state}"
        )));
    }
    println!("{}", describe_state(&state));
    Ok(())
}

/// "authentication tracing: on for user alice, client rp" / "off".
pub fn describe_state(state: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        state
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if state.get("global").and_then(Value::as_bool) == Some(true) {
        return "authentication tracing: on for every attempt".into();
    }
    let mut scopes: Vec<String> = list("users")
        .into_iter()
        .map(|u| format!("user {u}"))
        .collect();
    scopes.extend(list("clients").into_iter().map(|c| format!("client {c}")));
    if scopes.is_empty() {
        "authentication tracing: off".into()
    } else {
        format!("authentication tracing: on for {}", scopes.join(", "))
    }
}

pub async fn run_trace(cmd: TraceCommand) -> Result<(), CliError> {
    match cmd {
        TraceCommand::Show {
            request_id,
            json,
            server,
        } => {
            let path = format!("/admin/traces/{request_id}");
            let (status, body) = call(&server, "GET", &path, None).await?;
            if status == 404 {
                let why = body
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("not found");
                return Err(CliError::user(why.to_owned()));
            }
            if json {
                return print_json(&body);
            }
            print!("{}", render_trace(&body));
            Ok(())
        }
        TraceCommand::List {
            limit,
            json,
            server,
        } => {
            let (_, body) = call(
                &server,
                "GET",
                &format!("/admin/traces?limit={limit}"),
                None,
            )
            .await?;
            if json {
                return print_json(&body);
            }
            if let Some(d) = body.get("debug") {
                println!("{}", describe_state(d));
            }
            let traces = body
                .get("traces")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if traces.is_empty() {
                println!("no traces kept");
            }
            for t in traces {
                let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                println!(
                    "{}  {}  {:<28} {:<8} {:<20} {}",
                    format_time(t.get("at").and_then(Value::as_i64)),
                    s("request_id"),
                    s("attempt"),
                    s("decision"),
                    s("code"),
                    [t.get("user"), t.get("client")]
                        .iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" / ")
                );
            }
            Ok(())
        }
    }
}

/// A trace as text: header, verdict with code, cause and remedy, then every step.
pub fn render_trace(t: &Value) -> String {
    let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut out = String::new();
    out.push_str(&format!(
        "request {}  {}  {}\n",
        s("request_id").unwrap_or_default(),
        s("attempt").unwrap_or_default(),
        format_time(t.get("at").and_then(Value::as_i64))
    ));
    for (label, key) in [
        ("user", "user"),
        ("client", "client"),
        ("from", "source_ip"),
    ] {
        if let Some(v) = s(key) {
            out.push_str(&format!("  {label:<8}{v}\n"));
        }
    }
    let decision = s("decision").unwrap_or_default();
    match s("error") {
        Some(e) => out.push_str(&format!("  result  {decision} ({e})\n")),
        None => out.push_str(&format!("  result  {decision}\n")),
    }
    if let Some(code) = s("code") {
        let title = tessera_core::diagnostics::catalog::lookup(&code)
            .map(|e| e.title)
            .unwrap_or_default();
        out.push_str(&format!("  code    {code} — {title}\n"));
    }
    if let Some(c) = s("cause") {
        out.push_str(&format!("  cause   {c}\n"));
    }
    if let Some(e) = s("explanation") {
        out.push_str(&format!("  why     {e}\n"));
    }
    if let Some(r) = s("remedy") {
        out.push_str(&format!("  remedy  {r}\n"));
    }
    out.push_str("  steps:\n");
    for step in t
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| step.get(k).and_then(Value::as_str).unwrap_or_default();
        let detail = step
            .get("detail")
            .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
            .map(Value::to_string)
            .unwrap_or_default();
        out.push_str(&format!(
            "    {:>5} ms  {:<22} {:<18} {:<14} {detail}\n",
            step.get("at_ms")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            g("component"),
            g("step"),
            g("outcome"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_switch() {
        let off = serde_json::json!({"global": false, "users": [], "clients": []});
        assert_eq!(describe_state(&off), "authentication tracing: off");
        let scoped = serde_json::json!({"global": false, "users": ["alice"], "clients": ["rp"]});
        assert_eq!(
            describe_state(&scoped),
            "authentication tracing: on for user alice, client rp"
        );
    }

    #[test]
    fn renders_a_trace() {
        let t = serde_json::json!({
            "request_id": "abc", "attempt": "token:client_credentials", "at": 0,
            "client": "rp", "decision": "failure", "error": "invalid_client",
            "code": "TSR-CLIENT-SECRET", "cause": "wrong secret for client 'rp'",
            "remedy": "Copy the current secret", "steps": [
                {"at_ms": 1, "component": "lockout", "step": "settle", "outcome": "counted", "detail": {"failures": 1}}
            ]
        });
        let text = render_trace(&t);
        assert!(
            text.contains("code    TSR-CLIENT-SECRET — wrong client secret"),
            "{text}"
        );
        assert!(
            text.contains("cause   wrong secret for client 'rp'"),
            "{text}"
        );
        assert!(text.contains("lockout"), "{text}");
    }
}
