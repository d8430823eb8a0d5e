//! The lifecycle: states, actions, the rule table as data, and [`Lifecycle::decide`],
//! the executable specification of what `begin` does. Pure: no I/O, no clocks.
//!
//! The Lua scripts hold no policy of their own: when a coordinator is built,
//! the table is generated into the text of its scripts (each action's rule
//! row, the state classes, where each action ends), so changing a rule here
//! changes the scripts with it, and the table's [`Lifecycle::digest`] —
//! stored in every record — tells two servers with different tables apart.
//! A differential test keeps the scripts' decisions equal to
//! [`Lifecycle::decide`] cell by cell.
//!
//! The words (states, actions, decisions, outcomes) are in `words`,
//! re-exported here; the table's tests in `tests`.

mod words;

pub(crate) use words::EndReason;
pub use words::{Action, Decision, LeaseView, Outcome, State, StateClass};

/// Where one action goes: its in-flight state and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// The state held while the transition runs.
    pub in_flight: State,
    /// The state after `succeed`.
    pub on_success: State,
    /// The state after `fail`; `None` leaves the in-flight state, without a
    /// lease: stuck, for a retry or a cleanup to start from.
    pub on_failure: Option<State>,
    /// Whether starting it pulls the end time to "now" (pause, kill): the
    /// sandbox is leaving, whatever its end time said.
    pub ends_sandbox: bool,
}

/// The rule table: for each action, its [`ActionSpec`], and for each
/// (state, lease) cell the [`Decision`] `begin` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    initial: State,
    specs: [ActionSpec; 3],
    classes: [StateClass; 6],
    /// rules[action][state] = (decision with a live lease, decision without).
    rules: [[(Decision, Decision); 6]; 3],
}

impl Lifecycle {
    /// The default sandbox lifecycle: the tables of docs/concepts.md
    /// (pause and kill stay in flight, stuck, when they fail; a snapshot
    /// returns to running either way).
    pub fn sandbox() -> Lifecycle {
        use Decision::*;
        let specs = [
            ActionSpec {
                in_flight: State::Pausing,
                on_success: State::Paused,
                on_failure: None,
                ends_sandbox: true,
            },
            ActionSpec {
                in_flight: State::Killing,
                on_success: State::Killed,
                on_failure: None,
                ends_sandbox: true,
            },
            ActionSpec {
                in_flight: State::Snapshotting,
                on_success: State::Running,
                on_failure: Some(State::Running),
                ends_sandbox: false,
            },
        ];
        let classes = [
            StateClass::Live,
            StateClass::InFlight(Action::Pause),
            StateClass::Resumable,
            StateClass::InFlight(Action::Kill),
            StateClass::Final,
            StateClass::InFlight(Action::Snapshot),
        ];
        // Rows in State::ALL order: running, pausing, paused, killing, killed,
        // snapshotting. Each cell: (lease live, stuck). Settled states have no
        // lease, so both halves agree.
        let pause = [
            (Start, Start),
            (Join, Start),
            (AlreadyInState, AlreadyInState),
            (Invalid, Invalid),
            (Invalid, Invalid),
            (WaitThenRedecide, Start),
        ];
        let kill = [
            (Start, Start),
            (WaitThenRedecide, Start),
            (Absorbed, Absorbed),
            (Join, Start),
            (AlreadyInState, AlreadyInState),
            (WaitThenRedecide, Start),
        ];
        let snapshot = [
            (Start, Start),
            (Invalid, Invalid),
            (Invalid, Invalid),
            (Invalid, Invalid),
            (Invalid, Invalid),
            (Join, Start),
        ];
        Lifecycle {
            initial: State::Running,
            specs,
            classes,
            rules: [pause, kill, snapshot],
        }
    }

    /// Changes one rule, e.g. make a kill of a paused sandbox start a
    /// deletion: `.with_rule(Action::Kill, State::Paused, LeaseView::None, Decision::Start)`.
    ///
    /// For a settled (non-in-flight) state the lease half is ignored: both
    /// halves are set, since such a record never has a lease.
    pub fn with_rule(
        mut self,
        action: Action,
        state: State,
        lease: LeaseView,
        decision: Decision,
    ) -> Lifecycle {
        let cell = &mut self.rules[action.index()][state.index()];
        match (self.classes[state.index()], lease) {
            (StateClass::InFlight(_), LeaseView::Live) => cell.0 = decision,
            (StateClass::InFlight(_), LeaseView::None) => cell.1 = decision,
            _ => *cell = (decision, decision),
        }
        self
    }

    /// The rule an API server that deletes sandboxes needs: a kill of a
    /// paused sandbox starts a transition (killing → killed, e.g. deleting
    /// its snapshot) instead of being absorbed, so a delete of a paused
    /// sandbox is final — a later or racing resume finds a killed tombstone
    /// and is refused.
    pub fn kill_deletes_paused(self) -> Lifecycle {
        self.with_rule(
            Action::Kill,
            State::Paused,
            LeaseView::None,
            Decision::Start,
        )
    }

    /// Changes where an action goes.
    pub fn with_action(mut self, action: Action, spec: ActionSpec) -> Lifecycle {
        self.specs[action.index()] = spec;
        self
    }

