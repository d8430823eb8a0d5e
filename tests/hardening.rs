//! Hardening: an API server's real life — long waits, cancelled handlers,
//! "forever" values, hand-edited data, failover answers, half-open
//! notification connections. One test per point of issue 12, each named
//! after the behaviour it proves, each against a real Redis.

mod fixture;
mod support;

use fixture::started;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixture::chaos::{Chaos, Faults};
use fixture::{
    TEAM, command_calls, coordinator, coordinator_with, dump_all, parked_n, raw, sandbox,
    wait_until,
};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Error, Lifecycle, NewSandbox, Outcome, State,
};
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

async fn server_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let t = raw(conn, &["TIME"]).await;
    t[0].parse::<u64>().unwrap() * 1000 + t[1].parse::<u64>().unwrap() / 1000
}

// ----- 1. a begin that waited -------------------------------------------------

/// A kill that waited 2 s behind a pause that then failed starts the
/// cleanup with its own full lease (1.5 s here), counted from the script
/// call that opened it: not lost at once, and kept alive by the watchdog
/// past its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_that_waited_gets_its_lease_from_the_call_that_opened_it() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(begin(&coord, "s1", Action::Pause, BeginOptions::default()).await);
    let c = coord.clone();
    let kill = tokio::spawn(async move {
        c.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().lease(Duration::from_millis(1500)),
        )
        .await
    });
    parked_n(&coord, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pause.fail("hypervisor refused").await.unwrap();
    let kill = started(timeout(BOUND, kill).await.unwrap().unwrap().unwrap());
    assert!(
        !kill.is_lost(),
        "the cleanup's lease was lost from the start"
    );
    assert!(kill.deadline() > Instant::now() + Duration::from_millis(1000));
    // Past its length, the watchdog has kept it (both locally and in Redis).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!kill.is_lost());
    let lease = coord.get(TEAM, "s1").await.unwrap().unwrap().lease;
    assert!(lease.is_some_and(|l| l.fence == kill.fence()));
    kill.succeed().await.unwrap();
}

// ----- 2. cancel safety -----------------------------------------------------------

/// A begin future dropped after its script was sent (an HTTP handler whose
/// client went away) leaves no orphan lease: the transition it started is
/// failed in the background with reason `cancelled`, so another server's
/// pause starts at once instead of waiting out a 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_begin_leaves_no_orphan_lease() {
    let redis = TestRedis::start().await;
    let chaos = Chaos::start(&redis.url()).await;
    let slow = Coordinator::builder(chaos.url())
        .namespace(redis.namespace())
        .build()
        .await
        .unwrap();
    let other = coordinator(&redis).await;
    other.register(sandbox("s1", "e1")).await.unwrap();
    // Every chunk through the proxy waits 300 ms: the request reaches Redis
    // after the caller gave up.
    chaos.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    let dropped = timeout(
        Duration::from_millis(100),
        slow.begin(TEAM, "s1", Action::Pause, BeginOptions::default()),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the begin was meant to be dropped mid-call"
    );
    // The dropped call did start a pause (its script ran)...
    wait_until_state(
        &other,
        "s1",
        |sb| sb.fence > 0,
        "the dropped begin's script ran",
    )
    .await;
    // ...which is failed in the background, not left to expire: a pause
    // from another server is decided at once — joining the orphan it gets
    // its failure (an interruption), and asked again it starts (a retry of
    // the stuck pause).
    let t0 = Instant::now();
    let opts = BeginOptions::default().wait_timeout(Duration::from_secs(15));
    let t = match timeout(BOUND, other.begin(TEAM, "s1", Action::Pause, opts.clone()))
        .await
        .unwrap()
    {
        Ok(b) => started(b),
        Err(e) if e.is_interruption() => started(begin(&other, "s1", Action::Pause, opts).await),
        Err(e) => panic!("{e:?}"),
    };
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        t0.elapsed()
    );
    let cancelled = other.get(TEAM, "s1").await.unwrap().unwrap();
    assert!(
        cancelled
            .last
            .as_ref()
            .is_some_and(|l| l.outcome == Outcome::Failed && l.reason == "cancelled"),
        "{cancelled:?}"
    );
    t.succeed().await.unwrap();
    assert!(slow.close(BOUND).await);
}

