//! Fault injection against a real (containerized) Redis while many
//! coordinators race: the server frozen longer than the lease, restarted
//! with and without persistence, notification connections killed again and
//! again, a proxy that delays, drops and blackholes connections, and
//! holders that die (child processes exiting mid-transition) or stall past
//! their lease. Every call is recorded and each sandbox's history is
//! checked for linearizability (`tests/history/`); calls that fail under a
//! fault may or may not have taken effect, and the checker allows both.
//!
//! The scenarios are functions of a profile (`tests/history/workload.rs`):
//! here the bounded CI profile; `make soak` runs them longer.

mod fixture;
mod history;
mod support;

use std::time::Duration;

use fixture::TEAM;
use history::checker::check;
use history::recorder::Recorder;
use history::workload::{self, Profile};
use sandbox_coordinator::{Action, BeginOptions, Begun, Error, Lifecycle, Transition};
use support::{Capability, TestRedis};
use tokio::time::{Instant, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_pause_redis_paused_longer_than_the_lease_keeps_calls_bounded_and_histories_linearizable()
 {
    support::require(Capability::Pause);
    let out = workload::redis_paused(&Profile::ci()).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_redis_restart_without_persistence_is_explained_by_lost_data_and_recovers() {
    support::require(Capability::Restart);
    let out = workload::redis_restart(&Profile::ci(), false).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_redis_restart_with_aof_loses_nothing_acknowledged() {
    support::require(Capability::Restart);
    let out = workload::redis_restart(&Profile::ci(), true).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_connections_killed_repeatedly_leave_no_waiter_hanging() {
    let out = workload::pubsub_kills(&Profile::ci()).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_delays_drops_and_blackholes_keeps_every_invariant() {
    let out = workload::chaos_proxy(&Profile::ci()).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_that_die_or_stall_during_a_race_keep_histories_linearizable() {
    let out = workload::dying_and_stalling_holders(&Profile::ci()).await;
    out.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_in_child_processes_that_exit_give_joiners_abandoned_and_a_clean_next_start() {
    let out = workload::child_holders(&Profile::ci(), 3).await;
    out.assert_clean();
    assert_eq!(
        out.tally.abandoned, 3,
        "one Abandoned joiner per dead child"
    );
}

fn started(answer: Result<Begun, Error>) -> Transition {
    match answer {
        Ok(Begun::Started(t)) => t,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// A holder stalls past its lease (no watchdog); another server cleans up
/// with a kill; then the stale holder's `succeed` (or `fail`) is refused
/// with `Fenced` and writes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stalls_past_its_lease_is_fenced_and_writes_nothing() {
    let redis = TestRedis::start().await;
    let coords = fixture::coordinators(&redis, 2).await;
    let recorder = Recorder::new();
    let (mut stale, mut cleaner, mut reader) =
        (recorder.lane(0), recorder.lane(1), recorder.lane(1));
    for (id, failure) in [("stall-succeed", None), ("stall-fail", Some("too late"))] {
        stale
            .register(&coords[0], fixture::sandbox(id, "e1"))
            .await
            .unwrap();
        let opts = BeginOptions::default()
            .lease(Duration::from_millis(300))
            .watchdog(false);
        let t = started(
            stale
                .begin(&coords[0], TEAM, id, Action::Pause, opts)
                .await
                .0,
        );
        let fence = t.fence();
        timeout(Duration::from_secs(5), t.lost())
            .await
            .expect("the holder learns it lost the lease");
        // Wait (bounded) until Redis itself has expired the lease.
        let deadline = Instant::now() + Duration::from_secs(5);
        while reader
            .get(&coords[1], TEAM, id)
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_some()
        {
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let kill = started(
            cleaner
                .begin(&coords[1], TEAM, id, Action::Kill, BeginOptions::default())
                .await
                .0,
        );
        assert!(kill.fence() > fence);

        let before = fixture::dump_all(&redis).await;
        let answer = stale.finish(t, failure.map(String::from)).await;
        assert!(
            matches!(answer, Err(Error::Fenced { fence: f, .. }) if f == fence),
            "{answer:?}"
        );
        assert_eq!(
            fixture::dump_all(&redis).await,
            before,
            "a fenced finish wrote something"
        );
        cleaner.finish(kill, None).await.unwrap();
    }
    let verdict = check(&recorder.entries(), &Lifecycle::sandbox());
    verdict.assert_linearizable("stalled holders");
    assert_eq!(verdict.histories, 2);
}

/// The lost-reply regressions' setup: coordinator `a` reaches Redis through
/// a chaos proxy (one pooled connection, 1 s response timeout, so a muted
/// reply becomes a transport error and a retry), `b` directly; sandbox s1
/// is registered as e1.
async fn lost_reply_setup(
    redis: &TestRedis,
) -> (
    fixture::chaos::Chaos,
    sandbox_coordinator::Coordinator,
    sandbox_coordinator::Coordinator,
) {
    let chaos = fixture::chaos::Chaos::start(&redis.url()).await;
    let a = sandbox_coordinator::Coordinator::builder(chaos.url())
        .namespace(redis.namespace())
        .pool_size(1)
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let b = fixture::coordinator(redis).await;
    b.register(fixture::sandbox("s1", "e1")).await.unwrap();
    // `a` lists the team's slot once (its first register in a slot does,
    // before the script), so its register below is one script call.
    a.register(fixture::sandbox("warm", "e1")).await.unwrap();
    assert!(a.remove(TEAM, "warm").await.unwrap());
    (chaos, a, b)
}

/// Regression (found by the paused-Redis history check): a `register`
/// whose first attempt ran but whose reply was lost must not be answered by
/// a retry. Here the first attempt resumes the sandbox as `e2`, its reply
/// is lost, another server starts a pause; a retry would find the lease
/// and tell the caller `Busy` ("refused, nothing written") although its
/// execution is the one registered. The answer must be what happened, or a
/// transport error (effect unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_whose_reply_is_lost_reports_what_it_did() {
    use fixture::chaos::Faults;
    use sandbox_coordinator::Registration;

    let redis = TestRedis::start().await;
    let (chaos, a, b) = lost_reply_setup(&redis).await;
    started(
        b.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await,
    )
    .succeed()
    .await
    .unwrap();
    a.get(TEAM, "s1").await.unwrap(); // a's one pooled connection is up

    chaos.set_faults(Faults {
        mute_replies: true,
        ..Faults::default()
    });
    let a2 = a.clone();
    let resume = tokio::spawn(async move { a2.register(fixture::sandbox("s1", "e2")).await });
    // The first attempt ran: the sandbox is resumed as e2 ...
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get(TEAM, "s1").await.unwrap().unwrap().execution != "e2" {
        assert!(Instant::now() < deadline, "the first attempt never ran");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // ... and another server pauses it before a's retry.
    let pause = started(
        b.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await,
    );
    chaos.calm();
    let answer = timeout(Duration::from_secs(15), resume)
        .await
        .expect("register answered")
        .unwrap();
    pause.succeed().await.unwrap();
    assert!(
        matches!(
            answer,
            Ok((_, Registration::Resumed { .. })) | Err(Error::Redis(_) | Error::Pool(_))
        ),
        "register of e2 resumed the sandbox, but its caller was told {answer:?}"
    );
}

/// Regression (found by the soak's chaos-proxy histories): `remove` is not
/// pinned to an execution, so a retry after a lost reply would delete the
/// next incarnation's live record: the first attempt deletes the killed
/// record, the reply is lost, another server registers `e2`, and a retry
/// deletes that too, answering `Ok(true)` once. A remove must delete at
/// most the record it found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_whose_reply_is_lost_does_not_delete_a_newer_record() {
    use fixture::chaos::Faults;

    let redis = TestRedis::start().await;
    let (chaos, a, b) = lost_reply_setup(&redis).await;
    started(
        b.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await,
    )
    .succeed()
    .await
    .unwrap();
    a.get(TEAM, "s1").await.unwrap(); // a's one pooled connection is up

    chaos.set_faults(Faults {
        mute_replies: true,
        ..Faults::default()
    });
    let a2 = a.clone();
    let remove = tokio::spawn(async move { a2.remove(TEAM, "s1").await });
    // The first attempt ran: the killed record is gone ...
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get(TEAM, "s1").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the first attempt never ran");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // ... and another server registers a new incarnation before the retry.
    b.register(fixture::sandbox("s1", "e2")).await.unwrap();
    chaos.calm();
    let answer = timeout(Duration::from_secs(15), remove)
        .await
        .expect("remove answered")
        .unwrap();
    let now = b.get(TEAM, "s1").await.unwrap();
    assert!(
        now.as_ref().is_some_and(|sb| sb.execution == "e2"),
        "remove answered {answer:?} and deleted the new incarnation e2 (record now {now:?})"
    );
}

/// Regression (found by the 10-minute soak's chaos-proxy histories): a
/// holder's `succeed` whose reply was lost was answered `Fenced` ("nothing
/// written") although its first attempt had recorded the outcome. The
/// retry came after the record had moved on (in schema 1: more transitions
/// than the newest 8 outcomes kept; in schema 2 an outcome is kept for the
/// retention, so here: the record removed), so the retry could neither find
/// its outcome nor its lease. The answer must be Ok, or `FinishUnknown` — never `Fenced`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_whose_reply_is_lost_is_never_reported_fenced() {
    use fixture::chaos::Faults;
    use sandbox_coordinator::State;

    let redis = TestRedis::start().await;
    let (chaos, a, b) = lost_reply_setup(&redis).await;
    // a holds a pause; its lease (1 s, no watchdog) runs out while the
    // reply is lost, so its own retries end at the deadline.
    let opts = BeginOptions::default()
        .lease(Duration::from_secs(1))
        .watchdog(false);
    let pause = started(a.begin(TEAM, "s1", Action::Pause, opts).await);
    let fence = pause.fence();

    chaos.set_faults(Faults {
        mute_replies: true,
        ..Faults::default()
    });
    let finish = tokio::spawn(async move { pause.succeed().await });
    // The first attempt ran: the sandbox is paused with a's fence ...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sb = b.get(TEAM, "s1").await.unwrap().unwrap();
        if sb.state == State::Paused {
            assert_eq!(sb.fence, fence);
            break;
        }
        assert!(Instant::now() < deadline, "the first attempt never ran");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // ... then another server resumes it and runs 8 snapshots: the outcome
    // of a's fence is no longer among the newest kept.
    b.register(fixture::sandbox("s1", "e2")).await.unwrap();
    for _ in 0..8 {
        started(
            b.begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
                .await,
        )
        .succeed()
        .await
        .unwrap();
    }
    chaos.calm();
    let answer = timeout(Duration::from_secs(15), finish)
        .await
        .expect("succeed answered")
        .unwrap();
    assert!(
        matches!(
            answer,
            Ok(()) | Err(Error::FinishUnknown { .. } | Error::Redis(_) | Error::Pool(_))
        ),
        "succeed of fence {fence} was recorded, but its holder was told {answer:?}"
    );
}
