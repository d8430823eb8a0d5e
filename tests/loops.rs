//! The request loops (issue 16): every loop of `begin` and `wait_idle`
//! makes progress or ends by its caller's deadline, a waiter that leaves
//! leaves nothing of its own behind, a queue place outlives its waiter's
//! next re-check, and no notice hides another waiter's wake-up. One test
//! per point, each against a real Redis; script calls are counted with
//! `INFO commandstats`, never inferred from timings.

mod fixture;
mod support;

use fixture::started;

use std::collections::BTreeMap;
use std::time::Duration;

use fixture::{TEAM, coordinator, coordinator_with, dump_all, evalsha_calls, raw, sandbox};
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, DoneReason, Error};
use support::TestRedis;
use tokio::time::{Instant, timeout};

/// Bound on any single call: a hang is a failure, not a wait.
const BOUND: Duration = Duration::from_secs(20);

async fn begin(coord: &Coordinator, id: &str, action: Action, opts: BeginOptions) -> Begun {
    timeout(BOUND, coord.begin(TEAM, id, action, opts))
        .await
        .unwrap_or_else(|_| panic!("{action} {id} hung"))
        .unwrap_or_else(|e| panic!("{action} {id}: {e}"))
}

async fn record(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> BTreeMap<String, String> {
    let flat = raw(conn, &["HGETALL", key]).await;
    flat.chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

/// Polls (every 5 ms, at most 10 s) until the sandbox counts `n` waiters.
async fn queued(coord: &Coordinator, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sb = coord.get(TEAM, id).await.unwrap().unwrap();
        if sb.waiting == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited 10 s for {n} queued waiters (have {})",
            sb.waiting
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What `begin` (with a 1 s wait timeout) and `wait_idle` (1 s) answer on
/// a damaged record, each within 5 s, with how many script calls each
/// made; the server's keys must not change.
async fn both_loops_on(
    redis: &TestRedis,
    coord: &Coordinator,
    id: &str,
    action: Action,
) -> [(String, u64); 2] {
    let admin = redis.client().await;
    let before = dump_all(redis).await;
    let base = evalsha_calls(&admin).await;
    let got = timeout(
        Duration::from_secs(5),
        coord.begin(
            TEAM,
            id,
            action,
            BeginOptions::default().wait_timeout(Duration::from_secs(1)),
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("begin (wait_timeout 1 s) still running after 5 s on a damaged record")
    });
    let begin_calls = evalsha_calls(&admin).await - base;
    let begin = match got {
        Err(e) => format!("{e:?}"),
        Ok(b) => format!("Ok({b:?})"),
    };
    let base = evalsha_calls(&admin).await;
    let got = timeout(
        Duration::from_secs(5),
        coord.wait_idle(TEAM, id, Duration::from_secs(1)),
    )
    .await
    .unwrap_or_else(|_| panic!("wait_idle (1 s) still running after 5 s on a damaged record"));
    let idle_calls = evalsha_calls(&admin).await - base;
    let idle = match got {
        Err(e) => format!("{e:?}"),
        Ok(sb) => format!("Ok({sb:?})"),
    };
    assert_eq!(
        dump_all(redis).await,
        before,
        "a request on a damaged record wrote"
    );
    [(begin, begin_calls), (idle, idle_calls)]
}

fn assert_corrupt_at_once(answers: &[(String, u64); 2]) {
    for (what, (answer, calls)) in ["begin", "wait_idle"].iter().zip(answers) {
        eprintln!("{what}: {calls} script calls, {answer}");
        assert!(
            answer.starts_with("Corrupt"),
            "{what} answered {answer}, not Corrupt"
        );
        assert!(*calls <= 3, "{what} made {calls} script calls");
    }
}

// ----- 1. every loop ends ----------------------------------------------------------

/// An in-flight record whose `action` is empty (hand-edited, or a broken
/// writer), its holder gone: `begin` and `wait_idle` answer `Corrupt` at
/// once — no hot loop of script calls, no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_action_field_is_corrupt_at_once() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let mut conn = redis.client().await;
    raw(
        &mut conn,
        &[
            "HSET",
            &keys.record,
            "state",
            "pausing",
            "fence",
            "123",
            "action",
            "",
        ],
    )
    .await;
    let answers = both_loops_on(&redis, &coord, "s1", Action::Kill).await;
    assert_corrupt_at_once(&answers);
}

/// An outcome key `out:<id>:<fence>` for the record's transition while the
/// record does not show that outcome (`last_fence` differs): with the
/// holder gone, or with its lease still live, `begin` and `wait_idle`
/// answer `Corrupt` at once, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_key_the_record_does_not_show_is_corrupt_at_once() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    for (id, lease) in [("s1", false), ("s2", true)] {
        coord.register(sandbox(id, "e1")).await.unwrap();
        let keys = coord.namespace().sandbox(TEAM, id).unwrap();
        let mut fields = vec![
            "HSET",
            &keys.record,
            "state",
            "pausing",
            "fence",
            "123",
            "action",
            "pause",
        ];
        if lease {
            fields.extend(["holder", "gone/1", "until_ms", "9007199254740991"]);
        }
        raw(&mut conn, &fields).await;
        let out = keys.outcome(id, 123);
        raw(&mut conn, &["SET", &out, "pause succeeded "]).await;
        // A pause: it joins the live one (s2), or meets the stuck one (s1).
        let answers = both_loops_on(&redis, &coord, id, Action::Pause).await;
        assert_corrupt_at_once(&answers);
    }
}

