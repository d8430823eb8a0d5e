//! What the demo saw: every request's answer and latency, and per sandbox
//! who held it (the observer behind "one live transition per sandbox") and
//! the fences it was handed, in the order the transitions started.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sandbox_coordinator::Action;

/// How one request ended, as its API server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Held the transition; the simulated work succeeded.
    Succeeded { fence: u64 },
    /// Held the transition; the simulated work failed with `reason`.
    HolderFailed { fence: u64, reason: String },
    /// Held the transition and "crashed": never finished it, its short
    /// lease expired.
    Crashed { fence: u64 },
    /// Held the transition, stalled past its lease, and its late `succeed`
    /// was refused (`Fenced`), as it must be.
    Fenced { fence: u64 },
    /// Held the transition and lost the lease it meant to keep (the
    /// watchdog fell behind); its finish was refused.
    LostLease { fence: u64 },
    /// Stalled past its lease and its late `succeed` was accepted: a
    /// violation.
    StaleAccepted { fence: u64 },
    /// Held the transition, then finishing it failed unexpectedly.
    HolderError { fence: u64, error: String },
    /// An identical transition was in flight and succeeded.
    Joined { fence: u64 },
    /// An identical transition was in flight and failed.
    JoinedFailed { fence: u64, reason: String },
    /// An identical transition was in flight and was abandoned.
    JoinedAbandoned { fence: u64 },
    /// The state already covered the request (kill of a paused sandbox).
    Absorbed,
    /// The sandbox already was in the action's target state.
    AlreadyInState,
    /// The lifecycle does not allow the action from the state.
    Invalid,
    /// `begin` failed unexpectedly (or the request's task panicked).
    Unexpected { error: String },
}

impl Answer {
    /// The fence this request held, if it started the transition.
    pub fn held(&self) -> Option<u64> {
        match self {
            Answer::Succeeded { fence }
            | Answer::HolderFailed { fence, .. }
            | Answer::Crashed { fence }
            | Answer::Fenced { fence }
            | Answer::LostLease { fence }
            | Answer::StaleAccepted { fence }
            | Answer::HolderError { fence, .. } => Some(*fence),
            _ => None,
        }
    }

    /// The fence of the transition this request joined, if it joined one.
    pub fn joined(&self) -> Option<u64> {
        match self {
            Answer::Joined { fence }
            | Answer::JoinedFailed { fence, .. }
            | Answer::JoinedAbandoned { fence } => Some(*fence),
            _ => None,
        }
    }
}

/// One request of the demo.
#[derive(Debug, Clone)]
pub struct Request {
    pub sandbox: usize,
    pub action: Action,
    pub answer: Answer,
    /// From the request to its answer, including waits and the simulated work.
    pub latency: Duration,
}

/// Who holds one sandbox, as the holders themselves report it.
#[derive(Debug, Default)]
struct Holding {
    holder: Option<u64>,
    /// Fences in the order their holders claimed the sandbox.
    fences: Vec<u64>,
    /// (fence still holding, fence that started anyway).
    overlaps: Vec<(u64, u64)>,
}

/// Per sandbox: the holder observer.
///
/// A holder claims the sandbox as soon as `begin` hands it the transition
/// and releases it *before* it sends `succeed`/`fail` (or when it crashes,
/// or when its lease runs out locally — never later than the server's
/// lease). So the next holder can only be handed the transition after the
/// release: a claim that finds another holder is two live transitions.
#[derive(Debug, Default)]
pub struct Track {
    state: Mutex<Holding>,
}

impl Track {
    pub fn claim(&self, fence: u64) {
        let mut h = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = h.holder {
            h.overlaps.push((other, fence));
        }
        h.holder = Some(fence);
        h.fences.push(fence);
    }

    pub fn release(&self, fence: u64) {
        let mut h = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if h.holder == Some(fence) {
            h.holder = None;
        }
    }

    pub fn is_held(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holder
            .is_some()
    }

    pub fn fences(&self) -> Vec<u64> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fences
            .clone()
    }

    pub fn overlaps(&self) -> Vec<(u64, u64)> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overlaps
            .clone()
    }
}

/// Everything recorded during a run.
#[derive(Debug)]
pub struct Ledger {
    pub tracks: Vec<Track>,
    requests: Mutex<Vec<Request>>,
    lifecycle: Mutex<LifecycleEvents>,
}

/// What the fleet did between bursts of requests.
#[derive(Debug, Default, Clone)]
pub struct LifecycleEvents {
    /// A new incarnation registered over a paused sandbox.
    pub resumes: usize,
    /// A killed sandbox removed and registered again (fences keep rising).
    pub recycles: usize,
    /// Registrations or removals that failed unexpectedly.
    pub errors: Vec<String>,
}

impl Ledger {
    pub fn new(sandboxes: usize) -> Ledger {
        Ledger {
            tracks: (0..sandboxes).map(|_| Track::default()).collect(),
            requests: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(LifecycleEvents::default()),
        }
    }

    pub fn record(&self, request: Request) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn lifecycle(&self) -> LifecycleEvents {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn resumed(&self) {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resumes += 1;
    }

    pub fn recycled(&self) {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recycles += 1;
    }

    pub fn lifecycle_error(&self, error: String) {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .errors
            .push(error);
    }

    /// How many sandboxes have a holder at work right now.
    pub fn holding(&self) -> usize {
        self.tracks.iter().filter(|t| t.is_held()).count()
    }
}
