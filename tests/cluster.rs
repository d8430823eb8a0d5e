//! Redis Cluster (issue 9): a real cluster of native servers (3 masters,
//! replicas where the scenario needs them) started and torn down by each
//! test. Every operation works unchanged with teams on every master; races
//! stay linearizable; notices are sharded pub/sub only, and a server
//! receives the notices of the teams it waits on, not the fleet's; a master
//! killed under load loses no acknowledged transition with
//! `wait_for_replicas`; a slot moved while transitions run loses or doubles
//! nothing and strands no waiter.

mod fixture;
mod history;
mod support;

use fixture::started;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fixture::sandbox;
use history::workload::{self, Profile};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, DoneReason, Error, NewSandbox, State,
};
use support::cluster::{ClusterOptions, TestCluster, slot_of};
use tokio::time::{Instant, timeout};

const BOUND: Duration = Duration::from_secs(30);

fn in_team(team: &str, id: &str) -> NewSandbox {
    NewSandbox {
        team: team.into(),
        ..sandbox(id, "e1")
    }
}

async fn on_cluster(cluster: &TestCluster, ns: &str, poll: Duration) -> Coordinator {
    Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(ns)
        .poll_interval(poll)
        .build()
        .await
        .expect("a coordinator on the cluster")
}

/// Retries a call through a failover or a reshard (retryable errors only),
/// bounded.
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

// ----- every operation, sharded notifications ---------------------------------------

/// With teams on every master: register, pause with a joiner woken by a
/// notification (the poll is 30 s), kill absorbed, snapshot failed, list,
/// count, team limit, reservation, fleet-wide eviction, repair — and the
/// servers' command statistics show `spublish`, never `publish`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_works_on_a_cluster_with_teams_on_every_master() {
    let cluster = TestCluster::start(3, 1).await;
    let ns = format!("cl{}", std::process::id());
    let coord = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    let joiner = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    assert!(coord.is_cluster());
    let teams = cluster.teams_on_every_master(1);
    assert_eq!(teams.len(), 3);
    cluster.reset_stats().await;
    let mut wakeups = Vec::new();
    for team in &teams {
        coord.register(in_team(team, "s1")).await.unwrap();
        coord.register(in_team(team, "s2")).await.unwrap();
        let pause = started(
            coord
                .begin(team, "s1", Action::Pause, BeginOptions::default())
                .await
                .unwrap(),
        );
        let fence = pause.fence();
        let (j, t) = (joiner.clone(), team.clone());
        let join = tokio::spawn(async move {
            let got = j
                .begin(&t, "s1", Action::Pause, BeginOptions::default())
                .await;
            (got, Instant::now())
        });
        fixture::parked_n(&joiner, 1).await;
        fixture::wait_until("the team subscribed", BOUND, || joiner.subscriptions() >= 1).await;
        let t0 = Instant::now();
        pause.succeed().await.unwrap();
        let (got, at) = timeout(Duration::from_secs(5), join)
            .await
            .expect("the joiner was not woken by a notification (poll is 30 s)")
            .unwrap();
        wakeups.push(at - t0);
        assert!(
            matches!(got, Ok(Begun::AlreadyDone(ref d)) if d.why == DoneReason::Joined { fence }),
            "{got:?}"
        );
        match coord
            .begin(team, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap()
        {
            Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
            Begun::Started(t) => panic!("kill of a paused sandbox started {}", t.fence()),
        }
        started(
            coord
                .begin(team, "s2", Action::Snapshot, BeginOptions::default())
                .await
                .unwrap(),
        )
        .fail("disk full")
        .await
        .unwrap();
        let list: Vec<String> = coord
            .list(team)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(list, ["s1", "s2"]);
        let count = coord.count(team).await.unwrap();
        assert_eq!((count.live, count.paused), (1, 1));
        coord.set_team_limit(team, Some(2)).await.unwrap();
        let r = coord
            .reserve(team, "s3", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(matches!(
            coord.register(in_team(team, "s4")).await,
            Err(Error::TeamLimit {
                live: 2,
                limit: 2,
                ..
            })
        ));
        r.register(in_team(team, "s3")).await.unwrap();
        coord.set_team_limit(team, None).await.unwrap();
        coord
            .register(NewSandbox {
                end_time: (SystemTime::now() - Duration::from_secs(5)).into(),
                ..in_team(team, "due")
            })
            .await
            .unwrap();
    }
    eprintln!("notification wake-ups on the cluster: {wakeups:?}");
    let mut due = coord.due_for_eviction_all(100).await.unwrap();
    due.sort();
    let mut want: Vec<(String, String)> = teams.iter().map(|t| (t.clone(), "due".into())).collect();
    want.sort();
    assert_eq!(due, want);
    let report = coord.repair(true).await.unwrap();
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.teams, 3);

    let stats = cluster.commandstats_all().await;
    eprintln!("commandstats over all nodes: {stats:?}");
    assert!(
        stats.get("spublish").copied().unwrap_or(0) >= 3,
        "{stats:?}"
    );
    assert_eq!(
        stats.get("publish").copied().unwrap_or(0),
        0,
        "a cluster-wide PUBLISH ran"
    );
    assert!(
        stats.get("ssubscribe").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.get("subscribe").copied().unwrap_or(0), 0);
}

