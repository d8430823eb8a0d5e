//! The race on a Redis Cluster of 3 masters × 1 replica (native processes,
//! [`crate::support::cluster`]) while faults are injected, one per round,
//! on the master that serves the racing team's slot (`{team-a}`: a busy
//! team):
//!
//! - [`ClusterFault::MasterKill`]: `kill -9` of that master; its replica is
//!   promoted ([`TestCluster::wait_for_failover`]), then the killed node is
//!   restarted and rejoins as the new master's replica (what an operator
//!   restores; until then no write can be confirmed by a replica);
//! - [`ClusterFault::SlotMove`]: the team's slot moves to another master
//!   (`SETSLOT IMPORTING`/`MIGRATING`, `MIGRATE ... KEYS` in batches, then
//!   `SETSLOT NODE`: [`TestCluster::move_slot`]);
//! - [`ClusterFault::ReplicaRestart`]: that master's replica restarts
//!   (without persistence: it comes back empty and resyncs).
//!
//! Every coordinator has `wait_for_replicas(1, ..)`: a call that the
//! replica did not confirm answers `NotReplicated` and is recorded as
//! unknown (it may or may not have taken effect); every answered call must
//! be explained by the sequential model, so an acknowledged transition the
//! failover lost is a violation. A probe counts those directly as well:
//! beside the race, sequential snapshot transitions on sandboxes of their
//! own (same team, same slot), then each probe record read after the fault
//! — a transition whose `succeed` returned `Ok` (replication confirmed)
//! with a fence the record does not reach any more was lost.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Error, Lifecycle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{
    Mix, Outcome, Profile, Recorder, Window, fences_unique, new_sandbox, race_round,
    race_under_way, settles, window_clock,
};
use crate::fixture::TEAM;
use crate::support::cluster::{TestCluster, slot_of};

/// How long a write waits for its replica (`wait_for_replicas(1, ..)`):
/// shorter than a replica's restart or a failover's rejoin, so writes
/// during them answer `NotReplicated` (with 1 s, a 10-minute run saw none:
/// every restarted replica acknowledged within the wait).
pub const REPLICA_WAIT: Duration = Duration::from_millis(250);
/// Bound on each topology change of the harness (failover, restart, move).
const TOPOLOGY_BOUND: Duration = Duration::from_secs(30);
/// Bound on a whole fault (kill + failover + rejoin, or a move).
const FAULT_BOUND: Duration = Duration::from_secs(120);
/// Probe sandboxes per round.
const PROBES: usize = 4;

/// One fault of the cluster soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterFault {
    MasterKill,
    SlotMove,
    ReplicaRestart,
}

impl ClusterFault {
    /// In the order the soak injects them, round after round.
    pub const ALL: [ClusterFault; 3] = [
        ClusterFault::MasterKill,
        ClusterFault::SlotMove,
        ClusterFault::ReplicaRestart,
    ];

    /// The scenario name in the summary table.
    pub fn scenario(self) -> &'static str {
        match self {
            ClusterFault::MasterKill => "cluster-master-kill",
            ClusterFault::SlotMove => "cluster-slot-move",
            ClusterFault::ReplicaRestart => "cluster-replica-restart",
        }
    }
}

/// What the faults did over a run, and what the probes saw.
#[derive(Clone, Debug, Default)]
pub struct FaultTally {
    pub master_kills: u64,
    pub slot_moves: u64,
    pub replica_restarts: u64,
    /// Faults injected while the race still ran (a call of the race
    /// returned after the fault began).
    pub overlapped: u64,
    /// Kill → the cluster healthy with the replica serving the slot.
    pub failover_max: Duration,
    /// Keys of the team's slot moved by MIGRATE, over every move.
    pub keys_moved: u64,
    /// Probe transitions whose `succeed` returned `Ok` (replication confirmed).
    pub acked: u64,
    /// Of those, the ones missing afterwards (the record's last transition
    /// has a smaller fence).
    pub lost: u64,
    /// Calls of the race and the probes answered `NotReplicated`.
    pub not_replicated: u64,
}

impl FaultTally {
    pub fn total(&self) -> u64 {
        self.master_kills + self.slot_moves + self.replica_restarts
    }

