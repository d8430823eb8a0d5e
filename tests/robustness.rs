//! Robustness: a flushed script cache, a killed notification connection, a
//! restarted server, bad ids, corrupt or foreign data in Redis, and the cost
//! of the uncontended path measured on the wire and inside Redis.

mod fixture;
mod support;

use fixture::started;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixture::proxy::Proxy;
use fixture::{
    TEAM, command_calls, coordinator, coordinator_with, dump_all, parked_n, raw, sandbox,
    wait_until,
};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, DoneReason, Error, Finish, NewSandbox, State,
};
use support::{Backend, TestRedis};
use tokio::time::{Instant, timeout};

/// Bound on any single call in these tests: a hang is a failure, not a wait.
const CALL_BOUND: Duration = Duration::from_secs(20);

async fn begin(coord: &Coordinator, id: &str, action: Action) -> Begun {
    timeout(
        CALL_BOUND,
        coord.begin(TEAM, id, action, BeginOptions::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("{action} {id} hung"))
    .unwrap_or_else(|e| panic!("{action} {id}: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn script_loaded(conn: &mut redis::aio::MultiplexedConnection, sha: &str) -> bool {
    raw(conn, &["SCRIPT", "EXISTS", sha]).await == ["1"]
}

// ----- script cache ---------------------------------------------------------

/// `SCRIPT FLUSH`, and checks that no script of the coordinator survived.
async fn flush_scripts(conn: &mut redis::aio::MultiplexedConnection, coord: &Coordinator) {
    assert_eq!(raw(conn, &["SCRIPT", "FLUSH"]).await, ["OK"]);
    for s in coord.scripts() {
        assert!(!script_loaded(conn, s.sha()).await, "{} survived", s.name());
    }
}

fn sha(coord: &Coordinator, name: &str) -> String {
    coord
        .scripts()
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap()
        .sha()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_between_calls_is_recovered() {
    let redis = TestRedis::start().await;
    let proxy = Proxy::start(&redis.url()).await;
    let coord = Coordinator::builder(proxy.url())
        .namespace(redis.namespace())
        .build()
        .await
        .unwrap();
    let mut conn = redis.client().await;
    // The team's first record also lists its slot (SADD, SET), once.
    coord.register(sandbox("s0", "e1")).await.unwrap();

    flush_scripts(&mut conn, &coord).await;
    proxy.clear();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    // NOSCRIPT costs one EVAL, once: EVAL caches the script again.
    assert_eq!(proxy.commands(), ["EVALSHA", "EVAL"]);
    assert!(script_loaded(&mut conn, &sha(&coord, "register")).await);
    proxy.clear();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    assert_eq!(proxy.commands(), ["EVALSHA"]);

    let pause = started(begin(&coord, "s1", Action::Pause).await);
    flush_scripts(&mut conn, &coord).await;
    pause.succeed().await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Paused
    );
    flush_scripts(&mut conn, &coord).await;
    match begin(&coord, "s1", Action::Kill).await {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
        Begun::Started(t) => panic!("kill of a paused sandbox started {}", t.fence()),
    }
    flush_scripts(&mut conn, &coord).await;
    coord.register(sandbox("s2", "e1")).await.unwrap();
    flush_scripts(&mut conn, &coord).await;
    let snap = started(begin(&coord, "s2", Action::Snapshot).await);
    flush_scripts(&mut conn, &coord).await;
    snap.extend().await.unwrap();
    flush_scripts(&mut conn, &coord).await;
    snap.fail("disk full").await.unwrap();
    flush_scripts(&mut conn, &coord).await;
    let later = SystemTime::now() + Duration::from_secs(60);
    coord.set_end_time(TEAM, "s2", later, None).await.unwrap();
    flush_scripts(&mut conn, &coord).await;
    assert_eq!(
        coord.wait_idle(TEAM, "s2", CALL_BOUND).await.unwrap().state,
        State::Running
    );
    flush_scripts(&mut conn, &coord).await;
    assert!(coord.due_for_eviction(TEAM, 10).await.unwrap().is_empty());
    flush_scripts(&mut conn, &coord).await;
    assert!(coord.remove(TEAM, "s2").await.unwrap());
    fixture::assert_index_agrees(&redis, &coord, &["s0", "s1", "s2"]).await;
}

// ----- notification connection ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_connection_killed_while_joiners_wait() {
    let redis = TestRedis::start().await;
    // A poll far beyond the bound below: joiners that return in time were
    // woken by a notification, not by the poll or the lease deadline.
    let coord = coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(30))).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let leader = started(begin(&coord, "s1", Action::Pause).await);
    let fence = leader.fence();
    assert_eq!(coord.subscription_epoch(), 1);

    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let c = coord.clone();
            tokio::spawn(async move {
                c.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
                    .await
            })
        })
        .collect();
    parked_n(&coord, 4).await;
    // A joiner counts as waiting before its first check of the outcome
    // (settle.lua) is sent: wait for those four checks too, so that the
    // count below sees only the re-checks. So far: register, five begins,
    // four first checks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while command_calls(&mut conn).await["evalsha"] < 10 {
        assert!(
            Instant::now() < deadline,
            "joiners never made their first check"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let evalsha_before = command_calls(&mut conn).await["evalsha"];

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    if redis.backend() == Backend::External {
        assert!(killed >= 1);
    } else {
        assert_eq!(killed, 1, "exactly the coordinator's subscription");
    }

    // The notifier resubscribes, and every waiter re-checks at once (one
    // settle.lua call each), then parks again.
    wait_until("resubscription", Duration::from_secs(10), || {
        coord.subscription_epoch() >= 2
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let evalsha = command_calls(&mut conn).await["evalsha"];
        if evalsha >= evalsha_before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waiters did not re-check after the resubscription ({} of 4)",
            evalsha - evalsha_before
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(coord.waiting(), 4, "every joiner is still waiting");
    assert!(joiners.iter().all(|j| !j.is_finished()));

    let t0 = Instant::now();
    leader.succeed().await.unwrap();
    for j in joiners {
        let got = timeout(Duration::from_secs(5), j)
            .await
            .expect("joiner not woken within 5 s of the success (poll is 30 s)")
            .unwrap()
            .unwrap();
        match got {
            Begun::AlreadyDone(d) => {
                assert_eq!(d.why, DoneReason::Joined { fence });
                assert_eq!(d.state, State::Paused);
            }
            Begun::Started(t) => panic!("a joiner started {}", t.fence()),
        }
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "joiners took {took:?}");
    assert_eq!(coord.waiting(), 0);
}

/// The notice is published while the subscription is down, so it is lost
/// for this coordinator; the re-check every waiter makes when the
/// subscription comes back finds the recorded outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_lost_while_disconnected_is_found_by_the_recheck() {
    let redis = TestRedis::start().await;
    let proxy = Proxy::start(&redis.url()).await;
    // One pooled connection: when the proxy cuts the connections, a call
    // sees at most one dead one (see
    // after_all_connections_break_the_next_call_succeeds for more).
    let waiters = Coordinator::builder(proxy.url())
        .namespace(redis.namespace())
        .poll_interval(Duration::from_secs(30))
        .pool_size(1)
        .build()
        .await
        .unwrap();
    let holder = coordinator(&redis).await;
    holder.register(sandbox("s1", "e1")).await.unwrap();
    let leader = started(begin(&holder, "s1", Action::Kill).await);
    let fence = leader.fence();

    let joiners: Vec<_> = (0..3)
        .map(|_| {
            let c = waiters.clone();
            tokio::spawn(async move {
                c.begin(TEAM, "s1", Action::Kill, BeginOptions::default())
                    .await
            })
        })
        .collect();
    parked_n(&waiters, 3).await;
    // Their three begins and first checks went through (a joiner counts as
    // waiting just before its first check is sent).
    wait_until("the joiners' first checks", Duration::from_secs(10), || {
        proxy.commands().iter().filter(|c| *c == "EVALSHA").count() >= 6
    })
    .await;
    let epoch = waiters.subscription_epoch();

    // Cut the waiters' coordinator off (subscription and command
    // connections), succeed while it is cut off, then let it back in.
    proxy.refuse(true);
    proxy.sever();
    leader.succeed().await.unwrap();
    assert_eq!(waiters.subscription_epoch(), epoch, "still disconnected");
    let t0 = Instant::now();
    proxy.refuse(false);

    for j in joiners {
        let got = timeout(Duration::from_secs(5), j)
            .await
            .expect("joiner not woken within 5 s of reconnecting (poll is 30 s)")
            .unwrap()
            .unwrap();
        match got {
            Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Joined { fence }),
            Begun::Started(t) => panic!("a joiner started {}", t.fence()),
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(waiters.subscription_epoch() > epoch);
    assert_eq!(waiters.waiting(), 0);
}

// ----- server restart ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_redis_restart_loses_scripts_and_the_coordinator_recovers() {
    support::require(support::Capability::Restart);
    // No persistence on any backend: the restart loses the data.
    let redis = TestRedis::start_with_args(&["--save", "", "--appendonly", "no"]).await;
    redis.require(support::Capability::Restart);
    let coord = coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(30))).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    started(begin(&coord, "s1", Action::Pause).await)
        .succeed()
        .await
        .unwrap();
    let epoch = coord.subscription_epoch();
    let url = redis.url();

    redis.restart().await;
    let mut conn = redis.client().await;
    assert!(
        !script_loaded(&mut conn, &sha(&coord, "begin_pause")).await,
        "a restart empties the script cache"
    );

    let coord = if redis.url() == url {
        coord
    } else {
        // A container restart mapped a new port: the old coordinator's URL
        // is dead for good. Its calls fail promptly with a retryable error
        // (they never hang); a new coordinator is needed.
        let err = timeout(CALL_BOUND, coord.get(TEAM, "s1"))
            .await
            .expect("a call on the old URL hung")
            .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        eprintln!(
            "URL changed {url} -> {}; old coordinator: {err}",
            redis.url()
        );
        drop(coord);
        coordinator_with(&redis, |b| b.poll_interval(Duration::from_secs(30))).await
    };

    // The data is gone, and the calls work again (pool reconnects, NOSCRIPT
    // falls back to EVAL).
    let got = timeout(CALL_BOUND, coord.get(TEAM, "s1"))
        .await
        .expect("get hung after the restart");
    assert_eq!(
        got.unwrap(),
        None,
        "data survived a restart without persistence"
    );
    let err = timeout(
        CALL_BOUND,
        coord.begin(TEAM, "s1", Action::Kill, BeginOptions::default()),
    )
    .await
    .expect("begin hung")
    .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // The notifier resubscribed (same coordinator) or subscribed (new one).
    wait_until("resubscription", Duration::from_secs(15), || {
        coord.subscription_epoch() > epoch
            || (redis.url() != url && coord.subscription_epoch() >= 1)
    })
    .await;

    // A full transition with a joiner woken by a notification.
    coord.register(sandbox("s1", "e2")).await.unwrap();
    let leader = started(begin(&coord, "s1", Action::Pause).await);
    let fence = leader.fence();
    let c = coord.clone();
    let joiner = tokio::spawn(async move {
        c.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
    });
    parked_n(&coord, 1).await;
    leader.succeed().await.unwrap();
    let got = timeout(Duration::from_secs(5), joiner)
        .await
        .expect("joiner not woken by a notification after the restart")
        .unwrap()
        .unwrap();
    assert!(
        matches!(got, Begun::AlreadyDone(ref d) if d.why == DoneReason::Joined { fence }),
        "{got:?}"
    );
    assert!(script_loaded(&mut conn, &sha(&coord, "begin_pause")).await);
    assert!(script_loaded(&mut conn, &sha(&coord, "finish")).await);
}