/// The race-and-fault suite's race, recorded and checked for
/// linearizability, with four coordinators on a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_a_cluster_are_linearizable() {
    let cluster = TestCluster::start(3, 0).await;
    let ns = format!("cr{}", std::process::id());
    let mut coords = Vec::new();
    for _ in 0..4 {
        coords.push(on_cluster(&cluster, &ns, Duration::from_millis(200)).await);
    }
    let out = workload::race_on(&coords, &Profile::ci(), "cluster-race").await;
    out.assert_clean();
    assert!(out.tally.started > 0 && out.tally.joined + out.tally.absorbed > 0);
}

/// The team-limit race on a cluster: 64 concurrent registers from 4
/// coordinators under a limit of 10 give exactly 10 sandboxes, for a team
/// on each master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_race_on_a_cluster_gives_exactly_the_limit() {
    let cluster = TestCluster::start(3, 0).await;
    let ns = format!("cl{}", std::process::id());
    let mut coords = Vec::new();
    for _ in 0..4 {
        coords.push(on_cluster(&cluster, &ns, Duration::from_secs(1)).await);
    }
    for team in cluster.teams_on_every_master(1) {
        coords[0].set_team_limit(&team, Some(10)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (coord, barrier, team) =
                    (coords[i % 4].clone(), Arc::clone(&barrier), team.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    coord.register(in_team(&team, &format!("s{i}"))).await
                })
            })
            .collect();
        let (mut created, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => created += 1,
                Err(Error::TeamLimit {
                    live: 10,
                    limit: 10,
                    ..
                }) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        eprintln!("cluster limit race on {team}: {created} created, {refused} refused");
        assert_eq!((created, refused), (10, 54));
        assert_eq!(coords[2].count(&team).await.unwrap().live, 10);
    }
}

// ----- notification traffic ---------------------------------------------------------

/// Transitions run on 8 teams; each of 8 servers waits on one team only.
/// A server receives the notices of the team it waits on — about 1/8 of
/// the fleet's — and one server alone receives the same share: its traffic
/// grows with its own waiters, not with the fleet's transitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_receives_only_the_notices_of_the_teams_it_waits_on() {
    let cluster = TestCluster::start(3, 0).await;
    let ns = format!("cn{}", std::process::id());
    let holder = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    let teams: Vec<String> = (0..8).map(|i| format!("team-{i}")).collect();
    const ROUNDS: usize = 5;
    for team in &teams {
        for r in 0..ROUNDS {
            holder
                .register(in_team(team, &format!("s{r}")))
                .await
                .unwrap();
        }
    }
    let mut per_transition = BTreeMap::new();
    for servers in [1usize, 8] {
        let mut waiting = Vec::new();
        for _ in 0..servers {
            waiting.push(on_cluster(&cluster, &ns, Duration::from_secs(30)).await);
        }
        let before: Vec<u64> = waiting.iter().map(|c| c.notifications_received()).collect();
        let mut transitions = 0u64;
        for r in 0..ROUNDS {
            let id = format!("s{r}");
            let action = if servers == 1 {
                Action::Snapshot
            } else {
                Action::Pause
            };
            for (i, team) in teams.iter().enumerate() {
                let t = started(
                    holder
                        .begin(team, &id, action, BeginOptions::default())
                        .await
                        .unwrap(),
                );
                transitions += 1;
                // Server i (if there is one) joins team i's transition.
                let join = waiting.get(i).map(|c| {
                    let (c, team, id) = (c.clone(), team.clone(), id.clone());
                    tokio::spawn(async move {
                        c.begin(&team, &id, action, BeginOptions::default()).await
                    })
                });
                if let Some(c) = waiting.get(i) {
                    fixture::parked_n(c, 1).await;
                    fixture::wait_until("subscribed", BOUND, || c.subscriptions() >= 1).await;
                }
                t.succeed().await.unwrap();
                if let Some(j) = join {
                    let got = timeout(Duration::from_secs(5), j).await.unwrap().unwrap();
                    assert!(matches!(got, Ok(Begun::AlreadyDone(_))), "{got:?}");
                }
            }
        }
        let received: Vec<u64> = waiting
            .iter()
            .zip(&before)
            .map(|(c, b)| c.notifications_received() - b)
            .collect();
        let mean = received.iter().sum::<u64>() as f64 / servers as f64 / transitions as f64;
        eprintln!(
            "{servers} server(s): {transitions} transitions, notices received per server {received:?}, \
             {mean:.3} per server per transition"
        );
        for r in &received {
            assert!(
                *r <= 2 * ROUNDS as u64,
                "a server received {r} notices for {ROUNDS} of its team's transitions"
            );
        }
        per_transition.insert(servers, mean);
    }
    assert!(
        per_transition[&8] < 0.3 && per_transition[&1] < 0.3,
        "{per_transition:?}"
    );
}

