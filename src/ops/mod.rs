//! One module per script: each call is a value (a `command::Command`: its
//! KEYS and ARGV, its retry policy, its reply as a typed value, parsed in
//! exactly one place, as mini-redis does per command), sent by
//! `command::invoke`. Status words never travel further than these
//! modules; the refusals every script shares (`corrupt`, `schema`,
//! `lifecycle`) are mapped here once.

pub(crate) mod begin;
pub(crate) mod command;
pub(crate) mod count;
pub(crate) mod due;
pub(crate) mod end_time;
pub(crate) mod extend;
pub(crate) mod finish;
pub(crate) mod inspect;
pub(crate) mod list;
pub(crate) mod migrate;
pub(crate) mod register;
pub(crate) mod remove;
pub(crate) mod repair;
pub(crate) mod reserve;
pub(crate) mod settle;
pub(crate) mod team_limit;

#[cfg(test)]
pub(crate) mod keys_tests;
#[cfg(test)]
mod reply_tests;

use redis::Value;

use crate::error::{BusyWith, Error};
use crate::keys::{Namespace, SCHEMA_VERSION, SandboxRef};
use crate::lifecycle::{Action, Lifecycle, State};
use crate::redis::{Link, Replication, Route, value};
use crate::retry::Retry;
use crate::scripts::{Script, Scripts};

/// The action word of a `busy` answer when another caller's reservation,
/// not a transition, holds the id (`register.lua`, `reserve.lua`,
/// `remove.lua`).
pub(crate) const RESERVED: &str = "reserve";

/// The word begin.lua answers an eviction with when requests queued before
/// it hold the sandbox.
pub(crate) const QUEUED: &str = "queue";

/// What holds a sandbox, from a reply's fence at `at` and its action (or
/// [`RESERVED`], [`QUEUED`]) at `at + 1`; an action this build does not
/// know is damage.
fn busy_with(reply: &Reply, at: usize) -> Result<BusyWith, Error> {
    match reply.str(at + 1) {
        RESERVED => Ok(BusyWith::Reservation),
        QUEUED => Ok(BusyWith::Queue),
        _ => Ok(BusyWith::Transition {
            action: reply.action(at + 1)?,
            fence: reply.u64(at)?,
        }),
    }
}

/// What every script call needs: the connections, this coordinator's
/// assembled scripts, its lifecycle (and digest) and its namespace.
#[derive(Debug)]
pub(crate) struct Env {
    pub link: Link,
    pub scripts: Scripts,
    pub lifecycle: Lifecycle,
    pub digest: String,
    pub ns: Namespace,
    /// The team limit for teams without their own (`Builder::team_limit`).
    pub default_limit: Option<usize>,
}

/// A script's reply: a flat array of strings (and integers), read by
/// position by the module that owns the script.
pub(crate) struct Reply {
    script: String,
    items: Vec<Value>,
}

impl Reply {
    pub(crate) fn new(script: &Script, value: Value) -> Result<Reply, Error> {
        match value {
            Value::Array(items) => Ok(Reply {
                script: script.name().to_string(),
                items,
            }),
            other => Err(Error::Corrupt {
                detail: format!("{} gave an unexpected reply: {other:?}", script.name()),
            }),
        }
    }

