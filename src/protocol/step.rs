//! The begin and wait_idle loops as one pure step function: given what the
//! last action brought back (a script's reply, a wake-up) and the time,
//! [`Loop::step`] says what to do next ([`Next`]): run a script, subscribe,
//! sleep until an instant (or a notice), or answer. No I/O, no tokio: the
//! coordinator's thin async loop performs each [`Next`] and feeds the
//! result back, and its unit tests (step_tests.rs) drive it with any reply
//! sequence on a simulated clock.
//!
//! Every path makes progress or ends by the caller's deadline:
//! - a reply that cannot change without a write is `Corrupt` at once (a
//!   transition stuck again after a settle that wrote nothing);
//! - a state that should have changed after a write (ours, or the one an
//!   outcome announced) is retried with backoff, at most [`REPEATS`] times;
//! - every retry and every wait is bounded by the deadline, and re-checks
//!   are at least [`MIN_GAP`] apart whatever notices arrive.

use std::time::{Duration, Instant};

pub(crate) use super::{Answer, Call, Input, Mode, Next, Woke};
use crate::error::Error;
use crate::lifecycle::{Action, EndReason, Lifecycle, Outcome, StateClass};
use crate::ops::begin::Decided;
use crate::ops::settle::Settled;
use crate::redis::Replication;
use crate::retry::Retry;
use crate::sandbox::{Done, DoneReason, Sandbox};

/// Re-checks are at least this far apart, however many notices arrive.
pub(crate) const MIN_GAP: Duration = Duration::from_millis(2);
/// How often a state that should have changed may be seen again.
pub(crate) const REPEATS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    /// A script call is out.
    Calling,
    /// Queued (begin): re-check at `until`, or on a notice newer than
    /// transition `fence`; `recheck`: a notice came, the re-check is set.
    Queued {
        fence: Option<u64>,
        until: Instant,
        recheck: bool,
    },
    /// Waiting for transition `fence` to end (begin's join, wait_idle).
    Joining {
        action: Action,
        fence: u64,
        holder: String,
        until: Option<Instant>,
    },
    /// The settle of a stuck transition `fence` is out.
    Settling { fence: u64 },
    /// Sleeping until `until` before a call, deaf to notices.
    Backoff { then: Call, until: Instant },
}

/// One request's loop state.
#[derive(Debug, Clone)]
pub(crate) struct Loop<'a> {
    team: &'a str,
    id: &'a str,
    record: &'a str,
    lifecycle: &'a Lifecycle,
    poll: Duration,
    mode: Mode,
    started: Instant,
    deadline: Option<Instant>,
    phase: Phase,
    subscribed: bool,
    /// A begin call is out or its reply was lost: it may have started a
    /// transition or queued us.
    in_doubt: bool,
    /// Queued (a place in the record's queue is ours).
    queued: bool,
    /// Started, but not on enough replicas.
    short: bool,
    attempt: u32,
    last_call: Option<Instant>,
    /// A transition that should be over, and whether a write said so.
    seen: Option<(u64, bool)>,
    repeats: u32,
    /// Stuck transitions settled so far.
    settles: u32,
    /// When begin first queued (for the wait metric).
    pub waited: Option<Instant>,
    /// When the join began (for the join metric).
    pub joined: Option<Instant>,
    /// Script calls asked for so far.
    pub calls: u32,
}

