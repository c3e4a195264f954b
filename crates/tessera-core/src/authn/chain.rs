//! The provider chain with JAAS control flags (javax.security.auth.login.Configuration;
//! OpenJDK `LoginContext.invoke`):
//!
//! | flag       | on success                                   | on failure          |
//! |------------|----------------------------------------------|---------------------|
//! | REQUIRED   | continue                                     | remember, continue  |
//! | REQUISITE  | continue                                     | stop: fail          |
//! | SUFFICIENT | stop: succeed, unless an earlier REQUIRED failed | continue        |
//! | OPTIONAL   | continue                                     | continue            |
//!
//! Overall: every REQUIRED and REQUISITE provider that ran must succeed; with none configured,
//! at least one SUFFICIENT or OPTIONAL must succeed; a chain where every provider was
//! `NotApplicable` ("ignored") fails.
//!
//! A provider answering [`Outcome::NotApplicable`] is "ignored" (JAAS `login()` returning
//! false): it counts as neither success nor failure. Every other non-success answer (bad
//! credentials, unknown user, empty password, account state, unavailable) is a failure for the
//! flags above.
//!
//! # Unavailable is never a bad password
//!
//! Tessera's addition: when the chain fails and it would have succeeded had every *unavailable*
//! provider succeeded, the result is [`Decision::Unavailable`] — the user is told to try later
//! (the login page says "temporarily unavailable"; an API path answers HTTP 503
//! `temporarily_unavailable`, see [`Decision::unavailable_error`]) and nothing is counted
//! against the account. Providers the chain never ran (it stopped at an unavailable REQUISITE)
//! are unknown and so are assumed able to succeed: the question is "could this attempt have
//! succeeded?". Only a failure with no such excuse is a denial, and a denial always names a
//! provider that genuinely refused (never an unavailable one), e.g. a REQUIRED local store that
//! rejected the password before an unavailable REQUISITE directory.
//! The verdict, the providers run (short-circuits) and this rule are checked against an
//! independent reference model by the property test in `chain_props.rs`.
//!
//! # Attribute merge rules
//!
//! When the chain succeeds, the principals of *every* provider that ran and answered
//! `Authenticated` (in chain order; a SUFFICIENT short-circuit means later providers did not
//! run) are merged by [`merge_principals`]:
//!
//! | field | rule |
//! |---|---|
//! | `subject`, `username`, `provider` | from the first successful provider only (the subject is never mixed) |
//! | `name`, `given_name`, `family_name` | each: the first successful provider that has a value |
//! | `email` + `email_verified` | as a pair, from the first successful provider that has an email (a later provider's verification never applies to another provider's address) |
//! | `groups` | ordered union, first occurrence kept, no duplicates (exact, case-sensitive names) |
//! | `amr` | ordered union, like groups |
//! | other `attributes` | per key: the first successful provider that has the key wins (no deep merge) |
//!
//! Providers that failed or were ignored contribute nothing, even in a chain that succeeded
//! (e.g. an OPTIONAL directory that was down contributes no groups).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::{AuthProvider, Outcome, PasswordCredentials, Principal};
use crate::detail;
use crate::error::OAuthError;
use crate::trace::Trace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ControlFlag {
    Required,
    Requisite,
    Sufficient,
    Optional,
}

impl ControlFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::Requisite => "REQUISITE",
            Self::Sufficient => "SUFFICIENT",
            Self::Optional => "OPTIONAL",
        }
    }
}

#[derive(Clone)]
pub struct ChainEntry {
    pub flag: ControlFlag,
    pub provider: Arc<dyn AuthProvider>,
}

/// The chain's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Authenticated(Principal),
    /// A genuine rejection. `credential_failure` is true when it was caused by a bad password,
    /// unknown user or empty password (what lockout counts); false for account-state denials.
    Denied {
        outcome: Outcome,
        provider: String,
        credential_failure: bool,
    },
    /// Could not decide because a provider was unavailable.
    Unavailable {
        provider: String,
        cause: String,
        host: Option<String>,
    },
}

impl Decision {
    /// For API paths (JSON endpoints that run the chain): an `Unavailable` decision becomes
    /// `temporarily_unavailable`, which the HTTP edge answers with 503. The client only sees
    /// the generic description; the cause, logged by the edge at WARN, names the provider and
    /// its host. `None` for the other decisions.
    pub fn unavailable_error(&self) -> Option<OAuthError> {
        match self {
            Decision::Unavailable {
                provider,
                cause,
                host,
            } => Some(OAuthError::temporarily_unavailable(format!(
                "authentication provider '{provider}' unavailable (host {}): {cause}",
                host.as_deref().unwrap_or("-")
            ))),
            _ => None,
        }
    }
}

