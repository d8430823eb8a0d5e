//! Linearizability of recorded histories: many coordinators (separate
//! connections and subscriptions, like separate API servers), each with
//! many tasks, race over the same sandboxes; every call's invocation,
//! answer and times are recorded, and each sandbox's history is checked
//! against the sequential model of `tests/history/model.rs` (built on
//! `Lifecycle::decide`) with stateright's `LinearizabilityTester`.
//!
//! The checker is tested first on hand-made histories, including ones that
//! are not linearizable, so that a checker that cannot fail cannot pass.
//! `soak` (ignored; `make soak DURATION=10m`) runs every scenario of this
//! file and of `tests/faults.rs` for longer with more clients.

mod fixture;
mod history;
mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use history::Handmade;
use history::checker::{CHECK_BUDGET, check, check_sandbox_stateright, check_with_budget};
use history::model::{Op, Ret};
use history::report::{Tally, progress_bar, publish_soak};
use history::workload::{self, Profile};
use sandbox_coordinator::{Action, Lifecycle, Outcome, State};

// ----- the checker on hand-made histories ---------------------------------

fn begin(action: Action, token: u64) -> Op {
    Op::Begin { action, token }
}

fn finish(fence: u64, outcome: Outcome, reason: &str) -> Op {
    Op::Finish {
        fence,
        outcome,
        reason: reason.into(),
    }
}

/// A sandbox registered at 0..1 ms by thread 0.
fn registered() -> Handmade {
    Handmade::default().call(
        0,
        0,
        1,
        Op::Register {
            execution: "e".into(),
        },
        Some(Ret::Created),
    )
}

/// The memoizing search's answer, after checking that stateright's
/// `LinearizabilityTester` (the reference) gives the same one.
fn linearizable(h: &Handmade) -> bool {
    let verdict = check(h.entries(), &Lifecycle::sandbox());
    assert_eq!(verdict.histories, 1);
    let reference = check_sandbox_stateright(h.entries(), &Lifecycle::sandbox());
    assert_eq!(
        verdict.violations.is_empty(),
        reference.is_ok(),
        "the search and stateright's tester disagree: {:?} vs {reference:?}",
        verdict.violations
    );
    verdict.violations.is_empty()
}

#[test]
fn checker_accepts_joiners_and_waiters_linearized_at_the_leaders_finish() {
    let h = registered()
        .call(1, 2, 3, begin(Action::Pause, 1), Some(Ret::Started(5)))
        .call(2, 4, 20, begin(Action::Pause, 2), Some(Ret::Joined(5)))
        .call(
            3,
            5,
            21,
            begin(Action::Kill, 3),
            Some(Ret::Absorbed(State::Paused)),
        )
        .call(
            1,
            10,
            11,
            finish(5, Outcome::Succeeded, ""),
            Some(Ret::Finished),
        )
        .call(
            4,
            22,
            23,
            begin(Action::Pause, 4),
            Some(Ret::AlreadyInState(State::Paused)),
        );
    assert!(linearizable(&h));
}

#[test]
fn checker_rejects_two_overlapping_starts_on_one_sandbox() {
    let h = registered()
        .call(1, 2, 5, begin(Action::Pause, 1), Some(Ret::Started(5)))
        .call(2, 3, 6, begin(Action::Kill, 2), Some(Ret::Started(6)))
        .call(
            1,
            7,
            8,
            finish(5, Outcome::Succeeded, ""),
            Some(Ret::Finished),
        )
        .call(
            2,
            7,
            8,
            finish(6, Outcome::Succeeded, ""),
            Some(Ret::Finished),
        );
    assert!(!linearizable(&h));
}

