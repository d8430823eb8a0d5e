//! Histories of concurrent coordinator calls and their linearizability
//! check, shared by `tests/linearizability.rs` and `tests/faults.rs`:
//!
//! - [`recorder`]: every call's invocation, answer and monotonic times, by
//!   sequential client ([`recorder::Lane`]);
//! - [`model`]: the sequential specification of one sandbox, built on
//!   `Lifecycle::decide`, as a stateright `SequentialSpec`;
//! - [`checker`]: replays each sandbox's history into stateright's
//!   `LinearizabilityTester` and reports the ones with no linearization;
//! - [`workload`]: the racing clients and the fault schedules, as
//!   functions of a [`workload::Profile`] (CI: short and bounded; soak:
//!   `SOAK_DURATION`, more clients);
//! - [`report`]: counters, the progress bar and the summary table;
//! - [`replay`]: reads a rendered history back, to replay it as a test;
//! - [`brute`]: an exhaustive search and random small histories, the
//!   second opinion the checker's reductions are tested against.
#![allow(dead_code)]

pub mod brute;
pub mod checker;
pub mod model;
pub mod recorder;
pub mod replay;
pub mod report;
pub mod workload;

use std::time::{Duration, Instant};

use model::{Op, Ret};
use recorder::Entry;

/// Hand-made histories for the checker's own tests: calls with times in
/// milliseconds from an origin.
pub struct Handmade {
    origin: Instant,
    entries: Vec<Entry>,
}

impl Default for Handmade {
    fn default() -> Self {
        Handmade {
            origin: Instant::now(),
            entries: Vec::new(),
        }
    }
}

impl Handmade {
    /// A call of `thread` on sandbox "s", invoked at `from` ms, answered
    /// `ret` at `to` ms (`None`: never answered).
    pub fn call(mut self, thread: u32, from: u64, to: u64, op: Op, ret: Option<Ret>) -> Self {
        self.entries.push(Entry {
            sandbox: "s".into(),
            thread,
            op,
            ret,
            invoked: self.origin + Duration::from_millis(from),
            returned: self.origin + Duration::from_millis(to),
            lease: None,
            error: None,
            coordinator: 0,
            settled: false,
        });
        self
    }

    /// The same, for a `Begin` with a lease (so the checker may expire it).
    pub fn begin_with_lease(
        mut self,
        thread: u32,
        from: u64,
        to: u64,
        op: Op,
        ret: Option<Ret>,
        lease: Duration,
    ) -> Self {
        self = self.call(thread, from, to, op, ret);
        self.entries.last_mut().expect("just pushed").lease = Some(lease);
        self
    }

    /// Marks the last call's unknown answer as settled by its `to` time.
    pub fn settled(mut self) -> Self {
        self.entries.last_mut().expect("a call").settled = true;
        self
    }

    /// Replaces the answer of call `i` (in the order they were added).
    pub fn answer(mut self, i: usize, ret: Ret) -> Self {
        self.entries[i].ret = Some(ret);
        self
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}