async fn wait_until_state(
    coord: &Coordinator,
    id: &str,
    cond: impl Fn(&sandbox_coordinator::Sandbox) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(sb) = coord.get(TEAM, id).await.unwrap()
            && cond(&sb)
        {
            return;
        }
        assert!(Instant::now() < deadline, "waited {BOUND:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A `succeed` future dropped after its finish was sent is completed with
/// the same outcome in the background: a pause that completed is recorded
/// succeeded, never failed by the transition's drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_succeed_is_recorded_as_succeeded() {
    let redis = TestRedis::start().await;
    let chaos = Chaos::start(&redis.url()).await;
    let slow = Coordinator::builder(chaos.url())
        .namespace(redis.namespace())
        .build()
        .await
        .unwrap();
    let reader = coordinator(&redis).await;
    slow.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(begin(&slow, "s1", Action::Pause, BeginOptions::default()).await);
    let fence = pause.fence();
    chaos.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    assert!(
        timeout(Duration::from_millis(100), pause.succeed())
            .await
            .is_err()
    );
    chaos.calm();
    wait_until_state(
        &reader,
        "s1",
        |sb| sb.state == State::Paused,
        "the pause recorded",
    )
    .await;
    assert!(slow.close(BOUND).await);
    let sb = reader.get(TEAM, "s1").await.unwrap().unwrap();
    let last = sb.last.unwrap();
    assert_eq!(
        (last.fence, last.outcome),
        (fence, Outcome::Succeeded),
        "{}",
        last.reason
    );
}

/// A begin queued behind another transition whose future is dropped
/// leaves the queue at once: a later request is not held behind a waiter
/// nobody is waiting for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_queued_begin_leaves_the_queue() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let snap = started(begin(&coord, "s1", Action::Snapshot, BeginOptions::default()).await);
    let c = coord.clone();
    let kill = tokio::spawn(async move {
        c.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
    });
    wait_until_state(&coord, "s1", |sb| sb.waiting == 1, "the kill queued").await;
    kill.abort();
    let _ = kill.await;
    wait_until_state(
        &coord,
        "s1",
        |sb| sb.waiting == 0,
        "the dropped kill dequeued",
    )
    .await;
    snap.succeed().await.unwrap();
    // A pause now starts at once: nobody is ahead of it.
    let pause = started(begin(&coord, "s1", Action::Pause, BeginOptions::default()).await);
    pause.succeed().await.unwrap();
}

// ----- 3. "forever" ---------------------------------------------------------------

/// `Duration::MAX` where it bounds a local wait means "no bound": it never
/// panics (it used to overflow `Instant + Duration`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forever_waits_saturate_instead_of_panicking() {
    let redis = TestRedis::start().await;
    let coord = Coordinator::builder(redis.url())
        .namespace(redis.namespace())
        .poll_interval(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .response_timeout(Duration::MAX)
        .health_check_interval(Duration::MAX)
        .build()
        .await
        .unwrap();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let sb = coord.wait_idle(TEAM, "s1", Duration::MAX).await.unwrap();
    assert_eq!(sb.state, State::Running);
    let pause = started(
        begin(
            &coord,
            "s1",
            Action::Pause,
            BeginOptions::default().wait_timeout(Duration::MAX),
        )
        .await,
    );
    let c = coord.clone();
    let kill = tokio::spawn(async move {
        c.begin(
            TEAM,
            "s1",
            Action::Kill,
            BeginOptions::default().wait_timeout(Duration::MAX),
        )
        .await
    });
    parked_n(&coord, 1).await;
    pause.succeed().await.unwrap();
    let got = timeout(BOUND, kill).await.unwrap().unwrap().unwrap();
    assert!(matches!(got, Begun::AlreadyDone(_)), "{got:?}");
}

// ----- 4. numbers Redis cannot take: refused before anything is written ------------