/// The verdict plus what each provider answered, in order (providers not run are absent).
#[derive(Debug, Clone)]
pub struct ChainResult {
    pub decision: Decision,
    pub outcomes: Vec<(String, ControlFlag, Outcome)>,
}

#[derive(Clone, Default)]
pub struct Chain {
    entries: Vec<ChainEntry>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{}:{}", e.provider.name(), e.flag.as_str())),
            )
            .finish()
    }
}

/// Where the pure evaluation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Index of the outcome that decides the failure.
    Failure(usize),
    /// Every provider was NotApplicable.
    AllIgnored,
}

/// Pure JAAS evaluation over a sequence of (flag, succeeded?) results; `None` = ignored.
/// Returns the verdict and how many entries were consumed (the rest would not be run).
pub fn evaluate(results: &[(ControlFlag, Option<bool>)]) -> (Verdict, usize) {
    let mut first_required_err: Option<usize> = None;
    let mut first_err: Option<usize> = None;
    let mut success = false;
    for (i, (flag, result)) in results.iter().enumerate() {
        match result {
            None => {}
            Some(true) => {
                if *flag == ControlFlag::Sufficient && first_required_err.is_none() {
                    return (Verdict::Success, i + 1);
                }
                success = true;
            }
            Some(false) => match flag {
                ControlFlag::Requisite => {
                    return (Verdict::Failure(first_required_err.unwrap_or(i)), i + 1);
                }
                ControlFlag::Required => {
                    first_required_err.get_or_insert(i);
                }
                ControlFlag::Sufficient | ControlFlag::Optional => {
                    first_err.get_or_insert(i);
                }
            },
        }
    }
    let n = results.len();
    if let Some(i) = first_required_err {
        (Verdict::Failure(i), n)
    } else if !success {
        match first_err {
            Some(i) => (Verdict::Failure(i), n),
            None => (Verdict::AllIgnored, n),
        }
    } else {
        (Verdict::Success, n)
    }
}

fn as_result(o: &Outcome) -> Option<bool> {
    match o {
        Outcome::Authenticated(_) => Some(true),
        Outcome::NotApplicable => None,
        _ => Some(false),
    }
}

impl Chain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// This chain with `entries` before its own (upstream providers, see
    /// `crate::federation`'s "Control flags").
    pub fn with_prefix(mut self, mut entries: Vec<ChainEntry>) -> Self {
        entries.append(&mut self.entries);
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Run the providers in order, stopping where JAAS stops.
    pub async fn authenticate(
        &self,
        credentials: &PasswordCredentials,
        trace: &mut Trace,
    ) -> ChainResult {
        let mut results: Vec<(ControlFlag, Option<bool>)> = Vec::with_capacity(self.entries.len());
        let mut outcomes: Vec<(String, ControlFlag, Outcome)> =
            Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let name = entry.provider.name().to_owned();
            let outcome = entry.provider.authenticate(credentials, trace).await;
            trace.step("chain", format!("provider:{name}"), outcome.label(), || {
                let mut d =
                    detail! { "flag" => entry.flag.as_str(), "kind" => entry.provider.kind() };
                if let Outcome::Unavailable { cause, host } = &outcome {
                    d.insert("cause".into(), cause.clone().into());
                    if let Some(h) = host {
                        d.insert("host".into(), h.clone().into());
                    }
                }
                d
            });
            results.push((entry.flag, as_result(&outcome)));
            outcomes.push((name, entry.flag, outcome));
            if Self::stops_here(&results) {
                break;
            }
        }
        let flags: Vec<ControlFlag> = self.entries.iter().map(|e| e.flag).collect();
        let decision = decide(&results, &outcomes, &flags);
        trace.step("chain", "decision", decision_label(&decision), Map::new);
        ChainResult { decision, outcomes }
    }

    fn stops_here(results: &[(ControlFlag, Option<bool>)]) -> bool {
        let Some((flag, last)) = results.last() else {
            return false;
        };
        match (flag, last) {
            (ControlFlag::Requisite, Some(false)) => true,
            (ControlFlag::Sufficient, Some(true)) => !results[..results.len() - 1]
                .iter()
                .any(|(f, r)| *f == ControlFlag::Required && *r == Some(false)),
            _ => false,
        }
    }
}

/// The verdict for answers obtained without running [`Chain::authenticate`] (a sign-in that
/// came back from an upstream provider: every entry's answer is known up front). Same rules as
/// the chain; entries after the point where JAAS would stop do not change the verdict.
pub fn decide_outcomes(outcomes: &[(String, ControlFlag, Outcome)]) -> Decision {
    let results: Vec<(ControlFlag, Option<bool>)> = outcomes
        .iter()
        .map(|(_, f, o)| (*f, as_result(o)))
        .collect();
    let flags: Vec<ControlFlag> = outcomes.iter().map(|(_, f, _)| *f).collect();
    // JAAS `LoginContext.invoke` returns at a REQUISITE failure or a short-circuiting
    // SUFFICIENT success (javax.security.auth.login.Configuration): the answers after that
    // point are those of modules never called. Decide exactly as `Chain::authenticate` would
    // have, from the answers it would have obtained (`flags` keeps the whole chain, so the
    // entries not reached stay "unknown" for the unavailable rule).
    let (_, ran) = evaluate(&results);
    decide(&results[..ran], &outcomes[..ran], &flags)
}