#[test]
fn checker_rejects_a_joiner_reporting_success_for_a_failed_leader() {
    let failed_leader = |joiner: Ret| {
        registered()
            .call(1, 2, 3, begin(Action::Pause, 1), Some(Ret::Started(5)))
            .call(2, 4, 20, begin(Action::Pause, 2), Some(joiner))
            .call(
                1,
                10,
                11,
                finish(5, Outcome::Failed, "disk full"),
                Some(Ret::Finished),
            )
    };
    assert!(!linearizable(&failed_leader(Ret::Joined(5))));
    assert!(!linearizable(&failed_leader(Ret::TransitionFailed {
        fence: 5,
        reason: "another reason".into(),
    })));
    assert!(linearizable(&failed_leader(Ret::TransitionFailed {
        fence: 5,
        reason: "disk full".into(),
    })));
}

#[test]
fn checker_rejects_a_kill_absorbed_by_a_pause_that_failed() {
    let h = registered()
        .call(1, 2, 3, begin(Action::Pause, 1), Some(Ret::Started(5)))
        .call(
            2,
            4,
            20,
            begin(Action::Kill, 2),
            Some(Ret::Absorbed(State::Paused)),
        )
        .call(
            1,
            10,
            11,
            finish(5, Outcome::Failed, "x"),
            Some(Ret::Finished),
        );
    assert!(!linearizable(&h));
}

#[test]
fn checker_rejects_a_reused_or_smaller_fence() {
    let again = |fence: u64| {
        registered()
            .call(1, 2, 3, begin(Action::Snapshot, 1), Some(Ret::Started(5)))
            .call(
                1,
                4,
                5,
                finish(5, Outcome::Succeeded, ""),
                Some(Ret::Finished),
            )
            .call(
                2,
                6,
                7,
                begin(Action::Snapshot, 2),
                Some(Ret::Started(fence)),
            )
    };
    assert!(!linearizable(&again(5)));
    assert!(!linearizable(&again(4)));
    assert!(linearizable(&again(9)));
}

#[test]
fn checker_rejects_a_stale_holder_finishing_after_a_newer_start() {
    let stale = |answer: Ret| {
        registered()
            .begin_with_lease(
                1,
                2,
                3,
                begin(Action::Pause, 1),
                Some(Ret::Started(5)),
                Duration::from_millis(100),
            )
            // After the lease could have run out: the kill cleans up.
            .call(2, 200, 201, begin(Action::Kill, 2), Some(Ret::Started(6)))
            .call(1, 300, 301, finish(5, Outcome::Succeeded, ""), Some(answer))
    };
    assert!(!linearizable(&stale(Ret::Finished)));
    assert!(linearizable(&stale(Ret::Fenced)));
}

#[test]
fn checker_rejects_a_start_before_the_lease_could_have_expired() {
    let h = registered()
        .begin_with_lease(
            1,
            2,
            3,
            begin(Action::Pause, 1),
            Some(Ret::Started(5)),
            Duration::from_millis(100),
        )
        .call(2, 50, 51, begin(Action::Kill, 2), Some(Ret::Started(6)));
    assert!(!linearizable(&h));
}

#[test]
fn checker_rejects_success_reported_for_a_holder_that_died() {
    let died = |joiner: Ret| {
        registered()
            .begin_with_lease(
                1,
                2,
                3,
                begin(Action::Pause, 1),
                Some(Ret::Started(5)),
                Duration::from_millis(100),
            )
            .call(2, 4, 300, begin(Action::Pause, 2), Some(joiner))
    };
    assert!(!linearizable(&died(Ret::Joined(5))));
    assert!(linearizable(&died(Ret::Abandoned(5))));
}

