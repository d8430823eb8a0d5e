//! Waiting for another transition to end, without relying on pub/sub
//! alone: a waiter registers for its sandbox's notices *before* it checks
//! Redis (so no notice falls between check and wait), then wakes on a
//! notice, on a resubscription (notices may have been lost), at the poll
//! interval, and just after the lease deadline (when the check records
//! `abandoned` for a holder that vanished). It never reports an outcome it
//! did not read from Redis or from a notice the script published in the
//! same step as the outcome.
//!
//! Fair waiting is decided in Redis (`lua/include/queue.lua`); here a
//! queued request only waits for the moment worth re-checking.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::lifecycle::{Action, Outcome};
use crate::notify::{Notice, Wake, Watch};
use crate::ops::Ctx;
use crate::ops::settle::{Settled, settle};
use crate::runtime::Runtime;

/// How a transition ended, as a waiter learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub outcome: Outcome,
    pub reason: String,
}

/// Bound on waiting for a subscription to come up before the first check.
fn subscribe_bound(rt: &Runtime) -> Duration {
    rt.settings.response_timeout.min(Duration::from_secs(2))
}

pub(crate) fn watch(rt: &Runtime, ctx: &Ctx<'_>) -> Watch {
    rt.notifier
        .watch(ctx.team, ctx.id, &ctx.keys.team.channel())
}

/// Registers for the sandbox's notices and waits (bounded) until they are
/// subscribed: a check made after this cannot miss one.
pub(crate) async fn watch_ready(rt: &Runtime, ctx: &Ctx<'_>) -> Watch {
    let mut w = watch(rt, ctx);
    w.ready(subscribe_bound(rt)).await;
    w
}

fn timeout(ctx: &Ctx<'_>, started: Instant) -> Error {
    Error::Timeout {
        team: ctx.team.into(),
        id: ctx.id.into(),
        waited: started.elapsed(),
    }
}

/// Waits for transition `fence` (of `action`, held by `holder`) to end and
/// returns how: the joiner's wait.
pub(crate) async fn join(
    rt: &Runtime,
    ctx: &Ctx<'_>,
    action: Action,
    fence: u64,
    holder: &str,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<Ended> {
    let mut watch = watch_ready(rt, ctx).await;
    loop {
        let left = match settle(&rt.env, ctx, fence, holder, false, "lease expired").await? {
            Settled::Ended {
                outcome, reason, ..
            } => return Ok(Ended { outcome, reason }),
            Settled::Abandoned { action, reason } => {
                crate::metrics::abandoned(action);
                return Ok(Ended {
                    outcome: Outcome::Abandoned,
                    reason,
                });
            }
            Settled::Unknown => {
                return Err(Error::OutcomeUnknown {
                    team: ctx.team.into(),
                    id: ctx.id.into(),
                    action,
                    fence,
                });
            }
            Settled::Live(left) => left,
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(timeout(ctx, started));
        }
        // Wake at the poll interval, or just after the lease deadline (the
        // check then records `abandoned`), whichever is first.
        let mut wake = now
            + rt.settings
                .poll_interval
                .min(left + Duration::from_millis(2))
                .max(Duration::from_millis(5));
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        loop {
            tokio::select! {
                w = watch.next() => match w {
                    Wake::Notice(Notice::Ended { fence: f, outcome, reason, .. }) if f == fence => {
                        return Ok(Ended { outcome, reason });
                    }
                    // An older transition's news: ours is still running.
                    Wake::Notice(Notice::Ended { fence: f, .. }) if f < fence => continue,
                    Wake::Notice(Notice::Changed) => continue,
                    _ => break,
                },
                _ = tokio::time::sleep_until(wake) => break,
            }
        }
    }
}

/// A queued request's wait: until a notice or resubscription for the
/// sandbox, the moment the script named (`wake`: the lease deadline, the
/// head's place running out), or the poll interval. `fence`: the
/// transition in flight, whose older news is ignored.
pub(crate) async fn turn(
    rt: &Runtime,
    ctx: &Ctx<'_>,
    watch: &mut Watch,
    fence: Option<u64>,
    wake: Duration,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<()> {
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return Err(timeout(ctx, started));
    }
    let mut until = now
        + rt.settings
            .poll_interval
            .min(wake + Duration::from_millis(2))
            .max(Duration::from_millis(2));
    if let Some(d) = deadline {
        until = until.min(d);
    }
    loop {
        tokio::select! {
            w = watch.next() => match w {
                Wake::Notice(Notice::Ended { fence: f, .. }) if fence.is_some_and(|ours| f < ours) => continue,
                _ => return Ok(()),
            },
            _ = tokio::time::sleep_until(until) => return Ok(()),
        }
    }
}
