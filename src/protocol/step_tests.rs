//! Table tests of the step function, without Redis: each drives [`Loop`]
//! with a scripted or adversarial reply sequence on a simulated clock.

use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;
use crate::lifecycle::State;
use crate::sandbox::{LastTransition, Lease};

#[path = "model_tests.rs"]
mod model;

const RECORD: &str = "sbx:{t}:rec:s1";

fn lifecycle() -> &'static Lifecycle {
    static L: std::sync::OnceLock<Lifecycle> = std::sync::OnceLock::new();
    L.get_or_init(Lifecycle::sandbox)
}

fn request(mode: Mode, t0: Instant, deadline: Option<Duration>) -> Loop<'static> {
    Loop::new(
        "t",
        "s1",
        RECORD,
        lifecycle(),
        Duration::from_secs(1),
        mode,
        t0,
        deadline.map(|d| t0 + d),
    )
}

fn begun(d: Decided) -> Input {
    Input::Begun(Ok((d, Replication::Enough)))
}

fn sandbox(state: State, fence: u64, lease: bool, last: Option<u64>) -> Sandbox {
    Sandbox {
        team: "t".into(),
        id: "s1".into(),
        execution: "e1".into(),
        state,
        end_time: UNIX_EPOCH,
        fence,
        data: String::new(),
        lease: lease.then(|| Lease {
            fence,
            action: Action::Pause,
            holder: "h/1".into(),
            ttl: Duration::from_secs(30),
            age: Duration::ZERO,
        }),
        last: last.map(|fence| LastTransition {
            fence,
            action: Action::Pause,
            outcome: Outcome::Succeeded,
            reason: String::new(),
        }),
        waiting: 0,
        reserved: None,
        expires_in: None,
        lifecycle: String::new(),
    }
}

fn stuck(fence: u64) -> Input {
    begun(Decided::Stuck {
        fence,
        holder: "h/1".into(),
    })
}

fn is_corrupt(n: &Next) -> bool {
    matches!(n, Next::Answer(Err(Error::Corrupt { .. })))
}

#[test]
fn an_uncontended_begin_is_one_call() {
    let t0 = Instant::now();
    let mut l = request(Mode::Begin(Action::Pause), t0, None);
    assert!(matches!(l.step(Input::Start, t0), Next::Call(Call::Begin)));
    assert_eq!(
        l.cancel(),
        Some(EndReason::Cancelled),
        "a begin call in flight"
    );
    let started = begun(Decided::Started {
        fence: 7,
        lease: Duration::from_secs(30),
        execution: "e1".into(),
    });
    assert!(matches!(
        l.step(started, t0),
        Next::Answer(Ok(Answer::Started { fence: 7, .. }))
    ));
    assert_eq!((l.calls, l.cancel()), (1, None));
}

#[test]
fn stuck_again_after_a_settle_that_wrote_nothing_is_corrupt() {
    let t0 = Instant::now();
    let ended = || Settled::Ended {
        action: Some(Action::Pause),
        outcome: Outcome::Failed,
        reason: String::new(),
    };
    for settled in [Settled::Unknown, ended()] {
        let mut l = request(Mode::Begin(Action::Kill), t0, Some(Duration::from_secs(1)));
        l.step(Input::Start, t0);
        assert!(matches!(
            l.step(stuck(5), t0),
            Next::Call(Call::Settle { fence: 5, .. })
        ));
        assert!(matches!(
            l.step(Input::Settled(Ok(settled)), t0),
            Next::Call(Call::Begin)
        ));
        assert!(is_corrupt(&l.step(stuck(5), t0)));
        assert_eq!(l.calls, 3);
    }
}

#[test]
fn stuck_again_after_our_own_abandonment_backs_off_then_is_corrupt() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut l = request(Mode::Begin(Action::Kill), t0, None);
    let mut next = l.step(Input::Start, now);
    let mut sleeps = Vec::new();
    for _ in 0..100 {
        let input = match next {
            Next::Call(Call::Begin) => stuck(5),
            Next::Call(Call::Settle { .. }) => Input::Settled(Ok(Settled::Abandoned {
                action: Some(Action::Pause),
                reason: "lease expired".into(),
            })),
            Next::SleepUntil(t) => {
                sleeps.push(t - now);
                now = t;
                Input::Woke(Woke::Timer)
            }
            Next::Answer(r) => {
                assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
                break;
            }
            other => panic!("{other:?}"),
        };
        next = l.step(input, now);
    }
    // Backing off: each pause longer than the one before.
    assert_eq!(sleeps.len(), REPEATS as usize);
    assert!(sleeps.windows(2).all(|w| w[0] < w[1]), "{sleeps:?}");
    assert!(l.calls <= 2 * (REPEATS + 1) + 1, "{} calls", l.calls);
}

