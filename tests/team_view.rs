//! Team views against a real Redis: a view starts from a snapshot and
//! applies the team's announcements in order; after a random history from
//! several coordinators with a fault (subscriptions killed, Redis paused,
//! Redis restarted without persistence, on a cluster a master killed and
//! its replica promoted) it equals `list()` once the team is quiet, within
//! a bounded wait; a reader sampling it meanwhile never sees a fence go
//! down; a missed announcement is found and the team re-read (counted);
//! while Redis is unreachable the view answers from its last state and
//! says since when.

mod fixture;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fixture::{TEAM, coordinator, coordinator_with, raw, sandbox, wait_until};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, NewSandbox, State, TeamView, ViewUpdate,
    ViewedSandbox,
};
use support::{Capability, TestRedis};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

/// What a view and `list()` must agree on, per sandbox.
type Row = (String, String, State, u64, u64);

fn from_view(v: &[ViewedSandbox]) -> Vec<Row> {
    v.iter()
        .map(|s| {
            (
                s.id.clone(),
                s.execution.clone(),
                s.state,
                s.fence,
                s.end_ms,
            )
        })
        .collect()
}

async fn listed(coord: &Coordinator) -> Vec<Row> {
    coord
        .list(TEAM)
        .await
        .expect("list")
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                s.execution.clone(),
                s.state,
                s.fence,
                s.end_ms(),
            )
        })
        .collect()
}