    /// A reply made by hand, for tests of the parsing.
    #[cfg(test)]
    pub(crate) fn from_items(script: &str, items: Vec<Value>) -> Reply {
        Reply {
            script: script.to_string(),
            items,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Field `i` as text ("" when the reply is shorter).
    pub(crate) fn str(&self, i: usize) -> &str {
        self.items.get(i).and_then(value::as_str).unwrap_or("")
    }

    pub(crate) fn status(&self) -> &str {
        self.str(0)
    }

    /// Field `i` as a number.
    pub(crate) fn u64(&self, i: usize) -> Result<u64, Error> {
        self.items
            .get(i)
            .and_then(value::uint)
            .ok_or_else(|| self.bad(i))
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, Error> {
        self.items
            .get(i)
            .and_then(value::int)
            .ok_or_else(|| self.bad(i))
    }

    pub(crate) fn usize(&self, i: usize) -> Result<usize, Error> {
        usize::try_from(self.u64(i)?).map_err(|_| self.bad(i))
    }

    /// Field `i` as a state; a word this build does not know is damage.
    pub(crate) fn state(&self, i: usize) -> Result<State, Error> {
        self.str(i)
            .parse()
            .map_err(|e: String| self.damaged(i, format!("names an {e}")))
    }

    /// Field `i` as an action; a word this build does not know is damage.
    pub(crate) fn action(&self, i: usize) -> Result<Action, Error> {
        self.str(i)
            .parse()
            .map_err(|e: String| self.damaged(i, format!("names an {e}")))
    }

    fn bad(&self, i: usize) -> Error {
        self.damaged(i, "is not a number".into())
    }

    fn damaged(&self, i: usize, why: String) -> Error {
        Error::Corrupt {
            detail: format!("{} replied {:?}: field {i} {why}", self.script, self.items),
        }
    }

    /// The refusals every script shares, or an "unexpected reply" error.
    pub(crate) fn refusal(&self, key: &str, expected_lifecycle: &str) -> Error {
        match self.status() {
            "corrupt" => Error::Corrupt {
                detail: self.str(1).to_string(),
            },
            "schema" => Error::SchemaMismatch {
                key: key.to_string(),
                found: self.str(1).to_string(),
                expected: SCHEMA_VERSION,
            },
            "lifecycle" => Error::LifecycleMismatch {
                key: key.to_string(),
                found: self.str(1).to_string(),
                expected: expected_lifecycle.to_string(),
            },
            _ => Error::Corrupt {
                detail: format!("{} gave an unexpected reply {:?}", self.script, self.items),
            },
        }
    }
}

/// The errors about one sandbox that several scripts answer.
impl SandboxRef {
    pub(crate) fn not_found(&self) -> Error {
        Error::NotFound {
            team: self.team.clone(),
            id: self.id.clone(),
        }
    }

    /// `{"busy", fence, action}`: a transition's lease, or (action
    /// [`RESERVED`]) another caller's reservation, whose fence says nothing.
    /// An action this build does not know is damage.
    pub(crate) fn busy(&self, reply: &Reply, at: usize) -> Error {
        match busy_with(reply, at) {
            Ok(with) => Error::Busy {
                team: self.team.clone(),
                id: self.id.clone(),
                with,
            },
            Err(e) => e,
        }
    }

    /// An eviction refused for what holds the sandbox, named at `at`
    /// (fence) and `at + 1` (action, [`RESERVED`] or [`QUEUED`]).
    pub(crate) fn eviction_in_progress(&self, reply: &Reply, at: usize) -> Error {
        match busy_with(reply, at) {
            Ok(with) => Error::EvictionInProgress {
                team: self.team.clone(),
                id: self.id.clone(),
                with,
            },
            Err(e) => e,
        }
    }

    /// `{"exists", execution, state}`.
    pub(crate) fn exists(&self, reply: &Reply) -> Error {
        match reply.state(2) {
            Ok(state) => Error::AlreadyExists {
                team: self.team.clone(),
                id: self.id.clone(),
                execution: reply.str(1).into(),
                state,
            },
            Err(e) => e,
        }
    }

    /// `{"settled", state}`: a tombstone where a live record is needed.
    pub(crate) fn not_live(&self, reply: &Reply) -> Error {
        match reply.state(1) {
            Ok(state) => Error::NotLive {
                team: self.team.clone(),
                id: self.id.clone(),
                state,
            },
            Err(e) => e,
        }
    }

    pub(crate) fn exec_mismatch(&self, reply: &Reply, expected: &str) -> Error {
        Error::ExecutionMismatch {
            team: self.team.clone(),
            id: self.id.clone(),
            expected: expected.into(),
            actual: reply.str(1).into(),
        }
    }

    pub(crate) fn team_limit(&self, reply: &Reply) -> Error {
        Error::TeamLimit {
            team: self.team.clone(),
            live: reply.usize(1).unwrap_or(0),
            limit: reply.usize(2).unwrap_or(0),
        }
    }
}

/// The one retry loop of a script call (`command::invoke`'s): a transport failure (retryable,
/// and not a short replication, which is an answer) is sent again after
/// the pause `retry` gives, until it gives none.
pub(crate) async fn run(
    env: &Env,
    script: &Script,
    keys: &[&str],
    args: &[&str],
    write: bool,
    retry: Retry,
    route: Route,
) -> Result<(Reply, Replication, bool), Error> {
    let mut attempt = 0;
    loop {
        match env.link.run(script, keys, args, write, route).await {
            Err(e) if e.is_retryable() && !matches!(e, Error::NotReplicated { .. }) => {
                let now = tokio::time::Instant::now().into_std();
                let Some(pause) = retry.next(attempt, now) else {
                    return Err(e);
                };
                tracing::debug!(script = script.name(), error = %e, "retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok((value, replication)) => {
                return Ok((Reply::new(script, value)?, replication, attempt > 0));
            }
        }
    }
}

/// A write's replication as an error (for the writes whose caller gets
/// nothing back to undo: register, remove, set_end_time, ...).
pub(crate) fn replicated(operation: &'static str, r: Replication) -> Result<(), Error> {
    match r {
        Replication::Enough => Ok(()),
        Replication::Short { acked, wanted } => Err(Error::NotReplicated {
            operation,
            acked,
            wanted,
        }),
    }
}