/// Every public option and argument, tried with `Duration::MAX`, `u64::MAX`,
/// empty and huge values: no panic, a clear `InvalidInput`, and every key
/// byte-for-byte unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_values_are_refused_and_write_nothing() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let before = dump_all(&redis).await;
    let huge = "x".repeat(64 * 1024 + 1);
    let far = UNIX_EPOCH
        .checked_add(Duration::from_secs(1 << 44))
        .unwrap();
    let mut cases: Vec<(&str, Result<(), Error>)> = Vec::new();
    macro_rules! case {
        ($name:expr, $call:expr) => {
            cases.push(($name, timeout(BOUND, $call).await.expect($name).map(|_| ())));
        };
    }
    for lease in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 1000),
        Duration::from_millis((1 << 50) + 1),
        Duration::ZERO,
        Duration::from_millis(9),
    ] {
        case!(
            "begin lease",
            coord.begin(
                TEAM,
                "s1",
                Action::Pause,
                BeginOptions::default().lease(lease)
            )
        );
    }
    case!(
        "begin empty execution",
        coord.begin(
            TEAM,
            "s1",
            Action::Pause,
            BeginOptions::default().expect_execution("")
        )
    );
    case!(
        "begin empty team",
        coord.begin("", "s1", Action::Pause, BeginOptions::default())
    );
    case!(
        "begin huge id",
        coord.begin(TEAM, &huge, Action::Pause, BeginOptions::default())
    );
    for end in [
        Duration::MAX.into(),
        far.into(),
        (UNIX_EPOCH - Duration::from_secs(1)).into(),
    ] {
        case!(
            "register end time",
            coord.register(NewSandbox {
                end_time: end,
                ..sandbox("s2", "e1")
            })
        );
        case!("set_end_time", coord.set_end_time(TEAM, "s1", end, None));
    }
    case!(
        "register huge data",
        coord.register(NewSandbox {
            data: huge.clone(),
            ..sandbox("s2", "e1")
        })
    );
    case!(
        "register empty execution",
        coord.register(sandbox("s2", ""))
    );
    case!("register empty id", coord.register(sandbox("", "e1")));
    case!("reserve ttl max", coord.reserve(TEAM, "s2", Duration::MAX));
    case!(
        "reserve ttl zero",
        coord.reserve(TEAM, "s2", Duration::ZERO)
    );
    case!(
        "reserve_resume ttl max",
        coord.reserve_resume(TEAM, "s1", Duration::MAX)
    );
    case!("due limit 0", coord.due_for_eviction(TEAM, 0));
    case!("due limit max", coord.due_for_eviction(TEAM, usize::MAX));
    case!("due_all limit 0", coord.due_for_eviction_all(0));
    case!("list_page count 0", coord.list_page(TEAM, None, 0));
    case!(
        "list_page count max",
        coord.list_page(TEAM, None, usize::MAX)
    );
    case!(
        "list_page bad after",
        coord.list_page(TEAM, Some("a b"), 10)
    );
    case!(
        "team limit u64::MAX",
        coord.set_team_limit(TEAM, Some(usize::MAX))
    );
    case!(
        "finish bad holder",
        coord.finish(
            TEAM,
            "s1",
            Action::Pause,
            u64::MAX,
            "a b",
            sandbox_coordinator::Finish::Succeeded
        )
    );
    case!(
        "remove_execution empty",
        coord.remove_execution(TEAM, "s1", "")
    );
    case!("count bad team", coord.count("a:b"));
    let mut wrong = Vec::new();
    for (name, got) in &cases {
        if !matches!(got, Err(Error::InvalidInput { .. })) {
            wrong.push(format!("{name}: {got:?}"));
        }
    }
    for (name, build) in [
        (
            "tombstone retention MAX",
            Coordinator::builder(redis.url()).tombstone_retention(Duration::MAX),
        ),
        (
            "outcome retention MAX",
            Coordinator::builder(redis.url()).outcome_retention(Duration::MAX),
        ),
        (
            "outcome retention 0",
            Coordinator::builder(redis.url()).outcome_retention(Duration::ZERO),
        ),
        (
            "wait_for_replicas MAX",
            Coordinator::builder(redis.url()).wait_for_replicas(1, Duration::MAX),
        ),
        (
            "team_limit MAX",
            Coordinator::builder(redis.url()).team_limit(usize::MAX),
        ),
        (
            "namespace empty",
            Coordinator::builder(redis.url()).namespace(""),
        ),
        (
            "namespace with {",
            Coordinator::builder(redis.url()).namespace("a{b"),
        ),
    ] {
        let got = timeout(BOUND, build.build()).await.expect(name).map(|_| ());
        if !matches!(got, Err(Error::InvalidInput { .. })) {
            wrong.push(format!("{name}: {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as InvalidInput:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        dump_all(&redis).await,
        before,
        "a refused call wrote something"
    );
}

// ----- 5. a dangling expiry entry -------------------------------------------------

/// Records that vanished behind the library's back (an operator's DEL,
/// maxmemory eviction) leave entries in the expiry index; with as many of
/// them as the evictor's limit, the real due sandbox is still returned —
/// they are swept where the script sees the record missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_expiry_entries_never_starve_eviction() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    let past = SystemTime::now() - Duration::from_secs(60);
    for i in 0..5 {
        let id = format!("gone{i}");
        coord
            .register(NewSandbox {
                end_time: (past - Duration::from_secs(10)).into(),
                ..sandbox(&id, "e1")
            })
            .await
            .unwrap();
        let key = coord.namespace().sandbox(TEAM, &id).unwrap().record;
        raw(&mut conn, &["DEL", &key]).await;
    }
    coord
        .register(NewSandbox {
            end_time: past.into(),
            ..sandbox("real", "e1")
        })
        .await
        .unwrap();
    assert_eq!(coord.due_for_eviction(TEAM, 5).await.unwrap(), ["real"]);
    assert_eq!(
        coord.due_for_eviction_all(5).await.unwrap(),
        [(TEAM.to_string(), "real".to_string())]
    );
    // The swept entries are gone from every index.
    fixture::assert_index_agrees(&redis, &coord, &["real"]).await;
    let ids = raw(
        &mut conn,
        &[
            "ZRANGE",
            &coord.namespace().team(TEAM).unwrap().key("ids"),
            "0",
            "-1",
        ],
    )
    .await;
    assert_eq!(ids, ["real"]);
}

// ----- 7. tables that break one holder: refused, and refused by the script -----------

/// A rule that would start over a live lease is refused by `build()`
/// naming the cell; and the script itself refuses such a decision if it
/// ever got one (a hand-edited script text), writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_break_one_holder_are_refused_by_build_and_by_the_script() {
    let redis = TestRedis::start().await;
    let broken = Lifecycle::sandbox().with_rule(
        Action::Kill,
        State::Pausing,
        sandbox_coordinator::LeaseView::Live,
        sandbox_coordinator::Decision::Start,
    );
    let err = Coordinator::builder(redis.url())
        .lifecycle(broken)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { why, .. } if why.contains("kill on pausing with a live lease")),
        "{err}"
    );
    // The defensive check: the kill script with its generated rule edited
    // to start over a live pause.
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(begin(&coord, "s1", Action::Pause, BeginOptions::default()).await);
    let edited = fixture::script(&coord, "begin_kill").replace(
        "if s == 'pausing' then if live then return 'wait' end return 'start' end",
        "if s == 'pausing' then return 'start' end",
    );
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let mut conn = redis.client().await;
    let before = dump_all(&redis).await;
    let reply = raw(
        &mut conn,
        &[
            "EVAL",
            &edited,
            "1",
            &keys.record,
            &keys.team.prefix,
            "s1",
            "x/1",
            "30000",
            "",
            "0",
            "4000",
        ],
    )
    .await;
    assert_eq!(reply[0], "corrupt", "{reply:?}");
    assert_eq!(dump_all(&redis).await, before);
    pause.succeed().await.unwrap();
}