#[test]
fn checker_lets_a_call_with_an_unknown_answer_take_effect_or_not() {
    // Not applied: a later pause starts.
    let h = registered()
        .call(1, 2, 3, begin(Action::Pause, 1), None)
        .call(2, 10, 11, begin(Action::Pause, 2), Some(Ret::Started(7)));
    assert!(linearizable(&h));
    // Applied with a fence nobody saw: a read shows its lease.
    let h = registered()
        .call(1, 2, 3, begin(Action::Pause, 1), None)
        .call(
            2,
            10,
            11,
            Op::Get,
            Some(Ret::Record {
                state: State::Pausing,
                execution: "e".into(),
                fence: 9,
                lease: Some(9),
            }),
        );
    assert!(linearizable(&h));
    // But nothing explains a kill's lease.
    let h = registered()
        .call(1, 2, 3, begin(Action::Pause, 1), None)
        .call(
            2,
            10,
            11,
            Op::Get,
            Some(Ret::Record {
                state: State::Killing,
                execution: "e".into(),
                fence: 9,
                lease: Some(9),
            }),
        );
    assert!(!linearizable(&h));
}

#[test]
fn checker_lets_a_settled_unknown_call_take_effect_only_within_its_window() {
    let seen = |lease: Option<u64>, at: u64| {
        let h = registered()
            .call(1, 2, 10, begin(Action::Pause, 1), None)
            .settled();
        let state = if lease.is_some() {
            State::Pausing
        } else {
            State::Running
        };
        let h = h.call(
            2,
            at,
            at + 1,
            Op::Get,
            Some(Ret::Record {
                state,
                execution: "e".into(),
                fence: lease.unwrap_or(0),
                lease,
            }),
        );
        linearize_only(&h)
    };
    assert!(seen(None, 20), "it may have taken no effect");
    assert!(seen(Some(9), 20), "or started a transition nobody saw");
    // Not before it was invoked.
    let h = registered()
        .call(
            2,
            1,
            1,
            Op::Get,
            Some(Ret::Record {
                state: State::Pausing,
                execution: "e".into(),
                fence: 9,
                lease: Some(9),
            }),
        )
        .call(1, 2, 10, begin(Action::Pause, 1), None)
        .settled();
    assert!(!linearize_only(&h));
    // Nor after its window: a read after it saw it had no effect, and a
    // later read cannot see its lease.
    let h = registered()
        .call(1, 2, 10, begin(Action::Pause, 1), None)
        .settled()
        .call(
            2,
            11,
            12,
            Op::Get,
            Some(Ret::Record {
                state: State::Running,
                execution: "e".into(),
                fence: 0,
                lease: None,
            }),
        )
        .call(
            2,
            20,
            21,
            Op::Get,
            Some(Ret::Record {
                state: State::Pausing,
                execution: "e".into(),
                fence: 9,
                lease: Some(9),
            }),
        );
    assert!(!linearize_only(&h));
}

/// The memoizing search alone (stateright's tester knows no settled
/// unknown calls).
fn linearize_only(h: &Handmade) -> bool {
    check(h.entries(), &Lifecycle::sandbox())
        .violations
        .is_empty()
}

#[test]
fn checker_explains_a_restart_that_lost_the_data_only_with_a_lose() {
    let after_restart = |with_lose: bool| {
        let h = registered()
            .call(1, 2, 3, begin(Action::Snapshot, 1), Some(Ret::Started(5)))
            .call(
                1,
                4,
                5,
                finish(5, Outcome::Succeeded, ""),
                Some(Ret::Finished),
            );
        let h = if with_lose {
            h.call(9, 10, 20, Op::Lose, Some(Ret::Done))
        } else {
            h
        };
        h.call(2, 30, 31, Op::Get, Some(Ret::NotFound))
            .call(
                2,
                32,
                33,
                Op::Register {
                    execution: "e2".into(),
                },
                Some(Ret::Created),
            )
            .call(2, 34, 35, begin(Action::Pause, 2), Some(Ret::Started(1)))
    };
    assert!(linearizable(&after_restart(true)));
    assert!(!linearizable(&after_restart(false)));
}

