//! The values callers read and pass: a sandbox record as read from Redis
//! ([`Sandbox`]), what registers one ([`NewSandbox`]), and what `begin`
//! returns when there is nothing to start ([`Done`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::lifecycle::{Action, Outcome, State};
use crate::scripts::Reply;

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
    /// Time left before a tombstone expires (`None`: the record does not expire).
    pub expires_in: Option<Duration>,
}

impl Sandbox {
    /// The end time in ms since the Unix epoch, as stored.
    pub fn end_ms(&self) -> u64 {
        system_time_ms(self.end_time).unwrap_or(0)
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
    /// When it should end.
    pub end_time: SystemTime,
    /// Opaque caller data (at most [`MAX_DATA_LEN`] bytes).
    pub data: String,
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

pub(crate) fn system_time_ms(t: SystemTime) -> Result<u64, Error> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::InvalidInput {
            what: "end time",
            value: format!("{t:?}"),
            why: "is before the Unix epoch".into(),
        })?;
    u64::try_from(d.as_millis()).map_err(|_| Error::InvalidInput {
        what: "end time",
        value: format!("{t:?}"),
        why: "is too far in the future".into(),
    })
}

/// Parses the 14 record fields scripts reply with, starting at `at`:
/// state, exec, end_ms, fence, data, last_fence, last_action, last_outcome,
/// last_reason, lease, lease_pttl, record_pttl, now_ms, started_ms.
pub(crate) fn parse_record(
    script: &str,
    team: &str,
    id: &str,
    reply: &Reply,
    at: usize,
) -> Result<Sandbox, Error> {
    let corrupt = |what: &str| Error::Corrupt {
        detail: format!(
            "sandbox {team}/{id}: {what} (from {script}.lua: {:?})",
            reply.0
        ),
    };
    if reply.0.len() < at + 14 {
        return Err(corrupt("reply too short"));
    }
    let f = |i: usize| reply.get(at + i);
    let state: State = f(0).parse().map_err(|e: String| corrupt(&e))?;
    if f(1).is_empty() {
        return Err(corrupt("the record has no execution id"));
    }
    let end_ms: u64 = f(2)
        .parse()
        .map_err(|_| corrupt("end_ms is not a number"))?;
    let fence: u64 = f(3).parse().map_err(|_| corrupt("fence is not a number"))?;
    let last = if f(5).is_empty() {
        None
    } else {
        Some(LastTransition {
            fence: f(5)
                .parse()
                .map_err(|_| corrupt("last_fence is not a number"))?,
            action: f(6).parse().map_err(|e: String| corrupt(&e))?,
            outcome: f(7).parse().map_err(|e: String| corrupt(&e))?,
            reason: f(8).to_string(),
        })
    };
    let now_ms: u64 = f(12)
        .parse()
        .map_err(|_| corrupt("now_ms is not a number"))?;
    let started_ms: u64 = f(13).parse().unwrap_or(now_ms);
    let age = Duration::from_millis(now_ms.saturating_sub(started_ms));
    let lease = parse_lease(f(9), f(10), age).map_err(|e| corrupt(&e))?;
    let rec_pttl: i64 = f(11).parse().map_err(|_| corrupt("record pttl"))?;
    Ok(Sandbox {
        team: team.to_string(),
        id: id.to_string(),
        execution: f(1).to_string(),
        state,
        end_time: UNIX_EPOCH + Duration::from_millis(end_ms),
        fence,
        data: f(4).to_string(),
        lease,
        last,
        expires_in: u64::try_from(rec_pttl).ok().map(Duration::from_millis),
    })
}

/// Parses a lease value `"<fence> <action> <holder>"` and its PTTL.
pub(crate) fn parse_lease(raw: &str, pttl: &str, age: Duration) -> Result<Option<Lease>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut parts = raw.splitn(3, ' ');
    let (Some(fence), Some(action), Some(holder)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "lease {raw:?} is not \"<fence> <action> <holder>\""
        ));
    };
    let ttl: i64 = pttl
        .parse()
        .map_err(|_| format!("lease pttl {pttl:?} is not a number"))?;
    Ok(Some(Lease {
        fence: fence
            .parse()
            .map_err(|_| format!("lease fence {fence:?} is not a number"))?,
        action: action.parse()?,
        holder: holder.to_string(),
        ttl: Duration::from_millis(u64::try_from(ttl).unwrap_or(0)),
        age,
    }))
}
