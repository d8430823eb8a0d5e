//! The evictor's path (never waits, decides by Redis server time) and the
//! execution pin (checked in the script, and again after every wait).

mod fixture;
mod support;

use fixture::started;

use std::time::{Duration, SystemTime};

use fixture::{TEAM, coordinator, sandbox};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, BusyWith, Coordinator, DoneReason, Error, State,
};
use support::TestRedis;
use tokio::time::timeout;

async fn server_now_ms(redis: &TestRedis) -> u64 {
    let mut conn = redis.client().await;
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    s * 1000 + us / 1000
}

fn ago(d: Duration) -> SystemTime {
    SystemTime::now() - d
}

/// An eviction refused for a reservation or for queued requests says
/// which (it used to carry an empty action for both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_names_a_reservation_or_a_queue_that_holds_the_sandbox() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for id in ["reserved", "queued"] {
        let mut sb = sandbox(id, "e1");
        sb.end_time = ago(Duration::from_secs(10)).into();
        coord.register(sb).await.unwrap();
    }
    let evict =
        |id: &'static str| coord.begin(TEAM, id, Action::Kill, BeginOptions::default().eviction());
    // A resume reserved over a paused sandbox.
    started(
        coord
            .begin(TEAM, "reserved", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    )
    .succeed()
    .await
    .unwrap();
    let _resume = coord
        .reserve_resume(TEAM, "reserved", Duration::from_secs(60))
        .await
        .unwrap();
    match evict("reserved").await {
        Err(Error::EvictionInProgress {
            with: BusyWith::Reservation,
            ..
        }) => {}
        other => panic!("expected EvictionInProgress by a reservation, got {other:?}"),
    }
    // A request queued to re-decide (its place lasts a minute), no lease.
    let mut conn = redis.client().await;
    let key = format!("{}:{{{TEAM}}}:rec:queued", redis.namespace());
    let place = format!("other/1@{}", server_now_ms(&redis).await + 60_000);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("queue")
        .arg(&place)
        .query_async(&mut conn)
        .await
        .unwrap();
    match evict("queued").await {
        Err(Error::EvictionInProgress {
            with: BusyWith::Queue,
            ..
        }) => {}
        other => panic!("expected EvictionInProgress by the queue, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_fails_at_once_while_a_lease_is_live() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut sb = sandbox("s1", "e1");
    sb.end_time = ago(Duration::from_secs(10)).into();
    coord.register(sb).await.unwrap();
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );

    // No wait_timeout: it must not wait for the 30 s lease.
    let answer = timeout(
        Duration::from_secs(5),
        coord.begin(TEAM, "s1", Action::Kill, BeginOptions::default().eviction()),
    )
    .await
    .expect("eviction never waits");
    match answer {
        Err(Error::EvictionInProgress {
            with: BusyWith::Transition { fence, action },
            ..
        }) => {
            assert_eq!(fence, snap.fence());
            assert_eq!(action, Action::Snapshot);
        }
        other => panic!("expected EvictionInProgress, got {other:?}"),
    }
    snap.succeed().await.unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default().eviction())
            .await
            .unwrap(),
    );
    kill.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_is_not_needed_before_the_end_time_by_server_time() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap(); // ends in an hour
    let before = fixture::dump_all(&redis).await;
    let err = coord
        .begin(
            TEAM,
            "s1",
            Action::Pause,
            BeginOptions::default().eviction(),
        )
        .await
        .unwrap_err();
    let now = server_now_ms(&redis).await;
    match err {
        Error::EvictionNotNeeded { end_ms, now_ms, .. } => {
            assert!(end_ms > now_ms);
            // now_ms is the server's clock, read inside the script.
            assert!(
                now_ms <= now && now - now_ms < 5_000,
                "{now_ms} vs server {now}"
            );
        }
        other => panic!("expected EvictionNotNeeded, got {other:?}"),
    }
    assert_eq!(before, fixture::dump_all(&redis).await, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_for_eviction_returns_exactly_the_expired_ids() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for (id, past) in [
        ("old-1", true),
        ("old-2", true),
        ("new-1", false),
        ("paused", true),
    ] {
        let mut sb = sandbox(id, "e1");
        if past {
            sb.end_time = ago(Duration::from_secs(60)).into();
        }
        coord.register(sb).await.unwrap();
    }
    started(
        coord
            .begin(TEAM, "paused", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    )
    .succeed()
    .await
    .unwrap();
    let mut due = coord.due_for_eviction(TEAM, 100).await.unwrap();
    due.sort();
    assert_eq!(due, ["old-1", "old-2"], "tombstones are not due");
    fixture::assert_index_agrees(&redis, &coord, &["old-1", "old-2", "new-1", "paused"]).await;

    coord
        .set_end_time(TEAM, "new-1", ago(Duration::from_secs(1)), Some("e1"))
        .await
        .unwrap();
    coord
        .set_end_time(
            TEAM,
            "old-1",
            SystemTime::now() + Duration::from_secs(600),
            None,
        )
        .await
        .unwrap();
    let mut due = coord.due_for_eviction(TEAM, 100).await.unwrap();
    due.sort();
    assert_eq!(due, ["new-1", "old-2"]);
    assert_eq!(
        coord.due_for_eviction(TEAM, 1).await.unwrap().len(),
        1,
        "limit applies"
    );
    fixture::assert_index_agrees(&redis, &coord, &["old-1", "old-2", "new-1", "paused"]).await;

    assert!(coord.remove(TEAM, "old-2").await.unwrap());
    assert_eq!(coord.due_for_eviction(TEAM, 100).await.unwrap(), ["new-1"]);
    fixture::assert_index_agrees(&redis, &coord, &["old-1", "old-2", "new-1", "paused"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_mismatch_is_refused_before_any_wait() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let answer = timeout(
        Duration::from_secs(5),
        coord.begin(
            TEAM,
            "s1",
            Action::Pause,
            BeginOptions::default().expect_execution("e0"),
        ),
    )
    .await
    .expect("no wait for a mismatch");
    match answer {
        Err(Error::ExecutionMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected.as_str(), actual.as_str()), ("e0", "e1"));
        }
        other => panic!("expected ExecutionMismatch, got {other:?}"),
    }
    let err = coord
        .set_end_time(TEAM, "s1", SystemTime::now(), Some("e0"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ExecutionMismatch { .. }), "{err}");
    pause.succeed().await.unwrap();
}

/// Runs finish (pause succeeded) and register (resume as e2) in one
/// MULTI/EXEC, so no waiter can re-check between them; returns both
/// scripts' status words.
async fn pause_and_resume_atomically(
    redis: &TestRedis,
    coord: &Coordinator,
    fence: u64,
    holder: &str,
) -> (String, String) {
    let ns = coord.namespace();
    let k = ns.sandbox(TEAM, "s1").unwrap();
    let tp = &k.team.prefix;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("EVAL")
        .arg(fixture::script(coord, "finish"))
        .arg(1)
        .arg(&k.record)
        .arg(&[
            tp,
            "s1",
            &fence.to_string(),
            holder,
            "pause",
            "succeeded",
            "",
        ])
        .cmd("EVAL")
        .arg(fixture::script(coord, "register"))
        .arg(1)
        .arg(&k.record)
        .arg(&[
            tp,
            "s1",
            "e2",
            "in",
            "3600000",
            "{}",
            "",
            TEAM,
            &k.team.slot_prefix,
        ]);
    let mut conn = redis.client().await;
    let (fin, reg): (Vec<redis::Value>, Vec<redis::Value>) =
        pipe.query_async(&mut conn).await.unwrap();
    let word = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    (word(&fin[0]), word(&reg[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_mismatch_found_after_a_wait() {
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

    // A kill pinned to e1 waits for the pause...
    let c2 = coord.clone();
    let kill = tokio::spawn(async move {
        c2.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().expect_execution("e1"),
        )
        .await
    });
    timeout(Duration::from_secs(10), async {
        while coord.get(TEAM, "s1").await.unwrap().unwrap().waiting == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    // ...which ends, and the sandbox is resumed as e2 in the same instant.
    std::mem::forget(pause);
    let words = pause_and_resume_atomically(&redis, &coord, fence, &holder).await;
    assert_eq!(words, ("finished".to_string(), "resumed".to_string()));

    match timeout(Duration::from_secs(10), kill)
        .await
        .unwrap()
        .unwrap()
    {
        Err(Error::ExecutionMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected.as_str(), actual.as_str()), ("e1", "e2"));
        }
        other => panic!("expected ExecutionMismatch after the wait, got {other:?}"),
    }
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!((sb.state, sb.execution.as_str()), (State::Running, "e2"));
    // Unpinned, the same kill now starts against e2.
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(kill.fence() > fence);
    kill.succeed().await.unwrap();
    let why = match coord
        .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::AlreadyDone(d) => d.why,
        Begun::Started(_) => panic!("killed twice"),
    };
    assert_eq!(why, DoneReason::AlreadyInState);
}