/// The search's reductions lose nothing and invent nothing: on 3,000
/// random small histories (up to 7 calls after the register, a fifth of
/// them unknown, in flight or settled, a third with one answer made up)
/// it agrees with an exhaustive search of every order of every subset of
/// the unknown calls, and with stateright's tester where that applies
/// (no settled calls). Seeded: the same histories every run.
#[test]
fn checker_agrees_with_an_exhaustive_search_on_random_small_histories() {
    use rand::SeedableRng;
    let lifecycle = Lifecycle::sandbox();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let (mut yes, mut no) = (0, 0);
    for n in 0..3000 {
        let h = history::brute::random_history(&mut rng, 2 + n % 6, 0.33);
        let verdict = check(h.entries(), &lifecycle);
        assert_eq!(verdict.undecided, 0);
        let ours = verdict.violations.is_empty();
        let exhaustive = history::brute::linearizable(h.entries(), &lifecycle);
        assert_eq!(
            ours,
            exhaustive,
            "history {n}: the search says {ours}, the exhaustive one {exhaustive}:\n{}",
            history::checker::render(h.entries())
        );
        if h.entries().iter().all(|e| !e.settled) {
            let reference = check_sandbox_stateright(h.entries(), &lifecycle);
            assert_eq!(
                ours,
                reference.is_ok(),
                "history {n}: stateright {reference:?}"
            );
        }
        if ours { yes += 1 } else { no += 1 }
    }
    eprintln!("{yes} linearizable, {no} not");
    assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
}

// ----- recorded histories, replayed -------------------------------------------

/// A recorded history (tests/histories/), read back with `history::replay`.
fn recorded(name: &str) -> Vec<history::recorder::Entry> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/histories")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    history::replay::parse(&text, "s").unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A soak history the search could not decide in 60 s: a dozen joiners
/// overlapping one slow finish made it try every subset of them. With the
/// reduction for calls that leave the model state unchanged it is decided
/// at once. (Budget 20 s so a regression fails here instead of hanging; on
/// this machine it takes milliseconds.)
/// A `begin` whose answer was lost to a transport error may have started
/// a transition; the coordinator then fails it in the background with the
/// reason "cancelled" (cancel.lua, by its holder id). Joiners that were
/// told that failure are explained only by the recorder's `Cancel` of
/// that call: a lease running out (`Expire`) ends it `Abandoned`, never
/// "cancelled". Found by the redis-restart-aof soak (79 histories
/// rejected in 4 minutes before the model knew of the undo).
#[test]
fn checker_explains_joiners_of_a_lost_begin_failed_as_cancelled_only_by_its_cancel() {
    let lost_begin = || {
        registered()
            .call(1, 2, 30, begin(Action::Snapshot, 1), None)
            .call(
                2,
                10,
                40,
                begin(Action::Snapshot, 2),
                Some(Ret::TransitionFailed {
                    fence: 7,
                    reason: "cancelled".into(),
                }),
            )
            .call(
                3,
                50,
                51,
                Op::Get,
                Some(Ret::Record {
                    state: State::Running,
                    execution: "e".into(),
                    fence: 7,
                    lease: None,
                }),
            )
    };
    let cancelled = lost_begin().call(
        4,
        2,
        2,
        Op::Cancel {
            token: 1,
            reason: "cancelled".into(),
        },
        None,
    );
    assert!(linearizable(&cancelled), "the undo explains the joiner");
    let expired = lost_begin().call(4, 2, 2, Op::Expire { token: 1 }, None);
    assert!(
        !linearizable(&expired),
        "an expired lease ends the transition abandoned, not failed"
    );
    let other = lost_begin().call(
        4,
        2,
        2,
        Op::Cancel {
            token: 9,
            reason: "cancelled".into(),
        },
        None,
    );
    assert!(
        !linearizable(&other),
        "the undo of another call does not end this one"
    );
}

