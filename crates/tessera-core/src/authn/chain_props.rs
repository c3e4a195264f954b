//! Property test: the chain against an independent reference model of the JAAS rules.
//!
//! The model below is written from the `javax.security.auth.login.Configuration` javadoc text
//! (spec digest §B1), sentence by sentence, and deliberately shares no code with `evaluate`:
//!
//! - ignored modules (`login()` returned false: [`Outcome::NotApplicable`]) are run but treated
//!   as if they were not configured;
//! - Required: "If it succeeds or fails, authentication still continues";
//! - Requisite: "If it fails, control immediately returns to the application";
//! - Sufficient: "If it does succeed, control immediately returns to the application", with the
//!   issue's (and OpenJDK `LoginContext`'s) refinement: only if no earlier Required failed;
//! - Optional: "If it succeeds or fails, authentication still continues";
//! - "The overall authentication succeeds only if all Required and Requisite LoginModules
//!   succeed. If a Sufficient LoginModule is configured and succeeds, then only the Required and
//!   Requisite LoginModules prior to that Sufficient LoginModule need to have succeeded … If no
//!   Required or Requisite LoginModules are configured …, then at least one Sufficient or
//!   Optional LoginModule must succeed."
//!
//! Properties, for random chains of 1–6 entries with random flags and random outcomes:
//! 1. the chain's verdict (authenticated or not) equals the model's;
//! 2. the chain calls exactly the providers the model calls, in order, once each;
//! 3. `Decision::Unavailable` exactly when the model's failure becomes a success once every
//!    unavailable provider succeeds (providers the real run never reached are unknown and may
//!    succeed); otherwise a failure is `Denied` and names a provider that genuinely refused;
//! 4. a success carries the merged principal of the providers that succeeded;
//! 5. deciding from every answer known up front (`decide_outcomes`) gives the same decision.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::authn::AccountState;

// ------------------------------------------------------------------ the reference model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Succeeded,
    Failed,
    Ignored,
}

/// The model: which modules are called (indices, in order) and whether the overall
/// authentication succeeds.
fn reference(chain: &[(ControlFlag, Answer)]) -> (bool, Vec<usize>) {
    let mut called = Vec::new();
    // The modules that were called and not ignored: (flag, succeeded).
    let mut counted: Vec<(ControlFlag, bool)> = Vec::new();
    for (index, &(flag, answer)) in chain.iter().enumerate() {
        called.push(index);
        let succeeded = match answer {
            Answer::Ignored => continue,
            Answer::Succeeded => true,
            Answer::Failed => false,
        };
        let earlier_required_failed = counted
            .iter()
            .any(|&(f, ok)| f == ControlFlag::Required && !ok);
        counted.push((flag, succeeded));
        let returns_now = match flag {
            ControlFlag::Requisite => !succeeded,
            ControlFlag::Sufficient => succeeded && !earlier_required_failed,
            ControlFlag::Required | ControlFlag::Optional => false,
        };
        if returns_now {
            break;
        }
    }
    (overall(&counted), called)
}

fn is_required_or_requisite(flag: ControlFlag) -> bool {
    matches!(flag, ControlFlag::Required | ControlFlag::Requisite)
}

/// The javadoc's "overall authentication" paragraph over the modules that answered.
fn overall(counted: &[(ControlFlag, bool)]) -> bool {
    if let Some(k) = counted
        .iter()
        .position(|&(f, ok)| f == ControlFlag::Sufficient && ok)
    {
        // "only the Required and Requisite LoginModules prior to that Sufficient LoginModule
        // need to have succeeded".
        return counted[..k]
            .iter()
            .filter(|&&(f, _)| is_required_or_requisite(f))
            .all(|&(_, ok)| ok);
    }
    if counted.iter().any(|&(f, _)| is_required_or_requisite(f)) {
        // "succeeds only if all Required and Requisite LoginModules succeed" — and then the
        // Sufficient/Optional ones that failed do not matter.
        counted
            .iter()
            .filter(|&&(f, _)| is_required_or_requisite(f))
            .all(|&(_, ok)| ok)
    } else {
        // "at least one Sufficient or Optional LoginModule must succeed" (an all-ignored
        // chain therefore fails).
        counted.iter().any(|&(_, ok)| ok)
    }
}

fn answer_of(o: &Outcome) -> Answer {
    match o {
        Outcome::Authenticated(_) => Answer::Succeeded,
        Outcome::NotApplicable => Answer::Ignored,
        _ => Answer::Failed,
    }
}

// ------------------------------------------------------------------ providers that record calls

