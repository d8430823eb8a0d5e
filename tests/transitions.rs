//! The lifecycle table in motion: one scenario per test, with the
//! interleaving forced by the order of calls (a transition is held open
//! while the conflicting request is issued), never by sleeps.

mod fixture;
mod support;

use fixture::started;

use std::time::Duration;

use fixture::{TEAM, coordinator, sandbox};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, DoneReason, Error, Outcome, State,
};
use support::TestRedis;

fn done(b: Begun) -> DoneReason {
    match b {
        Begun::AlreadyDone(d) => d.why,
        Begun::Started(t) => panic!("expected AlreadyDone, got Started(fence {})", t.fence()),
    }
}

/// Waits (bounded) until the spawned request is parked in its wait: the
/// coordinator counts its waiters, so the ordering is observed, not guessed.
async fn parked<T>(coord: &Coordinator, task: &tokio::task::JoinHandle<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while coord.waiting() == 0 {
        assert!(
            !task.is_finished(),
            "the request finished instead of waiting"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never started waiting"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_successful_pause_is_absorbed() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );

    let c2 = coord.clone();
    let kill = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
    });
    parked(&coord, &kill).await;
    pause.succeed().await.unwrap();

    let why = done(kill.await.unwrap().unwrap());
    assert_eq!(why, DoneReason::Absorbed { by: State::Paused });
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Paused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_successful_pause_is_absorbed_the_same_way() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    )
    .succeed()
    .await
    .unwrap();
    let why = done(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(why, DoneReason::Absorbed { by: State::Paused });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_failed_pause_starts_the_cleanup() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let pause_fence = pause.fence();

    let c2 = coord.clone();
    let kill = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
    });
    parked(&coord, &kill).await;
    pause.fail("hypervisor refused").await.unwrap();

    let kill = started(kill.await.unwrap().unwrap());
    assert!(kill.fence() > pause_fence);
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Killing
    );
    kill.succeed().await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Killed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_failed_pause_starts() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    )
    .fail("hypervisor refused")
    .await
    .unwrap();
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(
        sb.state,
        State::Pausing,
        "a failed pause stays pausing (stuck)"
    );
    assert!(sb.lease.is_none());
    assert_eq!(sb.last.as_ref().unwrap().outcome, Outcome::Failed);
    assert_eq!(sb.last.as_ref().unwrap().reason, "hypervisor refused");

    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    kill.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_after_failed_pause_retries() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let first = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let first_fence = first.fence();
    first.fail("flaky").await.unwrap();
    let retry = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(retry.fence() > first_fence);
    retry.succeed().await.unwrap();
    let why = done(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(why, DoneReason::AlreadyInState);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_during_pause_is_invalid_at_once() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let before = fixture::dump_all(&redis).await;

    // No wait_timeout: an invalid answer must not wait for the pause.
    let err = coord
        .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: State::Pausing,
                action: Action::Snapshot,
                ..
            }
        ),
        "{err}"
    );
    let mut after = fixture::dump_all(&redis).await;
    // The lease TTL ticks, the content does not.
    after.retain(|k, _| before.contains_key(k));
    assert_eq!(before, after, "an invalid request writes nothing");
    pause.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_paused_sandbox_is_invalid() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    )
    .succeed()
    .await
    .unwrap();
    let err = coord
        .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: State::Paused,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_during_kill_is_invalid() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    let err = coord
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: State::Killing,
                action: Action::Pause,
                ..
            }
        ),
        "{err}"
    );
    kill.succeed().await.unwrap();
    let err = coord
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: State::Killed,
                ..
            }
        ),
        "{err}"
    );
    let why = done(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(why, DoneReason::AlreadyInState);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_snapshot_waits_then_starts() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let snap_fence = snap.fence();

    let c2 = coord.clone();
    let kill = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
    });
    parked(&coord, &kill).await;
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Snapshotting
    );
    snap.succeed().await.unwrap();

    let kill = started(kill.await.unwrap().unwrap());
    assert!(kill.fence() > snap_fence);
    kill.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_snapshot_leaves_the_sandbox_running() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    )
    .fail("disk full")
    .await
    .unwrap();
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.state, State::Running);
    assert!(sb.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_pulls_the_end_time_to_now_and_snapshot_does_not() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e2")).await.unwrap();
    let before = coord.get(TEAM, "s1").await.unwrap().unwrap().end_time;
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().end_time,
        before
    );
    snap.succeed().await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(coord.get(TEAM, "s1").await.unwrap().unwrap().end_time < before);
    pause.succeed().await.unwrap();
    fixture::assert_index_agrees(&redis, &coord, &["s1", "s2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_shares_the_leaders_failure() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = pause.fence();
    let c2 = coord.clone();
    let join = tokio::spawn(async move {
        c2.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked(&coord, &join).await;
    pause.fail("no capacity").await.unwrap();
    match join.await.unwrap() {
        Err(Error::TransitionFailed {
            fence: f,
            reason,
            action: Action::Pause,
            ..
        }) => {
            assert_eq!(f, fence);
            assert_eq!(reason, "no capacity");
        }
        other => panic!("expected TransitionFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_bounds_a_wait() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let err = coord
        .begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().wait_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let err = coord
        .wait_idle(TEAM, "s1", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    pause.succeed().await.unwrap();
    let idle = coord
        .wait_idle(TEAM, "s1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(idle.state, State::Paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_returns_when_the_transition_ends() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let c2 = coord.clone();
    let idle = tokio::spawn(async move { c2.wait_idle(TEAM, "s1", Duration::from_secs(30)).await });
    parked(&coord, &idle).await;
    snap.succeed().await.unwrap();
    let sb = idle.await.unwrap().unwrap();
    assert_eq!(sb.state, State::Running);
    assert!(sb.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_twice_for_the_same_fence_returns_the_recorded_outcome() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = pause.fence();
    let holder = pause.holder().to_string();
    // The holder's process "restarts" and finishes by fence, twice (a retry
    // after a dropped reply): both succeed, the second writes nothing.
    std::mem::forget(pause);
    coord
        .finish(
            TEAM,
            "s1",
            Action::Pause,
            fence,
            &holder,
            sandbox_coordinator::Finish::Succeeded,
        )
        .await
        .unwrap();
    let before = fixture::dump_all(&redis).await;
    coord
        .finish(
            TEAM,
            "s1",
            Action::Pause,
            fence,
            &holder,
            sandbox_coordinator::Finish::Succeeded,
        )
        .await
        .unwrap();
    assert_eq!(before, fixture::dump_all(&redis).await);
    // A different outcome for a settled fence is refused.
    let err = coord
        .finish(
            TEAM,
            "s1",
            Action::Pause,
            fence,
            &holder,
            sandbox_coordinator::Finish::Failed("late".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_joiners_learn_the_outcome_by_polling() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let polling = fixture::coordinator_with(&redis, |b| {
        b.notifications(false)
            .poll_interval(Duration::from_millis(50))
    })
    .await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = pause.fence();
    let p2 = polling.clone();
    let join = tokio::spawn(async move {
        p2.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked(&polling, &join).await;
    assert_eq!(
        polling.subscription_epoch(),
        0,
        "no subscription when notifications are off"
    );
    pause.succeed().await.unwrap();
    let why = done(join.await.unwrap().unwrap());
    assert_eq!(why, DoneReason::Joined { fence });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_reports_holder_ttl_and_age() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let t = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let lease = coord
        .get(TEAM, "s1")
        .await
        .unwrap()
        .unwrap()
        .lease
        .expect("live lease");
    assert_eq!((lease.fence, lease.action), (t.fence(), Action::Snapshot));
    assert!(
        lease.holder.starts_with(coord.holder_id()),
        "{}",
        lease.holder
    );
    assert!(lease.ttl <= Duration::from_secs(30) && lease.ttl > Duration::from_secs(20));
    assert!(lease.age < Duration::from_secs(10));
    t.succeed().await.unwrap();
}

/// A finish repeated after a lost reply returns the recorded outcome for
/// the whole outcome retention, however many transitions ran meanwhile
/// (schema 1 kept the newest 8 only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_finish_is_answered_after_many_later_transitions() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let first = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let (fence, holder) = (first.fence(), first.holder().to_string());
    first.succeed().await.unwrap();
    for _ in 0..20 {
        started(
            coord
                .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
                .await
                .unwrap(),
        )
        .fail("later")
        .await
        .unwrap();
    }
    let before = fixture::dump_all(&redis).await;
    coord
        .finish(
            TEAM,
            "s1",
            Action::Snapshot,
            fence,
            &holder,
            sandbox_coordinator::Finish::Succeeded,
        )
        .await
        .unwrap();
    assert_eq!(
        fixture::dump_all(&redis).await,
        before,
        "the repeat wrote something"
    );
    let err = coord
        .finish(
            TEAM,
            "s1",
            Action::Snapshot,
            fence,
            &holder,
            sandbox_coordinator::Finish::Failed("x".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
}
