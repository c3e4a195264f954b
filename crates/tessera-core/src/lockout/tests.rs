//! The pure policy with a fixed clock.

use super::*;

const T0: UnixTime = 1_700_000_000;

fn policy(threshold: u32) -> LockoutPolicy {
    LockoutPolicy {
        threshold,
        ..LockoutPolicy::users()
    }
}

/// One full attempt (begin + finish) on an in-memory record.
fn attempt(
    p: &LockoutPolicy,
    state: &mut Option<LockoutRecord>,
    outcome: AttemptOutcome,
    now: UnixTime,
) -> Result<Settled, UnixTime> {
    let key = LockoutKey::user("alice");
    let (s, admission) = begin_attempt(p, &key, state.as_ref(), now);
    *state = s;
    match admission {
        Admission::Locked { until, .. } => Err(until),
        Admission::Proceed { reserved } => {
            let (s, settled) = finish_attempt(
                p,
                &key,
                state.as_ref(),
                reserved,
                outcome,
                Some("192.0.2.1"),
                now,
            );
            *state = s;
            Ok(settled)
        }
    }
}

#[test]
fn defaults_are_documented_values() {
    let p = LockoutPolicy::default();
    assert!(p.enabled);
    assert_eq!(p.mode, LockoutMode::Enforce);
    assert_eq!(
        (p.threshold, p.reset_window, p.lock_duration),
        (5, 300, 1800)
    );
    assert_eq!(p.progressive, None);
}

#[test]
fn nth_failure_locks() {
    let p = policy(5);
    let mut st = None;
    for i in 1..5 {
        assert_eq!(
            attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + i),
            Ok(Settled::Counted { failures: i as u32 })
        );
    }
    let until = T0 + 5 + 1800;
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 5),
        Ok(Settled::LockedNow { until, failures: 5 })
    );
    // Even the right password is refused now, without reaching a provider.
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::Success, T0 + 6),
        Err(until)
    );
    assert!(st.as_ref().is_some_and(|r| r.is_locked(T0 + 6)));
}

#[test]
fn threshold_one_locks_on_first_failure() {
    let p = policy(1);
    let mut st = None;
    assert!(matches!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0),
        Ok(Settled::LockedNow { .. })
    ));
    // threshold 0 is treated as 1
    let p0 = policy(0);
    let mut st = None;
    assert!(matches!(
        attempt(&p0, &mut st, AttemptOutcome::CredentialFailure, T0),
        Ok(Settled::LockedNow { .. })
    ));
}

#[test]
fn window_resets_count() {
    let p = policy(3);
    let mut st = None;
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 100).ok();
    // The window runs from the first failure: at T0 + 300 it is over.
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 300),
        Ok(Settled::Counted { failures: 1 })
    );
    // One second before the end of the new window, the third failure still locks.
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 301).ok();
    assert!(matches!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 599),
        Ok(Settled::LockedNow { .. })
    ));
}

#[test]
fn lock_expires() {
    let p = policy(2);
    let mut st = None;
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    let Ok(Settled::LockedNow { until, .. }) =
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0)
    else {
        panic!("expected a lock")
    };
    assert_eq!(until, T0 + 1800);
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::Success, until - 1),
        Err(until)
    );
    // At `until` the lock is over and the count starts from zero.
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, until),
        Ok(Settled::Counted { failures: 1 })
    );
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::Success, until + 1),
        Ok(Settled::Released)
    );
    assert_eq!(st, None, "a success leaves nothing to remember");
}

#[test]
fn success_resets() {
    let p = policy(3);
    let mut st = None;
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    attempt(&p, &mut st, AttemptOutcome::Success, T0 + 1).ok();
    assert_eq!(st, None);
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + 2),
        Ok(Settled::Counted { failures: 1 })
    );
}

#[test]
fn neutral_outcomes_count_nothing() {
    let p = policy(2);
    let mut st = None;
    for i in 0..50 {
        assert_eq!(
            attempt(&p, &mut st, AttemptOutcome::Neutral, T0 + i),
            Ok(Settled::Released)
        );
    }
    assert_eq!(st, None);
}

