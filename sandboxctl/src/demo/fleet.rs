//! The simulated fleet: API servers (one `Coordinator` each, with its own
//! connections and subscription) receiving racing requests for a set of
//! sandboxes, and the holders' simulated work — which mostly succeeds,
//! sometimes fails, sometimes crashes (never finishes; its short lease
//! expires) and sometimes stalls past its lease (its late finish must be
//! fenced).
//!
//! Each sandbox gets a driver task that fires bursts of 2–4 requests from
//! random servers at staggered moments, so some land while a transition is
//! in flight (join, wait then re-decide) and some after (absorbed, same,
//! invalid). Between bursts it resumes paused sandboxes and recycles killed
//! ones, so the fleet keeps running and fences cross re-registrations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, DoneReason, Error, NewSandbox, Registration, State,
    Transition,
};
use tokio::time::Instant;

use super::ledger::{Answer, Ledger, Request};

/// Lease of holders that crash or stall: short, without watchdog, so the
/// demo shows expiry within its run.
pub const SHORT_LEASE: Duration = Duration::from_millis(300);
/// Lease of holders that finish, kept alive by the watchdog.
const HOLD_LEASE: Duration = Duration::from_secs(2);
/// A stalled holder wakes this long after it was handed the transition:
/// twice its lease, so the server has expired the lease by then whatever
/// the delays (the server started the lease before `begin` returned).
const STALL: Duration = Duration::from_millis(600);
/// Bound on any wait for another transition.
const WAIT_BOUND: Duration = Duration::from_secs(10);

/// How a holder's simulated work goes, decided before the request is sent
/// (a crashing or stalling holder needs its short lease from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Succeed,
    Fail,
    Crash,
    Stall,
}

/// One request as planned: who sends it, what, when, and how its work goes
/// should it hold the transition.
#[derive(Debug, Clone, Copy)]
struct Planned {
    server: usize,
    action: Action,
    fate: Fate,
    offset: Duration,
    work: Duration,
}

/// A sandbox of the fleet.
#[derive(Debug, Clone)]
pub struct SandboxName {
    pub team: String,
    pub id: String,
}

/// The servers, the sandboxes and the shared request budget.
pub struct Fleet {
    pub servers: Vec<Coordinator>,
    pub sandboxes: Vec<SandboxName>,
    pub ledger: Ledger,
    budget: AtomicUsize,
    progress: ProgressBar,
}

impl Fleet {
    pub fn new(
        servers: Vec<Coordinator>,
        sandboxes: Vec<SandboxName>,
        requests: usize,
        progress: ProgressBar,
    ) -> Fleet {
        Fleet {
            ledger: Ledger::new(sandboxes.len()),
            servers,
            sandboxes,
            budget: AtomicUsize::new(requests),
            progress,
        }
    }

    /// Registers every sandbox (execution `exec-0`), through the servers
    /// in turn.
    pub async fn register_all(&self) -> anyhow::Result<()> {
        for (i, sb) in self.sandboxes.iter().enumerate() {
            let server = &self.servers[i % self.servers.len()];
            server.register(new_sandbox(sb, 0)).await?;
        }
        Ok(())
    }

