//! The authentication trace: one structured record per attempt (password login, client
//! authentication, assertion grant, upstream login). Components append steps; the edge decides
//! whether to keep the record (tracing switched on, globally or for one user/client).
//!
//! Invariant: no password, secret or signature value is ever recorded. Callers put only names,
//! hosts, filters, result codes, claim values that are not secrets, and timings.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceStep {
    /// Milliseconds since the attempt started.
    pub at_ms: u64,
    /// Who recorded it: "chain", "provider:corp-ldap", "assertion", "lockout", ...
    pub component: String,
    /// What was done: "service_bind", "search", "user_bind", "check:aud", ...
    pub step: String,
    /// "ok", "failed", "skipped", or a short result word.
    pub outcome: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

#[derive(Debug)]
pub struct Trace {
    started: Instant,
    enabled: bool,
    steps: Vec<TraceStep>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Trace {
    /// `enabled = false` records nothing (the hot path pays one branch per step).
    pub fn new(enabled: bool) -> Self {
        Self {
            started: Instant::now(),
            enabled,
            steps: Vec::new(),
        }
    }

    pub fn disabled() -> Self {
        Self::new(false)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn step(
        &mut self,
        component: impl Into<String>,
        step: impl Into<String>,
        outcome: impl Into<String>,
        detail: impl FnOnce() -> Map<String, Value>,
    ) {
        if !self.enabled {
            return;
        }
        self.steps.push(TraceStep {
            at_ms: self.started.elapsed().as_millis() as u64,
            component: component.into(),
            step: step.into(),
            outcome: outcome.into(),
            detail: detail(),
        });
    }

    pub fn steps(&self) -> &[TraceStep] {
        &self.steps
    }

    pub fn into_steps(self) -> Vec<TraceStep> {
        self.steps
    }
}

/// Build a detail map: `detail!{"host" => host, "code" => 49}`.
#[macro_export]
macro_rules! detail {
    () => { ::serde_json::Map::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut m = ::serde_json::Map::new();
        $( m.insert(($k).to_string(), ::serde_json::json!($v)); )+
        m
    }};
}

/// A shareable, optional trace for request paths: `None` when tracing is off, so recording
/// costs nothing then.
#[derive(Debug, Clone, Default)]
pub struct TraceHandle(Option<std::sync::Arc<std::sync::Mutex<Trace>>>);

impl TraceHandle {
    pub fn off() -> Self {
        Self(None)
    }
    pub fn on() -> Self {
        Self(Some(std::sync::Arc::new(std::sync::Mutex::new(
            Trace::new(true),
        ))))
    }
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
    pub fn step(
        &self,
        component: impl Into<String>,
        step: impl Into<String>,
        outcome: impl Into<String>,
        detail: impl FnOnce() -> Map<String, Value>,
    ) {
        if let Some(t) = &self.0
            && let Ok(mut t) = t.lock()
        {
            t.step(component, step, outcome, detail);
        }
    }
    /// Run `f` with the inner trace (or a disabled one when off).
    pub fn with<R>(&self, f: impl FnOnce(&mut Trace) -> R) -> R {
        match &self.0 {
            Some(t) => match t.lock() {
                Ok(mut guard) => f(&mut guard),
                Err(_) => f(&mut Trace::disabled()),
            },
            None => f(&mut Trace::disabled()),
        }
    }
    pub fn steps(&self) -> Vec<TraceStep> {
        self.0
            .as_ref()
            .and_then(|t| t.lock().ok().map(|t| t.steps().to_vec()))
            .unwrap_or_default()
    }
}
