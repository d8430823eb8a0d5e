//! [`Transition`]: the handle of a started transition. It carries the
//! fence, keeps the lease alive (watchdog), tells its holder when the lease
//! is lost, and finishes the transition exactly once — by `succeed`, by
//! `fail`, or, if dropped unfinished, by a background `fail("dropped")` so
//! nobody waits for the lease to expire.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::coordinator::{Inner, transport};
use crate::error::{Error, Result};
use crate::keys::SandboxKeys;
use crate::lifecycle::{Action, Outcome};
use crate::sandbox::Sandbox;

/// The lease as the holder sees it: a local deadline that is never later
/// than the server's, and the lost signal.
struct LeaseGuard {
    deadline: Mutex<Instant>,
    lost: watch::Sender<bool>,
}

impl LeaseGuard {
    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn renewed(&self, sent_at: Instant, ttl: Duration) {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = sent_at + ttl;
    }

    fn lose(&self) {
        self.lost.send_replace(true);
    }
}

/// A transition this caller holds. Do the work, then call
/// [`succeed`](Transition::succeed) or [`fail`](Transition::fail).
#[must_use = "a transition must be finished; dropping it fails it with reason \"dropped\""]
pub struct Transition {
    inner: Arc<Inner>,
    keys: SandboxKeys,
    action: Action,
    fence: u64,
    sandbox: Sandbox,
    lease: Duration,
    guard: Arc<LeaseGuard>,
    keeper: JoinHandle<()>,
    finished: bool,
}

impl std::fmt::Debug for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transition")
            .field("team", &self.sandbox.team)
            .field("id", &self.sandbox.id)
            .field("action", &self.action)
            .field("fence", &self.fence)
            .finish()
    }
}

impl Transition {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        inner: Arc<Inner>,
        keys: SandboxKeys,
        action: Action,
        fence: u64,
        sandbox: Sandbox,
        lease: Duration,
        watchdog: bool,
        sent_at: Instant,
    ) -> Transition {
        let guard = Arc::new(LeaseGuard {
            deadline: Mutex::new(sent_at + lease),
            lost: watch::channel(false).0,
        });
        let keeper = tokio::spawn(keep(
            Arc::clone(&inner),
            keys.clone(),
            fence,
            lease,
            watchdog,
            Arc::clone(&guard),
        ));
        Transition {
            inner,
            keys,
            action,
            fence,
            sandbox,
            lease,
            guard,
            keeper,
            finished: false,
        }
    }

    /// The transition's fence: strictly greater than every earlier fence of
    /// this sandbox. Pass it to whatever does the work, so stale work can be
    /// refused downstream too.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The action being performed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The record as the transition started it (in-flight state, lease).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Extends the lease by its full length from now (by the server clock).
    /// Fails with [`Error::Fenced`] if the lease is no longer ours, and the
    /// transition is then lost.
    pub async fn extend(&self) -> Result<Duration> {
        let sent_at = Instant::now();
        match self
            .inner
            .extend(&self.keys, self.fence, self.lease)
            .await?
        {
            Some(ttl) => {
                self.guard.renewed(sent_at, ttl);
                Ok(ttl)
            }
            None => {
                self.guard.lose();
                Err(Error::Fenced {
                    team: self.sandbox.team.clone(),
                    id: self.sandbox.id.clone(),
                    fence: self.fence,
                    current: None,
                })
            }
        }
    }

    /// Resolves when the lease is lost: an extend was refused, or none
    /// succeeded before the deadline. The holder should stop its work; its
    /// `succeed`/`fail` will be refused with [`Error::Fenced`].
    pub async fn lost(&self) {
        let mut rx = self.guard.lost.subscribe();
        // The sender lives in `self.guard`, so this cannot fail while we wait.
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.guard.lost.borrow()
    }

    /// Records success: the record moves to the action's success state, the
    /// lease is released and waiters wake, in one script call.
    ///
    /// Errors: [`Error::Fenced`] — the lease was lost, nothing was written;
    /// [`Error::FinishUnknown`] — a reply was lost and the record moved on
    /// before a retry could read the outcome back, so it may or may not have
    /// been recorded; a transport error — Redis stayed unreachable until the
    /// lease deadline (same: unknown). Transport failures are retried (every
    /// 100 ms) while the lease may still be ours.
    pub async fn succeed(mut self) -> Result<()> {
        let result = self.finish(Outcome::Succeeded, "").await;
        self.finished = true;
        result
    }

    /// Records failure with a reason: the record moves to the action's
    /// failure state (or stays in flight, stuck, for a retry or cleanup),
    /// the lease is released and joiners get [`Error::TransitionFailed`].
    /// Errors as for [`succeed`](Transition::succeed).
    pub async fn fail(mut self, reason: impl AsRef<str>) -> Result<()> {
        let result = self.finish(Outcome::Failed, reason.as_ref()).await;
        self.finished = true;
        result
    }

    async fn finish(&self, outcome: Outcome, reason: &str) -> Result<()> {
        // The script call itself retries briefly; beyond that, keep trying
        // while the lease may still be ours. Finishing is retry-safe; after
        // a lost reply a stale answer is reported as unknown, not fenced.
        let mut unsure = false;
        loop {
            let result = self
                .inner
                .finish(
                    &self.keys,
                    &self.sandbox.team,
                    &self.sandbox.id,
                    self.action,
                    self.fence,
                    outcome,
                    reason,
                    unsure,
                )
                .await;
            match result {
                Err(e) if transport(&e) && Instant::now() < self.guard.deadline() => {
                    unsure = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e @ Error::Fenced { .. }) => {
                    self.guard.lose();
                    return Err(e);
                }
                other => return other,
            }
        }
    }
}

impl Drop for Transition {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                fence = self.fence,
                "transition dropped outside a runtime; its lease will expire"
            );
            return;
        };
        let inner = Arc::clone(&self.inner);
        let keys = self.keys.clone();
        let (team, id) = (self.sandbox.team.clone(), self.sandbox.id.clone());
        let (action, fence) = (self.action, self.fence);
        runtime.spawn(async move {
            let result = inner
                .finish(
                    &keys,
                    &team,
                    &id,
                    action,
                    fence,
                    Outcome::Failed,
                    "dropped",
                    false,
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(%team, %id, fence, error = %e, "failing a dropped transition");
            }
        });
    }
}

/// The lease keeper: with the watchdog, extends at a third of the lease;
/// either way, declares the lease lost at its deadline without a renewal.
async fn keep(
    inner: Arc<Inner>,
    keys: SandboxKeys,
    fence: u64,
    lease: Duration,
    watchdog: bool,
    guard: Arc<LeaseGuard>,
) {
    let period = lease / 3;
    let mut next = Instant::now() + period;
    loop {
        let deadline = guard.deadline();
        tokio::time::sleep_until(if watchdog {
            next.min(deadline)
        } else {
            deadline
        })
        .await;
        let now = Instant::now();
        if now >= guard.deadline() {
            guard.lose();
            return;
        }
        if !watchdog {
            continue; // a manual extend moved the deadline
        }
        match inner.extend(&keys, fence, lease).await {
            Ok(Some(ttl)) => {
                guard.renewed(now, ttl);
                next = now + period;
            }
            Ok(None) => {
                guard.lose();
                return;
            }
            Err(e) => {
                tracing::debug!(fence, error = %e, "lease extend failed; retrying");
                next = Instant::now() + (lease / 10).max(Duration::from_millis(5));
            }
        }
    }
}
