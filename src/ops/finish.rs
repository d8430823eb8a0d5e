//! `finish.lua` (end a transition by fence and holder) and `cancel.lua`
//! (end or dequeue whatever a begin call whose answer nobody received left,
//! by holder), as command values ([`Finish`], [`Cancel`]).

use tokio::time::Instant;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, Outcome, State};
use crate::ops::command::{Command, invoke};
use crate::ops::{Env, Reply};
use crate::redis::Route;
use crate::retry::Retry;
use crate::scripts::Script;

/// A transition to finish: who it is about and which one.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub sandbox: SandboxRef,
    pub action: Action,
    pub fence: u64,
    pub holder: String,
}

impl Target {
    /// The ARGV the holder's scripts open with (`finish.lua`,
    /// `extend.lua`): team prefix, sandbox id, fence, holder.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.fence.to_string(),
            self.holder.clone(),
        ]
    }

    pub(crate) fn fenced(&self, current: Option<u64>) -> Error {
        Error::Fenced {
            team: self.sandbox.team.clone(),
            id: self.sandbox.id.clone(),
            fence: self.fence,
            current,
        }
    }

    fn corrupt(&self, e: String) -> Error {
        Error::Corrupt {
            detail: format!("{}: {e}", self.sandbox.record()),
        }
    }
}

/// How a finish call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finished {
    /// Recorded by this call; the record is now in `State`.
    Applied(State),
    /// An outcome was already recorded for this fence (a retry).
    Recorded { outcome: Outcome, reason: String },
    /// Not the live holder; nothing written.
    Fenced { current: Option<u64> },
    /// No record.
    NotFound,
}

/// One finish: record `outcome` (with `reason`) for transition `target`.
/// Finishing is retry-safe (by fence and holder): transient errors are
/// retried ([`Retry::TWICE`], then on while `until` — the lease's end,
/// while nobody else may take over — has not passed).
#[derive(Debug, Clone)]
pub(crate) struct Finish<'a> {
    pub target: &'a Target,
    pub outcome: Outcome,
    pub reason: &'a str,
    pub until: Option<Instant>,
    /// An attempt may already have been sent (by a dropped finish).
    pub unsure: bool,
    pub route: Route,
}

impl Command for Finish<'_> {
    type Reply = Finished;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.finish
    }

    fn keys(&self) -> Vec<String> {
        let (sb, t) = (&self.target.sandbox, &self.target.sandbox.keys.team);
        vec![
            sb.record().to_string(),
            sb.outcome(self.target.fence),
            t.expiry(),
            t.tombs(),
            t.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let mut args = self.target.args();
        args.extend([
            self.target.action.as_str().to_string(),
            self.outcome.as_str().to_string(),
            self.reason.to_string(),
        ]);
        args
    }

    fn retry(&self) -> Retry {
        Retry::TWICE.more_until(self.until.map(Instant::into_std))
    }

    fn route(&self) -> Route {
        self.route
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Finished, Error> {
        let t = self.target;
        Ok(match reply.status() {
            "finished" => Finished::Applied(reply.str(1).parse().map_err(|e| t.corrupt(e))?),
            "recorded" => Finished::Recorded {
                outcome: reply.str(1).parse().map_err(|e| t.corrupt(e))?,
                reason: reply.str(2).to_string(),
            },
            "fenced" => Finished::Fenced {
                current: reply.str(1).parse().ok(),
            },
            "not_found" => Finished::NotFound,
            _ => return Err(reply.refusal(t.sandbox.record(), &env.digest)),
        })
    }
}

/// Runs `finish` (see [`Finish`]). After an attempt whose reply was lost
/// (`unsure`, or a retry here), an answer that the fence is stale or the
/// record gone is [`Error::FinishUnknown`], never `Fenced`: the lost
/// attempt may have recorded it. A repeated finish with the same outcome
/// succeeds.
pub(crate) async fn finish(env: &Env, finish: &Finish<'_>) -> Result<(), Error> {
    let target = finish.target;
    let done = invoke(env, finish).await?;
    let unsure = finish.unsure || done.retried;
    let unknown = || Error::FinishUnknown {
        team: target.sandbox.team.clone(),
        id: target.sandbox.id.clone(),
        fence: target.fence,
        action: target.action,
    };
    match done.reply {
        Finished::Applied(_) => crate::ops::replicated("finish", done.replication),
        Finished::Recorded { outcome, .. } if outcome == finish.outcome => {
            crate::ops::replicated("finish", done.replication)
        }
        Finished::Recorded { .. } => Err(target.fenced(None)),
        Finished::Fenced { .. } | Finished::NotFound if unsure => Err(unknown()),
        Finished::Fenced { current } => Err(target.fenced(current)),
        Finished::NotFound => Err(target.sandbox.not_found()),
    }
}

/// What `cancel.lua` found of a holder's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// It holds this transition: the caller fails it (finish).
    Holds { fence: u64, action: Action },
    /// It left the queue.
    Dequeued,
    /// Nothing of it was there.
    None,
}

/// One cancel: undo what `holder`'s begin calls left (sent once: the
/// keeper sends a second attempt later itself).
#[derive(Debug, Clone)]
pub(crate) struct Cancel<'a> {
    pub sandbox: &'a SandboxRef,
    pub holder: &'a str,
    pub route: Route,
}

impl Command for Cancel<'_> {
    type Reply = Cancelled;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.cancel
    }

    fn keys(&self) -> Vec<String> {
        vec![self.sandbox.record().to_string()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.holder.to_string(),
        ]
    }

    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    fn route(&self) -> Route {
        self.route
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Cancelled, Error> {
        let record = self.sandbox.record();
        match reply.status() {
            "holds" => Ok(Cancelled::Holds {
                fence: reply.u64(1)?,
                action: reply.str(2).parse().map_err(|e: String| Error::Corrupt {
                    detail: format!("{record}: {e}"),
                })?,
            }),
            "dequeued" => Ok(Cancelled::Dequeued),
            "none" => Ok(Cancelled::None),
            _ => Err(reply.refusal(record, &env.digest)),
        }
    }
}
