//! [`Transition`]: the handle of a started transition. It carries the fence
//! and holder id, has its lease kept alive by the coordinator's lease
//! keeper (the watchdog), tells its holder when the lease is lost, and is
//! finished exactly once — by `succeed`, by `fail`, or, if dropped
//! unfinished, in the background (reason `dropped`) so nobody waits for the
//! lease to expire.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::keeper::{Job, LeaseGuard};
use crate::lifecycle::{Action, EndReason, Outcome};
use crate::ops;
use crate::ops::command::invoke;
use crate::ops::extend::Extend;
use crate::ops::finish::{Finish, Target};
use crate::redis::Route;
use crate::runtime::Runtime;

/// Longest failure reason kept, in bytes; longer ones are cut.
pub const MAX_REASON_LEN: usize = 1024;

pub(crate) fn cut_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Where a transition is in being finished.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finishing {
    Not,
    /// `succeed`/`fail` sent this outcome; if its future is dropped, the
    /// keeper completes the same one.
    Sent(Outcome, String),
    Done,
}

/// A transition this caller holds. Do the work, then call
/// [`succeed`](Transition::succeed) or [`fail`](Transition::fail).
#[must_use = "a transition must be finished; dropping it fails it with reason \"dropped\""]
pub struct Transition {
    rt: Arc<Runtime>,
    target: Target,
    execution: String,
    lease: Duration,
    guard: Arc<LeaseGuard>,
    kept: Option<u64>,
    started: Instant,
    route: Route,
    finishing: Finishing,
    span: tracing::Span,
}

impl std::fmt::Debug for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transition")
            .field("team", &self.target.sandbox.team)
            .field("id", &self.target.sandbox.id)
            .field("action", &self.target.action)
            .field("fence", &self.target.fence)
            .field("holder", &self.target.holder)
            .finish()
    }
}