struct Recorded {
    name: String,
    outcome: Outcome,
    calls: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl AuthProvider for Recorded {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "recorded"
    }
    async fn authenticate(&self, _: &PasswordCredentials, _: &mut Trace) -> Outcome {
        self.calls.lock().unwrap().push(self.name.clone());
        self.outcome.clone()
    }
}

fn principal(index: usize) -> Principal {
    Principal {
        subject: format!("sub-{index}"),
        username: "u".into(),
        provider: format!("p{index}"),
        // Overlapping groups, so that the union's de-duplication is exercised.
        groups: vec![format!("g{index}"), "everyone".into()],
        email: index
            .is_multiple_of(2)
            .then(|| format!("u{index}@example.com")),
        email_verified: index.is_multiple_of(4),
        ..Principal::default()
    }
}

fn flag() -> impl Strategy<Value = ControlFlag> {
    prop_oneof![
        Just(ControlFlag::Required),
        Just(ControlFlag::Requisite),
        Just(ControlFlag::Sufficient),
        Just(ControlFlag::Optional),
    ]
}

/// Outcome kinds; the principal is filled in per position.
fn outcome_kind() -> impl Strategy<Value = u8> {
    0u8..9
}

fn outcome(kind: u8, index: usize) -> Outcome {
    match kind {
        0 | 1 => Outcome::Authenticated(principal(index)),
        2 => Outcome::BadCredentials,
        3 => Outcome::UnknownUser,
        4 => Outcome::EmptyPassword,
        5 => Outcome::AccountState(AccountState::LockedAtDirectory),
        6 | 7 => Outcome::Unavailable {
            cause: "connection refused".into(),
            host: Some(format!("ldap{index}.example:389")),
        },
        _ => Outcome::NotApplicable,
    }
}

fn is_unavailable(o: &Outcome) -> bool {
    matches!(o, Outcome::Unavailable { .. })
}