// ----- 9. remove pinned to an execution ---------------------------------------------

/// A removal pinned to the execution it meant cannot delete the next
/// incarnation registered meanwhile (a resume won the race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_remove_cannot_delete_a_new_incarnation() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(begin(&coord, "s1", Action::Pause, BeginOptions::default()).await)
        .succeed()
        .await
        .unwrap();
    coord.register(sandbox("s1", "e2")).await.unwrap();
    let err = coord.remove_execution(TEAM, "s1", "e1").await.unwrap_err();
    assert!(
        matches!(&err, Error::ExecutionMismatch { expected, actual, .. } if expected == "e1" && actual == "e2"),
        "{err}"
    );
    assert!(coord.get(TEAM, "s1").await.unwrap().is_some());
    assert!(coord.remove_execution(TEAM, "s1", "e2").await.unwrap());
    assert!(
        !coord.remove_execution(TEAM, "s1", "e2").await.unwrap(),
        "retry-safe"
    );
}

// ----- 10. end times by server time -----------------------------------------------

/// An end time given as a duration is added to the Redis server's clock
/// inside the script (register and set_end_time): the API server's clock
/// does not move eviction deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_times_from_now_are_reckoned_by_the_server_clock() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    let before = server_now_ms(&mut conn).await;
    let (sb, _) = coord
        .register(NewSandbox {
            end_time: Duration::from_secs(60).into(),
            ..sandbox("s1", "e1")
        })
        .await
        .unwrap();
    let after = server_now_ms(&mut conn).await;
    assert!(
        (before + 60_000..=after + 60_000).contains(&sb.end_ms()),
        "{}",
        sb.end_ms()
    );
    let before = server_now_ms(&mut conn).await;
    coord
        .set_end_time(TEAM, "s1", Duration::from_secs(5), None)
        .await
        .unwrap();
    let after = server_now_ms(&mut conn).await;
    let end = coord.get(TEAM, "s1").await.unwrap().unwrap().end_ms();
    assert!((before + 5_000..=after + 5_000).contains(&end), "{end}");
    // The expiry index has the same deadline.
    let index = fixture::expiry_index(&redis, &coord).await;
    assert_eq!(index, [("s1".to_string(), end)]);
}

