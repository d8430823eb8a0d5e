//! The lease keeper: one task per coordinator that does, in the background,
//! everything a call must not leave undone when its future is dropped or
//! its value goes away — so that no `begin` spawns a task of its own.
//!
//! - the watchdog: extends each live transition's lease at a third of its
//!   length while its [`Transition`](crate::Transition) lives, and declares
//!   it lost (its `lost()` resolves) when an extend is refused or none
//!   succeeded before the deadline;
//! - a dropped `Transition` that was never finished: failed with reason
//!   `dropped`;
//! - a dropped `succeed`/`fail` future: the same finish completed (never a
//!   contradicting one: the outcome already sent is the one retried);
//! - a dropped `begin` future (the script may have started a transition
//!   nobody received, or queued the caller): `cancel.lua` by holder, on the
//!   same connection (so Redis runs it after the begin), and once more
//!   after the response timeout (a begin that was still in flight);
//! - a dropped reservation: given back.
//!
//! The Redis calls run concurrently inside the task (no task per job).
//! The task ends when every sender is gone (the coordinator and all its
//! transitions dropped) and its last jobs are done.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::keys::SandboxRef;
use crate::lifecycle::Outcome;
use crate::ops::Env;
use crate::ops::command::invoke;
use crate::ops::extend::Extend;
use crate::ops::finish::{Cancel, Cancelled, Finish, Target};
use crate::redis::Route;

/// The lease as its holder sees it: a local deadline never later than the
/// server's, and the lost signal.
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    deadline: Mutex<Instant>,
    lost: watch::Sender<bool>,
}

impl LeaseGuard {
    pub(crate) fn new(deadline: Instant) -> LeaseGuard {
        LeaseGuard {
            deadline: Mutex::new(deadline),
            lost: watch::channel(false).0,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An extend sent at `sent_at` gave the lease `ttl` more.
    pub(crate) fn renewed(&self, sent_at: Instant, ttl: Duration) {
        let mut d = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        *d = (*d).max(sent_at + ttl);
    }

    pub(crate) fn lose(&self) -> bool {
        !self.lost.send_replace(true)
    }

    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow() || Instant::now() >= self.deadline()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }
}

/// Work for the keeper.
pub(crate) enum Job {
    /// Keep this lease alive (watchdog) until forgotten.
    Keep {
        id: u64,
        target: Target,
        lease: Duration,
        guard: Arc<LeaseGuard>,
        next: Instant,
    },
    /// Stop keeping it (finished or dropped).
    Forget { id: u64 },
    /// Finish this transition in the background (a dropped `Transition`
    /// fails with `dropped`; a dropped finish future completes its own
    /// outcome). `unsure`: a finish attempt may already have been sent.
    Finish {
        target: Target,
        outcome: Outcome,
        reason: String,
        until: Instant,
        unsure: bool,
    },
    /// Undo what a dropped begin call may have left (by holder).
    Cancel {
        sandbox: SandboxRef,
        holder: String,
        reason: &'static str,
        route: Route,
        again: bool,
    },
    /// Answer once every background call sent so far has ended.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Give back a reservation.
    Unreserve { sandbox: SandboxRef, token: String },
}

/// The keeper's address.
#[derive(Debug, Clone)]
pub(crate) struct Keeper {
    tx: mpsc::UnboundedSender<Job>,
}

impl Keeper {
    /// Starts the keeper task.
    pub(crate) fn start(env: Arc<Env>, response_timeout: Duration) -> Keeper {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(env, rx, response_timeout));
        Keeper { tx }
    }

    /// Resolves once every background job sent before it has finished
    /// its Redis call (a cancel's delayed second attempt excepted).
    pub(crate) async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Flush(tx));
        let _ = rx.await;
    }

    pub(crate) fn send(&self, job: Job) {
        if self.tx.send(job).is_err() {
            tracing::warn!("lease keeper is gone; a background job was dropped");
        }
    }
}

struct Kept {
    target: Target,
    lease: Duration,
    guard: Arc<LeaseGuard>,
    extending: bool,
}

enum Timer {
    Check(u64),
    Job(Box<Job>),
}

enum Done {
    Extended {
        id: u64,
        sent_at: Instant,
        result: Result<Option<Duration>, crate::error::Error>,
    },
    Other,
}