fn check(spec: &[(ControlFlag, u8)], rt: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let drawn: Vec<(ControlFlag, Outcome)> = spec
        .iter()
        .enumerate()
        .map(|(i, &(f, k))| (f, outcome(k, i)))
        .collect();
    let chain = Chain::new(
        drawn
            .iter()
            .enumerate()
            .map(|(i, (f, o))| ChainEntry {
                flag: *f,
                provider: Arc::new(Recorded {
                    name: format!("p{i}"),
                    outcome: o.clone(),
                    calls: calls.clone(),
                }),
            })
            .collect(),
    );
    let creds = PasswordCredentials {
        username: "u".into(),
        password: "pw".into(),
    };
    let result = rt.block_on(chain.authenticate(&creds, &mut Trace::new(false)));
    let called: Vec<String> = calls.lock().unwrap().clone();

    let model_input: Vec<(ControlFlag, Answer)> =
        drawn.iter().map(|(f, o)| (*f, answer_of(o))).collect();
    let (model_ok, model_called) = reference(&model_input);

    // 2. Same providers, same order, each once; the result lists exactly those.
    let expected_called: Vec<String> = model_called.iter().map(|i| format!("p{i}")).collect();
    prop_assert_eq!(&called, &expected_called);
    let listed: Vec<String> = result.outcomes.iter().map(|(n, _, _)| n.clone()).collect();
    prop_assert_eq!(&listed, &expected_called);
    for (name, f, o) in &result.outcomes {
        let i: usize = name[1..].parse().unwrap();
        prop_assert_eq!(*f, drawn[i].0);
        prop_assert_eq!(o, &drawn[i].1);
    }

    // 5. Every answer known up front (`decide_outcomes`, a sign-in back from an upstream
    // provider): the same decision, whatever the providers JAAS would not have called answer.
    let known: Vec<(String, ControlFlag, Outcome)> = drawn
        .iter()
        .enumerate()
        .map(|(i, (f, o))| (format!("p{i}"), *f, o.clone()))
        .collect();
    prop_assert_eq!(&decide_outcomes(&known), &result.decision);

    // 1. Same verdict.
    prop_assert_eq!(
        matches!(result.decision, Decision::Authenticated(_)),
        model_ok,
        "decision {:?}",
        result.decision
    );

    // 3. Unavailable exactly when the outage is the only reason for the failure. What the
    // chain can know: the answers of the providers it called. Those it never called are
    // unknown and may succeed (the model is monotone, so "may" = "all succeed").
    let optimistic: Vec<(ControlFlag, Answer)> = drawn
        .iter()
        .enumerate()
        .map(|(i, (f, o))| {
            if !model_called.contains(&i) || is_unavailable(o) {
                (*f, Answer::Succeeded)
            } else {
                (*f, answer_of(o))
            }
        })
        .collect();
    let excused = !model_ok && reference(&optimistic).0;
    prop_assert_eq!(
        matches!(result.decision, Decision::Unavailable { .. }),
        excused,
        "decision {:?}",
        result.decision
    );
    // The literal reading with the drawn answers of the providers never reached: whenever the
    // attempt would have succeeded had the unavailable providers succeeded, the user is told
    // "unavailable", never "denied"; the converse fails only when the chain stopped at an
    // unavailable REQUISITE and so never learned the later answers.
    let literal: Vec<(ControlFlag, Answer)> = drawn
        .iter()
        .map(|(f, o)| {
            if is_unavailable(o) {
                (*f, Answer::Succeeded)
            } else {
                (*f, answer_of(o))
            }
        })
        .collect();
    let literal_excused = !model_ok && reference(&literal).0;
    if literal_excused {
        let unavailable = matches!(result.decision, Decision::Unavailable { .. });
        prop_assert!(unavailable, "decision {:?}", result.decision);
    }
    if excused && !literal_excused {
        let last = model_called.last().copied().unwrap();
        prop_assert!(
            drawn[last].0 == ControlFlag::Requisite && is_unavailable(&drawn[last].1),
            "stopped at {last}"
        );
        prop_assert!(model_called.len() < drawn.len());
    }

    match &result.decision {
        Decision::Unavailable { provider, host, .. } => {
            // Names the first unavailable provider and its host.
            let first = result
                .outcomes
                .iter()
                .find(|(_, _, o)| is_unavailable(o))
                .unwrap();
            prop_assert_eq!(provider, &first.0);
            let i: usize = provider[1..].parse().unwrap();
            prop_assert_eq!(host.clone(), Some(format!("ldap{i}.example:389")));
        }
        Decision::Denied {
            outcome,
            provider,
            credential_failure,
        } => {
            if model_input.iter().all(|(_, a)| *a == Answer::Ignored) {
                prop_assert_eq!(outcome, &Outcome::NotApplicable);
                prop_assert!(!credential_failure);
            } else {
                // A genuine refusal by a provider that ran: never an unavailable one, never an
                // ignored one, never a success.
                let named = result.outcomes.iter().find(|(n, _, _)| n == provider);
                prop_assert!(named.is_some(), "{provider} did not run");
                prop_assert_eq!(&named.unwrap().2, outcome);
                prop_assert_eq!(answer_of(outcome), Answer::Failed);
                prop_assert!(!is_unavailable(outcome), "denied by an outage: {outcome:?}");
            }
            // Lockout counts only genuine credential failures.
            if *credential_failure {
                prop_assert!(
                    result
                        .outcomes
                        .iter()
                        .any(|(_, _, o)| o.is_credential_failure())
                );
            }
        }
        Decision::Authenticated(p) => {
            // 4. Merge: subject from the first success, groups the ordered union.
            let successes: Vec<usize> = result
                .outcomes
                .iter()
                .filter(|(_, _, o)| o.is_success())
                .map(|(n, _, _)| n[1..].parse().unwrap())
                .collect();
            let first = successes[0];
            prop_assert_eq!(&p.subject, &format!("sub-{first}"));
            prop_assert_eq!(&p.provider, &format!("p{first}"));
            let mut groups = Vec::new();
            for i in &successes {
                for g in principal(*i).groups {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
            prop_assert_eq!(&p.groups, &groups);
            let email_from = successes.iter().find(|i| *i % 2 == 0);
            prop_assert_eq!(
                p.email.clone(),
                email_from.map(|i| format!("u{i}@example.com"))
            );
            prop_assert_eq!(p.email_verified, email_from.is_some_and(|i| i % 4 == 0));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn chain_matches_the_jaas_reference_model(
        spec in prop::collection::vec((flag(), outcome_kind()), 1..=6)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        check(&spec, &rt)?;
    }
}

/// Every chain of up to 3 entries with every flag and every answer class, exhaustively
/// (4 flags × 5 outcome classes per position: 8,420 chains).
#[test]
fn chain_matches_the_reference_model_exhaustively_up_to_three() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let flags = [
        ControlFlag::Required,
        ControlFlag::Requisite,
        ControlFlag::Sufficient,
        ControlFlag::Optional,
    ];
    // One representative per class: success, credential failure, account state, unavailable,
    // ignored.
    let kinds = [0u8, 2, 5, 6, 8];
    let mut alphabet = Vec::new();
    for f in flags {
        for k in kinds {
            alphabet.push((f, k));
        }
    }
    let mut count = 0;
    let mut chains: Vec<Vec<(ControlFlag, u8)>> = alphabet.iter().map(|e| vec![*e]).collect();
    for _ in 0..3 {
        let mut next = Vec::new();
        for c in &chains {
            check(c, &rt).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            count += 1;
            for e in &alphabet {
                let mut longer = c.clone();
                longer.push(*e);
                next.push(longer);
            }
        }
        chains = next;
    }
    assert_eq!(count, 20 + 400 + 8000);
}

/// The case the property test found: a REQUIRED provider that rejected the password before an
/// unavailable REQUISITE directory. No answer of the directory (or of anything after it) could
/// make this attempt succeed, so it is a denial (counted by lockout) naming the provider that
/// refused, not "temporarily unavailable" naming the directory.
#[tokio::test]
async fn required_rejection_before_an_unavailable_requisite_is_a_denial() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let entry = |name: &str, flag, outcome| ChainEntry {
        flag,
        provider: Arc::new(Recorded {
            name: name.into(),
            outcome,
            calls: calls.clone(),
        }),
    };
    let chain = Chain::new(vec![
        entry("local", ControlFlag::Required, Outcome::BadCredentials),
        entry(
            "ldap",
            ControlFlag::Requisite,
            Outcome::Unavailable {
                cause: "connection refused".into(),
                host: Some("ldap1:389".into()),
            },
        ),
        entry("ldap2", ControlFlag::Sufficient, Outcome::NotApplicable),
    ]);
    let creds = PasswordCredentials {
        username: "u".into(),
        password: "pw".into(),
    };
    let r = chain.authenticate(&creds, &mut Trace::new(true)).await;
    assert_eq!(*calls.lock().unwrap(), vec!["local", "ldap"]);
    assert_eq!(
        r.decision,
        Decision::Denied {
            outcome: Outcome::BadCredentials,
            provider: "local".into(),
            credential_failure: true,
        }
    );
    // An unavailable REQUISITE alone (later answers unknown) is unavailable.
    let chain = Chain::new(vec![
        entry(
            "ldap",
            ControlFlag::Requisite,
            Outcome::Unavailable {
                cause: "connection refused".into(),
                host: Some("ldap1:389".into()),
            },
        ),
        entry("local", ControlFlag::Required, Outcome::BadCredentials),
    ]);
    let r = chain.authenticate(&creds, &mut Trace::new(true)).await;
    assert!(
        matches!(r.decision, Decision::Unavailable { ref provider, .. } if provider == "ldap"),
        "{:?}",
        r.decision
    );
}

/// A denial never names an unavailable provider: REQUIRED directory down, then a REQUIRED
/// store that rejects the password → denied by the store.
#[tokio::test]
async fn denial_names_the_provider_that_refused_not_the_outage() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let entry = |name: &str, flag, outcome| ChainEntry {
        flag,
        provider: Arc::new(Recorded {
            name: name.into(),
            outcome,
            calls: calls.clone(),
        }),
    };
    let chain = Chain::new(vec![
        entry(
            "ldap",
            ControlFlag::Required,
            Outcome::Unavailable {
                cause: "timeout".into(),
                host: None,
            },
        ),
        entry("local", ControlFlag::Required, Outcome::UnknownUser),
    ]);
    let creds = PasswordCredentials {
        username: "u".into(),
        password: "pw".into(),
    };
    let r = chain.authenticate(&creds, &mut Trace::new(true)).await;
    assert_eq!(
        r.decision,
        Decision::Denied {
            outcome: Outcome::UnknownUser,
            provider: "local".into(),
            credential_failure: true,
        }
    );
}

#[test]
fn unavailable_becomes_temporarily_unavailable_naming_provider_and_host() {
    let d = Decision::Unavailable {
        provider: "corp".into(),
        cause: "no answer within 1000 ms".into(),
        host: Some("ldap://127.0.0.1:3890".into()),
    };
    let e = d.unavailable_error().unwrap();
    assert_eq!(e.code, crate::error::ErrorCode::TemporarilyUnavailable);
    let cause = e.cause.clone().unwrap();
    assert!(
        cause.contains("'corp'") && cause.contains("ldap://127.0.0.1:3890"),
        "{cause}"
    );
    // The client sees the generic description only.
    assert!(!e.safe_description().unwrap().contains("127.0.0.1"));
    assert!(
        Decision::Authenticated(Principal::default())
            .unavailable_error()
            .is_none()
    );
}
