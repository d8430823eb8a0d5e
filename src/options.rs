//! The public vocabulary of a request, apart from the code that runs it
//! (`protocol::begin`): what a caller passes to `Coordinator::begin`
//! ([`BeginOptions`]) and gets back ([`Begun`]), and how a transition
//! finished from outside ends ([`Finish`]).

use std::time::Duration;

use crate::sandbox::Done;
use crate::transition::Transition;

/// Options of [`Coordinator::begin`](crate::Coordinator::begin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginOptions {
    /// Evictor mode: never wait (a live lease, a reservation or queued
    /// waiters give [`Error::EvictionInProgress`](crate::Error::EvictionInProgress)), and refuse with
    /// [`Error::EvictionNotNeeded`](crate::Error::EvictionNotNeeded) while the end time is in the future by
    /// Redis server time.
    pub eviction: bool,
    /// Pin to one incarnation; checked in the script and after every wait.
    pub expect_execution: Option<String>,
    /// Lease length (default 30 s; 10 ms to 2^50 ms).
    pub lease: Duration,
    /// Keep the lease alive while the [`Transition`] lives (default true).
    pub watchdog: bool,
    /// Bound on waiting for another transition (default: none; waits are
    /// still bounded by lease deadlines). `Duration::MAX` means none.
    pub wait_timeout: Option<Duration>,
}

impl Default for BeginOptions {
    fn default() -> Self {
        BeginOptions {
            eviction: false,
            expect_execution: None,
            lease: Duration::from_secs(30),
            watchdog: true,
            wait_timeout: None,
        }
    }
}

impl BeginOptions {
    /// Evictor mode (see [`BeginOptions::eviction`]).
    pub fn eviction(mut self) -> Self {
        self.eviction = true;
        self
    }
    /// Pins the call to one execution.
    pub fn expect_execution(mut self, execution: impl Into<String>) -> Self {
        self.expect_execution = Some(execution.into());
        self
    }
    /// Sets the lease length.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Turns the lease watchdog on or off.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }
    /// Bounds the wait for another transition.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }
}

/// What [`Coordinator::begin`](crate::Coordinator::begin) returns.
// `Started` is much larger than `AlreadyDone`; the value is matched at
// once and never stored in bulk, so boxing would only add an allocation
// to every started transition.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Begun {
    /// This caller holds the transition: do the work, then `succeed` or `fail`.
    Started(Transition),
    /// Nothing to do: see [`Done::why`].
    AlreadyDone(Done),
}

/// How an externally finished transition should end, for
/// [`Coordinator::finish`](crate::Coordinator::finish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// It succeeded.
    Succeeded,
    /// It failed, for this reason.
    Failed(String),
}