impl Transition {
    /// A transition the script opened by a call sent at `sent_at`, with
    /// `lease` left by the server's clock: the local deadline counts from
    /// that call, never from an earlier wait.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        rt: Arc<Runtime>,
        target: Target,
        execution: String,
        lease: Duration,
        lease_left: Duration,
        watchdog: bool,
        sent_at: Instant,
        route: Route,
        span: tracing::Span,
    ) -> Transition {
        let guard = Arc::new(LeaseGuard::new(sent_at + lease_left));
        let kept = watchdog.then(|| {
            let id = rt.next_id();
            rt.keeper.send(Job::Keep {
                id,
                target: target.clone(),
                lease,
                guard: Arc::clone(&guard),
                next: sent_at + lease_left / 3,
            });
            id
        });
        Transition {
            rt,
            target,
            execution,
            lease,
            guard,
            kept,
            started: sent_at,
            route,
            finishing: Finishing::Not,
            span,
        }
    }

    /// The transition's fence: strictly greater than every earlier fence of
    /// this sandbox. Pass it to whatever does the work, so stale work can be
    /// refused downstream too.
    pub fn fence(&self) -> u64 {
        self.target.fence
    }

    /// The action being performed.
    pub fn action(&self) -> Action {
        self.target.action
    }

    /// Team id.
    pub fn team(&self) -> &str {
        &self.target.sandbox.team
    }

    /// Sandbox id.
    pub fn id(&self) -> &str {
        &self.target.sandbox.id
    }

    /// The execution (incarnation) the transition is on.
    pub fn execution(&self) -> &str {
        &self.execution
    }

    /// This transition's holder id (with the fence, what
    /// [`Coordinator::finish`](crate::Coordinator::finish) needs to finish it
    /// from elsewhere).
    pub fn holder(&self) -> &str {
        &self.target.holder
    }

    /// The local lease deadline (never later than the server's).
    pub fn deadline(&self) -> Instant {
        self.guard.deadline()
    }

    /// Extends the lease by its full length from now (by the server clock).
    /// Fails with [`Error::Fenced`] if the lease is no longer ours, and the
    /// transition is then lost.
    ///
    /// Cancel safety: dropping the future leaves the lease as it was or
    /// extended; either is safe.
    pub async fn extend(&self) -> Result<Duration> {
        let span = tracing::debug_span!(
            parent: &self.span, "extend",
            team = %self.target.sandbox.team, sandbox = %self.target.sandbox.id,
            action = %self.target.action, fence = self.target.fence
        );
        let sent_at = Instant::now();
        let command = Extend {
            target: &self.target,
            lease: self.lease,
        };
        let extended = invoke(&self.rt.env, &command).instrument(span).await?.reply;
        match extended {
            Some(ttl) => {
                self.guard.renewed(sent_at, ttl);
                Ok(ttl)
            }
            None => {
                if self.guard.lose() {
                    crate::metrics::lease_lost(self.target.action);
                }
                Err(self.target.fenced(None))
            }
        }
    }

    /// Resolves when the lease is lost: an extend was refused, or none
    /// succeeded before the deadline. The holder should stop its work; its
    /// `succeed`/`fail` will be refused with [`Error::Fenced`].
    ///
    /// Cancel safety: safe to drop (it only watches).
    pub async fn lost(&self) {
        let mut rx = self.guard.subscribe();
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            let deadline = self.guard.deadline();
            if self.kept.is_none() && Instant::now() >= deadline {
                // No watchdog: nobody else declares it.
                if self.guard.lose() {
                    crate::metrics::lease_lost(self.target.action);
                }
                return;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline), if self.kept.is_none() => {}
            }
        }
    }

    /// Whether the lease is known to be lost (or its deadline passed).
    pub fn is_lost(&self) -> bool {
        self.guard.is_lost()
    }

    /// Records success: the record moves to the action's success state, the
    /// lease is released and waiters wake, in one script call.
    ///
    /// Errors: [`Error::Fenced`] — the lease was lost, nothing was written;
    /// [`Error::FinishUnknown`] — a reply was lost and the record moved on
    /// before a retry could read the outcome back, so it may or may not have
    /// been recorded; [`Error::NotReplicated`] — recorded on the primary,
    /// acknowledged by fewer replicas than asked (call again: it returns the
    /// recorded outcome and waits again); a transport error — Redis stayed
    /// unreachable until the lease deadline (unknown as well). Transport
    /// failures are retried while the lease may still be ours.
    ///
    /// Cancel safety: if the future is dropped after the finish was sent,
    /// the same outcome is completed in the background (finishing is
    /// retry-safe): a dropped `succeed` never turns into a failure.
    pub async fn succeed(mut self) -> Result<()> {
        self.finish(Outcome::Succeeded, String::new()).await
    }

    /// Records failure with a reason (cut to [`MAX_REASON_LEN`] bytes): the
    /// record moves to the action's failure state (or stays in flight,
    /// stuck, for a retry or cleanup), the lease is released and joiners get
    /// [`Error::TransitionFailed`]. Errors and cancel safety as for
    /// [`succeed`](Transition::succeed).
    pub async fn fail(mut self, reason: impl AsRef<str>) -> Result<()> {
        let reason = cut_reason(reason.as_ref()).to_string();
        self.finish(Outcome::Failed, reason).await
    }

    async fn finish(&mut self, outcome: Outcome, reason: String) -> Result<()> {
        let span = tracing::info_span!(
            parent: &self.span, "finish",
            team = %self.target.sandbox.team, sandbox = %self.target.sandbox.id,
            action = %self.target.action, fence = self.target.fence, %outcome
        );
        self.finishing = Finishing::Sent(outcome, reason.clone());
        let finish = Finish {
            target: &self.target,
            outcome,
            reason: &reason,
            until: Some(self.guard.deadline()),
            unsure: false,
            route: self.route,
        };
        let result = ops::finish::finish(&self.rt.env, &finish)
            .instrument(span)
            .await;
        self.finishing = Finishing::Done;
        self.forget();
        match &result {
            Ok(()) => {
                crate::metrics::transition(self.target.action, outcome, self.started.elapsed())
            }
            Err(Error::Fenced { .. }) => {
                if self.guard.lose() {
                    crate::metrics::lease_lost(self.target.action);
                }
            }
            Err(Error::NotReplicated { .. }) => {
                // Recorded on the primary: a retry by the caller must not
                // also be retried here on drop.
            }
            Err(e) => tracing::warn!(error = %e, "finish failed"),
        }
        result
    }

    fn forget(&mut self) {
        if let Some(id) = self.kept.take() {
            self.rt.keeper.send(Job::Forget { id });
        }
    }
}

impl Drop for Transition {
    fn drop(&mut self) {
        self.forget();
        let (outcome, reason, unsure, what) =
            match std::mem::replace(&mut self.finishing, Finishing::Done) {
                Finishing::Done => return,
                Finishing::Not => (
                    Outcome::Failed,
                    EndReason::Dropped.as_str().to_string(),
                    false,
                    "transition",
                ),
                Finishing::Sent(outcome, reason) => (outcome, reason, true, "finish"),
            };
        crate::metrics::cancelled(what);
        tracing::debug!(
            team = %self.target.sandbox.team, sandbox = %self.target.sandbox.id, fence = self.target.fence,
            %outcome, %reason, "finishing a dropped {what} in the background"
        );
        self.rt.keeper.send(Job::Finish {
            target: self.target.clone(),
            outcome,
            reason,
            until: self.guard.deadline(),
            unsure,
        });
    }
}
