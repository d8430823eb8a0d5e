//! The sequential specification of one sandbox, as a stateright
//! [`SequentialSpec`]: what every recorded call may answer if the calls
//! on that sandbox happened one at a time, in some order that respects
//! real time. Decisions come from [`Lifecycle::decide`] and
//! [`Lifecycle::state_after`], the crate's executable specification; the
//! model adds only what the table does not say: fences, leases, joins,
//! registration and removal.
//!
//! How the calls map onto sequential operations:
//!
//! - A holder's transition is two operations of its thread: `Begin` that
//!   answers `Started(fence)`, then `Finish(fence, outcome)` that answers
//!   `Finished` or `Fenced`.
//! - A `Begin` that waited for another transition and then decided again is
//!   one operation that takes effect at its final decision (a point inside
//!   its call, after the transition it waited on ended).
//! - A `Begin` that joined transition F takes effect right after F ended:
//!   `Joined(F)`, `TransitionFailed(F)` or `Abandoned(F)` are valid only
//!   while F is the transition that ended last and nothing changed the
//!   record since (the "just ended" marker), and only with F's outcome.
//! - A joiner that comes back after its transition's outcome is gone gets
//!   "outcome unknown" ([`Ret::OutcomeUnknown`]): valid once that
//!   transition has ended, whatever the outcome.
//! - `Expire(token)` is the lease of the holder that `token` identifies
//!   running out (the recorder adds it, never before the lease could have
//!   expired, for holders that died, stalled or lost contact);
//!   `Cancel(token)` is the coordinator failing, as "cancelled" (or "not
//!   replicated" when the replicas did not confirm the start), what a
//!   `begin` whose answer was a transport error may have started; `Lose` is a
//!   server restart that lost every key (no persistence).
//! - A call that failed with a transport error may or may not have taken
//!   effect: the recorder leaves it in flight, and stateright then may
//!   linearize it anywhere after its invocation, or not at all
//!   ([`SequentialSpec::invoke`] computes its effect).

use std::sync::Arc;

use sandbox_coordinator::{Action, Decision, LeaseView, Lifecycle, Outcome, State, StateClass};
use stateright::semantics::SequentialSpec;

/// One sequential operation on a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `Coordinator::begin(action)`; `token` names this call (its lease,
    /// if it starts one, can be expired by `Expire(token)`).
    Begin { action: Action, token: u64 },
    /// The holder's `succeed` (Succeeded) or `fail(reason)` (Failed).
    Finish {
        fence: u64,
        outcome: Outcome,
        reason: String,
    },
    /// `Coordinator::register` with this execution.
    Register { execution: String },
    /// `Coordinator::remove`.
    Remove,
    /// `Coordinator::get`.
    Get,
    /// The lease taken by call `token` ran out (its holder died, stalled,
    /// or lost contact with Redis).
    Expire { token: u64 },
    /// The coordinator's undo of begin call `token` whose answer was a
    /// transport error (its guard runs cancel.lua by holder id): if the
    /// transition that call started is still live, it ends `failed` with
    /// `reason` ("cancelled"; "not replicated" for a start the replicas did
    /// not confirm, `Error::NotReplicated`); otherwise nothing changes (a
    /// queue place left is no state of the model). The recorder adds it,
    /// in flight.
    Cancel { token: u64, reason: String },
    /// Redis restarted without persistence: every key is gone, the team's
    /// fence counter too.
    Lose,
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    Started(u64),
    Joined(u64),
    Absorbed(State),
    AlreadyInState(State),
    Invalid(State),
    TransitionFailed {
        fence: u64,
        reason: String,
    },
    Abandoned(u64),
    /// A joiner told `Abandoned` with reason "outcome unknown": it came
    /// back after F's outcome was gone (aged out of the newest outcomes
    /// kept, or the data was lost). Honest, not definite: valid once F has
    /// ended, whatever its outcome.
    OutcomeUnknown(u64),
    NotFound,
    Timeout,
    Finished,
    Fenced,
    Created,
    Existing,
    Resumed {
        previous: String,
    },
    Busy,
    Exists,
    Removed,
    /// `get`: the record's state, execution, fence (of the latest
    /// transition started on it; 0 for none) and live lease fence.
    Record {
        state: State,
        execution: String,
        fence: u64,
        lease: Option<u64>,
    },
    /// `Expire` and `Lose` (never observed; they stay in flight).
    Done,
}

/// The live transition: its fence (unknown for a call that failed in
/// transport but may have started one), action and the call that took it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Live {
    fence: Option<u64>,
    action: Action,
    token: u64,
}

/// The transition that ended last, while nothing changed the record since.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ended {
    fence: Option<u64>,
    action: Action,
    outcome: Outcome,
    reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Record {
    state: State,
    execution: String,
    /// Fence of the latest transition started on the record (unknown if
    /// a call that never got its answer started it).
    fence: Option<u64>,
}

