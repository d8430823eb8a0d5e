//! Holders that die, are dropped, stall past their lease, or live long:
//! waiters always learn a definite outcome, stale holders are fenced and
//! write nothing, and the watchdog keeps long work alive.

mod fixture;
mod support;

use fixture::started;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fixture::{TEAM, coordinator, coordinator_with, sandbox};
use sandbox_coordinator::{
    Abandonment, Action, BeginOptions, Coordinator, Error, Outcome, State, Transition,
};
use support::TestRedis;
use tokio::time::{Instant, timeout};

async fn parked(coord: &Coordinator, n: usize) {
    timeout(Duration::from_secs(10), async {
        while coord.waiting() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the requests never started waiting");
}

/// Runs in a child process (see `holder_crash_*`): begins a pause with a
/// short lease and exits without finishing — no destructors, no Drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_entry() {
    let (Ok(url), Ok(ns)) = (
        std::env::var("SBX_CHILD_URL"),
        std::env::var("SBX_CHILD_NS"),
    ) else {
        return; // not a child run
    };
    let coord = Coordinator::builder(url)
        .namespace(ns)
        .build()
        .await
        .unwrap();
    let opts = BeginOptions::default()
        .lease(Duration::from_secs(3))
        .watchdog(false);
    let t = started(coord.begin(TEAM, "s1", Action::Pause, opts).await.unwrap());
    println!("STARTED {}", t.fence());
    std::process::exit(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_crash_gives_waiters_abandoned_at_the_lease_deadline() {
    let redis = TestRedis::start().await;
    // A poll interval far above the lease: only the lease-deadline wake can
    // explain a prompt answer.
    let coord = coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(60))).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SBX_CHILD_URL", redis.url())
        .env("SBX_CHILD_NS", redis.namespace())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let fence: u64 = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("STARTED ")
                    .nth(1)
                    .map(|f| f.trim().parse().unwrap())
            })
            .expect("child printed its fence")
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());

    // The holder is dead; its lease still runs. A joiner and a kill wait.
    let lease = coord
        .get(TEAM, "s1")
        .await
        .unwrap()
        .unwrap()
        .lease
        .expect("lease still live");
    assert_eq!(lease.fence, fence);
    let began = Instant::now();
    let c2 = coord.clone();
    let joiner = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    let c3 = coord.clone();
    let waiter =
        tokio::spawn(async move { c3.wait_idle(TEAM, "s1", Duration::from_secs(30)).await });

    let joined = timeout(Duration::from_secs(15), joiner)
        .await
        .expect("joiner answers")
        .unwrap();
    match joined {
        Err(Error::Abandoned {
            fence: f,
            action: Action::Pause,
            ..
        }) => assert_eq!(f, fence),
        other => panic!("expected Abandoned, got {other:?}"),
    }
    // Well before the 60 s poll: woken by the lease deadline.
    assert!(
        began.elapsed() < lease.ttl + Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    let idle = timeout(Duration::from_secs(15), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        idle.state,
        State::Pausing,
        "an abandoned pause leaves the record stuck"
    );
    let last = idle.last.expect("outcome recorded");
    assert_eq!((last.fence, last.outcome), (fence, Outcome::Abandoned));

    // The next begin starts (retry of a stuck pause) with a higher fence.
    let retry = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(retry.fence() > fence);
    retry.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_begin_records_abandoned_for_an_expired_lease() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let opts = BeginOptions::default()
        .lease(Duration::from_millis(100))
        .watchdog(false);
    let t = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, opts)
            .await
            .unwrap(),
    );
    let fence = t.fence();
    timeout(Duration::from_secs(5), t.lost())
        .await
        .expect("lease lost at its deadline");
    std::mem::forget(t); // a dead holder: no Drop

    // Wait (bounded) until the lease's deadline has passed by the server clock.
    timeout(Duration::from_secs(5), async {
        while coord
            .get(TEAM, "s1")
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(kill.fence() > fence);
    // The stuck snapshot's outcome was recorded by that begin, atomically.
    let ended = coord.abandon(TEAM, "s1", fence, "operator").await.unwrap();
    assert_eq!(
        ended,
        Abandonment::AlreadyEnded {
            outcome: Outcome::Abandoned,
            reason: "lease expired".to_string()
        }
    );
    kill.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_transition_releases_waiters_promptly() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(60))).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let t = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = t.fence();
    let c2 = coord.clone();
    let joiner = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked(&coord, 1).await;

    drop(t); // 30 s lease, 60 s poll: only the Drop's fail can wake the joiner
    let answer = timeout(Duration::from_secs(5), joiner)
        .await
        .expect("prompt")
        .unwrap();
    match answer {
        Err(Error::TransitionFailed {
            fence: f, reason, ..
        }) => {
            assert_eq!(f, fence);
            assert_eq!(reason, "dropped");
        }
        other => panic!("expected TransitionFailed(dropped), got {other:?}"),
    }
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert!(sb.lease.is_none());
}