    /// Checks that the table is one the scripts can run without breaking
    /// the one-holder guarantee. Refused, with a message naming the cell:
    /// - an action whose in-flight state is not classed as in flight for it;
    /// - `Start`, `AlreadyInState` or `Absorbed` on an in-flight state with a
    ///   live lease (starting would overwrite the live lease; answering
    ///   "done" would report a transition that has not ended);
    /// - `Join` or `WaitThenRedecide` where no lease can be live (a settled
    ///   state, or a stuck record), and `Join` across actions;
    /// - an `on_success` or `on_failure` state that is in flight (only "stay
    ///   stuck", `on_failure: None`, may leave the record in flight);
    /// - an initial state that is not live.
    pub fn validate(&self) -> Result<(), String> {
        if self.class(self.initial) != StateClass::Live {
            return Err(format!(
                "initial state {} is not classed as live",
                self.initial
            ));
        }
        for action in Action::ALL {
            let spec = self.spec(action);
            if self.class(spec.in_flight) != StateClass::InFlight(action) {
                return Err(format!(
                    "{action}: in-flight state {} is not classed as in flight for it",
                    spec.in_flight
                ));
            }
            if matches!(self.class(spec.on_success), StateClass::InFlight(_)) {
                return Err(format!(
                    "{action}: on_success {} is an in-flight state",
                    spec.on_success
                ));
            }
            if let Some(fail) = spec.on_failure
                && matches!(self.class(fail), StateClass::InFlight(_))
            {
                return Err(format!(
                    "{action}: on_failure {fail} is an in-flight state (use None to stay stuck)"
                ));
            }
            for state in State::ALL {
                let (live, stuck) = self.rules[action.index()][state.index()];
                if matches!(stuck, Decision::Join | Decision::WaitThenRedecide) {
                    return Err(format!(
                        "{action} on stuck {state}: {stuck:?} needs a live lease"
                    ));
                }
                let in_flight = matches!(self.class(state), StateClass::InFlight(_));
                if !in_flight && matches!(live, Decision::Join | Decision::WaitThenRedecide) {
                    return Err(format!(
                        "{action} on {state}: {live:?} but {state} never holds a lease"
                    ));
                }
                if in_flight
                    && matches!(
                        live,
                        Decision::Start | Decision::AlreadyInState | Decision::Absorbed
                    )
                {
                    return Err(format!(
                        "{action} on {state} with a live lease: {live:?} would ignore the transition in flight"
                    ));
                }
                if live == Decision::Join && self.class(state) != StateClass::InFlight(action) {
                    return Err(format!(
                        "{action} on {state}: can only join a transition of the same action"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A short digest of the whole table (rules, action specs, classes,
    /// initial state): records carry it, so two servers deciding by
    /// different tables on one namespace are detected
    /// ([`Error::LifecycleMismatch`](crate::Error::LifecycleMismatch)).
    pub fn digest(&self) -> String {
        let mut text = format!("initial={};classes={};", self.initial, self.classes_arg());
        for action in Action::ALL {
            let spec = self.spec(action);
            text.push_str(&format!(
                "{action}:{}>{}|{}|{};{};",
                spec.in_flight,
                spec.on_success,
                spec.on_failure.map_or("stuck", State::as_str),
                spec.ends_sandbox,
                self.rules_arg(action)
            ));
        }
        let hex = sha1_smol::Sha1::from(text).digest().to_string();
        hex[..12].to_string()
    }

    /// The executable specification: what `begin(action)` does on a record
    /// in `state` with or without a live lease.
    pub fn decide(&self, state: State, lease: LeaseView, action: Action) -> Decision {
        let (live, stuck) = self.rules[action.index()][state.index()];
        match lease {
            LeaseView::Live => live,
            LeaseView::None => stuck,
        }
    }

    /// Where `action` goes.
    pub fn spec(&self, action: Action) -> ActionSpec {
        self.specs[action.index()]
    }

    /// The role of `state`.
    pub fn class(&self, state: State) -> StateClass {
        self.classes[state.index()]
    }

    /// The state a newly registered sandbox (or a resumed one) starts in.
    pub fn initial(&self) -> State {
        self.initial
    }

    /// The state a transition leaves the record in, given how it ended.
    /// Abandoned transitions leave the in-flight state (stuck).
    pub fn state_after(&self, action: Action, outcome: Outcome) -> State {
        let spec = self.spec(action);
        match outcome {
            Outcome::Succeeded => spec.on_success,
            Outcome::Failed => spec.on_failure.unwrap_or(spec.in_flight),
            Outcome::Abandoned => spec.in_flight,
        }
    }

    /// The state-class argument of the scripts:
    /// `running=live,pausing=inflight,paused=resumable,...`.
    pub fn classes_arg(&self) -> String {
        State::ALL
            .iter()
            .map(|s| format!("{}={}", s.as_str(), self.class(*s).as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rule-row argument of `begin.lua` for one action:
    /// `running=start/start,pausing=join/start,...`.
    pub fn rules_arg(&self, action: Action) -> String {
        State::ALL
            .iter()
            .map(|s| {
                format!(
                    "{}={}/{}",
                    s.as_str(),
                    self.decide(*s, LeaseView::Live, action).as_str(),
                    self.decide(*s, LeaseView::None, action).as_str()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::sandbox()
    }
}

#[cfg(test)]
mod tests;
