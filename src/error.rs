//! The one error type of the crate. Each variant names the sandbox and the
//! states, fences or ids involved, and reads as a sentence an operator can
//! act on. [`Error::is_retryable`] tells transient failures from final ones.

use std::time::Duration;

use crate::lifecycle::{Action, State};

/// Everything that can go wrong, with the context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No record for this sandbox.
    #[error("sandbox {team}/{id} does not exist")]
    NotFound {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
    },

    /// The lifecycle table does not allow this action from this state.
    #[error("sandbox {team}/{id} is {from}; {action} is not allowed")]
    InvalidTransition {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The state the record was in.
        from: State,
        /// The requested action.
        action: Action,
    },

    /// The record belongs to another incarnation than the caller pinned.
    #[error("sandbox {team}/{id} is execution {actual}, not {expected}")]
    ExecutionMismatch {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The execution the caller expected.
        expected: String,
        /// The execution the record holds.
        actual: String,
    },

    /// Eviction found a transition in flight; evictors never wait.
    #[error("sandbox {team}/{id} has {action} (fence {fence}) in flight; eviction skipped")]
    EvictionInProgress {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// Fence of the transition in flight.
        fence: u64,
        /// Its action.
        action: String,
    },

    /// Eviction found the end time still in the future by Redis server time.
    #[error(
        "sandbox {team}/{id} ends at {end_ms} ms, after the server's now ({now_ms} ms); eviction not needed"
    )]
    EvictionNotNeeded {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The record's end time, ms since the Unix epoch.
        end_ms: u64,
        /// Redis server time when the script ran.
        now_ms: u64,
    },

    /// Registration would overwrite another live execution, or bring back a
    /// killed sandbox while its tombstone lasts.
    #[error("sandbox {team}/{id} already exists as execution {execution} in state {state}")]
    AlreadyExists {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The execution the record holds.
        execution: String,
        /// Its state.
        state: String,
    },

    /// A transition holds the lease; the operation must wait for it.
    #[error("sandbox {team}/{id} is busy with {action} (fence {fence}); try again when it ends")]
    Busy {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// Fence of the transition in flight.
        fence: u64,
        /// Its action.
        action: String,
    },

    /// The transition this call joined failed.
    #[error("{action} of sandbox {team}/{id} (fence {fence}) failed: {reason}")]
    TransitionFailed {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The action that failed.
        action: Action,
        /// Its fence.
        fence: u64,
        /// The holder's reason.
        reason: String,
    },

    /// The transition this call joined ended without a reported outcome:
    /// its holder died, was dropped, or an operator abandoned it.
    #[error("{action} of sandbox {team}/{id} (fence {fence}) was abandoned: {reason}")]
    Abandoned {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The action.
        action: Action,
        /// Its fence.
        fence: u64,
        /// Why ("lease expired", "dropped", "outcome unknown", ...).
        reason: String,
    },

    /// The caller's fence is no longer the live one: its lease expired or a
    /// newer transition started. Nothing was written.
    #[error(
        "fence {fence} of sandbox {team}/{id} is stale ({}); nothing was written",
        current.map_or("its lease is gone".to_string(), |c| format!("current fence {c}"))
    )]
    Fenced {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The caller's fence.
        fence: u64,
        /// The record's current fence, when the script could tell.
        current: Option<u64>,
    },

    /// A finish whose reply was lost cannot be confirmed: an attempt may
    /// have recorded the outcome, but by the time a retry could read it
    /// back the record had moved on (removed, or more transitions than the
    /// recent outcomes kept), so neither "recorded" nor "fenced" is known.
    /// Read the record to see where it is now; do not assume either.
    #[error(
        "finishing {action} of sandbox {team}/{id} (fence {fence}): a reply was lost and the \
         record has moved on since; whether this outcome was recorded is unknown"
    )]
    FinishUnknown {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The transition's fence.
        fence: u64,
        /// The transition's action.
        action: String,
    },

    /// A bounded wait ran out.
    #[error("waited {waited:?} for sandbox {team}/{id}; the transition is still in flight")]
    Timeout {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// How long the call waited.
        waited: Duration,
    },

    /// The sandbox is a tombstone (paused or killed); the operation needs a
    /// live one.
    #[error("sandbox {team}/{id} is {state}; only live sandboxes can change their end time")]
    NotLive {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// Its state.
        state: String,
    },

    /// An argument is unusable; nothing was sent to Redis.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// The value (truncated).
        value: String,
        /// What is wrong with it.
        why: String,
    },

    /// A key of ours holds something this code cannot read; nothing was
    /// written.
    #[error("corrupt data in Redis: {detail}")]
    Corrupt {
        /// What was found where.
        detail: String,
    },

    /// The record was written by a server speaking another layout version
    /// (a rolling deploy in progress); nothing was written.
    #[error("record {key} has schema version {found:?}, this build speaks {expected:?}")]
    SchemaMismatch {
        /// The key.
        key: String,
        /// The version found.
        found: String,
        /// The version this build speaks.
        expected: &'static str,
    },

    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// No connection could be had from the pool.
    #[error("connection pool: {0}")]
    Pool(String),
}

impl Error {
    /// Whether the same call may succeed if repeated later: connection
    /// trouble, a busy sandbox, a wait that ran out. Final answers
    /// (invalid transitions, fencing, corrupt data) are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
            }
            Error::Pool(_) | Error::Busy { .. } | Error::Timeout { .. } => true,
            Error::EvictionInProgress { .. } => true,
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