pub fn decision_label(d: &Decision) -> &'static str {
    match d {
        Decision::Authenticated(_) => "authenticated",
        Decision::Denied { .. } => "denied",
        Decision::Unavailable { .. } => "unavailable",
    }
}

/// Decide from the outcomes of the providers that ran (`flags` = the whole chain's flags).
fn decide(
    results: &[(ControlFlag, Option<bool>)],
    outcomes: &[(String, ControlFlag, Outcome)],
    flags: &[ControlFlag],
) -> Decision {
    let (verdict, _) = evaluate(results);
    match verdict {
        Verdict::Success => Decision::Authenticated(merge_principals(outcomes)),
        Verdict::AllIgnored => Decision::Denied {
            outcome: Outcome::NotApplicable,
            provider: String::new(),
            credential_failure: false,
        },
        Verdict::Failure(i) => {
            // Could the attempt have succeeded? Re-evaluate with every unavailable provider
            // succeeding and every provider that did not run (the chain stopped at an
            // unavailable REQUISITE) succeeding too: their answers are unknown. JAAS is
            // monotone (turning a failure into a success never turns success into failure),
            // so this is exactly "some answers of the unknown providers would succeed".
            let hypothetical: Vec<(ControlFlag, Option<bool>)> = flags
                .iter()
                .enumerate()
                .map(|(k, f)| match (results.get(k), outcomes.get(k)) {
                    (Some(_), Some((_, _, Outcome::Unavailable { .. }))) | (None, _) => {
                        (*f, Some(true))
                    }
                    (Some((_, r)), _) => (*f, *r),
                })
                .collect();
            let decisive = match evaluate(&hypothetical).0 {
                Verdict::Success => {
                    let first_unavailable = outcomes
                        .iter()
                        .find(|(_, _, o)| matches!(o, Outcome::Unavailable { .. }));
                    if let Some((name, _, Outcome::Unavailable { cause, host })) = first_unavailable
                    {
                        return Decision::Unavailable {
                            provider: name.clone(),
                            cause: cause.clone(),
                            host: host.clone(),
                        };
                    }
                    i
                }
                // Not excused by an outage: name the provider that genuinely refused (the
                // hypothetical never fails on an unavailable one).
                Verdict::Failure(j) if j < outcomes.len() => j,
                Verdict::Failure(_) | Verdict::AllIgnored => i,
            };
            let (name, _, outcome) = &outcomes[decisive];
            // A credential failure anywhere among the failed providers makes it one for lockout,
            // unless an account-state answer shows the password was right.
            let any_state = outcomes
                .iter()
                .any(|(_, _, o)| matches!(o, Outcome::AccountState(_)));
            let credential_failure =
                !any_state && outcomes.iter().any(|(_, _, o)| o.is_credential_failure());
            Decision::Denied {
                outcome: outcome.clone(),
                provider: name.clone(),
                credential_failure,
            }
        }
    }
}

/// Merge the principals of all successful providers by the rules in the module documentation
/// ("Attribute merge rules"): the first (in chain order) supplies the subject, username and
/// provider; for each other single-valued attribute the first provider that has it wins (email
/// and `email_verified` as a pair); groups and `amr` are the ordered union.
pub fn merge_principals(outcomes: &[(String, ControlFlag, Outcome)]) -> Principal {
    let mut merged: Option<Principal> = None;
    for (_, _, o) in outcomes {
        let Outcome::Authenticated(p) = o else {
            continue;
        };
        match merged.as_mut() {
            None => merged = Some(p.clone()),
            Some(m) => {
                m.name = m.name.take().or_else(|| p.name.clone());
                m.given_name = m.given_name.take().or_else(|| p.given_name.clone());
                m.family_name = m.family_name.take().or_else(|| p.family_name.clone());
                if m.email.is_none() {
                    m.email = p.email.clone();
                    m.email_verified = p.email_verified;
                }
                for g in &p.groups {
                    if !m.groups.contains(g) {
                        m.groups.push(g.clone());
                    }
                }
                for a in &p.amr {
                    if !m.amr.contains(a) {
                        m.amr.push(a.clone());
                    }
                }
                for (k, v) in &p.attributes {
                    m.attributes.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    merged.unwrap_or_default()
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "chain_props.rs"]
mod props;
