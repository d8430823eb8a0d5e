//! The record as the model check sees it (model_tests.rs): one Redis hash
//! and its outcome keys, changed as begin.lua, settle.lua, finish.lua and
//! cancel.lua change them (followed line by line; the decision comes from
//! the real rule table, `Lifecycle::decide`).

use std::sync::OnceLock;

use super::super::super::*;
use crate::lifecycle::{Decision, LeaseView, State};

/// Lease length, in ms.
pub(super) const LEASE: u64 = 30;
/// The queue place as `Runtime::queue_place` sets it (never under 2 s):
/// longer than a begin's retry backoffs (`retry::pause`: 20 + 80 ms); with a place shorter
/// than those, a waiter whose reply was lost is overtaken.
pub(super) const QUEUE: u64 = 2000;
pub(super) const HOLDERS: [&str; 3] = ["c0", "c1", "c2"];

pub(super) fn lifecycle() -> &'static Lifecycle {
    static L: OnceLock<Lifecycle> = OnceLock::new();
    L.get_or_init(Lifecycle::sandbox)
}

pub(super) fn holder_of(name: &str) -> Option<usize> {
    HOLDERS.iter().position(|h| *h == name)
}

pub(super) fn corrupt(detail: &str) -> Error {
    Error::Corrupt {
        detail: detail.into(),
    }
}

/// The record (one Redis hash) plus its outcome keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Rec {
    pub(super) state: State,
    pub(super) fence: u64,
    pub(super) action: Option<Action>,
    /// Holder (client index) and lease deadline; `None`: holder "".
    pub(super) holder: Option<usize>,
    pub(super) until: u64,
    pub(super) last_fence: u64,
    /// Outcome keys: fence, action, outcome (retention outlives the model).
    pub(super) outcomes: Vec<(u64, Action, Outcome)>,
    /// Queue: holder, place deadline; oldest first.
    pub(super) queue: Vec<(usize, u64)>,
}

pub(super) enum Cancelled {
    Holds(u64, Action),
    Dequeued,
    Nothing,
}

impl Rec {
    pub(super) fn new() -> Rec {
        Rec {
            state: State::Running,
            fence: 0,
            action: None,
            holder: None,
            until: 0,
            last_fence: 0,
            outcomes: Vec::new(),
            queue: Vec::new(),
        }
    }

    pub(super) fn inflight(&self) -> bool {
        matches!(lifecycle().class(self.state), StateClass::InFlight(_))
    }

    pub(super) fn recorded(&self, fence: u64) -> Option<(Action, Outcome)> {
        self.outcomes
            .iter()
            .find(|o| o.0 == fence)
            .map(|o| (o.1, o.2))
    }

    /// outcome.lua's record_outcome; the lease is released.
    pub(super) fn record(&mut self, outcome: Outcome) {
        let action = self.action.expect("recorded with an action");
        self.last_fence = self.fence;
        self.outcomes.push((self.fence, action, outcome));
        self.holder = None;
        self.until = 0;
    }

