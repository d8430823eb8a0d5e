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

use std::fmt;
use std::str::FromStr;

/// A sandbox record's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Live and serving.
    Running,
    /// A pause is in flight (or stuck, if its lease is gone).
    Pausing,
    /// Paused: a tombstone a new incarnation may resume from.
    Paused,
    /// A kill is in flight (or stuck).
    Killing,
    /// Killed: a final tombstone.
    Killed,
    /// A snapshot is in flight (or stuck).
    Snapshotting,
}

impl State {
    /// Every state, in table order.
    pub const ALL: [State; 6] = [
        State::Running,
        State::Pausing,
        State::Paused,
        State::Killing,
        State::Killed,
        State::Snapshotting,
    ];

    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Pausing => "pausing",
            State::Paused => "paused",
            State::Killing => "killing",
            State::Killed => "killed",
            State::Snapshotting => "snapshotting",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}"))
    }
}

/// A lifecycle transition a caller can request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Pause the sandbox (it can be resumed as a new incarnation).
    Pause,
    /// Kill the sandbox (final).
    Kill,
    /// Snapshot the sandbox; it keeps running.
    Snapshot,
}

impl Action {
    /// Every action, in table order.
    pub const ALL: [Action; 3] = [Action::Pause, Action::Kill, Action::Snapshot];

    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Kill => "kill",
            Action::Snapshot => "snapshot",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// What `begin` does for one (state, lease, action) cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Bump the fence, enter the in-flight state, take the lease.
    Start,
    /// The same transition is in flight: wait for its outcome and share it.
    Join,
    /// Another transition is in flight: wait for it to end, then decide again.
    WaitThenRedecide,
    /// Already in the action's target state; nothing is written.
    AlreadyInState,
    /// The current state already covers the request (kill of a paused
    /// sandbox); nothing is written.
    Absorbed,
    /// Not allowed from this state; nothing is written.
    Invalid,
}

impl Decision {
    /// The word the scripts use.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Start => "start",
            Decision::Join => "join",
            Decision::WaitThenRedecide => "wait",
            Decision::AlreadyInState => "same",
            Decision::Absorbed => "absorbed",
            Decision::Invalid => "invalid",
        }
    }
}

/// Whether a transition lease is held for the record right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseView {
    /// A lease is live: its holder is working on the transition.
    Live,
    /// No lease: if the state is in flight, the transition is stuck.
    None,
}

/// How a transition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The holder called `succeed`.
    Succeeded,
    /// The holder called `fail`.
    Failed,
    /// The holder vanished: its lease expired, it was dropped unfinished
    /// and could not report, or an operator abandoned it.
    Abandoned,
}

impl Outcome {
    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "succeeded" => Ok(Outcome::Succeeded),
            "failed" => Ok(Outcome::Failed),
            "abandoned" => Ok(Outcome::Abandoned),
            _ => Err(format!("unknown outcome {s:?}")),
        }
    }
}

/// The role a state plays, which decides its bookkeeping in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateClass {
    /// A live sandbox: in the expiry index, no TTL.
    Live,
    /// The in-flight state of this action: held under a lease.
    InFlight(Action),
    /// A tombstone a new incarnation may be registered over (a resume).
    Resumable,
    /// A final tombstone: registration is refused while it lasts.
    Final,
}

impl StateClass {
    /// Whether a record in this state is a tombstone (leaves the expiry
    /// index, expires after the retention).
    pub fn is_tombstone(self) -> bool {
        matches!(self, StateClass::Resumable | StateClass::Final)
    }

    /// The class's name in the scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            StateClass::Live => "live",
            StateClass::InFlight(_) => "inflight",
            StateClass::Resumable => "resumable",
            StateClass::Final => "final",
        }
    }
}

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
mod tests {
    use super::Action::*;
    use super::Decision::*;
    use super::LeaseView::{Live, None as Stuck};
    use super::State::*;
    use super::*;

    /// docs/concepts.md's table, cell by cell: (state, lease, [pause, kill, snapshot]).
    const TABLE: [(State, LeaseView, [Decision; 3]); 9] = [
        (Running, Stuck, [Start, Start, Start]),
        (Pausing, Live, [Join, WaitThenRedecide, Invalid]),
        (Pausing, Stuck, [Start, Start, Invalid]),
        (Paused, Stuck, [AlreadyInState, Absorbed, Invalid]),
        (Killing, Live, [Invalid, Join, Invalid]),
        (Killing, Stuck, [Invalid, Start, Invalid]),
        (Killed, Stuck, [Invalid, AlreadyInState, Invalid]),
        (
            Snapshotting,
            Live,
            [WaitThenRedecide, WaitThenRedecide, Join],
        ),
        (Snapshotting, Stuck, [Start, Start, Start]),
    ];