/// The state of one sandbox in the sequential model.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    lifecycle: Arc<Lifecycle>,
    record: Option<Record>,
    live: Option<Live>,
    ended: Option<Ended>,
    /// Every fence seen so far is at most this.
    max_fence: u64,
}

// The checker memoizes (linearized calls, model state): equality and hash
// cover the state, not the rule table every state of a check shares.
impl PartialEq for SandboxSpec {
    fn eq(&self, other: &Self) -> bool {
        (&self.record, &self.live, &self.ended, self.max_fence)
            == (&other.record, &other.live, &other.ended, other.max_fence)
    }
}

impl Eq for SandboxSpec {}

impl std::hash::Hash for SandboxSpec {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (&self.record, &self.live, &self.ended, self.max_fence).hash(h);
    }
}

impl SandboxSpec {
    /// A sandbox that does not exist yet, under `lifecycle`.
    pub fn new(lifecycle: Lifecycle) -> SandboxSpec {
        SandboxSpec {
            lifecycle: Arc::new(lifecycle),
            record: None,
            live: None,
            ended: None,
            max_fence: 0,
        }
    }

    fn lease_view(&self) -> LeaseView {
        if self.live.is_some() {
            LeaseView::Live
        } else {
            LeaseView::None
        }
    }

    /// Whether a request for `action` joins a live transition of `live`.
    fn joins(&self, live: Action, action: Action) -> bool {
        let in_flight = self.lifecycle.spec(live).in_flight;
        self.lifecycle.decide(in_flight, LeaseView::Live, action) == Decision::Join
    }

    /// The record changed: the transition that ended last is no longer
    /// the latest news a joiner can linearize after.
    fn changed(&mut self) {
        self.ended = None;
    }

    /// Matches `fence` against a possibly unknown one, learning it.
    fn same_fence(known: &mut Option<u64>, fence: u64, max_fence: &mut u64) -> bool {
        match known {
            Some(f) => *f == fence,
            None => {
                *known = Some(fence);
                *max_fence = (*max_fence).max(fence);
                true
            }
        }
    }

