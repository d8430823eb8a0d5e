//! The values callers read and pass: a sandbox record as read from Redis
//! ([`Sandbox`]), what registers one ([`NewSandbox`], [`EndTime`]), what
//! `begin` returns when there is nothing to start ([`Done`]), and the
//! answers of the fleet operations ([`TeamCount`], [`Page`],
//! [`RepairReport`]).

use std::time::{Duration, SystemTime};

use crate::lifecycle::{Action, Outcome, State};

/// A sandbox record, read atomically with its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Team id.
    pub team: String,
    /// Sandbox id.
    pub id: String,
    /// The incarnation the record belongs to.
    pub execution: String,
    /// Its state.
    pub state: State,
    /// When it should end (eviction), as a wall-clock time.
    pub end_time: SystemTime,
    /// The fence of the latest transition started on this record (0: none).
    pub fence: u64,
    /// Opaque caller data.
    pub data: String,
    /// The transition in flight, if a lease is live.
    pub lease: Option<Lease>,
    /// How the latest finished transition ended.
    pub last: Option<LastTransition>,
    /// Requests queued to re-decide once the transition in flight ends
    /// (fair waiting), counting only waiters that are still alive.
    pub waiting: usize,
    /// Time left on a reservation of this record (a resume in progress).
    pub reserved: Option<Duration>,
    /// Time left before a tombstone expires (`None`: the record does not expire).
    pub expires_in: Option<Duration>,
    /// The digest of the rule table the record was created under
    /// ([`Lifecycle::digest`](crate::Lifecycle::digest)).
    pub lifecycle: String,
}

impl Sandbox {
    /// The end time in ms since the Unix epoch, as stored.
    pub fn end_ms(&self) -> u64 {
        self.end_time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A live transition lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Fence of the transition.
    pub fence: u64,
    /// Its action.
    pub action: Action,
    /// Who holds it: `<coordinator id>/<call>`.
    pub holder: String,
    /// Time left, by the server clock, when it was read.
    pub ttl: Duration,
    /// Time since the transition started, by the server clock, when it
    /// was read.
    pub age: Duration,
}

/// The recorded end of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastTransition {
    /// Its fence.
    pub fence: u64,
    /// Its action.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// The reason given (empty for success).
    pub reason: String,
}

/// A sandbox to register (or a new incarnation of a paused one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSandbox {
    /// Team id.
    pub team: String,
    /// Sandbox id.
    pub id: String,
    /// The incarnation's execution id.
    pub execution: String,
    /// When it should end: an instant, or a duration from the Redis
    /// server's now (immune to the API server's clock skew).
    pub end_time: EndTime,
    /// Opaque caller data (at most [`MAX_DATA_LEN`] bytes).
    pub data: String,
}

/// When a sandbox should end (its eviction deadline).
///
/// `In` is added to the Redis server's clock inside the script, so an API
/// server whose clock is off does not move eviction deadlines; `At` is an
/// absolute wall-clock time. Both convert with `.into()`:
/// `end_time: Duration::from_secs(3600).into()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTime {
    /// At this wall-clock time.
    At(SystemTime),
    /// This long after the Redis server's now.
    In(Duration),
}

impl From<SystemTime> for EndTime {
    fn from(t: SystemTime) -> EndTime {
        EndTime::At(t)
    }
}

impl From<Duration> for EndTime {
    fn from(d: Duration) -> EndTime {
        EndTime::In(d)
    }
}

/// Largest `data` a record may carry, in bytes.
pub const MAX_DATA_LEN: usize = 64 * 1024;

/// What `register` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A new record.
    Created,
    /// The same execution was already registered; nothing was written.
    Existing,
    /// A new incarnation over a resumable tombstone.
    Resumed {
        /// The execution it replaced.
        previous_execution: String,
    },
}

/// Why `begin` had nothing to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoneReason {
    /// The sandbox already is in the action's target state.
    AlreadyInState,
    /// The same transition was in flight; it succeeded.
    Joined {
        /// Its fence.
        fence: u64,
    },
    /// The current state covers the request (a kill of a paused sandbox).
    Absorbed {
        /// The state that absorbed it.
        by: State,
    },
}

/// `begin`'s answer when nothing had to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Why.
    pub why: DoneReason,
    /// The state the answer rests on.
    pub state: State,
}

/// What [`Coordinator::abandon`](crate::Coordinator::abandon) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandonment {
    /// This call recorded `abandoned` for the transition (deleting its
    /// lease if it was live) and published it: waiters wake with
    /// `Error::Abandoned`, and the holder's next extend or finish is fenced.
    Abandoned {
        /// The transition's action, as recorded.
        action: Option<Action>,
        /// The reason recorded.
        reason: String,
    },
    /// The transition had already ended; nothing was written.
    AlreadyEnded {
        /// How it ended.
        outcome: Outcome,
        /// The reason recorded with that outcome (empty for success).
        reason: String,
    },
}

/// A team's sandboxes by state class, from [`Coordinator::count`](crate::Coordinator::count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeamCount {
    /// In a live state (running), no transition in flight.
    pub live: usize,
    /// In an in-flight state (pausing, killing, snapshotting), stuck included.
    pub in_flight: usize,
    /// Resumable tombstones (paused).
    pub paused: usize,
    /// Final tombstones (killed).
    pub killed: usize,
    /// Live reservations.
    pub reserved: usize,
    /// The team's own limit, if set.
    pub limit: Option<usize>,
}

impl TeamCount {
    /// Places taken under the team limit: live and in-flight sandboxes plus
    /// reservations.
    pub fn taken(&self) -> usize {
        self.live + self.in_flight + self.reserved
    }
}

/// One page of [`Coordinator::list_page`](crate::Coordinator::list_page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The sandboxes, by id.
    pub sandboxes: Vec<Sandbox>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One problem [`Coordinator::repair`](crate::Coordinator::repair) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Team id.
    pub team: String,
    /// The index (`ids`, `expiry`, `tombs`, `resv`, `team`, `teams`,
    /// `slots`), `seq` (the team's sequence) or `record`.
    pub index: String,
    /// `dangling` (an entry without a record), `missing`, `score`,
    /// `token`, `field` or `corrupt` (a record no script can use; left as
    /// it is).
    pub problem: String,
    /// The sandbox id (or team id for `teams`, slot for `slots`).
    pub id: String,
}

/// What a repair found (and, unless it was a dry run, fixed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// Teams examined.
    pub teams: usize,
    /// Records examined.
    pub records: usize,
    /// Every problem found.
    pub drift: Vec<Drift>,
    /// Whether nothing was written.
    pub dry_run: bool,
}
