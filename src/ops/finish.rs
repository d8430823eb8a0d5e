//! `finish.lua` (end a transition by fence and holder) and `cancel.lua`
//! (end or dequeue whatever a begin call whose answer nobody received left,
//! by holder).

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, Outcome, State};
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};
use crate::retry::Retry;

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

#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish(
    env: &Env,
    ctx: &SandboxRef,
    action: Action,
    fence: u64,
    holder: &str,
    outcome: Outcome,
    reason: &str,
    route: Route,
) -> Result<(Finished, Replication), Error> {
    let fence_s = fence.to_string();
    let (reply, replication) = call(
        env,
        &env.scripts.finish,
        &[
            ctx.record(),
            &ctx.outcome(fence),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.tombs(),
            &ctx.keys.team.seq(),
        ],
        &[
            ctx.prefix(),
            &ctx.id,
            &fence_s,
            holder,
            action.as_str(),
            outcome.as_str(),
            reason,
        ],
        Send::Once { write: true },
        route,
    )
    .await?;
    let corrupt = |e: String| Error::Corrupt {
        detail: format!("{}: {e}", ctx.record()),
    };
    let finished = match reply.status() {
        "finished" => Finished::Applied(reply.str(1).parse().map_err(corrupt)?),
        "recorded" => Finished::Recorded {
            outcome: reply.str(1).parse().map_err(corrupt)?,
            reason: reply.str(2).to_string(),
        },
        "fenced" => Finished::Fenced {
            current: reply.str(1).parse().ok(),
        },
        "not_found" => Finished::NotFound,
        _ => return Err(reply.refusal(ctx.record(), &env.digest)),
    };
    Ok((finished, replication))
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

pub(crate) async fn cancel(
    env: &Env,
    ctx: &SandboxRef,
    holder: &str,
    route: Route,
) -> Result<Cancelled, Error> {
    let (reply, _) = call(
        env,
        &env.scripts.cancel,
        &[ctx.record()],
        &[ctx.prefix(), &ctx.id, holder],
        Send::Once { write: true },
        route,
    )
    .await?;
    match reply.status() {
        "holds" => Ok(Cancelled::Holds {
            fence: reply.u64(1)?,
            action: reply.str(2).parse().map_err(|e: String| Error::Corrupt {
                detail: format!("{}: {e}", ctx.record()),
            })?,
        }),
        "dequeued" => Ok(Cancelled::Dequeued),
        "none" => Ok(Cancelled::None),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}

/// A transition to finish: who it is about and which one.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub sandbox: SandboxRef,
    pub action: Action,
    pub fence: u64,
    pub holder: String,
}

impl Target {
    pub(crate) fn fenced(&self, current: Option<u64>) -> Error {
        Error::Fenced {
            team: self.sandbox.team.clone(),
            id: self.sandbox.id.clone(),
            fence: self.fence,
            current,
        }
    }
}

/// Finishes `target` with the retry discipline of a finish: transient
/// errors are retried ([`Retry::TWICE`], then on while `until` — the lease
/// deadline — has not passed); finishing is retry-safe, and after
/// an attempt whose reply was lost (`unsure`), an answer that the fence is
/// stale or the record gone is [`Error::FinishUnknown`], never `Fenced`:
/// the lost attempt may have recorded it. Returns the state the record is
/// left in (or, for a repeated finish, the recorded outcome's).
pub(crate) async fn finish_retrying(
    env: &Env,
    target: &Target,
    outcome: Outcome,
    reason: &str,
    until: Option<tokio::time::Instant>,
    mut unsure: bool,
    route: Route,
) -> Result<(), Error> {
    let ctx = &target.sandbox;
    let retry = Retry::TWICE.more_until(until.map(tokio::time::Instant::into_std));
    let mut attempt = 0u32;
    loop {
        let result = finish(
            env,
            ctx,
            target.action,
            target.fence,
            &target.holder,
            outcome,
            reason,
            route,
        )
        .await;
        let (finished, replication) = match result {
            Err(e) if e.is_retryable() && !matches!(e, Error::NotReplicated { .. }) => {
                let now = tokio::time::Instant::now().into_std();
                let Some(pause) = retry.next(attempt, now) else {
                    return Err(e);
                };
                unsure = true;
                attempt += 1;
                tracing::debug!(fence = target.fence, error = %e, "finish failed; retrying");
                tokio::time::sleep(pause).await;
                continue;
            }
            other => other?,
        };
        let unknown = || Error::FinishUnknown {
            team: target.sandbox.team.clone(),
            id: target.sandbox.id.clone(),
            fence: target.fence,
            action: target.action.as_str().into(),
        };
        return match finished {
            Finished::Applied(_) => crate::ops::replicated("finish", replication),
            Finished::Recorded { outcome: o, .. } if o == outcome => {
                crate::ops::replicated("finish", replication)
            }
            Finished::Recorded { .. } => Err(target.fenced(None)),
            Finished::Fenced { .. } | Finished::NotFound if unsure => Err(unknown()),
            Finished::Fenced { current } => Err(target.fenced(current)),
            Finished::NotFound => Err(ctx.not_found()),
        };
    }
}
