//! Durability and failover on a single primary with replicas (issue 9):
//! `wait_for_replicas` (WAIT in the same round trip; fewer acknowledgements
//! is `NotReplicated`), a replica promoted with `REPLICAOF NO ONE` behind one
//! address with no acknowledged transition lost, the answers of a demoted
//! or busy server (`READONLY`, `BUSY`: retryable, never `Corrupt`), and
//! fences that stay above every earlier one when Redis loses its data.

mod fixture;
mod support;

use fixture::started;

use std::time::Duration;

use fixture::chaos::Chaos;
use fixture::proxy::Proxy;
use fixture::{TEAM, dump_all, raw, sandbox};
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Error, Outcome, State};
use support::replicated::{Member, TestReplicated};
use support::{Capability, TestRedis};
use tokio::time::{Instant, timeout};

const BOUND: Duration = Duration::from_secs(20);

async fn wait_until_ok<T, F, Fut>(what: &str, mut f: F) -> T
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

// ----- wait_for_replicas ---------------------------------------------------------------

/// With a replica, every write script is followed by `WAIT 1 ..` in the
/// same round trip and succeeds; with the replica gone, a write is
/// `NotReplicated` (retryable) — it happened on the primary, and a begin
/// whose start was not replicated is failed in the background, and a
/// reservation given back, never handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_reports_fewer_acknowledgements_as_not_replicated() {
    let group = TestReplicated::start(1).await;
    let proxy = Proxy::start(&group.primary_url()).await;
    let ns = format!("dw{}", std::process::id());
    let coord = Coordinator::builder(proxy.url())
        .namespace(&ns)
        .wait_for_replicas(1, Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    coord.register(sandbox("first", "e1")).await.unwrap();
    proxy.clear();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let t = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    t.succeed().await.unwrap();
    // Each write: its script and a WAIT, pipelined (one round trip each).
    assert_eq!(
        proxy.commands(),
        ["EVALSHA", "WAIT", "EVALSHA", "WAIT", "EVALSHA", "WAIT"]
    );
    // Reads wait for nothing.
    proxy.clear();
    coord.get(TEAM, "s1").await.unwrap();
    assert_eq!(proxy.commands(), ["EVALSHA"]);

    group.kill(Member::Replica(0));
    let err = coord.register(sandbox("s2", "e1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                operation: "register",
                acked: 0,
                wanted: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        coord.get(TEAM, "s2").await.unwrap().is_some(),
        "it happened on the primary"
    );
    // A begin whose start was not replicated is not handed out; its
    // transition is failed in the background.
    let err = coord
        .begin(TEAM, "s2", Action::Snapshot, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                operation: "begin",
                ..
            }
        ),
        "{err:?}"
    );
    // A reservation whose write was not replicated is not handed out
    // either; it is given back in the background.
    let err = coord
        .reserve(TEAM, "s3", Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                operation: "reserve",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(coord.close(BOUND).await);
    assert_eq!(coord.count(TEAM).await.unwrap().reserved, 0);
    let sb = coord.get(TEAM, "s2").await.unwrap().unwrap();
    assert_eq!(sb.state, State::Running);
    let last = sb.last.unwrap();
    assert_eq!(
        (last.outcome, last.reason.as_str()),
        (Outcome::Failed, "not replicated")
    );
}

// ----- promotion behind one address -------------------------------------------------------

/// The two replicas of `group`, the one a failover would promote first:
/// the larger replication offset (the most of the dead primary's writes).
async fn most_up_to_date(group: &TestReplicated) -> (Member, Member) {
    let mut offsets = Vec::new();
    for m in group.replicas() {
        let info = group.replication_info(m).await;
        let offset: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("slave_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no slave_repl_offset in {info}"));
        offsets.push((offset, m));
    }
    offsets.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    eprintln!("replica offsets after the primary died: {offsets:?}");
    (offsets[0].1, offsets[1].1)
}