// ----- 11. an outcome that can no longer be read back --------------------------------

/// A joiner that wakes after the transition it joined ended, the record
/// moved on, and that outcome's retention passed cannot know how it ended:
/// `OutcomeUnknown`, never `Abandoned` (it may have succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_can_no_longer_be_read_is_outcome_unknown() {
    let redis = TestRedis::start().await;
    let holder = coordinator_with(&redis, |b| b.outcome_retention(Duration::from_millis(1))).await;
    // The joiner learns nothing by notification and polls rarely.
    let joiner = coordinator_with(&redis, |b| {
        b.outcome_retention(Duration::from_millis(1))
            .notifications(false)
            .poll_interval(Duration::from_secs(3))
    })
    .await;
    holder.register(sandbox("s1", "e1")).await.unwrap();
    // No watchdog: from here on every script call is the joiner's.
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
    let mut conn = redis.client().await;
    let scripts = |c: &std::collections::BTreeMap<String, u64>| {
        c.get("evalsha").copied().unwrap_or(0) + c.get("eval").copied().unwrap_or(0)
    };
    let base = scripts(&command_calls(&mut conn).await);
    let j = joiner.clone();
    let join = tokio::spawn(async move {
        j.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked_n(&joiner, 1).await;
    // The joiner's begin (it joins) and its first check must both run
    // while the pause is live: a first check after the pause ended would
    // read its outcome. A parked waiter makes that check just after it
    // parks, then sleeps for its poll interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    while scripts(&command_calls(&mut conn).await) < base + 2 {
        assert!(Instant::now() < deadline, "the joiner never checked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pause.succeed().await.unwrap();
    // The record moves on: resumed and snapshotted; the pause's outcome key
    // has expired (1 ms).
    holder.register(sandbox("s1", "e2")).await.unwrap();
    started(begin(&holder, "s1", Action::Snapshot, BeginOptions::default()).await)
        .succeed()
        .await
        .unwrap();
    match timeout(BOUND, join).await.unwrap().unwrap() {
        Err(Error::OutcomeUnknown {
            fence: f, action, ..
        }) => {
            assert_eq!((f, action), (fence, Action::Pause));
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
}

// ----- 12. a hand-edited lease ------------------------------------------------------

/// A lease edited by hand to (practically) never end does not make waiters
/// re-check every few milliseconds: they wait for the poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_endless_lease_does_not_make_waiters_spin() {
    let redis = TestRedis::start().await;
    let mut conn = redis.client().await;
    let setup = coordinator(&redis).await;
    setup.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(
        begin(
            &setup,
            "s1",
            Action::Pause,
            BeginOptions::default().watchdog(false),
        )
        .await,
    );
    let keys = setup.namespace().sandbox(TEAM, "s1").unwrap();
    raw(
        &mut conn,
        &["HSET", &keys.record, "until_ms", "9007199254740991"],
    )
    .await;
    let chaos = fixture::proxy::Proxy::start(&redis.url()).await;
    let joiner = Coordinator::builder(chaos.url())
        .namespace(redis.namespace())
        .notifications(false)
        .poll_interval(Duration::from_millis(250))
        .build()
        .await
        .unwrap();
    let j = joiner.clone();
    let join = tokio::spawn(async move {
        j.begin(
            TEAM,
            "s1",
            Action::Pause,
            BeginOptions::default().wait_timeout(Duration::from_secs(2)),
        )
        .await
    });
    let got = timeout(BOUND, join).await.unwrap().unwrap();
    assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
    let checks = chaos.commands().iter().filter(|c| *c == "EVALSHA").count();
    // 2 s at a 250 ms poll: about 8 checks, plus the begin and the first.
    assert!(checks <= 14, "{checks} checks in 2 s");
    drop(pause);
}

// ----- 13. a half-open notification connection --------------------------------------

/// A notification connection that goes silent without closing (a dead
/// network path) is found by the health check: it is replaced, and every
/// waiter re-checks at once instead of falling back to its poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_notification_connection_is_found_and_replaced() {
    let redis = TestRedis::start().await;
    let chaos = Chaos::start(&redis.url()).await;
    let waiters = Coordinator::builder(chaos.url())
        .namespace(redis.namespace())
        .poll_interval(Duration::from_secs(60))
        .health_check_interval(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let holder = coordinator(&redis).await;
    holder.register(sandbox("s1", "e1")).await.unwrap();
    let pause = started(begin(&holder, "s1", Action::Pause, BeginOptions::default()).await);
    let fence = pause.fence();
    let w = waiters.clone();
    let join = tokio::spawn(async move {
        w.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked_n(&waiters, 1).await;
    wait_until("the team subscribed", BOUND, || {
        waiters.subscriptions() == 1
    })
    .await;
    let epoch = waiters.subscription_epoch();
    // Every open connection through the proxy goes silent for 30 s.
    chaos.set_faults(Faults {
        blackhole: 1.0,
        blackhole_for: Duration::from_secs(30),
        ..Faults::default()
    });
    pause.succeed().await.unwrap();
    // The health check notices, a new connection is made, the waiter
    // re-checks and learns the outcome — long before its 60 s poll.
    tokio::time::sleep(Duration::from_millis(100)).await;
    chaos.calm();
    let got = timeout(Duration::from_secs(10), join)
        .await
        .expect("the waiter fell back to its 60 s poll")
        .unwrap()
        .unwrap();
    assert!(
        matches!(got, Begun::AlreadyDone(ref d) if d.why == sandbox_coordinator::DoneReason::Joined { fence }),
        "{got:?}"
    );
    // Whichever way the waiter learned it (its re-check after the
    // reconnect, or a retried check that met a fresh command connection),
    // the half-open subscription itself is found and replaced.
    wait_until("the subscription replaced", Duration::from_secs(5), || {
        waiters.subscription_epoch() > epoch
    })
    .await;
}