// ----- 3. a waiter that leaves leaves nothing behind --------------------------------

/// A pinned kill queued behind a snapshot is refused after its wait (the
/// incarnation was replaced meanwhile: `ExecutionMismatch`): it leaves the
/// queue in the same step, so an uncontended pause afterwards starts with
/// its one script call instead of waiting out the kill's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_waiter_refused_after_its_wait_leaves_the_queue() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let admin = redis.client().await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let snap = started(
        begin(
            &coord,
            "s1",
            Action::Snapshot,
            BeginOptions::default().watchdog(false),
        )
        .await,
    );
    let c = coord.clone();
    let kill = tokio::spawn(async move {
        c.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().expect_execution("e1"),
        )
        .await
    });
    queued(&coord, "s1", 1).await;
    // Another incarnation takes the record while the kill waits (a resume
    // once the snapshot ends; by hand here, as a resume cannot run while a
    // lease is live), and its waiters are told.
    raw(&mut conn, &["HSET", &keys.record, "exec", "e2"]).await;
    raw(&mut conn, &["PUBLISH", &keys.team.channel(), "c s1"]).await;
    let got = timeout(BOUND, kill).await.unwrap().unwrap();
    assert!(
        matches!(got, Err(Error::ExecutionMismatch { .. })),
        "{got:?}"
    );
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.waiting, 0, "the refused kill is still queued");
    snap.succeed().await.unwrap();
    let base = evalsha_calls(&admin).await;
    let pause = started(
        begin(
            &coord,
            "s1",
            Action::Pause,
            BeginOptions::default().wait_timeout(Duration::from_secs(5)),
        )
        .await,
    );
    assert_eq!(
        evalsha_calls(&admin).await - base,
        1,
        "the uncontended pause made more than one script call"
    );
    pause.succeed().await.unwrap();
}

/// A waiter whose record moved to another rule table while it waited
/// (`LifecycleMismatch`) leaves the queue in the same step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_refused_for_another_lifecycle_leaves_the_queue() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let snap = started(
        begin(
            &coord,
            "s1",
            Action::Snapshot,
            BeginOptions::default().watchdog(false),
        )
        .await,
    );
    let c = coord.clone();
    let kill = tokio::spawn(async move {
        c.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
    });
    queued(&coord, "s1", 1).await;
    raw(&mut conn, &["HSET", &keys.record, "lc", "another-table"]).await;
    raw(&mut conn, &["PUBLISH", &keys.team.channel(), "c s1"]).await;
    let got = timeout(BOUND, kill).await.unwrap().unwrap();
    assert!(
        matches!(got, Err(Error::LifecycleMismatch { .. })),
        "{got:?}"
    );
    let rec = record(&mut conn, &keys.record).await;
    assert_eq!(rec.get("queue"), None, "the refused kill left {rec:?}");
    drop(snap);
}

/// A waiter that times out changed nothing: once its cancel ran, the record
/// is byte-for-byte as it found it (no empty `queue` field left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_times_out_leaves_the_record_as_it_found_it() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let snap = started(
        begin(
            &coord,
            "s1",
            Action::Snapshot,
            BeginOptions::default().watchdog(false),
        )
        .await,
    );
    let before = record(&mut conn, &keys.record).await;
    let got = timeout(
        BOUND,
        coord.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().wait_timeout(Duration::from_millis(300)),
        ),
    )
    .await
    .unwrap();
    assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
    // The cancel runs in the background: wait (bounded) until the waiter
    // is gone from the queue, then compare.
    queued(&coord, "s1", 0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = record(&mut conn, &keys.record).await;
    while after != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = record(&mut conn, &keys.record).await;
    }
    assert_eq!(after, before, "the timed-out waiter changed the record");
    snap.succeed().await.unwrap();
}

