//! Waiting for another transition to end, without relying on pub/sub
//! alone: a waiter registers for its sandbox's notices *before* it checks
//! Redis (so no notice falls between check and wait), then wakes on a
//! notice, on a resubscription (notices may have been lost), at the poll
//! interval, and just after the lease deadline (when the check records
//! `abandoned` for a holder that vanished). It never reports an outcome it
//! did not read from Redis or from a notice the script published in the
//! same step as the outcome.
//!
//! What to do when is decided by the pure step function
//! (`protocol::step`); this module only performs it: runs the scripts,
//! subscribes, sleeps. Fair waiting is decided in Redis
//! (`lua/include/queue.lua`).

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::EndReason;
use crate::notify::{Notice, Wake, Watch};
use crate::ops::command::invoke;
use crate::ops::inspect::Inspect;
use crate::ops::settle::{self, Settle, Settled};
use crate::protocol::step::{Call, Input, Next, Woke};
use crate::runtime::Runtime;

/// Bound on waiting for a subscription to come up before the first check.
fn subscribe_bound(rt: &Runtime) -> Duration {
    rt.settings.response_timeout.min(Duration::from_secs(2))
}

pub(crate) fn watch(rt: &Runtime, ctx: &SandboxRef) -> Watch {
    rt.notifier
        .watch(&ctx.team, &ctx.id, &ctx.keys.team.channel())
}

/// Registers for the sandbox's notices and waits (bounded) until they are
/// subscribed: a check made after this cannot miss one.
pub(crate) async fn watch_ready(rt: &Runtime, ctx: &SandboxRef) -> Watch {
    let mut w = watch(rt, ctx);
    w.ready(subscribe_bound(rt)).await;
    w
}

/// Performs what a request loop's step function asks (everything but its
/// own begin call, which the caller runs): scripts every loop shares,
/// the one subscription (made when first asked for), sleeps.
pub(crate) struct Io<'a> {
    rt: &'a Runtime,
    ctx: &'a SandboxRef,
    /// The request's deadline: no retry of its calls waits past it.
    deadline: Option<std::time::Instant>,
    watch: Option<Watch>,
    /// The `wait` span: opened when the request first waits (subscribes),
    /// it covers everything the request does from then until it answers.
    span: Option<tracing::Span>,
}

impl<'a> Io<'a> {
    pub(crate) fn new(
        rt: &'a Runtime,
        ctx: &'a SandboxRef,
        deadline: Option<std::time::Instant>,
    ) -> Io<'a> {
        Io {
            rt,
            ctx,
            deadline,
            watch: None,
            span: None,
        }
    }

    /// The current time, as the step function takes it.
    pub(crate) fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Performs `next` (not an answer) and returns what it brought.
    pub(crate) async fn perform(&mut self, next: Next) -> Input {
        if matches!(next, Next::Subscribe) && self.span.is_none() {
            let ctx = self.ctx;
            self.span = Some(tracing::debug_span!("wait", team = %ctx.team, sandbox = %ctx.id));
        }
        match self.span.clone() {
            Some(span) => self.perform_inner(next).instrument(span).await,
            None => self.perform_inner(next).await,
        }
    }

    async fn perform_inner(&mut self, next: Next) -> Input {
        let (rt, ctx) = (self.rt, self.ctx);
        match next {
            Next::Call(Call::Settle { fence, holder }) => {
                let command = Settle {
                    sandbox: ctx,
                    fence,
                    holder: &holder,
                    mode: settle::Mode::Check,
                    reason: EndReason::LeaseExpired.as_str(),
                    deadline: self.deadline,
                };
                let r = invoke(&rt.env, &command).await.map(|i| i.reply);
                if let Ok(Settled::Abandoned { action, .. }) = &r {
                    crate::metrics::abandoned(*action);
                }
                Input::Settled(r)
            }
            Next::Call(Call::Inspect) => {
                let command = Inspect {
                    sandbox: ctx,
                    deadline: self.deadline,
                };
                Input::Inspected(
                    invoke(&rt.env, &command)
                        .await
                        .map(|i| i.reply.map(Box::new)),
                )
            }
            Next::Call(Call::Begin) | Next::Answer(_) => Input::Begun(Err(Error::Corrupt {
                detail: "the request loop asked the wrong performer".into(),
            })),
            Next::Subscribe => {
                if self.watch.is_none() {
                    self.watch = Some(watch_ready(rt, ctx).await);
                }
                Input::Subscribed
            }
            Next::SleepUntil(t) => {
                Input::Woke(sleep(self.watch.as_mut(), Instant::from_std(t)).await)
            }
        }
    }
}

/// Sleeps until `until` or the next notice for the sandbox, and says which.
async fn sleep(watch: Option<&mut Watch>, until: Instant) -> Woke {
    let Some(watch) = watch else {
        tokio::time::sleep_until(until).await;
        return Woke::Timer;
    };
    tokio::select! {
        w = watch.next() => match w {
            Wake::Notice(Notice::Ended { fence, outcome, reason, .. }) => Woke::Ended { fence, outcome, reason },
            Wake::Notice(Notice::Changed) => Woke::Changed,
            Wake::Resubscribed => Woke::Resubscribed,
        },
        _ = tokio::time::sleep_until(until) => Woke::Timer,
    }
}
