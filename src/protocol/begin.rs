//! The begin and wait_idle request loops, driven: each runs the pure
//! step function (`protocol::step`) and performs what it answers — the
//! begin script itself here, everything else through `wait::Io`. Here too:
//! the guard that undoes a begin whose future was dropped, and the one
//! classification of a begin's result for its span and metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::bounds;
use crate::error::{Error, Result};
use crate::keeper::Job;
use crate::keys::{SandboxRef, validate_id};
use crate::lifecycle::{Action, EndReason};
use crate::ops;
use crate::ops::command::invoke;
use crate::ops::finish::Target as FinishTarget;
use crate::options::{BeginOptions, Begun};
use crate::protocol::step::{Answer, Call, Input, Loop, Mode, Next};
use crate::protocol::wait::Io;
use crate::runtime::Runtime;
use crate::sandbox::{DoneReason, Sandbox};
use crate::transition::Transition;

/// The dropped-begin guard: while armed, dropping it (the begin future was
/// dropped, or it returned while still queued) sends the keeper a cancel
/// by holder, which fails a transition the script started that nobody
/// received, or takes the caller out of the queue.
struct PendingBegin<'a> {
    rt: &'a Runtime,
    sandbox: &'a SandboxRef,
    holder: &'a str,
    route: crate::redis::Route,
    armed: bool,
    reason: EndReason,
}

impl Drop for PendingBegin<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.rt.keeper.send(Job::Cancel {
                sandbox: self.sandbox.clone(),
                holder: self.holder.to_string(),
                reason: self.reason.as_str(),
                route: self.route,
                again: true,
            });
        }
    }
}

/// Requests `action` (see `Coordinator::begin`).
pub(crate) async fn begin(
    rt: &Arc<Runtime>,
    team: &str,
    id: &str,
    action: Action,
    opts: BeginOptions,
) -> Result<Begun> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    if let Some(e) = &opts.expect_execution {
        validate_id("execution id", e)?;
    }
    bounds::duration_ms("lease", opts.lease, Duration::from_millis(10))?;
    let span = tracing::info_span!(
        "begin", team = %team, sandbox = %id, action = %action,
        fence = tracing::field::Empty, decision = tracing::field::Empty
    );
    let result = begin_inner(rt, &ctx, action, &opts, span.clone())
        .instrument(span.clone())
        .await;
    let decision = match &result {
        Ok(Begun::Started(t)) => {
            span.record("fence", t.fence());
            "start"
        }
        Ok(Begun::AlreadyDone(d)) => match d.why {
            DoneReason::Joined { fence } => {
                span.record("fence", fence);
                "join"
            }
            DoneReason::AlreadyInState => "same",
            DoneReason::Absorbed { .. } => "absorbed",
        },
        Err(Error::InvalidTransition { .. }) => "invalid",
        Err(_) => "error",
    };
    span.record("decision", decision);
    crate::metrics::begin(action, decision);
    result
}

async fn begin_inner(
    rt: &Arc<Runtime>,
    ctx: &SandboxRef,
    action: Action,
    opts: &BeginOptions,
    span: tracing::Span,
) -> Result<Begun> {
    let started = Instant::now();
    let deadline = opts.wait_timeout.and_then(|t| bounds::deadline(started, t));
    let holder = rt.next_holder();
    let route = rt.env.link.pick();
    let command = ops::begin::Begin {
        sandbox: ctx,
        action,
        holder: &holder,
        lease: opts.lease,
        expect_execution: opts.expect_execution.as_deref(),
        eviction: opts.eviction,
        queue_place: rt.queue_place(opts.lease),
        route,
    };
    let mut guard = PendingBegin {
        rt,
        sandbox: ctx,
        holder: &holder,
        route,
        armed: false,
        reason: EndReason::Cancelled,
    };
    let mut lp = Loop::new(
        &ctx.team,
        &ctx.id,
        ctx.record(),
        &rt.env.lifecycle,
        rt.settings.poll_interval,
        Mode::Begin(action),
        started.into_std(),
        deadline.map(Instant::into_std),
    );
    let mut sent_at = started;
    let mut io = Io::new(rt, ctx, deadline.map(Instant::into_std));
    let mut input = Input::Start;
    let result = loop {
        let next = lp.step(input, Io::now());
        // Armed while the request may hold something nobody received.
        guard.armed = lp.cancel().is_some();
        guard.reason = lp.cancel().unwrap_or(EndReason::Cancelled);
        input = match next {
            Next::Call(Call::Begin) => {
                sent_at = Instant::now();
                let invoked = invoke(&rt.env, &command).await;
                Input::Begun(invoked.map(|i| (i.reply, i.replication)))
            }
            Next::Answer(r) => break r,
            // Waiting, settling, inspecting: the contended paths, boxed so
            // that an uncontended begin's future does not carry theirs
            // (several KB, moved with it on every call).
            other => Box::pin(io.perform(other)).await,
        };
    };
    if let Some(t) = lp.joined {
        crate::metrics::waited(action.as_str(), "join", t.elapsed());
    }
    match result? {
        Answer::Started {
            fence,
            lease,
            execution,
        } => {
            if let Some(w) = lp.waited {
                crate::metrics::waited(action.as_str(), "wait", w.elapsed());
            }
            guard.armed = false;
            let target = FinishTarget {
                sandbox: ctx.clone(),
                action,
                fence,
                holder: holder.clone(),
            };
            Ok(Begun::Started(Transition::start(
                Arc::clone(rt),
                target,
                execution,
                opts.lease,
                lease,
                opts.watchdog,
                sent_at,
                route,
                span,
            )))
        }
        Answer::Done(done) => Ok(Begun::AlreadyDone(done)),
        Answer::Idle(_) => Err(Error::Corrupt {
            detail: "begin answered like wait_idle".into(),
        }),
    }
}

/// Waits until nothing is in flight (see `Coordinator::wait_idle`).
pub(crate) async fn wait_idle(
    rt: &Runtime,
    team: &str,
    id: &str,
    timeout: Duration,
) -> Result<Sandbox> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    let started = Instant::now();
    let deadline = bounds::deadline(started, timeout);
    let mut lp = Loop::new(
        team,
        id,
        ctx.record(),
        &rt.env.lifecycle,
        rt.settings.poll_interval,
        Mode::Idle,
        started.into_std(),
        deadline.map(Instant::into_std),
    );
    let mut io = Io::new(rt, &ctx, deadline.map(Instant::into_std));
    let mut input = Input::Start;
    let answer = loop {
        match lp.step(input, Io::now()) {
            Next::Answer(r) => break r?,
            next => input = io.perform(next).await,
        }
    };
    match answer {
        Answer::Idle(sandbox) => {
            crate::metrics::waited("any", "idle", started.elapsed());
            Ok(*sandbox)
        }
        _ => Err(Error::Corrupt {
            detail: "wait_idle answered like begin".into(),
        }),
    }
}