/// A primary with a replica and `wait_for_replicas(1, ..)`, reached through
/// one address (a VIP): transitions run, the primary dies, the replica is
/// promoted with `REPLICAOF NO ONE` and the address moves to it. The same
/// coordinator recovers (errors meanwhile are retryable), no acknowledged
/// transition is lost, and every fence after the switch is above every
/// fence before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_behind_one_address_keeps_every_acknowledged_transition() {
    let group = TestReplicated::start(2).await;
    let vip = Chaos::start(&group.primary_url()).await;
    let ns = format!("dp{}", std::process::id());
    let coord = Coordinator::builder(vip.url())
        .namespace(&ns)
        .wait_for_replicas(1, Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let ids: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    for id in &ids {
        coord.register(sandbox(id, "e1")).await.unwrap();
    }
    let mut acked: Vec<(String, u64)> = Vec::new();
    let transition = |coord: Coordinator, id: String| async move {
        match coord
            .begin(TEAM, &id, Action::Snapshot, BeginOptions::default())
            .await?
        {
            Begun::Started(t) => {
                let fence = t.fence();
                t.succeed().await?;
                Ok::<_, Error>(Some(fence))
            }
            Begun::AlreadyDone(_) => Ok(None),
        }
    };
    for round in 0..20 {
        let id = ids[round % 4].clone();
        if let Some(f) = transition(coord.clone(), id.clone()).await.unwrap() {
            acked.push((id, f));
        }
    }
    let before_max = acked.iter().map(|(_, f)| *f).max().unwrap();
    // The primary dies; replica 0 is promoted, replica 1 follows it, the
    // address moves.
    group.kill_primary();
    let killed_at = Instant::now();
    // `WAIT 1` promised one replica, not both: promote the one that has
    // the most of the old primary's stream, as Sentinel and Cluster do.
    let (chosen, other) = most_up_to_date(&group).await;
    group.promote(chosen).await;
    group.replicate(other, chosen).await;
    vip.retarget(&group.url_of(chosen));
    vip.sever();
    let mut errors = Vec::new();
    let mut after = Vec::new();
    let deadline = Instant::now() + BOUND;
    while after.len() < 20 {
        assert!(Instant::now() < deadline, "never recovered: {errors:?}");
        let id = ids[after.len() % 4].clone();
        match transition(coord.clone(), id.clone()).await {
            Ok(Some(f)) => after.push((id, f, killed_at.elapsed())),
            Ok(None) => {}
            Err(e) => {
                assert!(e.is_retryable() || e.is_interruption(), "{e:?}");
                errors.push(e.to_string().chars().take(40).collect::<String>());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!(
        "promotion: first acknowledged transition {:?} after the primary died; {} retryable errors: {errors:?}",
        after[0].2,
        errors.len()
    );
    assert!(
        after.iter().all(|(_, f, _)| *f > before_max),
        "a fence went back"
    );
    for id in &ids {
        let sb = wait_until_ok("get", || coord.get(TEAM, id)).await.unwrap();
        let last_acked = acked
            .iter()
            .map(|(i, f)| (i, *f))
            .chain(after.iter().map(|(i, f, _)| (i, *f)))
            .filter(|(i, _)| *i == id)
            .map(|(_, f)| f)
            .max()
            .unwrap_or(0);
        assert_eq!(
            sb.last.map(|l| l.fence),
            Some(last_acked),
            "{id}: an acknowledged transition was lost"
        );
    }
}

/// A failover behind one address (a VIP, a DNS name) that leaves the old
/// TCP connections open to the demoted node: the first write on one gets
/// `READONLY`, which retires every connection to it, and the next attempt
/// reconnects — to the new primary — with the same coordinator. The write
/// lands there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_answer_retires_the_connection_and_the_next_call_reaches_the_new_primary() {
    let group = TestReplicated::start(1).await;
    let vip = Chaos::start(&group.primary_url()).await;
    let ns = format!("dv{}", std::process::id());
    let coord = Coordinator::builder(vip.url())
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    // The replica has the record before it takes over. (`WAIT` on another
    // connection proves nothing: it waits for that connection's own
    // writes, and it made none.)
    let key = coord.namespace().sandbox(TEAM, "s1").unwrap().record;
    let mut replica = group.connection(Member::Replica(0)).await;
    let deadline = Instant::now() + BOUND;
    while raw(&mut replica, &["EXISTS", &key]).await != ["1"] {
        assert!(
            Instant::now() < deadline,
            "the replica never got the record"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The replica takes over, the old primary follows it, the address
    // moves — and the open connection still reaches the old primary.
    group.promote(Member::Replica(0)).await;
    group.replicate(Member::Primary, Member::Replica(0)).await;
    vip.retarget(&group.url_of(Member::Replica(0)));
    let t = started(
        wait_until_ok("begin after the switch", || {
            coord.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        })
        .await,
    );
    t.succeed().await.unwrap();
    let mut new_primary = group.connection(Member::Replica(0)).await;
    assert_eq!(
        raw(&mut new_primary, &["HGET", &key, "state"]).await,
        ["paused"]
    );
}

// ----- answers of a demoted or busy server ------------------------------------------------

/// A demoted primary answers writes with `READONLY`, a server busy in a
/// script with `BUSY`: both are retryable (a failover in progress), never
/// `Corrupt`, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_and_busy_answers_are_retryable_not_corrupt() {
    let group = TestReplicated::start(1).await;
    let ns = format!("dr{}", std::process::id());
    let coord = Coordinator::builder(group.primary_url())
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let on_replica = Coordinator::builder(group.url_of(Member::Replica(0)))
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    // Reads work on the replica once it has the record; writes are READONLY.
    wait_until_ok("the replica has the record", || async {
        on_replica.get(TEAM, "s1").await?.ok_or(Error::Timeout {
            team: TEAM.into(),
            id: "s1".into(),
            waited: Duration::ZERO,
        })
    })
    .await;
    let err = on_replica
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && !matches!(err, Error::Corrupt { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().to_lowercase().contains("read only"),
        "{err}"
    );
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().fence,
        0,
        "nothing was written"
    );

    // BUSY: a script that runs past busy-reply-threshold.
    let mut admin = group.connection(Member::Primary).await;
    raw(&mut admin, &["CONFIG", "SET", "busy-reply-threshold", "50"]).await;
    let mut blocker = group.connection(Member::Primary).await;
    let spin = tokio::spawn(async move {
        let _: redis::RedisResult<redis::Value> = redis::cmd("EVAL")
            .arg("local t = redis.call('TIME'); while true do end")
            .arg(0)
            .query_async(&mut blocker)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = coord.get(TEAM, "s1").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("BUSY"), "{err}");
    let mut killer = group.connection(Member::Primary).await;
    raw(&mut killer, &["SCRIPT", "KILL"]).await;
    let _ = timeout(BOUND, spin).await;
    // The same coordinator goes on.
    let t = started(
        wait_until_ok("begin after BUSY", || {
            coord.begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        })
        .await,
    );
    t.succeed().await.unwrap();
}

// ----- data loss ----------------------------------------------------------------------------

/// Redis restarts without persistence between two transitions of a
/// re-registered sandbox: every record and counter is gone, yet the new
/// fence is above the old (it is at least the server time in µs), and the
/// old holder's extend and finish are refused (`Fenced`), writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_restart_fences_stay_above_after_a_restart_without_persistence() {
    let redis = TestRedis::start().await;
    redis.require(Capability::Restart);
    let coord = fixture::coordinator(&redis).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let old = started(
        coord
            .begin(
                TEAM,
                "s1",
                Action::Snapshot,
                BeginOptions::default().watchdog(false),
            )
            .await
            .unwrap(),
    );
    let old_fence = old.fence();
    redis.restart().await;
    let same_url = coord.redis() == [redis.url()];
    let coord = if same_url {
        coord
    } else {
        fixture::coordinator(&redis).await
    };
    wait_until_ok("register after the restart", || {
        coord.register(sandbox("s1", "e2"))
    })
    .await;
    let new = started(
        wait_until_ok("begin after the restart", || {
            coord.begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
        })
        .await,
    );
    assert!(new.fence() > old_fence, "{} after {old_fence}", new.fence());
    let before = dump_all(&redis).await;
    if same_url {
        let err = old.extend().await.unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
        let err = old.succeed().await.unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    } else {
        // The old coordinator's URL died with the container's port: its
        // holder cannot reach the new data at all. Same verdict by fence:
        let holder = old.holder().to_string();
        std::mem::forget(old);
        let err = coord
            .finish(
                TEAM,
                "s1",
                Action::Snapshot,
                old_fence,
                &holder,
                sandbox_coordinator::Finish::Succeeded,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    }
    assert_eq!(
        dump_all(&redis).await,
        before,
        "a stale holder wrote something"
    );
    new.succeed().await.unwrap();
}