#[test]
fn wait_idle_on_a_damaged_record_is_corrupt_at_once() {
    let t0 = Instant::now();
    let mut l = request(Mode::Idle, t0, Some(Duration::from_secs(1)));
    assert!(matches!(
        l.step(Input::Start, t0),
        Next::Call(Call::Inspect)
    ));
    let damaged = || Input::Inspected(Ok(Some(Box::new(sandbox(State::Pausing, 5, false, None)))));
    assert!(matches!(
        l.step(damaged(), t0),
        Next::Call(Call::Settle { fence: 5, .. })
    ));
    assert!(matches!(
        l.step(Input::Settled(Ok(Settled::Unknown)), t0),
        Next::Call(Call::Inspect)
    ));
    assert!(is_corrupt(&l.step(damaged(), t0)));
}

#[test]
fn a_join_answers_the_outcome_a_notice_brings() {
    let t0 = Instant::now();
    let mut l = request(Mode::Begin(Action::Pause), t0, None);
    l.step(Input::Start, t0);
    let join = begun(Decided::Join {
        fence: 9,
        lease_left: Duration::from_secs(30),
        holder: "h/1".into(),
    });
    assert!(matches!(l.step(join, t0), Next::Subscribe));
    assert_eq!(l.cancel(), None);
    assert!(matches!(
        l.step(Input::Subscribed, t0),
        Next::Call(Call::Settle { fence: 9, .. })
    ));
    let live = Input::Settled(Ok(Settled::Live(Duration::from_secs(30))));
    let Next::SleepUntil(until) = l.step(live, t0) else {
        panic!()
    };
    assert_eq!(until, t0 + Duration::from_secs(1), "the poll interval");
    // Another change and an older transition's news: sleep on.
    assert!(matches!(l.step(Input::Woke(Woke::Changed), t0), Next::SleepUntil(u) if u == until));
    let older = Woke::Ended {
        fence: 8,
        outcome: Outcome::Failed,
        reason: String::new(),
    };
    assert!(matches!(l.step(Input::Woke(older), t0), Next::SleepUntil(u) if u == until));
    let ended = Woke::Ended {
        fence: 9,
        outcome: Outcome::Succeeded,
        reason: String::new(),
    };
    match l.step(Input::Woke(ended), t0) {
        Next::Answer(Ok(Answer::Done(d))) => {
            assert_eq!(d.why, DoneReason::Joined { fence: 9 });
            assert_eq!(d.state, State::Paused);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_queued_begin_subscribes_rechecks_and_times_out_by_its_deadline() {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_millis(1500);
    let mut l = request(
        Mode::Begin(Action::Kill),
        t0,
        Some(Duration::from_millis(1500)),
    );
    l.step(Input::Start, t0);
    let wait = || {
        begun(Decided::Wait {
            fence: Some(3),
            wake: Duration::from_secs(2),
        })
    };
    assert!(matches!(l.step(wait(), t0), Next::Subscribe));
    assert_eq!(l.cancel(), Some(EndReason::Cancelled), "queued");
    assert!(matches!(
        l.step(Input::Subscribed, t0),
        Next::Call(Call::Begin)
    ));
    let Next::SleepUntil(u) = l.step(wait(), t0) else {
        panic!()
    };
    assert_eq!(u, t0 + Duration::from_secs(1));
    // A notice: re-check (MIN_GAP after the last call).
    let Next::SleepUntil(soon) = l.step(Input::Woke(Woke::Changed), t0) else {
        panic!()
    };
    assert_eq!(soon, t0 + MIN_GAP);
    assert!(matches!(
        l.step(Input::Woke(Woke::Timer), soon),
        Next::Call(Call::Begin)
    ));
    let Next::SleepUntil(u) = l.step(wait(), soon) else {
        panic!()
    };
    assert_eq!(u, soon + Duration::from_secs(1));
    assert!(matches!(
        l.step(Input::Woke(Woke::Timer), u),
        Next::Call(Call::Begin)
    ));
    let Next::SleepUntil(u) = l.step(wait(), u) else {
        panic!()
    };
    assert_eq!(u, deadline, "never past the deadline");
    assert!(matches!(
        l.step(Input::Woke(Woke::Timer), u),
        Next::Call(Call::Begin)
    ));
    assert!(matches!(
        l.step(wait(), u),
        Next::Answer(Err(Error::Timeout { .. }))
    ));
    assert_eq!(
        l.cancel(),
        Some(EndReason::Cancelled),
        "still queued: the cancel leaves"
    );
}

#[test]
fn a_refusal_after_a_wait_needs_no_cancel_and_a_lost_reply_does() {
    let t0 = Instant::now();
    let mut l = request(Mode::Begin(Action::Kill), t0, None);
    l.step(Input::Start, t0);
    l.step(
        begun(Decided::Wait {
            fence: None,
            wake: Duration::from_secs(1),
        }),
        t0,
    );
    l.step(Input::Subscribed, t0);
    let refused = Error::ExecutionMismatch {
        team: "t".into(),
        id: "s1".into(),
        expected: "e1".into(),
        actual: "e2".into(),
    };
    assert!(matches!(
        l.step(Input::Begun(Err(refused)), t0),
        Next::Answer(Err(_))
    ));
    assert_eq!(l.cancel(), None, "the script left the queue itself");
    let mut l = request(Mode::Begin(Action::Kill), t0, None);
    l.step(Input::Start, t0);
    let lost = || {
        Input::Begun(Err(Error::Timeout {
            team: "t".into(),
            id: "s1".into(),
            waited: Duration::ZERO,
        }))
    };
    let mut now = t0;
    for _ in 0..2 {
        let Next::SleepUntil(t) = l.step(lost(), now) else {
            panic!()
        };
        now = t;
        assert!(matches!(
            l.step(Input::Woke(Woke::Timer), now),
            Next::Call(Call::Begin)
        ));
    }
    assert!(matches!(l.step(lost(), now), Next::Answer(Err(_))));
    assert_eq!(
        l.cancel(),
        Some(EndReason::Cancelled),
        "it may have started"
    );
}

/// A small deterministic generator (no dependency, reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Any reply, any wake-up, in any order: every request answers by its
/// deadline (plus the few calls decided when it passed), with a bounded
/// number of calls, and never sleeps past the deadline.
#[test]
fn every_path_answers_by_the_deadline_whatever_the_replies() {
    let limit = Duration::from_secs(1);
    // A script call takes 1 ms of the simulated clock.
    let call = Duration::from_millis(1);
    for seed in 0..10_000u64 {
        let mut rng = Rng(seed);
        let t0 = Instant::now();
        let mode = if seed % 2 == 0 {
            Mode::Begin(Action::Kill)
        } else {
            Mode::Idle
        };
        let mut l = request(mode, t0, Some(limit));
        let deadline = t0 + limit;
        let mut now = t0;
        let mut next = l.step(Input::Start, now);
        let mut steps = 0;
        let mut late = 0;
        let answer = loop {
            steps += 1;
            assert!(steps < 100_000, "seed {seed}: no answer");
            let fence = 1 + rng.next(3);
            let input = match next {
                Next::Answer(r) => break r,
                Next::Subscribe => Input::Subscribed,
                Next::SleepUntil(t) => {
                    assert!(
                        t <= deadline.max(now),
                        "seed {seed}: sleeps past the deadline"
                    );
                    assert!(t >= now, "seed {seed}: sleeps into the past");
                    if rng.next(3) == 0 && t > now {
                        now += (t - now) / 2;
                        Input::Woke(match rng.next(3) {
                            0 => Woke::Changed,
                            1 => Woke::Resubscribed,
                            _ => Woke::Ended {
                                fence,
                                outcome: Outcome::Succeeded,
                                reason: String::new(),
                            },
                        })
                    } else {
                        now = t;
                        Input::Woke(Woke::Timer)
                    }
                }
                Next::Call(c) => {
                    if now >= deadline {
                        late += 1;
                    }
                    now += call;
                    match c {
                        Call::Begin => begun(match rng.next(4) {
                            0 => Decided::Stuck {
                                fence,
                                holder: "h/1".into(),
                            },
                            1 => Decided::Join {
                                fence,
                                lease_left: Duration::from_millis(rng.next(50)),
                                holder: "h/1".into(),
                            },
                            _ => Decided::Wait {
                                fence: Some(fence),
                                wake: Duration::from_millis(rng.next(3)),
                            },
                        }),
                        Call::Settle { .. } => Input::Settled(Ok(match rng.next(4) {
                            0 => Settled::Unknown,
                            1 => Settled::Abandoned {
                                action: None,
                                reason: String::new(),
                            },
                            _ => Settled::Live(Duration::from_millis(rng.next(5))),
                        })),
                        Call::Inspect => Input::Inspected(Ok(Some(Box::new(match rng.next(3) {
                            0 => sandbox(State::Pausing, fence, false, None),
                            _ => sandbox(State::Pausing, fence, true, None),
                        })))),
                    }
                }
            };
            next = l.step(input, now);
        };
        // A call that was due at the deadline may bring a stuck transition
        // or one to join: its settle and the re-decision still run (a
        // request whose wait ran out still records a vanished holder's
        // end, and a joiner still reads an outcome already there) — at
        // most three calls begun after the deadline.
        assert!(
            late <= 3,
            "seed {seed}: {late} calls after the deadline, then {answer:?}"
        );
        // At most one call per MIN_GAP of the simulated time, and a few
        // immediate follow-ups (settle after stuck, re-read after settle).
        let bound = 3 * (limit.as_millis() as u32 / MIN_GAP.as_millis() as u32 + 1);
        assert!(l.calls <= bound, "seed {seed}: {} calls", l.calls);
    }
}

/// With no deadline, replies that never change end as `Corrupt`, not in
/// an endless run of calls.
#[test]
fn unchanging_replies_end_without_a_deadline() {
    let t0 = Instant::now();
    for mode in [Mode::Begin(Action::Kill), Mode::Idle] {
        let mut l = request(mode, t0, None);
        let mut next = l.step(Input::Start, t0);
        let mut now = t0;
        for _ in 0..1000 {
            let input = match next {
                Next::Call(Call::Begin) => stuck(5),
                Next::Call(Call::Inspect) => Input::Inspected(Ok(Some(Box::new(sandbox(
                    State::Pausing,
                    5,
                    false,
                    Some(4),
                ))))),
                Next::Call(Call::Settle { .. }) => Input::Settled(Ok(Settled::Unknown)),
                Next::SleepUntil(t) => {
                    now = t;
                    Input::Woke(Woke::Timer)
                }
                Next::Subscribe => Input::Subscribed,
                Next::Answer(_) => break,
            };
            next = l.step(input, now);
        }
        assert!(is_corrupt(&next), "{mode:?}: {next:?}");
        assert!(l.calls <= 3, "{mode:?}: {} calls", l.calls);
    }
}

/// Found by the model check (model_tests.rs): a begin woken late from its
/// retry backoff (its reply was lost) finds its own lease expired, settles
/// it, and on the re-decision joins the transition another request started
/// meanwhile. Past the deadline that join is cut like a run of stuck
/// transitions (after the first settle): the request answers `Timeout`
/// instead of a fourth call begun after its deadline.
#[test]
fn a_join_found_after_a_late_settle_past_the_deadline_is_a_timeout() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut l = request(Mode::Begin(Action::Pause), t0, Some(ms(100)));
    assert!(matches!(l.step(Input::Start, t0), Next::Call(Call::Begin)));
    let lost = Input::Begun(Err(Error::Timeout {
        team: "t".into(),
        id: "s1".into(),
        waited: Duration::ZERO,
    }));
    let Next::SleepUntil(t) = l.step(lost, t0) else {
        panic!("a lost reply is retried after a backoff")
    };
    assert!(t < t0 + ms(100));
    // Woken late, at the deadline.
    let now = t0 + ms(100);
    assert!(matches!(
        l.step(Input::Woke(Woke::Timer), now),
        Next::Call(Call::Begin)
    ));
    assert!(matches!(
        l.step(stuck(1), now),
        Next::Call(Call::Settle { fence: 1, .. })
    ));
    let ended = Settled::Ended {
        action: Some(Action::Pause),
        outcome: Outcome::Abandoned,
        reason: "lease expired".into(),
    };
    assert!(matches!(
        l.step(Input::Settled(Ok(ended)), now),
        Next::Call(Call::Begin)
    ));
    let join = begun(Decided::Join {
        fence: 2,
        lease_left: ms(30),
        holder: "h/2".into(),
    });
    let next = l.step(join, now);
    assert!(
        matches!(next, Next::Answer(Err(Error::Timeout { .. }))),
        "{next:?}"
    );
    assert_eq!((l.calls, l.cancel()), (4, None));
}

/// Found by the model check: the same late begin, re-deciding after its
/// settle, is queued behind a transition that started meanwhile. Past the
/// deadline it answers `Timeout` (and cancels its place) instead of
/// subscribing for a re-check, a fourth call begun after its deadline.
#[test]
fn a_first_wait_past_the_deadline_is_a_timeout_not_a_subscription() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut l = request(Mode::Begin(Action::Pause), t0, Some(ms(100)));
    l.step(Input::Start, t0);
    let lost = Input::Begun(Err(Error::Timeout {
        team: "t".into(),
        id: "s1".into(),
        waited: Duration::ZERO,
    }));
    assert!(matches!(l.step(lost, t0), Next::SleepUntil(_)));
    let now = t0 + ms(100);
    l.step(Input::Woke(Woke::Timer), now);
    l.step(stuck(2), now);
    let abandoned = Settled::Abandoned {
        action: Some(Action::Pause),
        reason: "lease expired".into(),
    };
    assert!(matches!(
        l.step(Input::Settled(Ok(abandoned)), now),
        Next::Call(Call::Begin)
    ));
    let wait = begun(Decided::Wait {
        fence: None,
        wake: ms(1000),
    });
    let next = l.step(wait, now);
    assert!(
        matches!(next, Next::Answer(Err(Error::Timeout { .. }))),
        "{next:?}"
    );
    assert_eq!((l.calls, l.cancel()), (4, Some(EndReason::Cancelled)));
}
