//! The one error type of the crate. Each variant names the sandbox and the
//! states, fences or ids involved, and reads as a sentence an operator can
//! act on. [`Error::is_retryable`] tells transient failures from final ones.
//!
//! The classes of Redis errors live here too (transient or final, their
//! kind for metrics, `NOPERM` in its own variant), below the connections
//! that meet them, so that the error type never imports a connection.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::lifecycle::{Action, EndReason, State};

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

    /// Eviction found the sandbox held (a transition in flight, another
    /// caller's reservation, requests queued); evictors never wait.
    #[error("sandbox {team}/{id} is held by {with}; eviction skipped")]
    EvictionInProgress {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// What holds it.
        with: BusyWith,
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
        state: State,
    },

    /// A transition holds the lease, or another caller's reservation holds
    /// the id; the operation must wait for it.
    #[error("sandbox {team}/{id} is busy with {with}; try again when it ends")]
    Busy {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// What holds it.
        with: BusyWith,
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
        /// Why ("lease expired", "dropped", "cancelled", an operator's reason).
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
    /// back the record had moved on (removed, or moved past the outcome
    /// retention), so neither "recorded" nor "fenced" is known.
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
        action: Action,
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
        state: State,
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

    /// The team's places are all taken: its live sandboxes (records that are
    /// not tombstones) plus live reservations reached its limit. Nothing was
    /// written. A pause, kill or removal frees a place.
    #[error("team {team} has {live} of {limit} places taken; nothing was written")]
    TeamLimit {
        /// Team id.
        team: String,
        /// Places taken (sandboxes that are not tombstones, plus reservations).
        live: usize,
        /// The team's limit.
        limit: usize,
    },

    /// The record was created under another rule table (a server with a
    /// different [`Lifecycle`](crate::Lifecycle) on the same namespace):
    /// deciding by this one could contradict the other server. Nothing was
    /// written. Adopt one table (`sandboxctl migrate --adopt-lifecycle`).
    #[error(
        "record {key} follows lifecycle {found}, this coordinator's is {expected}; nothing was written"
    )]
    LifecycleMismatch {
        /// The record's key.
        key: String,
        /// The digest stored in the record.
        found: String,
        /// This coordinator's lifecycle digest.
        expected: String,
    },

    /// How the transition this call waited for ended can no longer be read
    /// back: the record was removed, or moved on and the outcome's retention
    /// ended. It may have succeeded; read the record.
    #[error(
        "{action} of sandbox {team}/{id} (fence {fence}) ended, but its outcome is no longer known"
    )]
    OutcomeUnknown {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// The action.
        action: Action,
        /// Its fence.
        fence: u64,
    },

    /// A write was acknowledged by fewer replicas than
    /// [`Builder::wait_for_replicas`](crate::Builder::wait_for_replicas)
    /// asks for within its timeout. The write happened on the primary and
    /// may be lost by a failover. Retryable: every write is idempotent for
    /// its caller (a retried register of the same execution is `Existing`,
    /// a retried finish returns the recorded outcome); a begin whose start
    /// was not replicated is failed in the background (reason
    /// `not replicated`) and never returned as started.
    #[error(
        "{operation} was acknowledged by {acked} of {wanted} replicas; it may be lost by a failover"
    )]
    NotReplicated {
        /// What was written (`register`, `begin`, `finish`, ...).
        operation: &'static str,
        /// Replicas that acknowledged it.
        acked: usize,
        /// Replicas asked for.
        wanted: usize,
    },

    /// The Redis user lacks a permission (an ACL `NOPERM` answer). Print
    /// the rules the library needs with `sandboxctl acl`.
    #[error(
        "redis refused for lack of permission: {detail} (see `sandboxctl acl` for the rules this library needs)"
    )]
    NoPermission {
        /// Redis's message: which command, key or channel.
        detail: String,
    },

    /// Where Redis is, or how to reach it, is unusable as given (a URL and
    /// a cluster at once, or neither; half a client certificate; a file
    /// that cannot be read). Nothing was sent. The message names the
    /// options, never a password or a file's content.
    #[error("{problem}")]
    Config {
        /// What is wrong, naming the options involved.
        problem: String,
        /// The I/O error behind it, for a file that cannot be read.
        #[source]
        source: Option<std::io::Error>,
    },

    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// No connection could be had from the pool.
    #[error("connection pool: {0}")]
    Pool(String),

    /// A team view could not take its first snapshot in step with the
    /// team's announcements (a team changing faster than it can be read,
    /// or announcements lost on the way). Retry later.
    #[error("the view of team {team} could not catch up with its announcements: {why}")]
    ViewUnavailable {
        /// Team id.
        team: String,
        /// What kept failing.
        why: String,
    },
}

