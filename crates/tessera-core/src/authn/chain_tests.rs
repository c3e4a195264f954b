use super::*;
use crate::authn::AccountState;
use async_trait::async_trait;

struct Fixed(&'static str, Outcome);

#[async_trait]
impl AuthProvider for Fixed {
    fn name(&self) -> &str {
        self.0
    }
    fn kind(&self) -> &'static str {
        "fixed"
    }
    async fn authenticate(&self, _: &PasswordCredentials, _: &mut Trace) -> Outcome {
        self.1.clone()
    }
}

fn ok(name: &str) -> Outcome {
    Outcome::Authenticated(Principal {
        subject: name.into(),
        username: "u".into(),
        provider: name.into(),
        groups: vec![name.into()],
        ..Default::default()
    })
}

fn down() -> Outcome {
    Outcome::Unavailable {
        cause: "connection refused".into(),
        host: Some("ldap1:389".into()),
    }
}

async fn run(entries: Vec<(ControlFlag, &'static str, Outcome)>) -> ChainResult {
    let chain = Chain::new(
        entries
            .into_iter()
            .map(|(flag, n, o)| ChainEntry {
                flag,
                provider: Arc::new(Fixed(n, o)),
            })
            .collect(),
    );
    let creds = PasswordCredentials {
        username: "u".into(),
        password: "p".into(),
    };
    chain.authenticate(&creds, &mut Trace::new(true)).await
}

use ControlFlag::*;

#[tokio::test]
async fn sufficient_success_short_circuits() {
    let r = run(vec![
        (Sufficient, "a", ok("a")),
        (Required, "b", Outcome::BadCredentials),
    ])
    .await;
    assert!(matches!(r.decision, Decision::Authenticated(ref p) if p.subject == "a"));
    assert_eq!(r.outcomes.len(), 1);
}

#[tokio::test]
async fn sufficient_does_not_rescue_an_earlier_required_failure() {
    let r = run(vec![
        (Required, "a", Outcome::BadCredentials),
        (Sufficient, "b", ok("b")),
    ])
    .await;
    assert!(
        matches!(r.decision, Decision::Denied { ref provider, credential_failure: true, .. } if provider == "a")
    );
}

#[tokio::test]
async fn requisite_failure_stops_at_once() {
    let r = run(vec![
        (Requisite, "a", Outcome::UnknownUser),
        (Sufficient, "b", ok("b")),
    ])
    .await;
    assert_eq!(r.outcomes.len(), 1);
    assert!(matches!(r.decision, Decision::Denied { .. }));
}

#[tokio::test]
async fn all_ignored_fails() {
    let r = run(vec![(Optional, "a", Outcome::NotApplicable)]).await;
    assert!(matches!(
        r.decision,
        Decision::Denied {
            credential_failure: false,
            ..
        }
    ));
}

#[tokio::test]
async fn optional_only_needs_one_success() {
    let r = run(vec![
        (Optional, "a", Outcome::BadCredentials),
        (Optional, "b", ok("b")),
    ])
    .await;
    assert!(matches!(r.decision, Decision::Authenticated(_)));
}

#[tokio::test]
async fn outage_is_never_a_bad_password() {
    let r = run(vec![
        (Sufficient, "local", Outcome::UnknownUser),
        (Sufficient, "ldap", down()),
    ])
    .await;
    assert!(matches!(r.decision, Decision::Unavailable { ref provider, .. } if provider == "ldap"));
}

#[tokio::test]
async fn break_glass_first_survives_an_outage() {
    let r = run(vec![
        (Sufficient, "local", ok("local")),
        (Required, "ldap", down()),
    ])
    .await;
    assert!(matches!(r.decision, Decision::Authenticated(_)));
}

#[tokio::test]
async fn genuine_failure_elsewhere_beats_an_outage() {
    // REQUIRED local said "wrong password": even a working LDAP could not make this succeed.
    let r = run(vec![
        (Required, "local", Outcome::BadCredentials),
        (Required, "ldap", down()),
    ])
    .await;
    assert!(matches!(
        r.decision,
        Decision::Denied {
            credential_failure: true,
            ..
        }
    ));
}

#[tokio::test]
async fn account_state_is_not_a_credential_failure() {
    let r = run(vec![(
        Required,
        "ldap",
        Outcome::AccountState(AccountState::LockedAtDirectory),
    )])
    .await;
    assert!(matches!(
        r.decision,
        Decision::Denied {
            credential_failure: false,
            ..
        }
    ));
}

#[tokio::test]
async fn attributes_merge_first_wins_groups_union() {
    let r = run(vec![(Required, "a", ok("a")), (Required, "b", ok("b"))]).await;
    let Decision::Authenticated(p) = r.decision else {
        panic!("expected success")
    };
    assert_eq!(p.subject, "a");
    assert_eq!(p.groups, vec!["a".to_string(), "b".to_string()]);
}

/// `decide_outcomes` (every answer known up front) must give the verdict `Chain::authenticate`
/// gives: JAAS `LoginContext` never calls the modules after a REQUISITE failure or a
/// short-circuiting SUFFICIENT success, so their answers change neither the verdict, nor the
/// "temporarily unavailable" excuse, nor the merged attributes.
#[tokio::test]
async fn decide_outcomes_ignores_answers_past_where_jaas_stops() {
    let cases: Vec<Vec<(ControlFlag, &'static str, Outcome)>> = vec![
        // Stopped at an unavailable REQUISITE: the later REQUIRED rejection was never asked.
        vec![
            (Requisite, "ldap", down()),
            (Required, "local", Outcome::BadCredentials),
        ],
        // Stopped at a SUFFICIENT success: the later OPTIONAL provider contributes no groups.
        vec![(Sufficient, "a", ok("a")), (Optional, "b", ok("b"))],
        // Stopped at a REQUISITE rejection: a later SUFFICIENT success cannot matter.
        vec![
            (Requisite, "a", Outcome::BadCredentials),
            (Sufficient, "b", down()),
        ],
    ];
    for entries in cases {
        let known: Vec<(String, ControlFlag, Outcome)> = entries
            .iter()
            .map(|(f, n, o)| ((*n).to_string(), *f, o.clone()))
            .collect();
        let ran = run(entries).await;
        assert_eq!(decide_outcomes(&known), ran.decision, "{known:?}");
    }
}
