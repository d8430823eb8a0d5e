//! Team views against a real Redis: a view starts from a snapshot and
//! applies the team's announcements in order; after any history from
//! several coordinators with faults it equals `list()` once the team is
//! quiet; a reader never sees a fence go down; a missed announcement is
//! found and the team re-read (counted); while Redis is unreachable the
//! view answers from its last state and says since when.

mod fixture;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use fixture::{TEAM, coordinator, coordinator_with, raw, sandbox, wait_until};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, State, TeamView, ViewUpdate, ViewedSandbox,
};
use support::TestRedis;

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

/// One random step of a history on sandboxes s0..s5.
async fn step(coord: &Coordinator, rng: &mut u64) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let id = format!("s{}", *rng % 6);
    let exec = format!("e{}", (*rng >> 8) % 1000);
    let opts = BeginOptions::default().wait_timeout(Duration::from_millis(500));
    let action = [Action::Pause, Action::Kill, Action::Snapshot][((*rng >> 20) % 3) as usize];
    match (*rng >> 4) % 6 {
        0 => {
            let _ = coord.register(sandbox(&id, &exec)).await;
        }
        1 => {
            let _ = coord.remove(TEAM, &id).await;
        }
        2 => {
            let end = std::time::SystemTime::now() + Duration::from_secs(60 + *rng % 1000);
            let _ = coord.set_end_time(TEAM, &id, end, None).await;
        }
        3 => {
            let _ = coord.reserve(TEAM, &id, Duration::from_millis(300)).await;
        }
        _ => {
            if let Ok(Begun::Started(t)) = coord.begin(TEAM, &id, action, opts).await {
                if (*rng >> 30).is_multiple_of(4) {
                    let _ = t.fail("test").await;
                } else {
                    let _ = t.succeed().await;
                }
            }
        }
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
    // A reader per view: per sandbox, the fences it sees only grow while
    // the record lives (a removed id may come back with fence 0).
    let readers: Vec<_> = views
        .iter()
        .map(|v| {
            let v = v.clone();
            tokio::spawn(async move {
                let mut seen: HashMap<String, (String, u64)> = HashMap::new();
                let mut reads = 0u64;
                loop {
                    let now: HashMap<String, (String, u64)> = v
                        .list()
                        .into_iter()
                        .map(|s| (s.id, (s.execution, s.fence)))
                        .collect();
                    for (id, (exec, fence)) in &now {
                        if let Some((_, before)) = seen.get(id) {
                            assert!(
                                fence >= before || *fence == 0,
                                "{id} ({exec}) went back from fence {before} to {fence}"
                            );
                        }
                    }
                    seen = now;
                    reads += 1;
                    if reads > 1_000_000 {
                        return reads;
                    }
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
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
                        step(&c, &mut rng).await;
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
    for r in readers {
        assert!(!r.is_finished(), "a reader stopped: {:?}", r.await);
        r.abort();
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