/// A holder whose lease expired while another transition started: every
/// late call is refused and writes nothing.
async fn stale_holder(redis: &TestRedis, coord: &Coordinator, id: &str) -> Transition {
    coord.register(sandbox(id, "e1")).await.unwrap();
    let opts = BeginOptions::default()
        .lease(Duration::from_millis(100))
        .watchdog(false);
    let stale = started(coord.begin(TEAM, id, Action::Pause, opts).await.unwrap());
    timeout(Duration::from_secs(5), stale.lost())
        .await
        .expect("lost at the deadline");
    timeout(Duration::from_secs(5), async {
        while coord.get(TEAM, id).await.unwrap().unwrap().lease.is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // Another server cleans up the stuck pause with a kill.
    let kill = started(
        coord
            .begin(TEAM, id, Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(kill.fence() > stale.fence());
    std::mem::forget(kill); // keep the kill's lease live for the assertions
    let _ = redis;
    stale
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_holder_is_fenced_on_succeed_fail_and_extend() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let a = stale_holder(&redis, &coord, "s1").await;
    let b = stale_holder(&redis, &coord, "s2").await;
    assert!(a.is_lost());
    let before = fixture::dump_all(&redis).await;

    let err = a.extend().await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    let err = a.succeed().await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    let err = b.fail("too late").await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");

    let mut after = fixture::dump_all(&redis).await;
    after.retain(|k, _| before.contains_key(k));
    assert_eq!(before, after, "a stale holder writes nothing");
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Killing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_resolves_when_an_operator_abandons_a_live_lease() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    // Long enough that no scheduling delay before the abandon can let it
    // run out (the watchdog keeps it anyway); its first extend comes at a
    // third of it, 1 s.
    let opts = BeginOptions::default().lease(Duration::from_secs(3));
    let t = started(coord.begin(TEAM, "s1", Action::Pause, opts).await.unwrap());
    assert!(!t.is_lost());
    let abandoned = coord
        .abandon(TEAM, "s1", t.fence(), "operator repair")
        .await
        .unwrap();
    assert_eq!(
        abandoned,
        Abandonment::Abandoned {
            action: Some(Action::Pause),
            reason: "operator repair".to_string()
        }
    );
    // Asked again: it had already ended, nothing is written.
    let again = coord
        .abandon(TEAM, "s1", t.fence(), "operator repair")
        .await
        .unwrap();
    assert_eq!(
        again,
        Abandonment::AlreadyEnded {
            outcome: Outcome::Abandoned,
            reason: "operator repair".to_string()
        }
    );
    // The watchdog's next extend (at a third of the lease) is refused.
    timeout(Duration::from_secs(20), t.lost())
        .await
        .expect("lost() resolves");
    let err = t.succeed().await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_a_transition_alive_past_its_lease() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    // The watchdog extends every second; only a stall of 2 s could lose
    // the lease.
    let lease = Duration::from_secs(3);
    let t = started(
        coord
            .begin(
                TEAM,
                "s1",
                Action::Snapshot,
                BeginOptions::default().lease(lease),
            )
            .await
            .unwrap(),
    );
    // Work until half a lease past the first deadline: without an extend
    // the lease would be gone by then.
    tokio::select! {
        _ = t.lost() => panic!("lease lost while the watchdog ran"),
        _ = tokio::time::sleep(lease + lease / 2) => {}
    }
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.state, State::Snapshotting);
    let live = sb.lease.expect("lease still live past its first deadline");
    assert_eq!(live.fence, t.fence());
    assert!(live.ttl > Duration::ZERO);
    t.succeed().await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_extend_moves_the_deadline() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let lease = Duration::from_secs(10);
    let opts = BeginOptions::default().lease(lease).watchdog(false);
    let t = started(coord.begin(TEAM, "s1", Action::Pause, opts).await.unwrap());
    // Let the deadline visibly approach (Redis' own PTTL), then extend.
    let before = timeout(Duration::from_secs(15), async {
        loop {
            let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
            let ttl = sb.lease.expect("lease live").ttl;
            if ttl <= lease - Duration::from_secs(1) {
                return ttl;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the lease never ran down");
    // The extend's TTL is Redis' PTTL right after it set the lease again,
    // so it is the full lease whatever the client's latency.
    let ttl = t.extend().await.unwrap();
    assert!(
        ttl > before,
        "the deadline did not move: {before:?} -> {ttl:?}"
    );
    assert!(
        ttl > lease - Duration::from_secs(1) && ttl <= lease,
        "extend set {ttl:?}, not the lease {lease:?}"
    );
    t.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_records_abandoned_for_a_vanished_holder() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let opts = BeginOptions::default()
        .lease(Duration::from_millis(100))
        .watchdog(false);
    let t = started(coord.begin(TEAM, "s1", Action::Kill, opts).await.unwrap());
    let fence = t.fence();
    timeout(Duration::from_secs(5), t.lost())
        .await
        .expect("lease lost at its deadline");
    std::mem::forget(t); // a dead holder: no Drop

    let idle = coord
        .wait_idle(TEAM, "s1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        idle.state,
        State::Killing,
        "stuck, for a retry to start from"
    );
    let last = idle
        .last
        .expect("the vanished holder's outcome is recorded");
    assert_eq!((last.fence, last.outcome), (fence, Outcome::Abandoned));
}