/// With `wait_for_replicas`, a `begin` whose start the replicas did not
/// confirm answers `NotReplicated` (unknown to the checker) and the
/// coordinator fails that transition in the background with the reason
/// "not replicated": the recorder's `Cancel` of that call carries the
/// reason, and only it explains a joiner told that failure (the model's
/// undo was always "cancelled": the cluster soak, where a replica
/// restarts under `wait_for_replicas(1)`, needs the other reason).
#[test]
fn checker_explains_joiners_of_an_unreplicated_start_only_by_its_cancel_as_not_replicated() {
    let unreplicated = |cancel_reason: &str| {
        registered()
            .call(1, 2, 30, begin(Action::Pause, 1), None)
            .call(
                2,
                10,
                40,
                begin(Action::Pause, 2),
                Some(Ret::TransitionFailed {
                    fence: 7,
                    reason: "not replicated".into(),
                }),
            )
            .call(
                4,
                2,
                2,
                Op::Cancel {
                    token: 1,
                    reason: cancel_reason.into(),
                },
                None,
            )
    };
    assert!(linearizable(&unreplicated("not replicated")));
    assert!(
        !linearizable(&unreplicated("cancelled")),
        "an undo as \"cancelled\" does not explain a joiner told \"not replicated\""
    );
}

#[test]
fn checker_decides_many_joiners_overlapping_a_slow_finish() {
    let entries = recorded("chaos-proxy-joiners-undecided.txt");
    assert_eq!(entries.len(), 72);
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(20));
    assert_eq!(verdict.histories, 1);
    assert!(
        verdict.violations.is_empty(),
        "{:?}",
        verdict.violations.first().map(|v| &v.why)
    );
}

/// A redis-paused soak history the search could not decide in 60 s
/// (3,670,029 states): Redis paused for 2.6 s under ~20 begins, each with
/// a retry copy (an earlier attempt that may have started a transition
/// nobody was told of, and that lease's `Expire`). Decided within the
/// bound, and linearizable (a pause's earlier attempt started the
/// transition the long `Get` read, stuck once its lease ran out).
#[test]
fn checker_decides_retried_begins_under_a_paused_redis() {
    let entries = recorded("redis-paused-retried-undecided.txt");
    assert_eq!(entries.len(), 105);
    let began = std::time::Instant::now();
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(10));
    let took = began.elapsed();
    assert_eq!(verdict.histories, 1);
    assert_eq!(verdict.undecided, 0, "undecided after {took:?}");
    assert!(
        verdict.violations.is_empty(),
        "{:?}",
        verdict.violations.first().map(|v| &v.why)
    );
    eprintln!("decided (linearizable) in {took:?}");
}

/// Two histories a 10-minute soak rejected (dying-and-stalling holders,
/// 400 ms leases): in each, a read saw a lease expired a fraction of a
/// millisecond before its begin's invocation + lease, the checker's
/// earliest `Expire`. The scripts' deadlines are whole milliseconds of the
/// server's clock (`clock.lua` truncates `TIME`), so a lease can run out
/// up to 1 ms early by this process's clock: the checker allows
/// `LEASE_CLOCK_SLACK` before every `Expire`. Both are linearizable.
#[test]
fn checker_allows_a_lease_to_run_out_within_the_servers_millisecond() {
    for name in [
        "dying-holders-lease-expired-early-1.txt",
        "dying-holders-lease-expired-early-2.txt",
    ] {
        let entries = recorded(name);
        let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(20));
        assert_eq!(verdict.undecided, 0, "{name}: undecided");
        assert!(
            verdict.violations.is_empty(),
            "{name}: {:?}",
            verdict.violations.first().map(|v| &v.why)
        );
    }
}