    /// Takes up to `want` requests from the budget.
    fn take(&self, want: usize) -> usize {
        let taken = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(want))
            });
        match taken {
            Ok(left) | Err(left) => left.min(want),
        }
    }

    /// The driver of one sandbox: bursts of racing requests until the
    /// budget is spent.
    pub async fn drive(self: Arc<Self>, sandbox: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut incarnation = 0u64;
        loop {
            let n = self.take(rng.random_range(2..=4));
            if n == 0 {
                return;
            }
            let burst: Vec<Planned> = (0..n).map(|_| self.plan(&mut rng)).collect();
            let tasks: Vec<_> = burst
                .into_iter()
                .map(|p| tokio::spawn(Arc::clone(&self).request(sandbox, p)))
                .collect();
            for task in tasks {
                if let Err(e) = task.await {
                    self.ledger.record(Request {
                        sandbox,
                        action: Action::Pause,
                        answer: Answer::Unexpected {
                            error: format!("request task failed: {e}"),
                        },
                        latency: Duration::ZERO,
                    });
                    self.progress.inc(1);
                }
            }
            self.between_bursts(sandbox, &mut rng, &mut incarnation)
                .await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        }
    }

    fn plan(&self, rng: &mut StdRng) -> Planned {
        let action = match rng.random_range(0..100) {
            0..35 => Action::Pause,
            35..60 => Action::Kill,
            _ => Action::Snapshot,
        };
        let fate = match rng.random_range(0..100) {
            0..78 => Fate::Succeed,
            78..88 => Fate::Fail,
            88..94 => Fate::Crash,
            _ => Fate::Stall,
        };
        Planned {
            server: rng.random_range(0..self.servers.len()),
            action,
            fate,
            offset: Duration::from_millis(rng.random_range(0..120)),
            work: Duration::from_millis(rng.random_range(20..150)),
        }
    }

    async fn request(self: Arc<Self>, sandbox: usize, p: Planned) {
        tokio::time::sleep(p.offset).await;
        let coord = &self.servers[p.server];
        let name = &self.sandboxes[sandbox];
        let opts = match p.fate {
            Fate::Crash | Fate::Stall => BeginOptions::default().lease(SHORT_LEASE).watchdog(false),
            Fate::Succeed | Fate::Fail => BeginOptions::default().lease(HOLD_LEASE),
        }
        .wait_timeout(WAIT_BOUND);
        let asked = Instant::now();
        let answer = match coord.begin(&name.team, &name.id, p.action, opts).await {
            Ok(Begun::Started(t)) => self.hold(sandbox, t, p).await,
            Ok(Begun::AlreadyDone(done)) => match done.why {
                DoneReason::Joined { fence } => Answer::Joined { fence },
                DoneReason::Absorbed { .. } => Answer::Absorbed,
                DoneReason::AlreadyInState => Answer::AlreadyInState,
            },
            Err(Error::InvalidTransition { .. }) => Answer::Invalid,
            Err(Error::TransitionFailed { fence, reason, .. }) => {
                Answer::JoinedFailed { fence, reason }
            }
            Err(Error::Abandoned { fence, .. }) => Answer::JoinedAbandoned { fence },
            Err(e) => Answer::Unexpected {
                error: e.to_string(),
            },
        };
        self.ledger.record(Request {
            sandbox,
            action: p.action,
            answer,
            latency: asked.elapsed(),
        });
        self.progress.inc(1);
    }

    /// The holder's part: claim the sandbox, simulate the work, release
    /// the claim, finish (or not).
    async fn hold(&self, sandbox: usize, t: Transition, p: Planned) -> Answer {
        let handed = Instant::now();
        let fence = t.fence();
        let track = &self.ledger.tracks[sandbox];
        track.claim(fence);
        match p.fate {
            Fate::Succeed | Fate::Fail => {
                // A well-behaved holder stops working when its lease is lost.
                tokio::select! {
                    _ = tokio::time::sleep(p.work) => {}
                    _ = t.lost() => {}
                }
                track.release(fence);
                let (result, reason) = if p.fate == Fate::Succeed {
                    (t.succeed().await, None)
                } else {
                    let reason = format!("simulated failure (fence {fence})");
                    (t.fail(&reason).await, Some(reason))
                };
                match (result, reason) {
                    (Ok(()), None) => Answer::Succeeded { fence },
                    (Ok(()), Some(reason)) => Answer::HolderFailed { fence, reason },
                    (Err(Error::Fenced { .. }), _) => Answer::LostLease { fence },
                    (Err(e), _) => Answer::HolderError {
                        fence,
                        error: e.to_string(),
                    },
                }
            }
            Fate::Crash => {
                tokio::time::sleep(p.work.min(SHORT_LEASE / 3)).await;
                track.release(fence);
                // The process "dies": nothing finishes the transition, not
                // even the Drop that would fail it. Only the lease expiry
                // can end it.
                std::mem::forget(t);
                Answer::Crashed { fence }
            }
            Fate::Stall => {
                // Exclusivity ends with the lease: release the claim when
                // the holder's own clock says the lease is lost (never later
                // than the server's), but keep "working" past it.
                let _ = tokio::time::timeout(STALL, t.lost()).await;
                track.release(fence);
                tokio::time::sleep_until(handed + STALL).await;
                match t.succeed().await {
                    Err(Error::Fenced { .. }) => Answer::Fenced { fence },
                    Ok(()) => Answer::StaleAccepted { fence },
                    Err(e) => Answer::HolderError {
                        fence,
                        error: e.to_string(),
                    },
                }
            }
        }
    }

    /// Keeps the fleet alive: a paused sandbox is resumed (a new
    /// incarnation), a killed one removed and registered again.
    async fn between_bursts(&self, sandbox: usize, rng: &mut StdRng, incarnation: &mut u64) {
        let coord = &self.servers[rng.random_range(0..self.servers.len())];
        let name = &self.sandboxes[sandbox];
        let sb = match coord.get(&name.team, &name.id).await {
            Ok(Some(sb)) => sb,
            Ok(None) => {
                self.ledger
                    .lifecycle_error(format!("{}/{} vanished between bursts", name.team, name.id));
                return;
            }
            Err(e) => {
                self.ledger.lifecycle_error(e.to_string());
                return;
            }
        };
        if sb.lease.is_some() || !rng.random_bool(0.8) {
            return;
        }
        match sb.state {
            State::Paused => {
                *incarnation += 1;
                match coord.register(new_sandbox(name, *incarnation)).await {
                    Ok((_, Registration::Resumed { .. })) => self.ledger.resumed(),
                    Ok((_, other)) => self.ledger.lifecycle_error(format!(
                        "resume of {}/{} registered as {other:?}",
                        name.team, name.id
                    )),
                    Err(e) => self.ledger.lifecycle_error(e.to_string()),
                }
            }
            State::Killed => {
                *incarnation += 1;
                let again = match coord.remove(&name.team, &name.id).await {
                    Ok(true) => coord.register(new_sandbox(name, *incarnation)).await,
                    Ok(false) => {
                        self.ledger.lifecycle_error(format!(
                            "{}/{} vanished before its removal",
                            name.team, name.id
                        ));
                        return;
                    }
                    Err(e) => Err(e),
                };
                match again {
                    Ok((_, Registration::Created)) => self.ledger.recycled(),
                    Ok((_, other)) => self.ledger.lifecycle_error(format!(
                        "re-registration of {}/{} registered as {other:?}",
                        name.team, name.id
                    )),
                    Err(e) => self.ledger.lifecycle_error(e.to_string()),
                }
            }
            _ => {}
        }
    }
}

fn new_sandbox(name: &SandboxName, incarnation: u64) -> NewSandbox {
    NewSandbox {
        team: name.team.clone(),
        id: name.id.clone(),
        execution: format!("exec-{incarnation}"),
        end_time: Duration::from_secs(3600).into(),
        data: "{\"demo\":true}".into(),
    }
}