    /// A joiner's answer: valid right after the transition it joined ended
    /// with that outcome, while nothing changed the record since.
    fn joined(
        &mut self,
        action: Action,
        fence: u64,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> bool {
        let Some(mut ended) = self.ended.clone() else {
            return false;
        };
        if ended.outcome != outcome || !self.joins(ended.action, action) {
            return false;
        }
        if reason.is_some_and(|r| r != ended.reason) {
            return false;
        }
        if !Self::same_fence(&mut ended.fence, fence, &mut self.max_fence) {
            return false;
        }
        self.ended = Some(ended);
        true
    }

    fn start(&mut self, action: Action, token: u64, fence: Option<u64>) {
        let spec = self.lifecycle.spec(action);
        if let Some(r) = &mut self.record {
            r.state = spec.in_flight;
            r.fence = fence;
        }
        if let Some(f) = fence {
            self.max_fence = f;
        }
        self.live = Some(Live {
            fence,
            action,
            token,
        });
        self.changed();
    }

    fn begin_valid(&mut self, action: Action, token: u64, ret: &Ret) -> bool {
        match ret {
            Ret::Joined(f) => return self.joined(action, *f, Outcome::Succeeded, None),
            Ret::TransitionFailed { fence, reason } => {
                return self.joined(action, *fence, Outcome::Failed, Some(reason));
            }
            Ret::Abandoned(f) => return self.joined(action, *f, Outcome::Abandoned, None),
            Ret::OutcomeUnknown(f) => {
                let live = self.live.as_ref().and_then(|l| l.fence);
                return *f <= self.max_fence && live != Some(*f);
            }
            // The last check of a bounded wait saw the lease live.
            Ret::Timeout => return self.live.is_some(),
            Ret::NotFound => return self.record.is_none(),
            _ => {}
        }
        let Some(record) = &self.record else {
            return false;
        };
        let state = record.state;
        match (self.lifecycle.decide(state, self.lease_view(), action), ret) {
            (Decision::Start, Ret::Started(f)) if *f > self.max_fence => {
                self.start(action, token, Some(*f));
                true
            }
            (Decision::Absorbed, Ret::Absorbed(s))
            | (Decision::AlreadyInState, Ret::AlreadyInState(s))
            | (Decision::Invalid, Ret::Invalid(s)) => *s == state,
            _ => false,
        }
    }

    fn finish_valid(&mut self, fence: u64, outcome: Outcome, reason: &str, ret: &Ret) -> bool {
        // A holder saw its fence; a live transition of unknown fence was
        // taken by a call that never got its answer, so it is not this one.
        let ours = self.live.as_ref().is_some_and(|l| l.fence == Some(fence));
        match ret {
            Ret::Finished if ours => {
                self.end(outcome, reason);
                true
            }
            // Refused: nothing written. (NotFound: the record was removed
            // after the lease ran out.)
            Ret::Fenced => !ours,
            Ret::NotFound => !ours && self.record.is_none(),
            _ => false,
        }
    }

    /// The live transition ends with `outcome`.
    fn end(&mut self, outcome: Outcome, reason: &str) {
        let Some(live) = self.live.take() else {
            return;
        };
        if let Some(r) = &mut self.record {
            r.state = self.lifecycle.state_after(live.action, outcome);
        }
        self.ended = Some(Ended {
            fence: live.fence,
            action: live.action,
            outcome,
            reason: reason.to_string(),
        });
    }

    fn register(&mut self, execution: &str) -> Ret {
        if self.live.is_some() {
            return Ret::Busy;
        }
        let initial = self.lifecycle.initial();
        let Some(record) = &mut self.record else {
            self.record = Some(Record {
                state: initial,
                execution: execution.to_string(),
                fence: Some(0),
            });
            self.changed();
            return Ret::Created;
        };
        match self.lifecycle.class(record.state) {
            StateClass::Final => Ret::Exists,
            _ if record.execution == execution => Ret::Existing,
            StateClass::Resumable => {
                let previous = std::mem::replace(&mut record.execution, execution.to_string());
                record.state = initial;
                self.changed();
                Ret::Resumed { previous }
            }
            _ => Ret::Exists,
        }
    }

    fn remove(&mut self) -> Ret {
        if self.live.is_some() {
            Ret::Busy
        } else if self.record.take().is_some() {
            self.changed();
            Ret::Removed
        } else {
            Ret::NotFound
        }
    }

    fn get_valid(&mut self, ret: &Ret) -> bool {
        match (ret, &mut self.record) {
            (Ret::NotFound, None) => true,
            (
                Ret::Record {
                    state,
                    execution,
                    fence,
                    lease,
                },
                Some(r),
            ) => {
                if (*state, execution) != (r.state, &r.execution) {
                    return false;
                }
                if !Self::same_fence(&mut r.fence, *fence, &mut self.max_fence) {
                    return false;
                }
                match (lease, &mut self.live) {
                    (None, None) => true,
                    (Some(f), Some(live)) => {
                        Self::same_fence(&mut live.fence, *f, &mut self.max_fence)
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    fn expire(&mut self, token: u64) {
        if self.live.as_ref().is_some_and(|l| l.token == token) {
            self.end(Outcome::Abandoned, "lease expired");
        }
    }

    fn cancel(&mut self, token: u64, reason: &str) {
        if self.live.as_ref().is_some_and(|l| l.token == token) {
            self.end(Outcome::Failed, reason);
        }
    }

    fn lose(&mut self) {
        if self.live.is_some() {
            // Waiters find neither record nor outcome: "outcome unknown".
            self.end(Outcome::Abandoned, "outcome unknown");
        } else {
            self.changed();
        }
        self.record = None;
        self.max_fence = 0;
    }
}

impl SequentialSpec for SandboxSpec {
    type Op = Op;
    type Ret = Ret;

    /// The effect of a call whose answer was never observed (transport
    /// error, or an `Expire`/`Lose` the recorder added).
    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Begin { action, token } => {
                let Some(record) = &self.record else {
                    return Ret::NotFound;
                };
                let state = record.state;
                match self.lifecycle.decide(state, self.lease_view(), *action) {
                    Decision::Start => {
                        // Redis chose a fence nobody saw; any later one is larger.
                        self.start(*action, *token, None);
                        Ret::Started(0)
                    }
                    Decision::Absorbed => Ret::Absorbed(state),
                    Decision::AlreadyInState => Ret::AlreadyInState(state),
                    Decision::Invalid => Ret::Invalid(state),
                    // A waiting call that never came back wrote nothing.
                    Decision::Join | Decision::WaitThenRedecide => Ret::Timeout,
                }
            }
            Op::Finish {
                fence,
                outcome,
                reason,
            } => {
                if self.finish_valid(*fence, *outcome, reason, &Ret::Finished) {
                    Ret::Finished
                } else {
                    Ret::Fenced
                }
            }
            Op::Register { execution } => self.register(execution),
            Op::Remove => self.remove(),
            Op::Get => Ret::Done,
            Op::Expire { token } => {
                self.expire(*token);
                Ret::Done
            }
            Op::Cancel { token, reason } => {
                self.cancel(*token, reason);
                Ret::Done
            }
            Op::Lose => {
                self.lose();
                Ret::Done
            }
        }
    }

    fn is_valid_step(&mut self, op: &Op, ret: &Ret) -> bool {
        match op {
            Op::Begin { action, token } => self.begin_valid(*action, *token, ret),
            Op::Finish {
                fence,
                outcome,
                reason,
            } => self.finish_valid(*fence, *outcome, reason, ret),
            Op::Register { execution } => self.register(execution) == *ret,
            Op::Remove => self.remove() == *ret,
            Op::Get => self.get_valid(ret),
            Op::Expire { .. } | Op::Cancel { .. } | Op::Lose => self.invoke(op) == *ret,
        }
    }
}