/// A check that runs out of budget is undecided: kept with the violations
/// (so a run with one fails) but flagged, counted apart in the verdict and
/// in the soak's tally, and never counted as a violation proved or as
/// passed.
#[test]
fn an_undecided_check_is_reported_as_undecided_never_as_passed() {
    let entries = recorded("redis-paused-retried-undecided.txt");
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::ZERO);
    assert_eq!((verdict.histories, verdict.undecided), (1, 1));
    assert_eq!(verdict.violations.len(), 1);
    assert!(verdict.violations[0].undecided);
    assert!(
        verdict.violations[0].why.starts_with("undecided: "),
        "{}",
        verdict.violations[0].why
    );
    let mut tally = Tally::default();
    tally.add_verdict("redis-paused", &verdict);
    assert_eq!((tally.violations, tally.undecided), (0, 1));
    assert!(
        tally
            .table("t")
            .contains("| undecided (check budget ran out)")
    );
    let failed = std::panic::catch_unwind(|| verdict.assert_linearizable("replayed"));
    assert!(failed.is_err(), "an undecided history does not pass");
}

/// The same history with one pause joiner told it joined the transition
/// the retry copy started (its lease ran out: abandoned, not succeeded):
/// rejected, and decided within the same bound (the whole search space,
/// not just the way to one linearization).
#[test]
fn checker_rejects_the_retried_history_with_one_joiner_lying() {
    let mut entries = recorded("redis-paused-retried-undecided.txt");
    let liar = entries
        .iter_mut()
        .find(|e| e.ret == Some(Ret::Joined(1796599314828452)))
        .expect("a joiner of 1796599314828452");
    liar.ret = Some(Ret::Joined(1796599312280741));
    let began = std::time::Instant::now();
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(10));
    let took = began.elapsed();
    assert_eq!(verdict.undecided, 0, "undecided after {took:?}");
    assert_eq!(verdict.violations.len(), 1);
    assert_eq!(verdict.violations[0].why, "no linearization exists");
    eprintln!("decided (not linearizable) in {took:?}");
}

/// The same history with one joiner's answer changed to a failure its
/// leader never had: rejected (the reduction must not hide a bad answer),
/// and decided as fast.
#[test]
fn checker_rejects_the_replayed_history_with_one_joiner_lying() {
    let mut entries = recorded("chaos-proxy-joiners-undecided.txt");
    let liar = entries
        .iter_mut()
        .find(|e| e.ret == Some(Ret::Joined(1024)))
        .expect("a joiner of 1024");
    liar.ret = Some(Ret::TransitionFailed {
        fence: 1024,
        reason: "made up".into(),
    });
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(20));
    assert_eq!(verdict.violations.len(), 1);
    assert_eq!(verdict.violations[0].why, "no linearization exists");
}

/// A real library bug the soak found: a holder's finish that was recorded
/// but answered `Fenced` after a lost reply (tests/faults.rs
/// `a_finish_whose_reply_is_lost_is_never_reported_fenced`). The recorded
/// history is rejected; with the answer the fixed library gives
/// (`FinishUnknown`, recorded as unknown) it is accepted.
#[test]
fn checker_rejects_a_recorded_finish_answered_fenced_and_accepts_it_as_unknown() {
    let mut entries = recorded("chaos-proxy-finish-answered-fenced.txt");
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(20));
    assert_eq!(verdict.violations.len(), 1);
    assert_eq!(verdict.violations[0].why, "no linearization exists");
    let finish = entries
        .iter_mut()
        .find(|e| matches!(e.op, Op::Finish { fence: 3074, .. }) && e.ret == Some(Ret::Fenced))
        .expect("the finish of 3074");
    finish.ret = None;
    finish.error = Some("finish unknown".into());
    let verdict = check_with_budget(&entries, &Lifecycle::sandbox(), Duration::from_secs(20));
    assert!(
        verdict.violations.is_empty(),
        "{:?}",
        verdict.violations.first().map(|v| &v.why)
    );
}

