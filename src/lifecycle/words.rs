//! The lifecycle's words: a record's [`State`], an [`Action`], the
//! [`Decision`] `begin` takes, the [`LeaseView`] it decides on, a
//! transition's [`Outcome`] and a state's [`StateClass`] — each with its
//! text form (as stored in Redis and shown to operators), parsed in one
//! place. The rule table over them is `Lifecycle` (the parent module).

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

    pub(super) fn index(self) -> usize {
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

    pub(super) fn index(self) -> usize {
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

/// Why the library itself ended a transition or a request: the reason
/// words it writes to Redis (with outcome `failed` or `abandoned`), written
/// and read back in this one place. An operator's or a holder's own reason
/// is free text and never one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EndReason {
    /// A `Transition` dropped unfinished.
    Dropped,
    /// A begin whose future was dropped (or that answered while queued).
    Cancelled,
    /// A begin whose write was not acknowledged by enough replicas.
    NotReplicated,
    /// A holder that vanished: found by a waiter after the lease deadline.
    LeaseExpired,
}

impl EndReason {
    /// The word stored in Redis.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndReason::Dropped => "dropped",
            EndReason::Cancelled => "cancelled",
            EndReason::NotReplicated => "not replicated",
            EndReason::LeaseExpired => "lease expired",
        }
    }

    /// The library's reason a stored word is, if it is one.
    pub(crate) fn from_word(word: &str) -> Option<EndReason> {
        [
            EndReason::Dropped,
            EndReason::Cancelled,
            EndReason::NotReplicated,
            EndReason::LeaseExpired,
        ]
        .into_iter()
        .find(|r| r.as_str() == word)
    }

    /// Whether it means the holder went away, not that the work failed.
    pub(crate) fn is_interruption(self) -> bool {
        matches!(
            self,
            EndReason::Dropped | EndReason::Cancelled | EndReason::NotReplicated
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_read_back_as_written_and_free_text_is_none_of_them() {
        for r in [
            EndReason::Dropped,
            EndReason::Cancelled,
            EndReason::NotReplicated,
            EndReason::LeaseExpired,
        ] {
            assert_eq!(EndReason::from_word(r.as_str()), Some(r));
        }
        assert_eq!(EndReason::from_word("disk full"), None);
        assert!(!EndReason::LeaseExpired.is_interruption());
        assert!(EndReason::NotReplicated.is_interruption());
    }
}