    /// The fault and durability rows of the summary.
    pub fn table(&self) -> String {
        let rows = [
            (
                "faults injected: master kill -9, replica promoted",
                self.master_kills.to_string(),
            ),
            (
                "faults injected: slot of the busy team moved (MIGRATE)",
                self.slot_moves.to_string(),
            ),
            (
                "faults injected: replica restarted",
                self.replica_restarts.to_string(),
            ),
            (
                "faults that overlapped the race",
                self.overlapped.to_string(),
            ),
            (
                "max failover (kill to healthy)",
                format!("{:.1?}", self.failover_max),
            ),
            ("keys moved by MIGRATE", self.keys_moved.to_string()),
            (
                "calls answered NotReplicated (unknown)",
                self.not_replicated.to_string(),
            ),
            (
                "probe transitions acknowledged (wait_for_replicas(1))",
                self.acked.to_string(),
            ),
            ("acknowledged transitions lost", self.lost.to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
        let vwidth = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(10);
        let mut out = format!("| {:<width$} | {:>vwidth$} |\n", "fault", "value");
        out.push_str(&format!(
            "|{}|{}:|\n",
            "-".repeat(width + 2),
            "-".repeat(vwidth + 1)
        ));
        for (k, v) in rows {
            out.push_str(&format!("| {k:<width$} | {v:>vwidth$} |\n"));
        }
        out
    }
}

/// The clients' settings on the cluster: short leases (a begin whose
/// answer was lost leaves a lease nobody holds), bounded waits, replies
/// within 2 s (a killed master's clients fail over in about two).
pub fn cluster_mix() -> Mix {
    Mix {
        lease: Duration::from_secs(3),
        hold_ms: (0, 20),
        wait_timeout: Duration::from_secs(6),
        poll: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        ..Mix::default()
    }
}

/// A cluster and the coordinators racing on it, for a whole soak.
pub struct ClusterRun {
    pub cluster: Arc<TestCluster>,
    pub coords: Vec<Coordinator>,
    pub faults: FaultTally,
    mix: Mix,
}

impl ClusterRun {
    /// 3 masters × 1 replica, and `profile.coordinators` coordinators with
    /// `wait_for_replicas(1, REPLICA_WAIT)`.
    pub async fn start(profile: &Profile) -> ClusterRun {
        let cluster = Arc::new(TestCluster::start(3, 1).await);
        let mix = cluster_mix();
        let ns = format!("cs{}", std::process::id());
        let mut coords = Vec::new();
        for _ in 0..profile.coordinators {
            let coord = Coordinator::builder_cluster(cluster.seed_urls())
                .namespace(&ns)
                .poll_interval(mix.poll)
                .connect_timeout(mix.connect_timeout)
                .response_timeout(mix.response_timeout)
                .wait_for_replicas(1, REPLICA_WAIT)
                .build()
                .await
                .expect("a coordinator on the cluster");
            coords.push(coord);
        }
        ClusterRun {
            cluster,
            coords,
            faults: FaultTally::default(),
            mix,
        }
    }

    /// Round `round`: fresh sandboxes, the race, the probes, and `fault`
    /// once a quarter of the race's calls are recorded; then every
    /// sandbox settles, the probes are read back, and the histories
    /// (race and probes) are checked.
    pub async fn round(&mut self, profile: &Profile, fault: ClusterFault, round: usize) -> Outcome {
        let began = Instant::now();
        let mut out = Outcome::new(fault.scenario());
        let window: Window = Arc::default();
        let recorder = fault_recorder(&window);
        let probe_recorder = fault_recorder(&window);

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut driver = {
            let (cluster, rec, p, w) = (
                Arc::clone(&self.cluster),
                recorder.clone(),
                profile.clone(),
                Arc::clone(&window),
            );
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                if !race_under_way(&mut rx, &rec, &p).await {
                    return Err("the round ended before the fault".to_string());
                }
                let from = Instant::now();
                *w.lock().unwrap_or_else(PoisonError::into_inner) = Some((from, None));
                let done = inject(&cluster, fault, round).await;
                if let Some((_, end)) = &mut *w.lock().unwrap_or_else(PoisonError::into_inner) {
                    *end = Some(Instant::now());
                }
                Ok((from, done))
            })
        };
        let (probe_stop, probe_rx) = watch::channel(false);
        let probes = self.start_probes(profile, round, &probe_recorder, probe_rx);

        let mut r = race_round(&self.coords, profile, &self.mix, round, &recorder).await;
        let race_end = r.entries.iter().map(|e| e.returned).max();
        let _ = stop_tx.send(true);
        match tokio::time::timeout(FAULT_BOUND, &mut driver).await {
            Err(_) => {
                driver.abort();
                r.problems
                    .push(format!("{fault:?} did not end within {FAULT_BOUND:?}"))
            }
            Ok(Err(e)) => r.problems.push(format!("{fault:?} failed: {e}")),
            Ok(Ok(Err(why))) => r.problems.push(why),
            Ok(Ok(Ok((from, done)))) => {
                self.count(fault, &done);
                if race_end.is_some_and(|end| end > from) {
                    self.faults.overlapped += 1;
                } else {
                    r.problems
                        .push(format!("{fault:?} began after the race had ended"));
                }
            }
        }
        let _ = probe_stop.send(true);
        let mut acked = Vec::new();
        let mut probes = probes;
        while let Some(done) = probes.join_next().await {
            match done {
                Ok((id, fences, problems)) => {
                    r.problems.extend(problems);
                    acked.push((id, fences));
                }
                Err(e) => r.problems.push(format!("a probe panicked: {e}")),
            }
        }
        r.problems.extend(fences_unique(&r.entries));
        r.problems
            .extend(settles(&self.coords[0], &r.ids, Duration::from_secs(15)).await);
        r.problems
            .extend(self.read_back(&probe_recorder, &acked).await);
        r.entries = recorder.entries();
        r.entries.extend(probe_recorder.entries());
        self.faults.not_replicated += r
            .entries
            .iter()
            .filter(|e| {
                e.error
                    .as_deref()
                    .is_some_and(|m| m.contains("replica") && m.contains("acknowledged"))
            })
            .count() as u64;
        out.absorb(profile, r, &Lifecycle::sandbox());
        out.took = began.elapsed();
        out
    }