/// What `render` writes, `replay::parse` reads back: every kind of
/// operation and answer, unknown and settled ones included.
#[test]
fn rendered_histories_read_back_unchanged() {
    let h = registered()
        .begin_with_lease(
            1,
            2,
            3,
            begin(Action::Pause, 1),
            Some(Ret::Started(5)),
            Duration::from_secs(1),
        )
        .call(
            2,
            4,
            9,
            begin(Action::Kill, 2),
            Some(Ret::Absorbed(State::Paused)),
        )
        .call(
            3,
            4,
            9,
            finish(5, Outcome::Failed, "disk \"full\""),
            Some(Ret::Finished),
        )
        .call(
            4,
            5,
            9,
            begin(Action::Pause, 3),
            Some(Ret::TransitionFailed {
                fence: 5,
                reason: "disk \"full\"".into(),
            }),
        )
        .call(
            5,
            10,
            11,
            Op::Get,
            Some(Ret::Record {
                state: State::Running,
                execution: "e".into(),
                fence: 5,
                lease: None,
            }),
        )
        .call(
            6,
            10,
            12,
            Op::Get,
            Some(Ret::Record {
                state: State::Pausing,
                execution: "e".into(),
                fence: 6,
                lease: Some(6),
            }),
        )
        .call(7, 12, 13, Op::Remove, None)
        .settled()
        .call(
            8,
            12,
            14,
            Op::Register {
                execution: "f".into(),
            },
            None,
        )
        .call(9, 14, 15, Op::Expire { token: 1 }, Some(Ret::Done))
        .call(10, 16, 17, Op::Lose, Some(Ret::Done))
        .call(
            11,
            18,
            19,
            Op::Register {
                execution: "g".into(),
            },
            Some(Ret::Resumed {
                previous: "f".into(),
            }),
        )
        .call(
            12,
            20,
            21,
            begin(Action::Snapshot, 4),
            Some(Ret::OutcomeUnknown(7)),
        );
    let text = history::checker::render_all(h.entries());
    let back = history::replay::parse(&text, "s").expect("parses");
    assert_eq!(back.len(), h.entries().len());
    for (a, b) in h.entries().iter().zip(&back) {
        assert_eq!(
            (&a.op, &a.ret, a.thread, a.settled),
            (&b.op, &b.ret, b.thread, b.settled)
        );
        let (da, db) = (a.returned - a.invoked, b.returned - b.invoked);
        assert!(
            da.abs_diff(db) < Duration::from_micros(2),
            "{da:?} vs {db:?}"
        );
    }
}

// ----- real races ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_histories_of_four_coordinators_are_linearizable() {
    let profile = Profile::ci();
    eprintln!("seed {} (rerun with RACE_SEED={0})", profile.seed);
    let out = workload::race(&profile).await;
    out.assert_clean();
    assert!(out.tally.started > 0 && out.tally.joined + out.tally.absorbed > 0);
    assert!(out.tally.histories >= profile.sandboxes as u64);
}

/// The checker on a real run of a deliberately wrong coordinator: its rule
/// table starts a kill of a paused sandbox where the contract absorbs it
/// (a table that would start over a live lease is refused outright now).
/// Checked against the contract's table, the run must be rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_a_coordinator_deciding_by_another_table() {
    let profile = Profile::ci();
    let out = workload::race_with_broken_rule(&profile).await;
    eprintln!("{}", out.tally.table("broken rule"));
    assert!(
        !out.violations.is_empty(),
        "the checker accepted a run where kills of paused sandboxes start"
    );
    let first = &out.violations[0];
    eprintln!(
        "{} of {} histories rejected; first, sandbox {} ({}):\n{}",
        out.violations.len(),
        out.tally.histories,
        first.sandbox,
        first.why,
        first.history
    );
}

// ----- soak --------------------------------------------------------------------

/// The soak's scenarios, in the order it runs them.
const SOAK_SCENARIOS: [&str; 8] = [
    "race",
    "pubsub-kills",
    "dying-and-stalling-holders",
    "chaos-proxy",
    "redis-paused",
    "redis-restart-volatile",
    "redis-restart-aof",
    "child-holders",
];