#[test]
fn progressive_durations() {
    let p = LockoutPolicy {
        threshold: 1,
        lock_duration: 60,
        progressive: Some(Progressive {
            factor: 2,
            max: 300,
        }),
        ..LockoutPolicy::users()
    };
    assert_eq!(
        [1, 2, 3, 4, 5, 10].map(|n| p.lock_duration_for(n)),
        [60, 120, 240, 300, 300, 300]
    );
    let mut st = None;
    let mut now = T0;
    for expected in [60, 120, 240, 300, 300] {
        let Ok(Settled::LockedNow { until, .. }) =
            attempt(&p, &mut st, AttemptOutcome::CredentialFailure, now)
        else {
            panic!("expected a lock")
        };
        assert_eq!(until - now, expected);
        now = until;
    }
    // One `max` period after the last lock ended without failures, the streak is forgotten.
    now += 300;
    let Ok(Settled::LockedNow { until, .. }) =
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, now)
    else {
        panic!("expected a lock")
    };
    assert_eq!(until - now, 60);
    // A success forgets the streak at once.
    now = until;
    attempt(&p, &mut st, AttemptOutcome::Success, now).ok();
    let Ok(Settled::LockedNow { until, .. }) =
        attempt(&p, &mut st, AttemptOutcome::CredentialFailure, now)
    else {
        panic!("expected a lock")
    };
    assert_eq!(until - now, 60);
}

#[test]
fn monitor_only_counts_but_never_locks() {
    let p = LockoutPolicy {
        mode: LockoutMode::MonitorOnly,
        threshold: 3,
        ..LockoutPolicy::users()
    };
    let mut st = None;
    let results: Vec<_> = (0..6)
        .map(|i| attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + i))
        .collect();
    assert_eq!(
        results,
        vec![
            Ok(Settled::Counted { failures: 1 }),
            Ok(Settled::Counted { failures: 2 }),
            Ok(Settled::WouldLock { failures: 3 }),
            Ok(Settled::Counted { failures: 4 }),
            Ok(Settled::Counted { failures: 5 }),
            Ok(Settled::Counted { failures: 6 }),
        ]
    );
    assert!(
        st.as_ref()
            .is_some_and(|r| r.locked_until.is_none() && r.in_flight == 0)
    );
    assert_eq!(
        attempt(&p, &mut st, AttemptOutcome::Success, T0 + 7),
        Ok(Settled::Released)
    );
}

#[test]
fn disabled_policy_does_nothing() {
    let p = LockoutPolicy::disabled();
    let mut st = None;
    for i in 0..20 {
        assert_eq!(
            attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0 + i),
            Ok(Settled::Released)
        );
    }
    assert_eq!(st, None);
}

#[test]
fn reservations_bound_concurrent_attempts() {
    let p = policy(5);
    let key = LockoutKey::user("alice");
    let mut st: Option<LockoutRecord> = None;
    let mut admitted = 0;
    for _ in 0..200 {
        let (s, a) = begin_attempt(&p, &key, st.as_ref(), T0);
        st = s;
        if matches!(a, Admission::Proceed { reserved: true }) {
            admitted += 1;
        } else {
            assert_eq!(
                a,
                Admission::Locked {
                    until: T0 + RESERVATION_LEASE_SECS,
                    locked: false
                }
            );
        }
    }
    assert_eq!(admitted, 5);
    // All five fail: the fifth locks.
    let mut last = Settled::Released;
    for _ in 0..5 {
        let (s, settled) = finish_attempt(
            &p,
            &key,
            st.as_ref(),
            true,
            AttemptOutcome::CredentialFailure,
            None,
            T0 + 1,
        );
        st = s;
        last = settled;
    }
    assert_eq!(
        last,
        Settled::LockedNow {
            until: T0 + 1 + 1800,
            failures: 5
        }
    );
    let r = st.as_ref().map(|r| (r.in_flight, r.failures));
    assert_eq!(r, Some((0, 5)));
}

#[test]
fn a_neutral_outcome_releases_its_reservation() {
    let p = policy(2);
    let key = LockoutKey::user("alice");
    let (st, a) = begin_attempt(&p, &key, None, T0);
    assert_eq!(a, Admission::Proceed { reserved: true });
    let (st, a2) = begin_attempt(&p, &key, st.as_ref(), T0);
    assert_eq!(a2, Admission::Proceed { reserved: true });
    let (st, a3) = begin_attempt(&p, &key, st.as_ref(), T0);
    assert!(matches!(a3, Admission::Locked { locked: false, .. }));
    let (st, _) = finish_attempt(
        &p,
        &key,
        st.as_ref(),
        true,
        AttemptOutcome::Neutral,
        None,
        T0,
    );
    let (_, a4) = begin_attempt(&p, &key, st.as_ref(), T0);
    assert_eq!(a4, Admission::Proceed { reserved: true });
}