/// Every command connection breaks at once (as in a server restart or a
/// failover): the next call must still succeed on a fresh connection; a
/// caller should not see one error per dead connection. For each way of
/// connecting: one multiplexed connection (the default), four round robin,
/// and a pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_all_connections_break_the_next_call_succeeds() {
    use sandbox_coordinator::Connections;
    let redis = TestRedis::start().await;
    for (connections, open) in [
        (Connections::Multiplexed(1), 1),
        (Connections::Multiplexed(4), 4),
        (Connections::Pooled(8), 5),
    ] {
        let proxy = Proxy::start(&redis.url()).await;
        let coord = Coordinator::builder(proxy.url())
            .namespace(redis.namespace())
            .connections(connections)
            .build()
            .await
            .unwrap();
        coord.register(sandbox("s1", "e1")).await.unwrap();

        // Open the connections: concurrent calls (one proxied connection
        // is the subscription).
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.accepted() < open + 1 {
            assert!(
                Instant::now() < deadline,
                "{connections:?}: never opened {open}"
            );
            let gets: Vec<_> = (0..16)
                .map(|_| {
                    let c = coord.clone();
                    tokio::spawn(async move { c.get(TEAM, "s1").await })
                })
                .collect();
            for g in gets {
                assert!(g.await.unwrap().unwrap().is_some());
            }
        }

        proxy.sever();
        for _ in 0..open {
            let first = timeout(CALL_BOUND, coord.get(TEAM, "s1"))
                .await
                .expect("get hung");
            assert!(
                matches!(first, Ok(Some(_))),
                "{connections:?}: a call after every connection broke: {first:?}"
            );
        }
        coord.remove(TEAM, "s1").await.unwrap();
    }
}