/// What holds a sandbox that an operation found [`Error::Busy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusyWith {
    /// A transition holds the lease.
    Transition {
        /// The transition's action.
        action: Action,
        /// Its fence.
        fence: u64,
    },
    /// Another caller's reservation (a create or a resume under way) holds
    /// the id until it registers, gives the id back or runs out.
    Reservation,
    /// Requests queued to re-decide, first in line before this one (only
    /// an eviction, which never waits, is refused for them).
    Queue,
}

impl std::fmt::Display for BusyWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusyWith::Transition { action, fence } => write!(f, "{action} (fence {fence})"),
            BusyWith::Reservation => f.write_str("another caller's reservation"),
            BusyWith::Queue => f.write_str("requests queued before it"),
        }
    }
}

impl Error {
    /// A [`Error::Config`] without an I/O source.
    pub(crate) fn config(problem: impl Into<String>) -> Error {
        Error::Config {
            problem: problem.into(),
            source: None,
        }
    }

    /// Whether the same call may succeed if repeated later: connection
    /// trouble, a failover in progress (`READONLY`, `LOADING`, `MASTERDOWN`,
    /// `TRYAGAIN`, `CLUSTERDOWN`, `MOVED`/`ASK`, a script `BUSY`), a busy
    /// sandbox, a full team, a wait that ran out, a write not yet
    /// replicated. Final answers (invalid transitions, fencing, corrupt
    /// data, bad input) are not retryable.
    ///
    /// `remove` and `register` are not retried by the library after a
    /// transport error (their effect is unknown); see their docs before
    /// retrying them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis(e) => is_transient(e),
            Error::Pool(_) | Error::Busy { .. } | Error::Timeout { .. } => true,
            Error::EvictionInProgress { .. } | Error::TeamLimit { .. } => true,
            Error::NotReplicated { .. } | Error::ViewUnavailable { .. } => true,
            _ => false,
        }
    }
}

impl Error {
    /// Whether a joined transition ended because its holder went away, not
    /// because the work failed: `Abandoned`, and `TransitionFailed` with a
    /// reason the library itself records for an interrupted holder
    /// (`dropped`, `cancelled`, `not replicated`). An API server answers
    /// these as retryable (503), a real failure as the operation's (502).
    pub fn is_interruption(&self) -> bool {
        match self {
            Error::Abandoned { .. } => true,
            Error::TransitionFailed { reason, .. } => {
                EndReason::from_word(reason).is_some_and(EndReason::is_interruption)
            }
            _ => false,
        }
    }
}

/// Whether `e` is transient: the same call may succeed later. Transport
/// failures, and the answers of a server in failover or resharding.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
    {
        return true;
    }
    if matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        )
    ) {
        return true;
    }
    matches!(
        e.code(),
        Some("BUSY" | "READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
    )
}

/// A short name for the kind of a Redis error, for metrics.
pub(crate) fn error_kind(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "refused"
    } else if e.is_io_error() || e.is_connection_dropped() {
        "io"
    } else {
        match e.code() {
            Some("READONLY") => "readonly",
            Some("LOADING") => "loading",
            Some("MASTERDOWN") => "masterdown",
            Some("TRYAGAIN") => "tryagain",
            Some("CLUSTERDOWN") => "clusterdown",
            Some("MOVED") | Some("ASK") => "moved",
            Some("BUSY") => "busy",
            Some("NOPERM") => "noperm",
            Some("NOSCRIPT") => "noscript",
            _ => "other",
        }
    }
}

/// Maps a Redis error to the crate's error: `NOPERM` gets its own variant
/// naming what was refused.
pub(crate) fn to_error(e: RedisError) -> Error {
    let text = e.to_string();
    // Inside a script, Redis 7.0 says "The user executing the script can't
    // run this command or subcommand" and Valkey "ACL failure in script",
    // both under ERR.
    if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoPerm))
        || e.code() == Some("NOPERM")
        || text.contains("The user executing the script can't run")
        || text.contains("ACL failure in script")
        || text.contains("No permissions to access")
    {
        return Error::NoPermission {
            detail: e.detail().map_or_else(|| e.to_string(), str::to_string),
        };
    }
    metrics::counter!(crate::metrics::REDIS_ERRORS, "kind" => error_kind(&e)).increment(1);
    Error::Redis(e)
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