    fn count(&mut self, fault: ClusterFault, done: &Injected) {
        match fault {
            ClusterFault::MasterKill => self.faults.master_kills += 1,
            ClusterFault::SlotMove => self.faults.slot_moves += 1,
            ClusterFault::ReplicaRestart => self.faults.replica_restarts += 1,
        }
        self.faults.failover_max = self.faults.failover_max.max(done.failover);
        self.faults.keys_moved += done.keys_moved;
    }

    /// `PROBES` sequential clients, each on a sandbox of its own, running
    /// snapshot transitions (begin, succeed) until told to stop; each
    /// hands back its sandbox, the fences of its acknowledged transitions
    /// and its problems.
    fn start_probes(
        &self,
        profile: &Profile,
        round: usize,
        recorder: &Recorder,
        stop: watch::Receiver<bool>,
    ) -> JoinSet<(String, Vec<u64>, Vec<String>)> {
        let mut set = JoinSet::new();
        for i in 0..PROBES {
            let coord = self.coords[i % self.coords.len()].clone();
            let mut lane = recorder.lane(i % self.coords.len());
            let id = format!("r{round}-probe{i}");
            let (mix, stop) = (self.mix.clone(), stop.clone());
            let _ = profile;
            set.spawn(async move {
                let bound = mix.call_bound();
                let mut acked = Vec::new();
                let mut problems = Vec::new();
                let registered =
                    tokio::time::timeout(bound, lane.register(&coord, new_sandbox(&id, "x-probe")))
                        .await;
                if !matches!(registered, Ok(Ok(_))) {
                    problems.push(format!("probe {id}: register: {registered:?}"));
                    return (id, acked, problems);
                }
                while !*stop.borrow() {
                    let opts = BeginOptions::default()
                        .lease(mix.lease)
                        .wait_timeout(mix.wait_timeout);
                    let begun = tokio::time::timeout(
                        bound,
                        lane.begin(&coord, TEAM, &id, Action::Snapshot, opts),
                    )
                    .await;
                    let answer = match begun {
                        Ok((answer, _)) => answer,
                        Err(_) => {
                            problems.push(format!("probe {id}: begin overran {bound:?}"));
                            return (id, acked, problems);
                        }
                    };
                    match answer {
                        Ok(Begun::Started(t)) => {
                            let fence = t.fence();
                            match tokio::time::timeout(bound, lane.finish(t, None)).await {
                                Ok(Ok(())) => acked.push(fence),
                                Ok(Err(e)) => back_off(&e).await,
                                Err(_) => {
                                    problems.push(format!("probe {id}: succeed overran {bound:?}"));
                                    return (id, acked, problems);
                                }
                            }
                        }
                        Ok(Begun::AlreadyDone(_)) => {}
                        Err(e) => back_off(&e).await,
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (id, acked, problems)
            });
        }
        set
    }

    /// Reads each probe's record back (recorded, so the checker sees it)
    /// and counts the acknowledged transitions it no longer shows.
    async fn read_back(
        &mut self,
        recorder: &Recorder,
        acked: &[(String, Vec<u64>)],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let mut lane = recorder.lane(0);
        for (id, fences) in acked {
            if !fences.windows(2).all(|w| w[0] < w[1]) {
                problems.push(format!("probe {id}: fences not increasing: {fences:?}"));
            }
            self.faults.acked += fences.len() as u64;
            let deadline = Instant::now() + Duration::from_secs(15);
            let record = loop {
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    lane.get(&self.coords[0], TEAM, id),
                )
                .await
                {
                    Ok(Ok(sb)) => break Some(sb),
                    Ok(Err(e)) if e.is_retryable() && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    other => {
                        problems.push(format!("probe {id}: read back: {other:?}"));
                        break None;
                    }
                }
            };
            let Some(record) = record else { continue };
            let reached = record
                .as_ref()
                .and_then(|sb| sb.last.as_ref())
                .map_or(0, |l| l.fence);
            let lost = fences.iter().filter(|&&f| f > reached).count() as u64;
            if lost > 0 {
                problems.push(format!(
                    "probe {id}: {lost} acknowledged transitions lost (acked up to {:?}, \
                     the record's last transition {reached})",
                    fences.last()
                ));
            }
            self.faults.lost += lost;
        }
        problems
    }
}

/// A recorder for a fault round: an unknown answer took effect, if at all,
/// within 3 s of its return (a request to a killed node never runs; a
/// `NotReplicated` write ran on the primary before its reply); calls
/// running while the fault's window was open, or within 1 s of its end,
/// may have been retried.
fn fault_recorder(window: &Window) -> Recorder {
    let recorder = Recorder::new();
    recorder.settle_unknown_within(Duration::from_secs(3));
    recorder.faults_from(window_clock(window, Duration::from_secs(1)));
    recorder
}

async fn back_off(e: &Error) {
    let pause = if e.is_retryable() { 100 } else { 20 };
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

/// What one injected fault measured.
#[derive(Default)]
struct Injected {
    failover: Duration,
    keys_moved: u64,
}

/// Injects `fault` on the master serving the racing team's slot and
/// returns once the cluster is healthy again (every step bounded by the
/// harness; it panics, failing the driver task, if one overruns).
async fn inject(cluster: &TestCluster, fault: ClusterFault, round: usize) -> Injected {
    let slot = slot_of(TEAM);
    match fault {
        ClusterFault::MasterKill => {
            let killed = cluster.kill_master_of(slot).await;
            let failover = cluster.wait_for_failover(slot, TOPOLOGY_BOUND).await;
            cluster.restart_node(killed.port, TOPOLOGY_BOUND).await;
            Injected {
                failover: failover.healthy_after,
                keys_moved: 0,
            }
        }
        ClusterFault::SlotMove => {
            let owner = cluster.master_for_slot(slot);
            let others: Vec<_> = cluster
                .masters()
                .into_iter()
                .filter(|m| m.id != owner.id)
                .collect();
            let to = &others[round % others.len()];
            let report = cluster.move_slot(slot, &to.id).await;
            Injected {
                failover: Duration::ZERO,
                keys_moved: report.keys as u64,
            }
        }
        ClusterFault::ReplicaRestart => {
            let owner = cluster.master_for_slot(slot);
            let replica = cluster
                .replicas_of(&owner.id)
                .into_iter()
                .next()
                .expect("the team's master has a replica");
            cluster.restart_node(replica.port, TOPOLOGY_BOUND).await;
            Injected::default()
        }
    }
}