// ----- failover -----------------------------------------------------------------------

/// What a load run saw.
#[derive(Default)]
struct Load {
    /// Per sandbox: the fences of acknowledged transitions, in order.
    acked: HashMap<String, Vec<u64>>,
    /// Acknowledged transitions started before / after the kill.
    before_kill: u64,
    after_kill: u64,
    /// Errors by the start of their message.
    errors: BTreeMap<String, u64>,
    first_ack_after_kill: Option<Instant>,
}

async fn load_until(
    coord: &Coordinator,
    team: &str,
    ids: &[String],
    killed: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    load: Arc<Mutex<Load>>,
) {
    let mut tasks = Vec::new();
    for id in ids {
        let (coord, team, id, killed, stop, load) = (
            coord.clone(),
            team.to_string(),
            id.clone(),
            Arc::clone(&killed),
            Arc::clone(&stop),
            Arc::clone(&load),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    match coord
                        .begin(
                            &team,
                            &id,
                            Action::Snapshot,
                            BeginOptions::default().wait_timeout(Duration::from_secs(5)),
                        )
                        .await?
                    {
                        Begun::Started(t) => {
                            let fence = t.fence();
                            t.succeed().await?;
                            Ok(Some(fence))
                        }
                        Begun::AlreadyDone(_) => Ok::<_, Error>(None),
                    }
                }
                .await;
                let failed = result.is_err();
                {
                    let mut l = load.lock().unwrap();
                    match result {
                        Ok(Some(fence)) => {
                            l.acked.entry(id.clone()).or_default().push(fence);
                            if killed.lock().unwrap().is_some() {
                                l.after_kill += 1;
                                l.first_ack_after_kill.get_or_insert_with(Instant::now);
                            } else {
                                l.before_kill += 1;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            assert!(
                                e.is_retryable() || e.is_interruption(),
                                "a final error during failover: {e:?}"
                            );
                            let kind: String = e.to_string().chars().take(48).collect();
                            *l.errors.entry(kind).or_default() += 1;
                        }
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        timeout(Duration::from_secs(120), t).await.unwrap().unwrap();
    }
}

async fn master_killed_under_load(replicated: bool) -> (Load, Duration, u64) {
    let cluster = TestCluster::start(3, 1).await;
    let ns = format!("cf{}", std::process::id());
    let mut builder = Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(&ns)
        .poll_interval(Duration::from_millis(200))
        .response_timeout(Duration::from_secs(2));
    if replicated {
        builder = builder.wait_for_replicas(1, Duration::from_secs(2));
    }
    let coord = builder.build().await.unwrap();
    let team = cluster.teams_on_every_master(1).remove(0);
    let ids: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    for id in &ids {
        coord.register(in_team(&team, id)).await.unwrap();
    }
    let killed = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Mutex::new(Load::default()));
    let runner = {
        let (coord, team, ids, killed, stop, load) = (
            coord.clone(),
            team.clone(),
            ids.clone(),
            Arc::clone(&killed),
            Arc::clone(&stop),
            Arc::clone(&load),
        );
        tokio::spawn(async move { load_until(&coord, &team, &ids, killed, stop, load).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slot = slot_of(&team);
    let kill_at = Instant::now();
    cluster.kill_master_of(slot).await;
    *killed.lock().unwrap() = Some(kill_at);
    let failover = cluster
        .wait_for_failover(slot, Duration::from_secs(30))
        .await;
    eprintln!(
        "failover: promoted after {:?}, healthy after {:?}",
        failover.promoted_after, failover.healthy_after
    );
    // The dead master comes back as the new master's replica (what an
    // operator restores): only then can writes be acknowledged by a
    // replica again; until then they are NotReplicated (retryable).
    if replicated {
        let rejoined = cluster
            .restart_node(failover.killed.port, Duration::from_secs(30))
            .await;
        eprintln!("the killed master rejoined as a replica {rejoined:?} after its restart");
    }
    // Run on until the same coordinator has acknowledged plenty more.
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.lock().unwrap().after_kill < 40 {
        assert!(Instant::now() < deadline, "the coordinator never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    runner.await.unwrap();
    let load = Arc::try_unwrap(load).ok().unwrap().into_inner().unwrap();
    let recovery = load.first_ack_after_kill.unwrap() - kill_at;
    // What the promoted replica holds: each sandbox's last acknowledged
    // transition, or it was lost.
    let mut lost = 0;
    for id in &ids {
        let sb = retrying("get", || coord.get(&team, id)).await.unwrap();
        let acked = load
            .acked
            .get(id)
            .and_then(|f| f.last().copied())
            .unwrap_or(0);
        let recorded = sb.last.as_ref().map_or(0, |l| l.fence);
        if recorded < acked {
            lost += 1;
        }
        // Fences stay strictly increasing through the failover.
        let fences = &load.acked[id];
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "{id}: {fences:?}");
    }
    (load, recovery, lost)
}

/// `kill -9` of the master owning a team's slot while transitions run on
/// it, with `wait_for_replicas(1, ..)`: errors during the switch are
/// retryable, the same coordinator recovers, no acknowledged transition is
/// lost, and fences keep increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_loses_no_acknowledged_transition() {
    let (load, recovery, lost) = master_killed_under_load(true).await;
    eprintln!(
        "with wait_for_replicas(1): {} acknowledged before the kill, {} after; recovery {recovery:?}; \
         errors {:?}; acknowledged transitions lost: {lost}",
        load.before_kill, load.after_kill, load.errors
    );
    assert_eq!(lost, 0, "an acknowledged transition was lost");
}

/// The same without `wait_for_replicas`: measured, not asserted (a write
/// acknowledged by the primary alone can be lost by the failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_for_replicas_a_failover_may_lose_acknowledged_transitions() {
    let (load, recovery, lost) = master_killed_under_load(false).await;
    eprintln!(
        "without wait_for_replicas: {} acknowledged before the kill, {} after; recovery {recovery:?}; \
         errors {:?}; sandboxes whose last acknowledged transition was lost: {lost} of 8",
        load.before_kill, load.after_kill, load.errors
    );
}

// ----- resharding ----------------------------------------------------------------------

/// A team's slot moves to another master (MIGRATE key by key, then SETSLOT)
/// while four tasks run transitions on its sandboxes and joiners wait:
/// never two holders of one sandbox, fences strictly increasing, every call
/// ends (no stuck waiter), and after the move a joiner is still woken by a
/// notification (the subscription followed the slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_teams_slot_during_transitions_loses_or_doubles_nothing() {
    let cluster = TestCluster::start(3, 0).await;
    let ns = format!("cm{}", std::process::id());
    let coord = on_cluster(&cluster, &ns, Duration::from_millis(200)).await;
    let team = cluster.teams_on_every_master(1).remove(0);
    let slot = slot_of(&team);
    let ids: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    for id in &ids {
        coord.register(in_team(&team, id)).await.unwrap();
    }
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let fences: Arc<Mutex<HashMap<usize, Vec<u64>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (coord, team, holders, fences, stop, errors) = (
            coord.clone(),
            team.clone(),
            Arc::clone(&holders),
            Arc::clone(&fences),
            Arc::clone(&stop),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let i = (w + n) % 4;
                n += 1;
                let id = format!("s{i}");
                let opts = BeginOptions::default().wait_timeout(Duration::from_secs(10));
                match coord.begin(&team, &id, Action::Snapshot, opts).await {
                    Ok(Begun::Started(t)) => {
                        assert_eq!(
                            holders[i].fetch_add(1, Ordering::SeqCst),
                            0,
                            "two holders of {id}"
                        );
                        fences.lock().unwrap().entry(i).or_default().push(t.fence());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        holders[i].fetch_sub(1, Ordering::SeqCst);
                        if t.succeed().await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Begun::AlreadyDone(_)) => {}
                    Err(e) => {
                        assert!(e.is_retryable() || e.is_interruption(), "{e:?}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| !m.owns(slot))
        .unwrap();
    // Repairs run all through the move (the slot half moved): each finds
    // nothing to fix, or is refused with a retryable error (TRYAGAIN: its
    // declared keys are split between the nodes), or is still being
    // retried when its second is up. None takes a record that has already
    // moved for a dangling index entry (the dry run after the move finds
    // no drift).
    let mut moving = cluster.begin_slot_move(slot, &to.id).await;
    let repairs = {
        let (coord, stop) = (coord.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut repaired, mut refused, mut pending) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                match timeout(Duration::from_secs(1), coord.repair(false)).await {
                    Ok(Ok(report)) => {
                        assert!(
                            report.drift.is_empty(),
                            "a repair during the move: {:?}",
                            report.drift
                        );
                        repaired += 1;
                    }
                    Ok(Err(e)) => {
                        assert!(e.is_retryable(), "a repair during the move: {e:?}");
                        refused += 1;
                    }
                    Err(_) => pending += 1,
                }
            }
            (repaired, refused, pending)
        })
    };
    while moving.migrate_batch(3).await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = moving.finish().await;
    eprintln!(
        "moved slot {slot} ({} keys) to {}",
        report.keys, report.to.port
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        timeout(BOUND, t)
            .await
            .expect("a call stuck after the move")
            .unwrap();
    }
    let (repaired, refused, pending) = timeout(BOUND, repairs).await.unwrap().unwrap();
    eprintln!(
        "repairs around the move: {repaired} found nothing, {refused} refused (retryable), \
         {pending} still retrying after 1 s"
    );
    let fences = fences.lock().unwrap().clone();
    let total: usize = fences.values().map(Vec::len).sum();
    for (i, f) in fences.iter() {
        let mut sorted = f.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), f.len(), "s{i}: a fence handed out twice");
    }
    eprintln!(
        "{total} transitions around the move, {} retryable errors",
        errors.load(Ordering::Relaxed)
    );
    for id in &ids {
        let sb = retrying("wait_idle", || {
            coord.wait_idle(&team, id, Duration::from_secs(10))
        })
        .await;
        assert_eq!(sb.state, State::Running, "{id}");
    }
    let after = retrying("repair", || coord.repair(true)).await;
    assert!(after.drift.is_empty(), "after the move: {:?}", after.drift);
    // A joiner after the move is woken by a notification from the new owner.
    let slow = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    let t = started(
        coord
            .begin(&team, "s0", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let (s, tm) = (slow.clone(), team.clone());
    let join = tokio::spawn(async move {
        s.begin(&tm, "s0", Action::Pause, BeginOptions::default())
            .await
    });
    fixture::parked_n(&slow, 1).await;
    fixture::wait_until("subscribed", BOUND, || slow.subscriptions() >= 1).await;
    t.succeed().await.unwrap();
    let got = timeout(Duration::from_secs(5), join)
        .await
        .expect("the joiner fell back to its 30 s poll after the move")
        .unwrap();
    assert!(matches!(got, Ok(Begun::AlreadyDone(_))), "{got:?}");
}

/// A waiter subscribed before its team's slot moves is moved with it: the
/// server drops the subscription (`sunsubscribe`), the coordinator
/// subscribes where the slot now lives, and the waiter re-checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_follows_its_slot_to_the_new_master() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 0)).await;
    let ns = format!("cs{}", std::process::id());
    let coord = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    let waiter = on_cluster(&cluster, &ns, Duration::from_secs(30)).await;
    let team = cluster.teams_on_every_master(1).remove(0);
    let slot = slot_of(&team);
    coord.register(in_team(&team, "s1")).await.unwrap();
    let t = started(
        coord
            .begin(&team, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = t.fence();
    let (w, tm) = (waiter.clone(), team.clone());
    let join = tokio::spawn(async move {
        w.begin(&tm, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    fixture::parked_n(&waiter, 1).await;
    fixture::wait_until("subscribed", BOUND, || waiter.subscriptions() >= 1).await;
    let epoch = waiter.subscription_epoch();
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| !m.owns(slot))
        .unwrap();
    cluster.move_slot(slot, &to.id).await;
    fixture::wait_until("resubscribed after the move", BOUND, || {
        waiter.subscription_epoch() > epoch
    })
    .await;
    // The holder's finish retries through whatever the move left.
    t.succeed().await.unwrap();
    let got = timeout(Duration::from_secs(5), join)
        .await
        .expect("the waiter was not woken after its slot moved")
        .unwrap();
    assert!(
        matches!(got, Ok(Begun::AlreadyDone(ref d)) if d.why == DoneReason::Joined { fence }),
        "{got:?}"
    );
}

// ----- soak ------------------------------------------------------------------------------

/// The race-and-fault suite's soak on a cluster of 3 masters × 1 replica
/// (ignored; `make soak PROFILE=cluster DURATION=10m`): rounds of the race
/// (the soak profile's coordinators and tasks, `wait_for_replicas(1, 250ms)`)
/// on the team `team-a`, each with one fault on the master serving its
/// slot, in turn: `kill -9` with the replica promoted (then the old master
/// back as its replica), the slot moved to another master, the replica
/// restarted. Every history (race and durability probes) goes through the
/// linearizability checker; the summary (histories, operations, faults by
/// kind, violations, undecided, acknowledged transitions lost) is printed
/// and written to `target/soak-cluster-summary.md`, violations to
/// `target/soak-cluster-violations.txt`. Bounded: every call, fault step and
/// wait has a bound, and no round starts after `SOAK_DURATION`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: make soak PROFILE=cluster DURATION=10m"]
async fn soak_cluster() {
    use history::report::{Tally, progress_bar};
    use history::workload::cluster::{ClusterFault, ClusterRun, REPLICA_WAIT};
    use std::sync::PoisonError;

    let duration = std::env::var("SOAK_DURATION")
        .ok()
        .map(|d| humantime::parse_duration(&d).expect("SOAK_DURATION like 10m"))
        .unwrap_or(Duration::from_secs(600));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let profile = Profile::soak(duration, Arc::clone(&tally));
    eprintln!(
        "soak (cluster 3x1): {duration:?}, {} coordinators x {} tasks over {} sandboxes per round, \
         wait_for_replicas(1, {REPLICA_WAIT:?}), seed {} (check budget {:?} per history)",
        profile.coordinators,
        profile.tasks_per_coordinator,
        profile.sandboxes,
        profile.seed,
        history::checker::CHECK_BUDGET
    );
    let mut run = ClusterRun::start(&profile).await;
    let bar = progress_bar(duration);
    let began = std::time::Instant::now();
    let ticker = {
        let (bar, tally) = (bar.clone(), Arc::clone(&tally));
        tokio::spawn(async move {
            loop {
                bar.set_position(began.elapsed().as_secs());
                let t = tally.lock().unwrap_or_else(PoisonError::into_inner).brief();
                bar.set_message(t);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let (mut problems, mut violations) = (Vec::new(), Vec::new());
    let mut round = 0usize;
    while began.elapsed() < duration {
        let fault = ClusterFault::ALL[round % ClusterFault::ALL.len()];
        let out = run.round(&profile, fault, round).await;
        let undecided = out.violations.iter().filter(|v| v.undecided).count();
        let line = format!(
            "round {round:>3} {:<24} {:>7.1?}  violations {}  undecided {undecided}  problems {}",
            out.scenario,
            out.took,
            out.violations.len() - undecided,
            out.problems.len()
        );
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
        problems.extend(out.problems.iter().map(|p| format!("round {round}: {p}")));
        violations.extend(out.violations.into_iter().map(|mut v| {
            v.sandbox = format!("{}/{}", out.scenario, v.sandbox);
            v
        }));
        round += 1;
    }
    ticker.abort();
    bar.finish_and_clear();
    let tally = tally.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let title = format!(
        "cluster soak summary (3 masters x 1 replica, wait_for_replicas(1)): {:.1?} \
         (SOAK_DURATION={duration:?}), seed {}",
        began.elapsed(),
        profile.seed
    );
    let table = format!("{}\n{}", tally.table(&title), run.faults.table());
    let undecided = history::report::publish_soak("soak-cluster", &table, &problems, &violations);
    assert!(
        violations.is_empty() && problems.is_empty() && run.faults.lost == 0,
        "cluster soak: {} violations, {undecided} undecided, {} problems, {} acknowledged \
         transitions lost",
        violations.len() - undecided,
        problems.len(),
        run.faults.lost
    );
    assert!(
        run.faults.total() > 0,
        "no fault was injected in {round} rounds"
    );
}