/// Every scenario of the suite, in turn, each for a slice, until
/// `SOAK_DURATION` (humantime, e.g. `10m`) has passed; a progress bar while
/// it runs and the summary table at the end (also written to
/// `target/soak-summary.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: make soak DURATION=10m"]
async fn soak() {
    let duration = std::env::var("SOAK_DURATION")
        .ok()
        .map(|d| humantime::parse_duration(&d).expect("SOAK_DURATION like 10m"))
        .unwrap_or(Duration::from_secs(600));
    let slice = (duration / 12).clamp(Duration::from_secs(10), Duration::from_secs(60));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let profile = Profile::soak(slice, Arc::clone(&tally));
    eprintln!(
        "soak: {duration:?}, {} coordinators x {} tasks over {} sandboxes per round, \
         slices of {slice:?}, seed {} (check budget {CHECK_BUDGET:?} per history)",
        profile.coordinators, profile.tasks_per_coordinator, profile.sandboxes, profile.seed
    );
    let bar = progress_bar(duration);
    let began = Instant::now();
    let ticker = {
        let (bar, tally) = (bar.clone(), Arc::clone(&tally));
        tokio::spawn(async move {
            loop {
                bar.set_position(began.elapsed().as_secs());
                let t = tally.lock().unwrap_or_else(PoisonError::into_inner).brief();
                bar.set_message(t);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut problems = Vec::new();
    let mut violations = Vec::new();
    let mut turn = 0usize;
    // `SOAK_SCENARIOS=a,b` runs only those scenarios (names as in the
    // summary table), e.g. to chase one scenario's violations.
    let only: Option<Vec<String>> = std::env::var("SOAK_SCENARIOS")
        .ok()
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect());
    if let Some(names) = &only {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| !SOAK_SCENARIOS.contains(&n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "SOAK_SCENARIOS: unknown {unknown:?}; known: {SOAK_SCENARIOS:?}"
        );
    }
    while began.elapsed() < duration {
        let name = SOAK_SCENARIOS[turn % SOAK_SCENARIOS.len()];
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            turn += 1;
            continue;
        }
        let out = match turn % SOAK_SCENARIOS.len() {
            0 => workload::race(&profile).await,
            1 => workload::pubsub_kills(&profile).await,
            2 => workload::dying_and_stalling_holders(&profile).await,
            3 => workload::chaos_proxy(&profile).await,
            4 => workload::redis_paused(&profile).await,
            5 => workload::redis_restart(&profile, false).await,
            6 => workload::redis_restart(&profile, true).await,
            _ => workload::child_holders(&profile, 4).await,
        };
        assert_eq!(
            out.scenario, name,
            "SOAK_SCENARIOS is in the order of the turns"
        );
        let undecided = out.violations.iter().filter(|v| v.undecided).count();
        let line = format!(
            "{:<28} {:>3} rounds {:>7.1?}  violations {}  undecided {undecided}  problems {}",
            out.scenario,
            out.rounds,
            out.took,
            out.violations.len() - undecided,
            out.problems.len()
        );
        if bar.is_hidden() {
            eprintln!("{line}"); // no terminal: no bar, plain lines
        } else {
            bar.println(line);
        }
        problems.extend(
            out.problems
                .iter()
                .map(|p| format!("{}: {p}", out.scenario)),
        );
        violations.extend(out.violations.into_iter().map(|mut v| {
            v.sandbox = format!("{}/{}", out.scenario, v.sandbox);
            v
        }));
        turn += 1;
    }
    ticker.abort();
    bar.finish_and_clear();
    let tally = tally.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let title = format!(
        "soak summary: {:.1?} (SOAK_DURATION={duration:?}), seed {}",
        began.elapsed(),
        profile.seed
    );
    let undecided = publish_soak("soak", &tally.table(&title), &problems, &violations);
    assert!(
        violations.is_empty() && problems.is_empty(),
        "soak: {} violations, {undecided} undecided, {} problems",
        violations.len() - undecided,
        problems.len()
    );
}