    /// begin.lua (no reservation, no eviction, no end time).
    pub(super) fn begin(&mut self, action: Action, h: usize, now: u64) -> Result<Decided, Error> {
        let mut q: Vec<(usize, u64)> = self.queue.iter().copied().filter(|e| e.1 > now).collect();
        let mine = q.iter().position(|e| e.0 == h);
        let live = self.holder.is_some() && self.until > now;
        if live && self.holder == Some(h) {
            if self.action != Some(action) {
                return Err(corrupt("holder holds another action"));
            }
            return Ok(Decided::Started {
                fence: self.fence,
                lease: Duration::from_millis(self.until - now),
                execution: "e1".into(),
            });
        }
        let view = if live {
            LeaseView::Live
        } else {
            LeaseView::None
        };
        let decision = lifecycle().decide(self.state, view, action);
        use Decision::*;
        if live && matches!(decision, Start | AlreadyInState | Absorbed) {
            return Err(corrupt("rule with a live lease"));
        }
        if !live && matches!(decision, Join | WaitThenRedecide) {
            return Err(corrupt("rule needs a live lease"));
        }
        let behind = !q.is_empty() && mine != Some(0);
        let stuck = !live && self.inflight() && self.last_fence != self.fence && self.fence > 0;
        if stuck {
            let holder = self.holder.map_or("", |i| HOLDERS[i]).to_string();
            return Ok(Decided::Stuck {
                fence: self.fence,
                holder,
            });
        }
        if decision == Start && !behind {
            self.fence += 1;
            self.state = lifecycle().spec(action).in_flight;
            self.action = Some(action);
            self.holder = Some(h);
            self.until = now + LEASE;
            if let Some(i) = mine {
                q.remove(i);
                self.queue = q;
            }
            return Ok(Decided::Started {
                fence: self.fence,
                lease: Duration::from_millis(LEASE),
                execution: "e1".into(),
            });
        }
        if decision == WaitThenRedecide || decision == Start {
            match mine {
                Some(i) => q[i].1 = now + QUEUE,
                None => q.push((h, now + QUEUE)),
            }
            let mut wake = QUEUE / 2;
            if live {
                wake = wake.min(self.until - now);
            }
            if behind {
                wake = wake.min(q[0].1 - now);
            }
            self.queue = q;
            return Ok(Decided::Wait {
                fence: live.then_some(self.fence),
                wake: Duration::from_millis(wake.max(1)),
            });
        }
        if let Some(i) = mine {
            q.remove(i);
            self.queue = q;
        }
        match decision {
            Join => Ok(Decided::Join {
                fence: self.fence,
                lease_left: Duration::from_millis(self.until - now),
                holder: HOLDERS[self.holder.expect("live")].into(),
            }),
            AlreadyInState => Ok(Decided::Same(self.state)),
            Absorbed => Ok(Decided::Absorbed(self.state)),
            _ => Err(Error::InvalidTransition {
                team: "t".into(),
                id: "s1".into(),
                from: self.state,
                action,
            }),
        }
    }

    /// settle.lua, mode "check".
    pub(super) fn settle(&mut self, fence: u64, holder: &str, now: u64) -> Result<Settled, Error> {
        let recorded = self.recorded(fence);
        let open = self.fence == fence && self.last_fence != fence && self.inflight();
        if open && recorded.is_some() {
            return Err(corrupt("outcome recorded but not applied"));
        }
        if let Some((action, outcome)) = recorded {
            return Ok(Settled::Ended {
                action: Some(action),
                outcome,
                reason: String::new(),
            });
        }
        if self.fence != fence || self.action.is_none() {
            return Ok(Settled::Unknown);
        }
        if !holder.is_empty() && self.holder.is_some() && self.holder != holder_of(holder) {
            return Ok(Settled::Unknown);
        }
        if !self.inflight() {
            return Ok(Settled::Unknown);
        }
        if self.holder.is_some() && self.until > now {
            return Ok(Settled::Live(Duration::from_millis(self.until - now)));
        }
        self.record(Outcome::Abandoned);
        Ok(Settled::Abandoned {
            action: self.action,
            reason: "lease expired".into(),
        })
    }

    /// finish.lua: whether this call recorded the outcome.
    pub(super) fn finish(
        &mut self,
        fence: u64,
        h: usize,
        action: Action,
        outcome: Outcome,
        now: u64,
    ) -> bool {
        let holds = self.fence == fence
            && self.holder == Some(h)
            && self.until > now
            && self.action == Some(action);
        if !holds {
            return false;
        }
        self.state = lifecycle().state_after(action, outcome);
        self.record(outcome);
        true
    }

    /// cancel.lua.
    pub(super) fn cancel(&mut self, h: usize, now: u64) -> Cancelled {
        if self.holder == Some(h) && self.last_fence != self.fence {
            return Cancelled::Holds(self.fence, self.action.expect("held"));
        }
        let mut q: Vec<(usize, u64)> = self.queue.iter().copied().filter(|e| e.1 > now).collect();
        let Some(i) = q.iter().position(|e| e.0 == h) else {
            return Cancelled::Nothing;
        };
        q.remove(i);
        self.queue = q;
        Cancelled::Dequeued
    }
}