#[test]
fn abandoned_reservations_lapse() {
    let p = policy(1);
    let key = LockoutKey::user("alice");
    let (st, _) = begin_attempt(&p, &key, None, T0);
    let (st, a) = begin_attempt(&p, &key, st.as_ref(), T0 + 1);
    assert!(matches!(a, Admission::Locked { locked: false, .. }));
    let (st, a) = begin_attempt(&p, &key, st.as_ref(), T0 + RESERVATION_LEASE_SECS);
    assert_eq!(a, Admission::Proceed { reserved: true });
    assert!(st.is_some_and(|r| r.expires_at == T0 + 2 * RESERVATION_LEASE_SECS));
}

#[test]
fn a_success_does_not_lift_a_concurrent_lock() {
    let p = policy(1);
    let key = LockoutKey::user("alice");
    let (st, _) = begin_attempt(&p, &key, None, T0);
    let (st, _) = finish_attempt(
        &p,
        &key,
        st.as_ref(),
        true,
        AttemptOutcome::CredentialFailure,
        None,
        T0,
    );
    let (st, _) = finish_attempt(
        &p,
        &key,
        st.as_ref(),
        false,
        AttemptOutcome::Success,
        None,
        T0,
    );
    assert!(st.is_some_and(|r| r.is_locked(T0 + 1)));
}

#[test]
fn keys_and_expiry() {
    assert_eq!(LockoutKey::user("  Alice ").id(), "user:alice");
    let ip: std::net::IpAddr = [192, 0, 2, 7].into();
    assert_eq!(
        LockoutKey::client("svc", Some(ip), ClientLockoutScope::ClientAndSource).id(),
        "client:svc@192.0.2.7"
    );
    assert_eq!(
        LockoutKey::client("svc", None, ClientLockoutScope::ClientAndSource).id(),
        "client:svc@unknown"
    );
    assert_eq!(
        LockoutKey::client("svc", Some(ip), ClientLockoutScope::ClientOnly).id(),
        "client:svc"
    );

    let p = policy(3);
    let mut st = None;
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    // Window end (the reservation lease is shorter).
    assert_eq!(st.as_ref().map(|r| r.expires_at), Some(T0 + 300));
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    attempt(&p, &mut st, AttemptOutcome::CredentialFailure, T0).ok();
    assert_eq!(st.as_ref().map(|r| r.expires_at), Some(T0 + 1800));
    let status = st.as_ref().map(|r| LockoutStatus::of(r, &p, T0 + 10));
    assert!(status.is_some_and(|s| s.locked
        && s.failure_count == 3
        && s.last_failure_source.as_deref() == Some("192.0.2.1")));
}

#[test]
fn timestamps() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(T0), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
}

/// Every spelling a directory matches as `dave` (OpenLDAP's caseIgnoreMatch: compatibility
/// normalization, insignificant spaces) shares dave's key, so no spelling buys extra binds.
#[test]
fn directory_equivalent_spellings_share_one_key() {
    for spelling in [
        "dave",
        " DAVE ",
        "\u{ff44}\u{ff41}\u{ff56}\u{ff45}",     // fullwidth
        "\u{ff24}\u{ff21}\u{ff36}\u{ff25}",     // fullwidth capitals
        "\u{1d41d}\u{1d41a}\u{1d42f}\u{1d41e}", // mathematical bold
        "\u{1d673}\u{1d670}\u{1d685}\u{1d674}", // mathematical monospace capitals
        "\u{24d3}ave",                          // circled
        "\u{217e}ave",                          // small roman numeral five hundred
        "d\u{00ad}a\u{200b}ve\u{feff}",         // soft hyphen, zero-width space, BOM
        "\u{1d48}ave",                          // modifier letter small d
    ] {
        assert_eq!(normalize_username(spelling), "dave", "{spelling:?}");
    }
    assert_eq!(normalize_username("\u{fb01}n"), "fin");
    assert_eq!(normalize_username("\u{2163}"), "iv");
    assert_eq!(normalize_username("\u{1d7d0}\u{2461}"), "22");
    // Insignificant spaces: trimmed, runs (of any Unicode space) collapsed to one.
    assert_eq!(
        normalize_username("\u{3000}John \u{00a0}\t Smith "),
        "john smith"
    );
    // Other scripts keep their letters (lowercased).
    assert_eq!(normalize_username("\u{00c9}LODIE"), "\u{e9}lodie");
    // A separately typed accent composes (NFKC): one key for both spellings of é.
    assert_eq!(normalize_username("E\u{0301}lodie"), "\u{e9}lodie");
    assert_eq!(
        normalize_username("\u{41c}\u{430}\u{448}\u{430}"),
        "\u{43c}\u{430}\u{448}\u{430}"
    );
}