/// Waits (bounded) until `view` equals `list()`, and returns how long it took.
async fn converges(view: &TeamView, coord: &Coordinator, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let truth = listed(coord).await;
    loop {
        if from_view(&view.list()) == truth {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the view never equalled list() within {limit:?}:\nview {:?}\nlist {truth:?}",
            from_view(&view.list())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn pause(coord: &Coordinator, id: &str) -> u64 {
    match coord
        .begin(TEAM, id, Action::Pause, BeginOptions::default())
        .await
        .expect("begin")
    {
        Begun::Started(t) => {
            let fence = t.fence();
            t.succeed().await.expect("succeed");
            fence
        }
        Begun::AlreadyDone(d) => panic!("nothing started: {d:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_applies_another_coordinators_changes_in_order() {
    let redis = TestRedis::start().await;
    let (a, b) = (coordinator(&redis).await, coordinator(&redis).await);
    b.register(sandbox("s0", "e0")).await.unwrap();
    let view = a.team_view(TEAM).await.unwrap();
    assert_eq!(from_view(&view.list()), listed(&b).await, "the snapshot");
    let start = view.seq();
    let mut updates = view.updates();

    b.register(sandbox("s1", "e1")).await.unwrap();
    let fence = pause(&b, "s1").await;
    b.remove(TEAM, "s0").await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let u = tokio::time::timeout(Duration::from_secs(5), updates.next())
            .await
            .expect("an update");
        seen.push(match u {
            ViewUpdate::Sandbox(s) => format!("{} {} {}", s.id, s.state, s.fence),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "s1 running 0".to_string(),
            format!("s1 pausing {fence}"),
            format!("s1 paused {fence}"),
            "Removed(\"s0\")".to_string(),
        ]
    );
    assert_eq!(view.seq(), start + 4, "one sequence number per change");
    assert_eq!(from_view(&view.list()), listed(&b).await);
    assert_eq!(view.get("s1").unwrap().state, State::Paused);
    assert_eq!(view.count().paused, 1);
    assert_eq!(view.resyncs().get("gap"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_announcement_is_found_and_the_team_re_read() {
    let redis = TestRedis::start().await;
    let (a, b) = (coordinator(&redis).await, coordinator(&redis).await);
    let view = a.team_view(TEAM).await.unwrap();
    view.skip_next_announcement();
    b.register(sandbox("s1", "e1")).await.unwrap(); // its announcement is lost
    b.register(sandbox("s2", "e2")).await.unwrap(); // the gap shows here
    wait_until("the re-read after the gap", Duration::from_secs(5), || {
        view.resyncs().get("gap") == Some(&1)
    })
    .await;
    converges(&view, &b, Duration::from_secs(5)).await;
    assert!(view.get("s1").is_some(), "the lost change is in the view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_last_announcement_is_found_by_the_poll() {
    let redis = TestRedis::start().await;
    let (a, b) = (coordinator(&redis).await, coordinator(&redis).await);
    let view = a.team_view(TEAM).await.unwrap();
    view.skip_next_announcement();
    b.register(sandbox("s1", "e1")).await.unwrap(); // lost, and nothing follows
    // The fixture's poll interval is 200 ms.
    let took = converges(&view, &b, Duration::from_secs(3)).await;
    assert_eq!(view.resyncs().get("poll"), Some(&1), "{:?}", view.resyncs());
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_of_one_team_share_one_model_and_go_when_dropped() {
    let redis = TestRedis::start().await;
    let a = coordinator(&redis).await;
    let v1 = a.team_view(TEAM).await.unwrap();
    let v2 = a.team_view(TEAM).await.unwrap();
    assert_eq!(a.team_views(), 1);
    a.register(sandbox("s1", "e1")).await.unwrap();
    wait_until("the change in both", Duration::from_secs(5), || {
        v1.get("s1").is_some() && v2.get("s1").is_some()
    })
    .await;
    assert_eq!(v1.resyncs().get("start"), Some(&1), "one snapshot for both");
    drop(v1);
    assert_eq!(a.team_views(), 1);
    drop(v2);
    assert_eq!(a.team_views(), 0);
}

/// One random step of a history on sandboxes s0..s5 of `team` (errors
/// are part of a history under faults: ignored).
async fn step(coord: &Coordinator, team: &str, rng: &mut u64) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let id = format!("s{}", *rng % 6);
    let exec = format!("e{}", (*rng >> 8) % 1000);
    let new = NewSandbox {
        team: team.into(),
        ..sandbox(&id, &exec)
    };
    let opts = BeginOptions::default().wait_timeout(Duration::from_millis(500));
    let action = [Action::Pause, Action::Kill, Action::Snapshot][((*rng >> 20) % 3) as usize];
    match (*rng >> 4) % 6 {
        0 => {
            let _ = coord.register(new).await;
        }
        1 => {
            let _ = coord.remove(team, &id).await;
        }
        2 => {
            let end = std::time::SystemTime::now() + Duration::from_secs(60 + *rng % 1000);
            let _ = coord.set_end_time(team, &id, end, None).await;
        }
        3 => {
            if let Ok(r) = coord.reserve(team, &id, Duration::from_millis(300)).await {
                let _ = r.release().await;
            }
        }
        _ => {
            if let Ok(Begun::Started(t)) = coord.begin(team, &id, action, opts).await {
                if (*rng >> 30).is_multiple_of(4) {
                    let _ = t.fail("test").await;
                } else {
                    let _ = t.succeed().await;
                }
            }
        }
    }
}

/// A reader sampling `view` until `stop`: per sandbox, the fences it sees
/// only grow. A record that went and came back starts again at fence 0,
/// and its next transitions are above every fence of the id before (the
/// team's floor, and the server clock across lost data). Returns how many
/// samples it took, or the first fence that went back.
fn spawn_reader(view: TeamView, stop: Arc<AtomicBool>) -> JoinHandle<Result<u64, String>> {
    tokio::spawn(async move {
        let mut highest: HashMap<String, u64> = HashMap::new();
        let mut samples = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for s in view.list() {
                let top = highest.entry(s.id.clone()).or_default();
                if s.fence < *top && s.fence != 0 {
                    return Err(format!(
                        "{} ({}) went back from fence {top} to {} after {samples} samples",
                        s.id, s.execution, s.fence
                    ));
                }
                *top = (*top).max(s.fence);
            }
            samples += 1;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(samples)
    })
}

/// Stops the readers and asserts none saw a fence go back.
async fn readers_saw_fences_only_grow(
    readers: Vec<JoinHandle<Result<u64, String>>>,
    stop: &AtomicBool,
) {
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let samples = r
            .await
            .expect("a reader panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(samples > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_random_history_with_a_killed_subscription_every_view_equals_list() {
    let redis = TestRedis::start().await;
    let coords = fixture::coordinators(&redis, 3).await;
    let mut views = Vec::new();
    for c in &coords {
        views.push(c.team_view(TEAM).await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = views
        .iter()
        .map(|v| spawn_reader(v.clone(), Arc::clone(&stop)))
        .collect();
    let mut killer = redis.client().await;
    let mut coords = coords;
    for phase in 0..2 {
        let workers: Vec<_> = coords
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                tokio::spawn(async move {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1 + 10 * phase);
                    for _ in 0..100 {
                        step(&c, TEAM, &mut rng).await;
                    }
                    c
                })
            })
            .collect();
        if phase == 1 {
            // Mid-way through the second half: the subscriptions are cut.
            tokio::time::sleep(Duration::from_millis(20)).await;
            raw(&mut killer, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        }
        coords = Vec::new();
        for w in workers {
            coords.push(w.await.unwrap());
        }
    }
    for v in &views {
        wait_until("a re-read after the kill", Duration::from_secs(5), || {
            v.resyncs()
                .iter()
                .any(|(cause, n)| *cause != "start" && *n > 0)
        })
        .await;
    }
    // Quiet: every view equals list() within about one poll interval
    // (200 ms) plus a re-read.
    for v in &views {
        let took = converges(v, &coords[0], Duration::from_secs(3)).await;
        eprintln!("converged after {took:?}; resyncs {:?}", v.resyncs());
    }
    readers_saw_fences_only_grow(readers, &stop).await;
    assert!(views[0].seq() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_answers_while_redis_is_unreachable_and_says_since_when() {
    let redis = TestRedis::start_with_args(&["--enable-debug-command", "yes"]).await;
    let a = coordinator_with(&redis, |b| {
        b.response_timeout(Duration::from_millis(300))
            .health_check_interval(Duration::from_millis(300))
    })
    .await;
    a.register(sandbox("s1", "e1")).await.unwrap();
    let view = a.team_view(TEAM).await.unwrap();
    assert_eq!(view.stale_since(), None);
    // Redis stops answering for 2 s.
    let mut other = redis.client().await;
    let sleeper = tokio::spawn(async move {
        raw(&mut other, &["DEBUG", "SLEEP", "2"]).await;
    });
    wait_until(
        "the view to say it is stale",
        Duration::from_secs(2),
        || view.stale_since().is_some(),
    )
    .await;
    assert_eq!(view.get("s1").map(|s| s.state), Some(State::Running));
    assert_eq!(view.list().len(), 1, "reads answer from the last state");
    sleeper.await.unwrap();
    wait_until("the view to catch up", Duration::from_secs(10), || {
        view.stale_since().is_none()
    })
    .await;
    converges(&view, &a, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_on_a_cluster_follows_its_team_through_a_slot_move() {
    use support::cluster::{ClusterOptions, TestCluster, slot_of};
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 0)).await;
    let ns = format!("tv{}", std::process::id());
    let on_cluster = || async {
        Coordinator::builder_cluster(cluster.seed_urls())
            .namespace(ns.as_str())
            .poll_interval(Duration::from_millis(200))
            .build()
            .await
            .expect("a coordinator on the cluster")
    };
    let (writer, viewer) = (on_cluster().await, on_cluster().await);
    let team = cluster.teams_on_every_master(1).remove(0);
    let new = |id: &str| sandbox_coordinator::NewSandbox {
        team: team.clone(),
        ..sandbox(id, "e1")
    };
    writer.register(new("s1")).await.unwrap();
    let view = viewer.team_view(&team).await.unwrap();
    assert_eq!(view.list().len(), 1);
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| !m.owns(slot_of(&team)))
        .unwrap();
    let mover = cluster.move_slot(slot_of(&team), &to.id);
    let writes = async {
        for i in 2..12 {
            // Through the move: retryable errors are retried.
            for _ in 0..50 {
                match writer.register(new(&format!("s{i}"))).await {
                    Ok(_) => break,
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    };
    tokio::join!(mover, writes);
    let start = tokio::time::Instant::now();
    loop {
        let truth: Vec<Row> = writer
            .list(&team)
            .await
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.execution.clone(),
                    s.state,
                    s.fence,
                    s.end_ms(),
                )
            })
            .collect();
        if from_view(&view.list()) == truth {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the view never caught up: {:?} vs {truth:?} ({:?})",
            from_view(&view.list()),
            view.resyncs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(view.list().len(), 11);
}

// ----- views through faults -------------------------------------------------------------

/// Steps of the history before the fault (in all) and after it (each
/// coordinator), and the bound on one step.
const BEFORE_FAULT: usize = 30;
const AFTER_FAULT: usize = 30;
const STEP_BOUND: Duration = Duration::from_secs(15);

/// A random history on `team` from every coordinator, with `fault`
/// injected once `BEFORE_FAULT` steps are done (the steps go on meanwhile,
/// failing or not); after the fault each coordinator takes `AFTER_FAULT`
/// more. Every step holds `gate` for reading, so a fault can hold the
/// history still for a moment. Every step is bounded.
async fn history_with_fault(
    coords: &[Coordinator],
    team: &str,
    gate: Arc<RwLock<()>>,
    fault: impl std::future::Future<Output = ()>,
) {
    let done = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = coords
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, c)| {
            let (team, gate) = (team.to_string(), Arc::clone(&gate));
            let (done, over) = (Arc::clone(&done), Arc::clone(&over));
            tokio::spawn(async move {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 101);
                let mut after = 0;
                while after < AFTER_FAULT {
                    if over.load(Ordering::SeqCst) {
                        after += 1;
                    }
                    let _step = gate.read().await;
                    tokio::time::timeout(STEP_BOUND, step(&c, &team, &mut rng))
                        .await
                        .expect("a step of the history hung");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_until("the history under way", Duration::from_secs(10), || {
        done.load(Ordering::SeqCst) >= BEFORE_FAULT
    })
    .await;
    fault.await;
    over.store(true, Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("the history ended")
            .expect("a step panicked");
    }
}

/// Three coordinators for a history with faults: short timeouts, so calls
/// under a fault fail soon, and the fixture's 200 ms poll.
async fn coordinators_for_faults(url: &str, namespace: &str) -> Vec<Coordinator> {
    let mut coords = Vec::new();
    for _ in 0..3 {
        coords.push(
            Coordinator::builder(url)
                .namespace(namespace)
                .poll_interval(Duration::from_millis(200))
                .connect_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_millis(500))
                .health_check_interval(Duration::from_millis(300))
                .build()
                .await
                .expect("a coordinator"),
        );
    }
    coords
}

/// `team` as `list()` reads it.
async fn listed_in(
    coord: &Coordinator,
    team: &str,
) -> Result<Vec<Row>, sandbox_coordinator::Error> {
    Ok(coord
        .list(team)
        .await?
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                s.execution.clone(),
                s.state,
                s.fence,
                s.end_ms(),
            )
        })
        .collect())
}

/// Each coordinator holds a view of `team` and a reader samples it while
/// the history with `fault` runs. Then, quiet: every view equals `list()`
/// exactly (ids, executions, states, fences, end times) within `bound`,
/// and no reader saw a fence go back. With `resync`, every view must have
/// re-read the team after the fault (a fault its subscription saw).
async fn views_through_a_fault(
    coords: &[Coordinator],
    team: &str,
    gate: Arc<RwLock<()>>,
    fault: impl std::future::Future<Output = ()>,
    resync: bool,
) {
    let mut views = Vec::new();
    for c in coords {
        views.push(c.team_view(team).await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = views
        .iter()
        .map(|v| spawn_reader(v.clone(), Arc::clone(&stop)))
        .collect();
    history_with_fault(coords, team, gate, fault).await;
    if resync {
        for v in &views {
            wait_until("a re-read after the fault", Duration::from_secs(5), || {
                v.resyncs()
                    .iter()
                    .any(|(cause, n)| *cause != "start" && *n > 0)
            })
            .await;
        }
    }
    // Quiet: within about one poll interval (200 ms) plus a re-read.
    let bound = Duration::from_secs(3);
    let start = tokio::time::Instant::now();
    let mut truth = Vec::new();
    for v in &views {
        loop {
            match listed_in(&coords[0], team).await {
                Ok(rows) if from_view(&v.list()) == rows => {
                    truth = rows;
                    break;
                }
                Ok(rows) => truth = rows,
                Err(e) => eprintln!("list after the fault: {e}"),
            }
            assert!(
                start.elapsed() < bound,
                "a view never equalled list() within {bound:?}:\nview {:?}\nlist {truth:?}\n\
                 resyncs {:?}",
                from_view(&v.list()),
                v.resyncs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!(
        "every view equalled list() ({} sandboxes) {:?} after the history; resyncs {:?}",
        truth.len(),
        start.elapsed(),
        views.iter().map(|v| v.resyncs()).collect::<Vec<_>>()
    );
    readers_saw_fences_only_grow(readers, &stop).await;
}

/// Redis frozen (`docker pause`) for 1.5 s in the middle of a history from
/// three coordinators — longer than their response timeout and health
/// check: once quiet every view equals `list()`, and no reader of a view
/// saw a fence go back. Needs the container backend (skipped, and reported
/// as skipped, on the native one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_pause_after_a_history_with_redis_paused_every_view_equals_list() {
    support::require(Capability::Pause);
    let redis = TestRedis::start().await;
    redis.require(Capability::Pause);
    let coords = coordinators_for_faults(&redis.url(), &redis.namespace()).await;
    let fault = async {
        redis.pause().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.unpause().await;
    };
    views_through_a_fault(&coords, TEAM, Arc::default(), fault, false).await;
}

/// Redis restarted without persistence in the middle of a history from
/// three coordinators (through a proxy that follows a container's new
/// port): every record and the team's sequence are lost, so the views'
/// sequence is ahead of Redis's. Once quiet every view equals `list()`, and
/// no reader saw a fence go back (a lost record comes back at fence 0, its
/// next fence above the old ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_after_a_history_with_a_redis_restart_every_view_equals_list() {
    support::require(Capability::Restart);
    let redis = TestRedis::start_with_args(&["--save", "", "--appendonly", "no"]).await;
    redis.require(Capability::Restart);
    let chaos = fixture::chaos::Chaos::start(&redis.url()).await;
    let coords = coordinators_for_faults(&chaos.url(), &redis.namespace()).await;
    let fault = async {
        redis.restart().await;
        chaos.retarget(&redis.url());
        // Connections still open to the old server are dead: cut them.
        chaos.sever();
    };
    views_through_a_fault(&coords, TEAM, Arc::default(), fault, true).await;
}

/// On a cluster (3 masters, a replica each), the master of the team's slot
/// killed in the middle of a history from three coordinators and its
/// replica promoted. The kill comes while no step is in flight and once the
/// replica has every write (`WAIT`): a failover that loses acknowledged
/// writes would take back fences a view has shown, which no view can
/// avoid. Once quiet every view equals `list()`, and no reader saw a fence
/// go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_history_with_a_master_killed_on_a_cluster_every_view_equals_list() {
    use support::cluster::{TestCluster, slot_of};
    let cluster = TestCluster::start(3, 1).await;
    let ns = format!("tf{}", std::process::id());
    let mut coords = Vec::new();
    for _ in 0..3 {
        coords.push(
            Coordinator::builder_cluster(cluster.seed_urls())
                .namespace(ns.as_str())
                .poll_interval(Duration::from_millis(200))
                .connect_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(1))
                .build()
                .await
                .expect("a coordinator on the cluster"),
        );
    }
    let team = cluster.teams_on_every_master(1).remove(0);
    let slot = slot_of(&team);
    let gate: Arc<RwLock<()>> = Arc::default();
    let fault = {
        let (gate, cluster, team) = (Arc::clone(&gate), &cluster, team.clone());
        async move {
            let still = gate.write().await;
            let master = cluster.master_for_slot(slot);
            let mut conn = cluster.node_connection(master.port).await;
            let probe = format!("{{{team}}}:failover-probe");
            raw(&mut conn, &["SET", &probe, "1"]).await;
            assert_eq!(
                raw(&mut conn, &["WAIT", "1", "5000"]).await,
                ["1"],
                "the replica has every write"
            );
            cluster.kill_master_of(slot).await;
            drop(still);
            let failover = cluster
                .wait_for_failover(slot, Duration::from_secs(30))
                .await;
            eprintln!(
                "replica promoted {:?} after the kill",
                failover.promoted_after
            );
        }
    };
    views_through_a_fault(&coords, &team, gate, fault, true).await;
}