// ----- bad input ----------------------------------------------------------------

/// Every public call, by name, for the input matrices below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Register,
    Get,
    Begin(Action),
    SetEndTime,
    Remove,
    WaitIdle,
    Due,
    Finish,
    Abandon,
}

const ALL_OPS: [Op; 11] = [
    Op::Register,
    Op::Get,
    Op::Begin(Action::Pause),
    Op::Begin(Action::Kill),
    Op::Begin(Action::Snapshot),
    Op::SetEndTime,
    Op::Remove,
    Op::WaitIdle,
    Op::Due,
    Op::Finish,
    Op::Abandon,
];

/// Runs `op` with these ids. `exec` is the registered execution, or for
/// begin and set_end_time the pinned one (`None`: not pinned). Ok results
/// are rendered as text.
async fn call(
    coord: &Coordinator,
    op: Op,
    team: &str,
    id: &str,
    exec: Option<&str>,
) -> Result<String, Error> {
    let fut = async {
        match op {
            Op::Register => coord
                .register(NewSandbox {
                    team: team.into(),
                    id: id.into(),
                    execution: exec.unwrap_or("e1").into(),
                    end_time: Duration::from_secs(3600).into(),
                    data: "{}".into(),
                })
                .await
                .map(|(sb, how)| format!("{how:?} {:?}", sb.state)),
            Op::Get => coord.get(team, id).await.map(|sb| format!("{sb:?}")),
            Op::Begin(action) => {
                let mut opts = BeginOptions::default().wait_timeout(Duration::from_secs(2));
                opts.expect_execution = exec.map(str::to_string);
                coord.begin(team, id, action, opts).await.map(|b| match b {
                    Begun::Started(t) => format!("Started(fence {})", t.fence()),
                    Begun::AlreadyDone(d) => format!("{:?}", d.why),
                })
            }
            Op::SetEndTime => coord
                .set_end_time(
                    team,
                    id,
                    SystemTime::now() + Duration::from_secs(7200),
                    exec,
                )
                .await
                .map(|()| "ok".into()),
            Op::Remove => coord.remove(team, id).await.map(|r| format!("{r}")),
            Op::WaitIdle => coord
                .wait_idle(team, id, Duration::from_secs(2))
                .await
                .map(|sb| format!("{:?}", sb.state)),
            Op::Due => coord
                .due_for_eviction(team, 10)
                .await
                .map(|ids| format!("{ids:?}")),
            Op::Finish => coord
                .finish(team, id, Action::Pause, 3, "h", Finish::Succeeded)
                .await
                .map(|()| "ok".into()),
            Op::Abandon => coord
                .abandon(team, id, 3, "operator")
                .await
                .map(|r| format!("{r:?}")),
        }
    };
    timeout(CALL_BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{op:?} {team}/{id} hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_change_nothing() {
    let redis = TestRedis::start().await;
    // Setup through a direct coordinator; the calls under test go through a
    // recording proxy, to show that none of them reaches Redis.
    let setup = coordinator(&redis).await;
    setup.register(sandbox("s1", "e1")).await.unwrap();
    setup.register(sandbox("s2", "e1")).await.unwrap();
    started(begin(&setup, "s2", Action::Pause).await)
        .succeed()
        .await
        .unwrap();
    setup.register(sandbox("s3", "e1")).await.unwrap();
    let held = started(begin(&setup, "s3", Action::Snapshot).await);

    let proxy = Proxy::start(&redis.url()).await;
    let coord = Coordinator::builder(proxy.url())
        .namespace(redis.namespace())
        .build()
        .await
        .unwrap();

    let long = "x".repeat(129);
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("129 bytes", long),
        ("130 bytes in 65 chars", "é".repeat(65)),
        ("open brace", "a{b".into()),
        ("close brace", "a}b".into()),
        ("colon", "a:b".into()),
        ("space", "a b".into()),
        ("tab", "a\tb".into()),
        ("newline", "a\nb".into()),
        ("control char", "a\u{1}b".into()),
        ("nul", "a\u{0}b".into()),
        ("no-break space", "a\u{a0}b".into()),
        ("only a brace", "{".into()),
    ];

    let conn = redis.client().await;
    let dbsize = || {
        let mut conn = conn.clone();
        async move { raw(&mut conn, &["DBSIZE"]).await }
    };
    let size_before = dbsize().await;
    let before = dump_all(&redis).await;
    proxy.clear();

    let mut wrong = Vec::new();
    let mut calls = 0;
    for (what, value) in &bad {
        let v = value.as_str();
        for op in ALL_OPS {
            // (slot, team, id, exec)
            let mut cases = vec![("team id", v, "s1", None)];
            if op != Op::Due {
                cases.push(("sandbox id", TEAM, v, None));
            }
            if matches!(op, Op::Register | Op::Begin(_) | Op::SetEndTime) {
                cases.push(("execution id", TEAM, "s1", Some(v)));
            }
            for (slot, team, id, exec) in cases {
                calls += 1;
                let got = call(&coord, op, team, id, exec).await;
                if !matches!(got, Err(Error::InvalidInput { .. })) {
                    wrong.push(format!("{op:?} with {what} as {slot}: {got:?}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "bad ids not refused with InvalidInput:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        proxy.commands(),
        Vec::<String>::new(),
        "InvalidInput calls sent commands to Redis"
    );
    if redis.backend() != Backend::External {
        assert_eq!(dbsize().await, size_before);
    }
    assert_eq!(
        dump_all(&redis).await,
        before,
        "a bad-id call wrote something"
    );
    eprintln!("{calls} bad-id calls refused, nothing sent");

    // The boundaries: 128 bytes and non-ASCII letters are fine.
    let max = "y".repeat(128);
    for id in [max.as_str(), "sbx-ü.é_1"] {
        let (_, how) = coord.register(sandbox(id, "e1")).await.unwrap();
        assert_eq!(how, sandbox_coordinator::Registration::Created, "{id}");
        assert!(coord.get(TEAM, id).await.unwrap().is_some());
    }
    held.succeed().await.unwrap();
}

// ----- corrupt and foreign data -------------------------------------------------

/// One corruption: its name and what it breaks: "record" (a field or the
/// key's type) or an index of the team ("expiry", "tombs", "ids", "resv",
/// "team").
struct Corruption {
    name: &'static str,
    key: &'static str,
}

impl Corruption {
    /// A wrong schema version must give `SchemaMismatch`, the rest `Corrupt`.
    fn is_schema(&self) -> bool {
        self.name == "schema 99"
    }
}

const fn corruption(name: &'static str, key: &'static str) -> Corruption {
    Corruption { name, key }
}

const CORRUPTIONS: &[Corruption] = &[
    corruption("unknown state", "record"),
    corruption("no exec", "record"),
    corruption("no fence", "record"),
    corruption("non-numeric end_ms", "record"),
    corruption("end_ms 1e12", "record"),
    corruption("fence -5", "record"),
    corruption("fence 0x10", "record"),
    corruption("fence 2^53", "record"),
    corruption("until_ms nan", "record"),
    corruption("until_ms without a holder", "record"),
    corruption("holder on a running record", "record"),
    corruption("unknown last_outcome", "record"),
    corruption("last_action without last_fence", "record"),
    corruption("queue garbage", "record"),
    corruption("resv garbage", "record"),
    corruption("no lifecycle digest", "record"),
    corruption("schema 99", "record"),
    corruption("record is a string", "record"),
    corruption("record is a list", "record"),
    corruption("expiry is a string", "expiry"),
    corruption("tombs is a string", "tombs"),
    corruption("ids is a string", "ids"),
    corruption("resv is a string", "resv"),
    corruption("team is a string", "team"),
];

/// Writes a sound running record s1 (fence 3, with history) through the
/// library, then breaks it.
async fn write_corrupt(
    conn: &mut redis::aio::MultiplexedConnection,
    coord: &Coordinator,
    c: &Corruption,
) {
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    raw(
        conn,
        &[
            "HSET",
            &keys.record,
            "fence",
            "3",
            "action",
            "snapshot",
            "last_fence",
            "3",
            "last_action",
            "snapshot",
            "last_outcome",
            "succeeded",
            "last_reason",
            "",
        ],
    )
    .await;
    let rec = keys.record.as_str();
    match c.name {
        "unknown state" => raw(conn, &["HSET", rec, "state", "sleeping"]).await,
        "no exec" => raw(conn, &["HDEL", rec, "exec"]).await,
        "no fence" => raw(conn, &["HDEL", rec, "fence"]).await,
        "non-numeric end_ms" => raw(conn, &["HSET", rec, "end_ms", "soon"]).await,
        "end_ms 1e12" => raw(conn, &["HSET", rec, "end_ms", "1e12"]).await,
        "fence -5" => raw(conn, &["HSET", rec, "fence", "-5"]).await,
        "fence 0x10" => raw(conn, &["HSET", rec, "fence", "0x10"]).await,
        "fence 2^53" => raw(conn, &["HSET", rec, "fence", "9007199254740992"]).await,
        "until_ms nan" => {
            raw(
                conn,
                &[
                    "HSET",
                    rec,
                    "state",
                    "snapshotting",
                    "holder",
                    "h",
                    "until_ms",
                    "nan",
                ],
            )
            .await
        }
        "until_ms without a holder" => raw(conn, &["HSET", rec, "until_ms", "5"]).await,
        "holder on a running record" => {
            raw(
                conn,
                &["HSET", rec, "holder", "h", "until_ms", "99999999999999"],
            )
            .await
        }
        "unknown last_outcome" => raw(conn, &["HSET", rec, "last_outcome", "exploded"]).await,
        "last_action without last_fence" => raw(conn, &["HDEL", rec, "last_fence"]).await,
        "queue garbage" => raw(conn, &["HSET", rec, "queue", "a b"]).await,
        "resv garbage" => raw(conn, &["HSET", rec, "resv", "tok"]).await,
        "no lifecycle digest" => raw(conn, &["HDEL", rec, "lc"]).await,
        "schema 99" => raw(conn, &["HSET", rec, "v", "99"]).await,
        "record is a string" => replace(conn, &keys.record).await,
        "record is a list" => {
            raw(conn, &["DEL", rec]).await;
            raw(conn, &["RPUSH", rec, "a", "b"]).await
        }
        "expiry is a string" => replace(conn, &keys.team.key("expiry")).await,
        "tombs is a string" => replace(conn, &keys.team.key("tombs")).await,
        "ids is a string" => replace(conn, &keys.team.key("ids")).await,
        "resv is a string" => replace(conn, &keys.team.key("resv")).await,
        "team is a string" => replace(conn, &keys.team.key("team")).await,
        other => panic!("unknown corruption {other}"),
    };
}

/// Replaces `key` with a string.
async fn replace(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    raw(conn, &["DEL", key]).await;
    raw(conn, &["SET", key, "x"]).await
}

/// What each call must refuse: the record (every call on one sandbox reads
/// and validates it) and the indexes its script writes (checked before the
/// first write).
fn reads(op: Op, key: &str) -> bool {
    match op {
        Op::Register => ["record", "expiry", "tombs", "ids", "resv", "team"].contains(&key),
        Op::Get | Op::WaitIdle | Op::Finish | Op::Abandon => key == "record",
        Op::Begin(Action::Snapshot) => key == "record",
        Op::Begin(_) => ["record", "expiry"].contains(&key),
        Op::SetEndTime => ["record", "expiry"].contains(&key),
        Op::Remove => ["record", "expiry", "tombs", "ids", "team"].contains(&key),
        Op::Due => key == "expiry",
    }
}

/// Every corruption x every public call, each on a fresh copy of the data.
/// A call that must notice (see [`reads`]) refuses with `Corrupt` (or
/// `SchemaMismatch`) and writes nothing; any other call may succeed, but
/// if it fails it must not have written anything either. No call may panic
/// or hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_change_nothing() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    let ops: Vec<(Op, Option<&str>)> = vec![
        (Op::Register, Some("e1")),
        (Op::Register, Some("e2")),
        (Op::Get, None),
        (Op::Begin(Action::Pause), None),
        (Op::Begin(Action::Kill), None),
        (Op::Begin(Action::Snapshot), None),
        (Op::SetEndTime, None),
        (Op::Remove, None),
        (Op::WaitIdle, None),
        (Op::Due, None),
        (Op::Finish, None),
        (Op::Abandon, None),
    ];

    let mut wrong = Vec::new();
    let mut table = Vec::new();
    for c in CORRUPTIONS {
        for &(op, exec) in &ops {
            fixture::clear_namespace(&redis).await;
            write_corrupt(&mut conn, &coord, c).await;
            let before = dump_all(&redis).await;
            let got = call(&coord, op, TEAM, "s1", exec).await;
            let after = dump_all(&redis).await;
            let cell = format!(
                "{} / {op:?}{}",
                c.name,
                exec.map(|e| format!("({e})")).unwrap_or_default()
            );
            table.push(format!("{cell}: {got:?}"));

            let must_notice = reads(op, c.key);
            let refused_clearly = match &got {
                Err(Error::SchemaMismatch { found, .. }) => c.is_schema() && found == "99",
                Err(Error::Corrupt { .. }) => !c.is_schema(),
                _ => false,
            };
            if must_notice && !refused_clearly {
                let want = if c.is_schema() {
                    "SchemaMismatch"
                } else {
                    "Corrupt"
                };
                wrong.push(format!("{cell}: want {want}, got {got:?}"));
            }
            if (must_notice || got.is_err()) && before != after {
                let mut changed = Vec::new();
                for key in before.keys().chain(after.keys()) {
                    if before.get(key) != after.get(key) && !changed.contains(key) {
                        changed.push(key.clone());
                    }
                }
                wrong.push(format!("{cell}: {got:?} but wrote {changed:?}"));
            }
        }
    }
    eprintln!("observed:\n{}", table.join("\n"));
    assert!(
        wrong.is_empty(),
        "corrupt data not refused cleanly ({} cells):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `finish` and `abandon` on a record that is corrupt but whose lease,
/// holder and fence look right: they must refuse like every other call, not
/// write an outcome or a state into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_and_abandon_on_corrupt_records_change_nothing() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    let keys = coord.namespace().sandbox(TEAM, "s1").unwrap();
    let until = (now_ms() + 60_000).to_string();
    let breaks: [(&str, &[&str]); 5] = [
        (
            "unknown state",
            &["HSET", &keys.record, "state", "sleeping"],
        ),
        ("no exec", &["HDEL", &keys.record, "exec"]),
        (
            "non-numeric end_ms",
            &["HSET", &keys.record, "end_ms", "soon"],
        ),
        ("schema 99", &["HSET", &keys.record, "v", "99"]),
        (
            "last_fence 1e3",
            &["HSET", &keys.record, "last_fence", "1e3"],
        ),
    ];
    let mut wrong = Vec::new();
    for (name, break_it) in breaks {
        for op in [Op::Finish, Op::Abandon] {
            fixture::clear_namespace(&redis).await;
            // A pause in flight with fence 3, held by h...
            coord.register(sandbox("s1", "e1")).await.unwrap();
            raw(
                &mut conn,
                &[
                    "HSET",
                    &keys.record,
                    "state",
                    "pausing",
                    "fence",
                    "3",
                    "action",
                    "pause",
                    "holder",
                    "h",
                    "until_ms",
                    &until,
                ],
            )
            .await;
            // ...in a record that is broken.
            raw(&mut conn, break_it).await;
            let before = dump_all(&redis).await;
            let got = match op {
                Op::Finish => coord
                    .finish(TEAM, "s1", Action::Pause, 3, "h", Finish::Succeeded)
                    .await
                    .map(|()| "ok".to_string()),
                _ => coord
                    .abandon(TEAM, "s1", 3, "operator")
                    .await
                    .map(|r| format!("{r:?}")),
            };
            let wrote = dump_all(&redis).await != before;
            let clear = matches!(
                got,
                Err(Error::Corrupt { .. } | Error::SchemaMismatch { .. })
            );
            if !clear || wrote {
                wrong.push(format!("{name} / {op:?}: {got:?}, wrote: {wrote}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "finish/abandon on corrupt records:\n{}",
        wrong.join("\n")
    );
}

/// Everything that held a fence is gone (the record removed, the team's
/// hash with its floor deleted behind the library's back): a new record of
/// the same id still gets fences above every earlier one (each new fence is
/// at least the server time in µs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_fence_floor_never_makes_fences_go_backwards() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let mut last = 0;
    for action in [Action::Snapshot, Action::Snapshot, Action::Snapshot] {
        let t = started(begin(&coord, "s1", action).await);
        assert!(t.fence() > last);
        last = t.fence();
        t.succeed().await.unwrap();
    }
    assert!(coord.remove(TEAM, "s1").await.unwrap());
    raw(
        &mut conn,
        &["DEL", &coord.namespace().team(TEAM).unwrap().key("team")],
    )
    .await;
    coord.register(sandbox("s1", "e2")).await.unwrap();
    let t = started(begin(&coord, "s1", Action::Pause).await);
    assert!(
        t.fence() > last,
        "fence went backwards: {} after {last}",
        t.fence()
    );
    t.succeed().await.unwrap();
}

// ----- cost -------------------------------------------------------------------

/// Runs `window` and returns what the coordinator sent on the wire (proxy)
/// and the `INFO commandstats` calls delta (commands scripts run inside
/// Redis count there too).
async fn measure<F: std::future::Future<Output = ()>>(
    proxy: &Proxy,
    conn: &mut redis::aio::MultiplexedConnection,
    window: F,
) -> (Vec<String>, BTreeMap<String, u64>) {
    proxy.clear();
    let before = command_calls(conn).await;
    window.await;
    let sent = proxy.commands();
    let after = command_calls(conn).await;
    let delta = after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .filter(|(k, d)| *d > 0 && k != "info")
        .collect();
    (sent, delta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_begin_and_succeed_cost_two_evalsha() {
    let redis = TestRedis::start().await;
    let proxy = Proxy::start(&redis.url()).await;
    let coord = Coordinator::builder(proxy.url())
        .namespace(redis.namespace())
        .build()
        .await
        .unwrap();
    // The measuring connection is opened before the windows (opening one
    // sends CLIENT SETINFO).
    let mut conn = redis.client().await;

    // Warm up: connections exist, scripts are loaded.
    coord.register(sandbox("warm", "e1")).await.unwrap();
    started(begin(&coord, "warm", Action::Pause).await)
        .succeed()
        .await
        .unwrap();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    eprintln!("warm-up sent {:?}", proxy.commands());

    let windows: [(&str, Action, bool); 2] = [
        ("begin(pause) + succeed", Action::Pause, true),
        ("begin(snapshot) + fail", Action::Snapshot, false),
    ];
    for (id, (what, action, ok)) in ["s1", "s2"].into_iter().zip(windows) {
        let (sent, delta) = measure(&proxy, &mut conn, async {
            let t = started(begin(&coord, id, action).await);
            if ok {
                t.succeed().await.unwrap();
            } else {
                t.fail("no space").await.unwrap();
            }
        })
        .await;
        eprintln!("{what}: sent {sent:?}");
        eprintln!("{what}: INFO commandstats delta {delta:?}");

        assert_eq!(sent, ["EVALSHA", "EVALSHA"], "{what}: commands on the wire");
        if redis.backend() == Backend::External {
            eprintln!("shared server: INFO commandstats deltas include other tests; not checked");
            continue;
        }
        assert_eq!(delta.get("evalsha"), Some(&2), "{what}: {delta:?}");
        for cmd in [
            "ping", "unwatch", "script", "eval", "multi", "exec", "watch", "hello", "client",
            "select",
        ] {
            assert_eq!(delta.get(cmd), None, "{what}: {cmd} ran: {delta:?}");
        }
        // The live holder's finish has no outcome to look up: an outcome
        // is recorded only as the lease is released. The team's sequence is
        // taken by one INCR that is also its check (notify.lua's
        // claim_sequence), and the announcement is built from the writes:
        // no GET, and one HMGET per script (its record), never a read back.
        assert_eq!(delta.get("get"), None, "{what}: a GET ran: {delta:?}");
        assert_eq!(
            delta.get("hmget"),
            Some(&2),
            "{what}: a script read its record more than once: {delta:?}"
        );
        assert_eq!(delta.get("incr"), Some(&2), "{what}: {delta:?}");
    }
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Paused
    );
    assert_eq!(
        coord.get(TEAM, "s2").await.unwrap().unwrap().state,
        State::Running
    );
}