impl<'a> Loop<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        team: &'a str,
        id: &'a str,
        record: &'a str,
        lifecycle: &'a Lifecycle,
        poll: Duration,
        mode: Mode,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Loop<'a> {
        Loop {
            team,
            id,
            record,
            lifecycle,
            poll,
            mode,
            started,
            deadline,
            phase: Phase::Calling,
            subscribed: false,
            in_doubt: false,
            queued: false,
            short: false,
            attempt: 0,
            last_call: None,
            seen: None,
            repeats: 0,
            settles: 0,
            waited: None,
            joined: None,
            calls: 0,
        }
    }

    /// The reason to cancel by holder if the request ends now (its future
    /// dropped, or answered as it is): it may hold a transition or a queue
    /// place nobody received.
    pub(crate) fn cancel(&self) -> Option<EndReason> {
        if self.short {
            Some(EndReason::NotReplicated)
        } else if self.in_doubt || self.queued {
            Some(EndReason::Cancelled)
        } else {
            None
        }
    }

    /// The next thing to do, given what the last one brought back.
    pub(crate) fn step(&mut self, input: Input, now: Instant) -> Next {
        let next = self.decide(input, now);
        match &next {
            Next::Call(call) => {
                self.calls += 1;
                self.last_call = Some(now);
                match call {
                    // A join's check keeps its phase.
                    Call::Settle { .. } if matches!(self.phase, Phase::Joining { .. }) => {}
                    Call::Settle { fence, .. } => self.phase = Phase::Settling { fence: *fence },
                    Call::Begin => {
                        self.in_doubt = true;
                        self.phase = Phase::Calling;
                    }
                    Call::Inspect => self.phase = Phase::Calling,
                }
            }
            Next::Answer(_) => self.phase = Phase::Calling,
            _ => {}
        }
        next
    }

    fn first(&self) -> Call {
        match self.mode {
            Mode::Begin(_) => Call::Begin,
            Mode::Idle => Call::Inspect,
        }
    }

    fn decide(&mut self, input: Input, now: Instant) -> Next {
        match input {
            Input::Start => Next::Call(self.first()),
            Input::Begun(reply) => self.begun(reply, now),
            Input::Settled(reply) => self.settled(reply, now),
            Input::Inspected(reply) => self.inspected(reply, now),
            Input::Subscribed => {
                self.subscribed = true;
                match &self.phase {
                    Phase::Joining { fence, holder, .. } => Next::Call(Call::Settle {
                        fence: *fence,
                        holder: holder.clone(),
                    }),
                    // First wait: re-check at once (a notice published
                    // before the subscription is not lost: this reads Redis).
                    _ => Next::Call(Call::Begin),
                }
            }
            Input::Woke(w) => self.woke(w, now),
        }
    }

    fn timeout(&self, now: Instant) -> Error {
        Error::Timeout {
            team: self.team.into(),
            id: self.id.into(),
            waited: now.saturating_duration_since(self.started),
        }
    }

    fn corrupt(&self, what: String) -> Error {
        Error::Corrupt {
            detail: format!("{}: {what}", self.record),
        }
    }

    fn past(&self, t: Instant) -> bool {
        self.deadline.is_some_and(|d| t >= d)
    }

    fn until(&self, t: Instant) -> Instant {
        self.deadline.map_or(t, |d| t.min(d))
    }

    /// Transition `fence` shows again though it should be over: `Corrupt`
    /// when no write said so, else a bounded backoff before `then`.
    fn again(&mut self, fence: u64, then: Call, now: Instant) -> Next {
        match self.seen {
            Some((f, false)) if f == fence => Next::Answer(Err(self.corrupt(format!(
                "transition {fence} is stuck, yet settle found it ended"
            )))),
            Some((f, true)) if f == fence => {
                self.repeats += 1;
                // Waiting for a write to show, not a transport retry
                // (`crate::retry`): its own, shorter steps.
                let pause = Duration::from_millis(10 << self.repeats.min(6));
                if self.repeats > REPEATS {
                    return Next::Answer(Err(self.corrupt(format!(
                        "transition {fence} shows as in flight after its end was recorded"
                    ))));
                }
                if self.past(now + pause) {
                    return Next::Answer(Err(self.timeout(now)));
                }
                self.phase = Phase::Backoff {
                    then,
                    until: now + pause,
                };
                Next::SleepUntil(now + pause)
            }
            // Another transition: progress; past the first, within the
            // deadline (an endless run of them must not outlive it).
            _ if self.settles > 0 && self.past(now) => Next::Answer(Err(self.timeout(now))),
            _ => {
                self.repeats = 0;
                Next::Call(then)
            }
        }
    }

    fn begun(&mut self, reply: Result<(Decided, Replication), Error>, now: Instant) -> Next {
        let (decided, replication) = match reply {
            Ok(r) => r,
            // Idempotent by its holder id: a retry after a lost reply finds
            // the lease (or the queue place) already ours.
            Err(e) if e.is_retryable() && !matches!(e, Error::NotReplicated { .. }) => {
                let retry = Retry::TWICE.within(self.deadline);
                let Some(pause) = retry.next(self.attempt, now) else {
                    // Out of retries or of time: as any transport error.
                    self.in_doubt = true;
                    self.queued = false;
                    return Next::Answer(Err(e));
                };
                self.attempt += 1;
                self.phase = Phase::Backoff {
                    then: Call::Begin,
                    until: now + pause,
                };
                return Next::SleepUntil(now + pause);
            }
            Err(e) => {
                // A transport error may hide a started transition or a
                // queue place (the cancel undoes it); a refusal wrote
                // nothing of ours (a queued caller left in the same step).
                self.in_doubt = e.is_retryable();
                self.queued = false;
                return Next::Answer(Err(e));
            }
        };
        self.attempt = 0;
        self.in_doubt = false;
        let Mode::Begin(action) = self.mode else {
            return Next::Answer(Err(self.corrupt("begin reply in wait_idle".into())));
        };
        match decided {
            Decided::Started {
                fence,
                lease,
                execution,
            } => {
                if let Replication::Short { acked, wanted } = replication {
                    self.short = true;
                    return Next::Answer(Err(Error::NotReplicated {
                        operation: "begin",
                        acked,
                        wanted,
                    }));
                }
                self.queued = false;
                Next::Answer(Ok(Answer::Started {
                    fence,
                    lease,
                    execution,
                }))
            }
            Decided::Same(state) => {
                self.queued = false;
                Next::Answer(Ok(Answer::Done(Done {
                    why: DoneReason::AlreadyInState,
                    state,
                })))
            }
            Decided::Absorbed(state) => {
                self.queued = false;
                Next::Answer(Ok(Answer::Done(Done {
                    why: DoneReason::Absorbed { by: state },
                    state,
                })))
            }
            Decided::Join { fence, holder, .. } => {
                self.queued = false;
                if self.settles > 0 && self.past(now) {
                    return Next::Answer(Err(self.timeout(now)));
                }
                self.joined = Some(now);
                self.join(action, fence, holder)
            }
            Decided::Stuck { fence, holder } => {
                // Its holder vanished: record that (settle, with its
                // outcome key declared), then decide again.
                self.again(fence, Call::Settle { fence, holder }, now)
            }
            Decided::Wait { fence, wake } => {
                self.waited.get_or_insert(now);
                self.queued = true;
                if self.past(now) {
                    return Next::Answer(Err(self.timeout(now)));
                }
                if !self.subscribed {
                    self.phase = Phase::Queued {
                        fence,
                        until: now,
                        recheck: true,
                    };
                    return Next::Subscribe;
                }
                let until = self.until(
                    now + self
                        .poll
                        .min(wake.saturating_add(Duration::from_millis(2)))
                        .max(MIN_GAP),
                );
                self.phase = Phase::Queued {
                    fence,
                    until,
                    recheck: false,
                };
                Next::SleepUntil(until)
            }
        }
    }

    fn join(&mut self, action: Action, fence: u64, holder: String) -> Next {
        self.phase = Phase::Joining {
            action,
            fence,
            holder: holder.clone(),
            until: None,
        };
        if !self.subscribed {
            return Next::Subscribe;
        }
        Next::Call(Call::Settle { fence, holder })
    }

    /// How the transition joined ended: begin answers; wait_idle reads the
    /// record again (and expects it to have moved on).
    fn ended(
        &mut self,
        action: Action,
        fence: u64,
        result: Result<(Outcome, String), Error>,
    ) -> Next {
        if self.mode == Mode::Idle {
            return match result {
                Ok(_) | Err(Error::OutcomeUnknown { .. }) => {
                    self.seen = Some((fence, true));
                    Next::Call(Call::Inspect)
                }
                Err(e) => Next::Answer(Err(e)),
            };
        }
        let (team, id) = (self.team.to_string(), self.id.to_string());
        Next::Answer(match result {
            Ok((Outcome::Succeeded, _)) => Ok(Answer::Done(Done {
                why: DoneReason::Joined { fence },
                state: self.lifecycle.state_after(action, Outcome::Succeeded),
            })),
            Ok((Outcome::Failed, reason)) => Err(Error::TransitionFailed {
                team,
                id,
                action,
                fence,
                reason,
            }),
            Ok((Outcome::Abandoned, reason)) => Err(Error::Abandoned {
                team,
                id,
                action,
                fence,
                reason,
            }),
            Err(e) => Err(e),
        })
    }

    fn settled(&mut self, reply: Result<Settled, Error>, now: Instant) -> Next {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return Next::Answer(Err(e)),
        };
        let Phase::Joining {
            action,
            fence,
            holder,
            ..
        } = self.phase.clone()
        else {
            // The settle of a stuck transition: remember whether it wrote,
            // then decide (or read) again.
            // (A live lease is a change: nothing to hold against it.)
            if let Phase::Settling { fence } = self.phase {
                self.settles += 1;
                self.seen = match reply {
                    Settled::Live(_) => None,
                    Settled::Abandoned { .. } => Some((fence, true)),
                    Settled::Ended { .. } | Settled::Unknown => Some((fence, false)),
                };
            }
            return Next::Call(self.first());
        };
        match reply {
            Settled::Ended {
                outcome, reason, ..
            } => self.ended(action, fence, Ok((outcome, reason))),
            Settled::Abandoned { reason, .. } => {
                self.ended(action, fence, Ok((Outcome::Abandoned, reason)))
            }
            Settled::Unknown => {
                let e = Error::OutcomeUnknown {
                    team: self.team.into(),
                    id: self.id.into(),
                    action,
                    fence,
                };
                self.ended(action, fence, Err(e))
            }
            Settled::Live(left) => {
                if self.past(now) {
                    return Next::Answer(Err(self.timeout(now)));
                }
                // Wake at the poll interval, or just after the lease
                // deadline (the check then records `abandoned`).
                let until = self.until(
                    now + self
                        .poll
                        .min(left.saturating_add(Duration::from_millis(2)))
                        .max(Duration::from_millis(5)),
                );
                self.phase = Phase::Joining {
                    action,
                    fence,
                    holder,
                    until: Some(until),
                };
                Next::SleepUntil(until)
            }
        }
    }

    fn inspected(&mut self, reply: Result<Option<Box<Sandbox>>, Error>, now: Instant) -> Next {
        let sandbox = match reply {
            Ok(Some(sb)) => sb,
            Ok(None) => {
                return Next::Answer(Err(Error::NotFound {
                    team: self.team.into(),
                    id: self.id.into(),
                }));
            }
            Err(e) => return Next::Answer(Err(e)),
        };
        let in_flight = matches!(self.lifecycle.class(sandbox.state), StateClass::InFlight(_));
        let unrecorded = sandbox
            .last
            .as_ref()
            .is_none_or(|l| l.fence != sandbox.fence);
        match &sandbox.lease {
            None if in_flight && unrecorded && sandbox.fence > 0 => {
                // The holder vanished and nobody has said so yet: record
                // `abandoned` (fenced, atomic, published), then read again.
                let fence = sandbox.fence;
                self.again(
                    fence,
                    Call::Settle {
                        fence,
                        holder: String::new(),
                    },
                    now,
                )
            }
            None => Next::Answer(Ok(Answer::Idle(sandbox))),
            Some(_) if (self.settles > 0 || self.seen.is_some()) && self.past(now) => {
                Next::Answer(Err(self.timeout(now)))
            }
            Some(lease) => {
                let (action, fence, holder) = (lease.action, lease.fence, lease.holder.clone());
                if self.seen.is_some_and(|(f, _)| f == fence) {
                    // Said to have ended, still live: back off, bounded.
                    return match self.again(fence, Call::Inspect, now) {
                        Next::Call(_) => self.join(action, fence, holder),
                        other => other,
                    };
                }
                self.join(action, fence, holder)
            }
        }
    }

    fn woke(&mut self, w: Woke, now: Instant) -> Next {
        match self.phase.clone() {
            Phase::Backoff { then, until } => match w {
                Woke::Timer => Next::Call(then),
                _ => Next::SleepUntil(until),
            },
            Phase::Queued {
                fence,
                until,
                recheck,
            } => {
                let older = matches!(&w, Woke::Ended { fence: f, .. }
                    if fence.is_some_and(|ours| *f < ours));
                match w {
                    Woke::Timer => Next::Call(Call::Begin),
                    _ if older || recheck => Next::SleepUntil(until),
                    _ => self.recheck_soon(now, Call::Begin),
                }
            }
            Phase::Joining {
                action,
                fence,
                holder,
                until,
            } => match w {
                Woke::Ended {
                    fence: f,
                    outcome,
                    reason,
                } if f == fence => self.ended(action, fence, Ok((outcome, reason))),
                Woke::Timer => Next::Call(Call::Settle { fence, holder }),
                // An older transition's news, or another change: the one
                // joined is still running.
                Woke::Ended { fence: f, .. } if f < fence => self.sleep_on(until, now),
                Woke::Changed => self.sleep_on(until, now),
                _ => self.recheck_soon(now, Call::Settle { fence, holder }),
            },
            // Not asleep (a driver that reports a wake-up it was not asked
            // for): carry on with a fresh read.
            Phase::Calling | Phase::Settling { .. } => Next::Call(self.first()),
        }
    }

    fn sleep_on(&self, until: Option<Instant>, now: Instant) -> Next {
        Next::SleepUntil(until.unwrap_or(now))
    }

    /// A notice says to re-check: at once, or [`MIN_GAP`] after the last
    /// call, deaf to further notices till then.
    fn recheck_soon(&mut self, now: Instant, call: Call) -> Next {
        let at = self.until(self.last_call.map_or(now, |t| t + MIN_GAP));
        if at <= now {
            return Next::Call(call);
        }
        match &mut self.phase {
            Phase::Queued { until, recheck, .. } => {
                *until = at;
                *recheck = true;
            }
            Phase::Joining { until, .. } => *until = Some(at),
            _ => {}
        }
        Next::SleepUntil(at)
    }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