// ----- 4. a place outlives the next re-check ----------------------------------------

/// A kill whose lease (1 s) is not longer than the poll interval (1 s)
/// queues behind a snapshot, a pause queues after it, and the snapshot runs
/// on past several of the kill's re-checks: the kill keeps its place at the
/// head, so when the snapshot ends the kill starts and the pause is then
/// decided against the killing sandbox (invalid) — never the other way
/// round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_lease_is_not_longer_than_the_poll_keeps_its_place() {
    let redis = TestRedis::start().await;
    let second = |b: sandbox_coordinator::Builder| b.poll_interval(Duration::from_secs(1));
    let holder = coordinator_with(&redis, second).await;
    let killer = coordinator_with(&redis, second).await;
    let pauser = coordinator_with(&redis, second).await;
    holder.register(sandbox("s1", "e1")).await.unwrap();
    let snap = started(begin(&holder, "s1", Action::Snapshot, BeginOptions::default()).await);
    let k = killer.clone();
    let kill = tokio::spawn(async move {
        k.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().lease(Duration::from_secs(1)),
        )
        .await
    });
    queued(&holder, "s1", 1).await;
    let p = pauser.clone();
    let pause = tokio::spawn(async move {
        p.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    queued(&holder, "s1", 2).await;
    // Past two of the kill's re-checks (one per poll interval).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    snap.succeed().await.unwrap();
    let paused = timeout(BOUND, pause).await.unwrap().unwrap();
    match paused {
        Err(Error::InvalidTransition { .. }) => {}
        Ok(Begun::Started(t)) => {
            t.fail("test over").await.unwrap();
            panic!("the pause, queued after the kill, started first");
        }
        other => panic!("the pause answered {other:?}"),
    }
    let kill = timeout(BOUND, kill).await.unwrap().unwrap();
    match kill {
        Ok(Begun::Started(t)) => t.succeed().await.unwrap(),
        other => panic!("the kill, head of the queue, answered {other:?}"),
    }
}

// ----- 11. no notice hides another -------------------------------------------------

/// A notice published right after an outcome (here in the same `EXEC`, so
/// both arrive together) does not hide the outcome from a joiner whose
/// poll is 30 s: it learns the outcome from the notice, at once. On a
/// current-thread runtime the notifier delivers both before the joiner
/// runs, which is the interleaving that lost the outcome.
#[tokio::test]
async fn a_notice_right_after_an_outcome_does_not_hide_it() {
    let redis = TestRedis::start().await;
    let holder = coordinator(&redis).await;
    let joiner = coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(30))).await;
    let admin = redis.client().await;
    let mut conn = redis.client().await;
    holder.register(sandbox("s1", "e1")).await.unwrap();
    let keys = holder.namespace().sandbox(TEAM, "s1").unwrap();
    let pause = started(
        begin(
            &holder,
            "s1",
            Action::Pause,
            BeginOptions::default().watchdog(false),
        )
        .await,
    );
    let fence = pause.fence();
    let lease_holder = holder
        .get(TEAM, "s1")
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap()
        .holder;
    let base = evalsha_calls(&admin).await;
    let j = joiner.clone();
    let join = tokio::spawn(async move {
        j.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    // Parked: its begin and its first check have run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(joiner.waiting() == 1 && evalsha_calls(&admin).await >= base + 2) {
        assert!(Instant::now() < deadline, "the joiner never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The pause succeeds (its own finish script, run by hand) and another
    // notice for the sandbox follows in the same step.
    let finish = fixture::script(&holder, "finish");
    let fence_s = fence.to_string();
    let out = keys.outcome("s1", fence);
    let expiry = keys.team.key("expiry");
    let tombs = keys.team.key("tombs");
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("EVAL")
        .arg(&finish)
        .arg(4)
        .arg(&keys.record)
        .arg(&out)
        .arg(&expiry)
        .arg(&tombs)
        .arg(&keys.team.prefix)
        .arg("s1")
        .arg(&fence_s)
        .arg(&lease_holder)
        .arg("pause")
        .arg("succeeded")
        .arg("")
        .cmd("PUBLISH")
        .arg(keys.team.channel())
        .arg("c s1");
    let _: redis::Value = pipe.query_async(&mut conn).await.unwrap();
    let joined = timeout(Duration::from_secs(5), join)
        .await
        .expect("the joiner learned the outcome within 5 s (its poll is 30 s)")
        .unwrap()
        .unwrap();
    match joined {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Joined { fence }),
        Begun::Started(t) => panic!("the joiner started a pause (fence {})", t.fence()),
    }
    drop(pause);
}
