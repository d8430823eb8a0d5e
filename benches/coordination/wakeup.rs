//! Contention: how fast waiters learn that the transition they wait for
//! ended. A holder (its own coordinator, as if on one API server) starts
//! snapshots; waiters (another coordinator, another "server") request the
//! same snapshot and join it; once every waiter is parked, the holder calls
//! `succeed` on each transition in turn. A waiter's wake-up latency is the
//! time from its transition's `succeed` returning to its own `begin`
//! returning. The notice is published inside the finish script, so a waiter
//! can return before the holder has even read its reply: such wake-ups
//! count as 0 and are reported as "before".
//!
//! Two paths:
//! - pub/sub: the library as configured by default (notification + poll);
//! - poll only: the waiters' coordinator is built with
//!   `Builder::notifications(false)`, so waiters only learn by polling (and
//!   at lease deadlines). Waiters arrive spread over one poll interval, as
//!   real requests would, so the measured latency is the poll phase, not an
//!   artefact of synchronised starts.

use std::time::{Duration, Instant};

use rand::Rng;
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, DoneReason};

use crate::ours::Fleet;
use crate::result::Result;
use crate::stats::Summary;

/// How waiters learn the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    PubSub,
    PollOnly,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Path::PubSub => "pub/sub",
            Path::PollOnly => "poll only",
        })
    }
}

/// The wake-ups of one scenario.
#[derive(Debug, Clone)]
pub struct Case {
    pub scenario: String,
    /// Many sandboxes in flight at once (else: K waiters on one transition).
    pub many: bool,
    pub path: Path,
    /// Transitions finished.
    pub transitions: usize,
    /// Waiters per transition.
    pub per_transition: usize,
    /// Latency from `succeed` returning (negative clamped to 0).
    pub latencies: Vec<Duration>,
    /// Waiters that returned before `succeed` did.
    pub before: usize,
}

impl Case {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.latencies)
    }
}

/// One round: `per_sandbox` waiters on each of `targets`, all joined on a
/// transition the holder started; `stagger` spreads their arrival.
pub async fn round(
    holder: &Coordinator,
    waiters: &Coordinator,
    targets: &[(String, String)],
    per_sandbox: usize,
    stagger: Option<Duration>,
) -> Result<(Vec<Duration>, usize)> {
    let mut transitions = Vec::with_capacity(targets.len());
    for (team, id) in targets {
        match holder
            .begin(team, id, Action::Snapshot, BeginOptions::default())
            .await?
        {
            Begun::Started(t) => transitions.push(t),
            Begun::AlreadyDone(d) => {
                return Err(
                    format!("holder's snapshot of {team}/{id} did not start: {d:?}").into(),
                );
            }
        }
    }
    let total = targets.len() * per_sandbox;
    let base = waiters.waiting();
    let mut parked = Vec::with_capacity(total);
    for (i, (team, id)) in targets.iter().enumerate() {
        for _ in 0..per_sandbox {
            let (w, team, id) = (waiters.clone(), team.clone(), id.clone());
            let delay = stagger.map(|s| s.mul_f64(rand::rng().random::<f64>()));
            parked.push(tokio::spawn(async move {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                let r = w
                    .begin(&team, &id, Action::Snapshot, BeginOptions::default())
                    .await;
                let at = Instant::now();
                match r {
                    Ok(Begun::AlreadyDone(done))
                        if matches!(done.why, DoneReason::Joined { .. }) =>
                    {
                        Ok::<_, crate::result::BoxError>((i, at))
                    }
                    other => {
                        Err(format!("waiter on {team}/{id} expected to join: {other:?}").into())
                    }
                }
            }));
        }
    }
    // Every waiter registered, then a grace period for their first check
    // (begin, then settle) to come back, so they are truly parked.
    let deadline = Instant::now() + Duration::from_secs(60) + stagger.unwrap_or_default();
    while waiters.waiting() < base + total {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {total} waiters parked within the deadline",
                waiters.waiting() - base
            )
            .into());
        }
        if parked.iter().any(|p| p.is_finished()) {
            break; // a waiter returned early: an error, surfaced below
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100 + total as u64 / 10)).await;
    let mut returned = Vec::with_capacity(transitions.len());
    for t in transitions {
        t.succeed().await?;
        returned.push(Instant::now());
    }
    let wait = Duration::from_secs(30) + stagger.unwrap_or_default() * 2;
    let mut latencies = Vec::with_capacity(total);
    let mut before = 0;
    for p in parked {
        let (i, at) = tokio::time::timeout(wait, p)
            .await
            .map_err(|_| "a waiter did not wake within 30 s")???;
        match at.checked_duration_since(returned[i]) {
            Some(d) => latencies.push(d),
            None => {
                before += 1;
                latencies.push(Duration::ZERO);
            }
        }
    }
    Ok((latencies, before))
}

/// K waiters joined on one transition, repeated `rounds` times.
pub async fn joined_on_one(
    holder: &Coordinator,
    waiters: &Coordinator,
    target: &(String, String),
    k: usize,
    rounds: usize,
    path: Path,
    stagger: Option<Duration>,
) -> Result<Case> {
    let mut case = Case {
        scenario: format!("{k} waiter(s) on one transition"),
        many: false,
        path,
        transitions: 0,
        per_transition: k,
        latencies: Vec::new(),
        before: 0,
    };
    for _ in 0..rounds {
        let (lat, before) =
            round(holder, waiters, std::slice::from_ref(target), k, stagger).await?;
        case.latencies.extend(lat);
        case.before += before;
        case.transitions += 1;
    }
    Ok(case)
}

/// Every sandbox of `fleet` in flight with `per_sandbox` waiters each.
pub async fn many_sandboxes(
    holder: &Coordinator,
    waiters: &Coordinator,
    fleet: &Fleet,
    per_sandbox: usize,
    path: Path,
    stagger: Option<Duration>,
) -> Result<Case> {
    let (latencies, before) = round(holder, waiters, &fleet.ids, per_sandbox, stagger).await?;
    Ok(Case {
        scenario: format!(
            "{} sandboxes in flight, {per_sandbox} waiters each",
            fleet.ids.len()
        ),
        many: true,
        path,
        transitions: fleet.ids.len(),
        per_transition: per_sandbox,
        latencies,
        before,
    })
}