    #[test]
    fn every_cell_of_the_design_table() {
        let lc = Lifecycle::sandbox();
        for (state, lease, row) in TABLE {
            for (action, want) in Action::ALL.into_iter().zip(row) {
                assert_eq!(
                    lc.decide(state, lease, action),
                    want,
                    "{action} on {state} with lease {lease:?}"
                );
            }
        }
    }

    #[test]
    fn settled_states_ignore_the_lease_half() {
        let lc = Lifecycle::sandbox();
        for state in [Running, Paused, Killed] {
            for action in Action::ALL {
                assert_eq!(
                    lc.decide(state, Live, action),
                    lc.decide(state, Stuck, action)
                );
            }
        }
    }

    #[test]
    fn outcomes_follow_the_action_table() {
        let lc = Lifecycle::sandbox();
        assert_eq!(lc.state_after(Pause, Outcome::Succeeded), Paused);
        assert_eq!(lc.state_after(Pause, Outcome::Failed), Pausing);
        assert_eq!(lc.state_after(Kill, Outcome::Succeeded), Killed);
        assert_eq!(lc.state_after(Kill, Outcome::Failed), Killing);
        assert_eq!(lc.state_after(Snapshot, Outcome::Succeeded), Running);
        assert_eq!(lc.state_after(Snapshot, Outcome::Failed), Running);
        assert_eq!(lc.state_after(Snapshot, Outcome::Abandoned), Snapshotting);
    }

    #[test]
    fn the_default_table_is_valid() {
        assert_eq!(Lifecycle::sandbox().validate(), Ok(()));
    }

    #[test]
    fn a_join_across_actions_is_rejected() {
        let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, Join);
        assert!(lc.validate().is_err());
    }

    #[test]
    fn a_wait_on_a_stuck_record_is_rejected() {
        let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Stuck, WaitThenRedecide);
        assert!(lc.validate().is_err());
    }

    #[test]
    fn a_start_over_a_live_lease_is_rejected_naming_the_cell() {
        let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, Start);
        let err = lc.validate().unwrap_err();
        assert!(err.contains("kill on pausing"), "{err}");
    }

    #[test]
    fn done_answers_on_a_live_in_flight_cell_are_rejected() {
        for d in [AlreadyInState, Absorbed] {
            let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, d);
            let err = lc.validate().unwrap_err();
            assert!(err.contains("kill on pausing with a live lease"), "{err}");
        }
    }

    #[test]
    fn outcomes_into_in_flight_states_are_rejected() {
        let spec = ActionSpec {
            in_flight: Snapshotting,
            on_success: Pausing,
            on_failure: Some(Running),
            ends_sandbox: false,
        };
        let err = Lifecycle::sandbox()
            .with_action(Snapshot, spec)
            .validate()
            .unwrap_err();
        assert!(err.contains("on_success pausing"), "{err}");
        let spec = ActionSpec {
            on_success: Running,
            on_failure: Some(Killing),
            ..spec
        };
        let err = Lifecycle::sandbox()
            .with_action(Snapshot, spec)
            .validate()
            .unwrap_err();
        assert!(err.contains("on_failure killing"), "{err}");
    }

    #[test]
    fn the_digest_names_the_table() {
        let a = Lifecycle::sandbox();
        let b = Lifecycle::sandbox().with_rule(Kill, Paused, Stuck, Start);
        assert_eq!(a.digest(), Lifecycle::sandbox().digest());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 12);
    }

    #[test]
    fn a_rule_can_be_changed_as_data() {
        let lc = Lifecycle::sandbox().with_rule(Kill, Paused, Stuck, Start);
        assert_eq!(lc.decide(Paused, Stuck, Kill), Start);
        assert_eq!(lc.validate(), Ok(()));
        assert!(lc.rules_arg(Kill).contains("paused=start/start"));
    }

    #[test]
    fn script_arguments_name_every_state() {
        let lc = Lifecycle::sandbox();
        assert_eq!(
            lc.classes_arg(),
            "running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight"
        );
        assert_eq!(
            lc.rules_arg(Pause),
            "running=start/start,pausing=join/start,paused=same/same,killing=invalid/invalid,killed=invalid/invalid,snapshotting=wait/start"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("sleeping".parse::<State>().is_err());
    }
}