async fn run(env: Arc<Env>, mut rx: mpsc::UnboundedReceiver<Job>, response_timeout: Duration) {
    let mut kept: HashMap<u64, Kept> = HashMap::new();
    let mut timers: BTreeMap<(Instant, u64), Timer> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut calls: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut open = true;
    let mut flushes: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        if calls.is_empty() {
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
        if !open && calls.is_empty() && !timers.values().any(|t| matches!(t, Timer::Job(_))) {
            return;
        }
        let next_timer = timers.keys().next().map(|(at, _)| *at);
        tokio::select! {
            job = rx.recv(), if open => match job {
                None => {
                    open = false;
                    kept.clear();
                    timers.retain(|_, t| matches!(t, Timer::Job(_)));
                }
                Some(Job::Keep { id, target, lease, guard, next }) => {
                    kept.insert(id, Kept { target, lease, guard, extending: false });
                    seq += 1;
                    timers.insert((next, seq), Timer::Check(id));
                }
                Some(Job::Forget { id }) => {
                    kept.remove(&id);
                }
                Some(Job::Flush(done)) => flushes.push(done),
                Some(job) => calls.push(background(&env, job, response_timeout, &mut timers, &mut seq)),
            },
            Some(done) = calls.next(), if !calls.is_empty() => {
                if let Done::Extended { id, sent_at, result } = done {
                    let Some(k) = kept.get_mut(&id) else { continue };
                    k.extending = false;
                    let now = Instant::now();
                    let next = match result {
                        Ok(Some(ttl)) => {
                            k.guard.renewed(sent_at, ttl);
                            now + k.lease / 3
                        }
                        Ok(None) => {
                            if k.guard.lose() {
                                crate::metrics::lease_lost(k.target.action);
                            }
                            kept.remove(&id);
                            continue;
                        }
                        Err(e) => {
                            tracing::debug!(fence = k.target.fence, error = %e, "lease extend failed; retrying");
                            now + (k.lease / 10).max(Duration::from_millis(5))
                        }
                    };
                    seq += 1;
                    timers.insert((next.min(k.guard.deadline()), seq), Timer::Check(id));
                }
            },
            _ = sleep_until(next_timer), if next_timer.is_some() => {
                let Some(((_, _), timer)) = timers.pop_first() else { continue };
                match timer {
                    Timer::Check(id) => {
                        let Some(k) = kept.get_mut(&id) else { continue };
                        if k.guard.is_lost() {
                            if k.guard.lose() {
                                crate::metrics::lease_lost(k.target.action);
                            }
                            kept.remove(&id);
                            continue;
                        }
                        if k.extending {
                            continue;
                        }
                        k.extending = true;
                        let (env, target, lease) = (Arc::clone(&env), k.target.clone(), k.lease);
                        calls.push(Box::pin(async move {
                            let sent_at = Instant::now();
                            let command = Extend {
                                target: &target,
                                lease,
                            };
                            let result = invoke(&env, &command).await.map(|i| i.reply);
                            Done::Extended { id, sent_at, result }
                        }));
                        // A deadline check in case the extend hangs.
                        seq += 1;
                        timers.insert((k.guard.deadline(), seq), Timer::Check(id));
                    }
                    Timer::Job(job) => calls.push(background(&env, *job, response_timeout, &mut timers, &mut seq)),
                }
            },
        }
    }
}

/// A deadline later than anything a test or a service will live to see.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A background call for `job` (and, for a cancel, its second attempt).
fn background(
    env: &Arc<Env>,
    job: Job,
    response_timeout: Duration,
    timers: &mut BTreeMap<(Instant, u64), Timer>,
    seq: &mut u64,
) -> BoxFuture<'static, Done> {
    let env = Arc::clone(env);
    match job {
        Job::Finish {
            target,
            outcome,
            reason,
            until,
            unsure,
        } => Box::pin(async move {
            let finish = Finish {
                target: &target,
                outcome,
                reason: &reason,
                until: Some(until),
                unsure,
                route: Route::default(),
            };
            let result = crate::ops::finish::finish(&env, &finish).await;
            match result {
                Ok(()) => tracing::debug!(
                    team = %target.sandbox.team, sandbox = %target.sandbox.id, fence = target.fence,
                    %outcome, %reason, "finished in the background"
                ),
                Err(e) => tracing::warn!(
                    team = %target.sandbox.team, sandbox = %target.sandbox.id, fence = target.fence,
                    error = %e, "finishing in the background failed"
                ),
            }
            Done::Other
        }),
        Job::Cancel {
            sandbox,
            holder,
            reason,
            route,
            again,
        } => {
            if again {
                *seq += 1;
                timers.insert(
                    (
                        crate::bounds::deadline(Instant::now(), response_timeout)
                            .unwrap_or_else(far_future),
                        *seq,
                    ),
                    Timer::Job(Box::new(Job::Cancel {
                        sandbox: sandbox.clone(),
                        holder: holder.clone(),
                        reason,
                        route: Route::default(),
                        again: false,
                    })),
                );
            }
            Box::pin(async move {
                let (team, id) = (sandbox.team.clone(), sandbox.id.clone());
                let cancel = Cancel {
                    sandbox: &sandbox,
                    holder: &holder,
                    route,
                };
                match invoke(&env, &cancel).await.map(|i| i.reply) {
                    Ok(Cancelled::Holds { fence, action }) => {
                        let target = Target {
                            sandbox,
                            action,
                            fence,
                            holder: holder.clone(),
                        };
                        let finish = Finish {
                            target: &target,
                            outcome: Outcome::Failed,
                            reason,
                            until: None,
                            unsure: false,
                            route,
                        };
                        match crate::ops::finish::finish(&env, &finish).await {
                            Ok(()) => {
                                crate::metrics::cancelled("begin");
                                tracing::info!(%team, sandbox = %id, fence, %holder, reason, "undid a started transition nobody received");
                            }
                            Err(e) => {
                                tracing::warn!(%team, sandbox = %id, fence, error = %e, "failing a transition nobody received")
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%team, sandbox = %id, %holder, error = %e, "undoing a dropped begin failed")
                    }
                }
                Done::Other
            })
        }
        Job::Unreserve { sandbox, token } => Box::pin(async move {
            let command = crate::ops::reserve::Unreserve {
                sandbox: &sandbox,
                token: &token,
            };
            if let Err(e) = invoke(&env, &command).await {
                tracing::warn!(team = %sandbox.team, sandbox = %sandbox.id, error = %e, "giving back a dropped reservation failed");
            }
            Done::Other
        }),
        Job::Keep { .. } | Job::Forget { .. } | Job::Flush(_) => Box::pin(async { Done::Other }),
    }
}
