//! A record stays a `listpack` under Redis's default
//! `hash-max-listpack-value` (64 bytes): the opaque data is kept in pieces
//! of at most 64 bytes (`data`, `data:2`, …, lua/include/data.lua) and
//! comes back whole, and a record that a long queue or failure reason made
//! a `hashtable` is written anew once they are short again. Also the
//! conversion of a namespace that schema 2's own scripts wrote (its data in
//! one field) by `Coordinator::migrate`.

mod fixture;
mod support;

use std::time::Duration;

use fixture::{TEAM, coordinator, coordinator_with, coordinators, raw, sandbox, started};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Error, Outcome, State, Transition,
};
use support::TestRedis;

/// The benchmark's data (benches/coordination/listpack.sh): 162 bytes.
const BENCH_DATA: &str = r#"{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench","purpose":"load"}}"#;

fn record_key(redis: &TestRedis, id: &str) -> String {
    format!("{}:{{{TEAM}}}:rec:{id}", redis.namespace())
}

async fn encoding(redis: &TestRedis, id: &str) -> String {
    let mut conn = redis.client().await;
    raw(&mut conn, &["OBJECT", "ENCODING", &record_key(redis, id)]).await[0].clone()
}

/// The names of the record's fields.
async fn fields(redis: &TestRedis, id: &str) -> Vec<String> {
    let mut conn = redis.client().await;
    raw(&mut conn, &["HKEYS", &record_key(redis, id)]).await
}

async fn start(coord: &Coordinator, id: &str, action: Action) -> Transition {
    started(
        coord
            .begin(TEAM, id, action, BeginOptions::default())
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_more_than_64_bytes_of_data_is_a_listpack_through_its_transitions() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut new = sandbox("s1", "e1");
    new.data = BENCH_DATA.into();
    let (sb, _) = coord.register(new).await.unwrap();
    assert_eq!(sb.data, BENCH_DATA);
    assert_eq!(encoding(&redis, "s1").await, "listpack");
    let pieces: Vec<String> = fields(&redis, "s1")
        .await
        .into_iter()
        .filter(|f| f.starts_with("data"))
        .collect();
    assert_eq!(
        pieces,
        ["data", "data:2", "data:3"],
        "162 bytes: 64 + 64 + 34"
    );
    for action in [Action::Snapshot, Action::Pause] {
        start(&coord, "s1", action).await.succeed().await.unwrap();
        assert_eq!(encoding(&redis, "s1").await, "listpack", "after {action}");
    }
    // A resume (a new execution over the paused tombstone), then a kill.
    coord.register(sandbox("s1", "e2")).await.unwrap();
    start(&coord, "s1", Action::Kill)
        .await
        .succeed()
        .await
        .unwrap();
    assert_eq!(encoding(&redis, "s1").await, "listpack", "after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_of_every_length_comes_back_whole_from_register_get_and_list() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    // A two-byte character across the first cut, and a data too long for a
    // listpack (over 111 pieces): it still comes back whole.
    let across = format!("{}é{}", "x".repeat(63), "y".repeat(70));
    let mut cases: Vec<String> = [0, 1, 63, 64, 65, 128, 129, 7000]
        .iter()
        .map(|n| "d".repeat(*n))
        .collect();
    cases.push(across);
    cases.push("ü".repeat(5000));
    for (i, data) in cases.iter().enumerate() {
        let id = format!("s{i:02}");
        let mut new = sandbox(&id, "e1");
        new.data = data.clone();
        let (registered, _) = coord.register(new).await.unwrap();
        assert_eq!(&registered.data, data, "register of {} bytes", data.len());
        let got = coord.get(TEAM, &id).await.unwrap().expect("the record");
        assert_eq!(&got.data, data, "get of {} bytes", data.len());
        if data.len() <= 6000 {
            assert_eq!(
                encoding(&redis, &id).await,
                "listpack",
                "{} bytes",
                data.len()
            );
        }
    }
    let listed = coord.list(TEAM).await.unwrap();
    assert_eq!(listed.len(), cases.len());
    for (sb, data) in listed.iter().zip(&cases) {
        assert_eq!(&sb.data, data, "list of {}: {} bytes", sb.id, data.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_with_shorter_data_leaves_no_piece_of_the_old_data() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    let mut new = sandbox("s1", "e1");
    new.data = "a".repeat(300);
    coord.register(new).await.unwrap();
    start(&coord, "s1", Action::Pause)
        .await
        .succeed()
        .await
        .unwrap();
    let mut resumed = sandbox("s1", "e2");
    resumed.data = "b".repeat(70);
    let (sb, _) = coord.register(resumed).await.unwrap();
    assert_eq!(sb.data, "b".repeat(70));
    let pieces: Vec<String> = fields(&redis, "s1")
        .await
        .into_iter()
        .filter(|f| f.starts_with("data"))
        .collect();
    assert_eq!(pieces, ["data", "data:2"], "the old data:3..5 are gone");
    let got = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(got.data, "b".repeat(70));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_held_a_long_failure_reason_is_a_listpack_after_its_next_outcome() {
    let redis = TestRedis::start().await;
    let coord =
        coordinator_with(&redis, |b| b.tombstone_retention(Duration::from_secs(3600))).await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let reason = "r".repeat(200);
    start(&coord, "s1", Action::Snapshot)
        .await
        .fail(&reason)
        .await
        .unwrap();
    assert_eq!(
        encoding(&redis, "s1").await,
        "hashtable",
        "a 200-byte reason is over the listpack limit"
    );
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.last.expect("the failure").reason, reason);
    // The pause succeeds: a paused tombstone, with its expiry.
    start(&coord, "s1", Action::Pause)
        .await
        .succeed()
        .await
        .unwrap();
    assert_eq!(encoding(&redis, "s1").await, "listpack");
    let sb = coord.get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.last.expect("the pause").reason, "");
    let expires = sb.expires_in.expect("a tombstone expires");
    assert!(expires > Duration::from_secs(3000), "{expires:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_a_listpack_again_once_its_long_queue_drains() {
    let redis = TestRedis::start().await;
    let coords = coordinators(&redis, 4).await;
    coords[0].register(sandbox("s1", "e1")).await.unwrap();
    let held = start(&coords[0], "s1", Action::Snapshot).await;
    let mut waiters = Vec::new();
    // Kills wait behind a snapshot; once it ends, the first starts and the
    // others join it.
    for coord in &coords[1..] {
        let coord = coord.clone();
        waiters.push(tokio::spawn(async move {
            let begun = coord.begin(TEAM, "s1", Action::Kill, BeginOptions::default());
            if let Begun::Started(t) = begun.await.unwrap() {
                t.succeed().await.unwrap();
            }
        }));
    }
    // Bounded wait until the three are queued (no timing luck: the queue
    // itself says so).
    let mut conn = redis.client().await;
    let key = record_key(&redis, "s1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let queue = raw(&mut conn, &["HGET", &key, "queue"]).await;
        if queue.first().is_some_and(|q| q.split(' ').count() == 3) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue {queue:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        encoding(&redis, "s1").await,
        "hashtable",
        "three waiters are over the listpack limit"
    );
    held.succeed().await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("every waiter starts and ends")
            .unwrap();
    }
    assert!(!fields(&redis, "s1").await.contains(&"queue".to_string()));
    assert_eq!(encoding(&redis, "s1").await, "listpack");
    let sb = coords[0].get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.state, sandbox_coordinator::State::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_converts_a_namespace_written_by_schema_2() {
    let redis = TestRedis::start().await;
    let mut v2 = fixture::v2::V2::new(redis.client().await, &redis.namespace());
    let reason = "r".repeat(200);
    v2.register(TEAM, "long", "e1", BENCH_DATA).await;
    v2.register(TEAM, "short", "e1", "{}").await;
    v2.register(TEAM, "paused", "e1", BENCH_DATA).await;
    let fence = v2.begin(TEAM, "paused", Action::Pause).await;
    v2.finish(TEAM, "paused", Action::Pause, fence, Outcome::Succeeded, "")
        .await;
    v2.register(TEAM, "failed", "e1", "x").await;
    let fence = v2.begin(TEAM, "failed", Action::Snapshot).await;
    v2.finish(
        TEAM,
        "failed",
        Action::Snapshot,
        fence,
        Outcome::Failed,
        &reason,
    )
    .await;
    v2.register(TEAM, "inflight", "e1", BENCH_DATA).await;
    let in_flight = v2.begin(TEAM, "inflight", Action::Snapshot).await;
    assert_eq!(
        encoding(&redis, "long").await,
        "hashtable",
        "schema 2 kept 162 bytes of data in one field"
    );

    let coord = coordinator(&redis).await;
    let refused = coord.get(TEAM, "long").await;
    assert!(
        matches!(refused, Err(Error::SchemaMismatch { .. })),
        "{refused:?}"
    );
    let mut conn = redis.client().await;
    let pttl = |v: Vec<String>| v[0].parse::<i64>().unwrap();
    let paused_ttl = pttl(raw(&mut conn, &["PTTL", &record_key(&redis, "paused")]).await);

    assert_eq!(coord.migrate(false).await.unwrap(), (5, 0));
    for id in ["long", "short", "paused", "inflight"] {
        assert_eq!(encoding(&redis, id).await, "listpack", "{id}");
    }
    assert_eq!(
        encoding(&redis, "failed").await,
        "hashtable",
        "its last reason is 200 bytes"
    );
    let get = |id: &'static str| {
        let coord = coord.clone();
        async move { coord.get(TEAM, id).await.unwrap().expect(id) }
    };
    assert_eq!(get("long").await.data, BENCH_DATA);
    assert_eq!(get("short").await.data, "{}");
    let paused = get("paused").await;
    assert_eq!(paused.state, State::Paused);
    assert_eq!(paused.data, BENCH_DATA);
    let after = pttl(raw(&mut conn, &["PTTL", &record_key(&redis, "paused")]).await);
    assert!(
        after <= paused_ttl && (paused_ttl < 0) == (after < 0),
        "the tombstone keeps its expiry: {paused_ttl} ms before, {after} ms after"
    );
    let failed = get("failed").await;
    assert_eq!(failed.last.expect("the failure").reason, reason);
    let inflight = get("inflight").await;
    assert_eq!(inflight.state, State::Snapshotting);
    let lease = inflight.lease.expect("the transition is still in flight");
    assert_eq!(lease.fence, in_flight);

    // Converted once: a second run finds nothing to do, and schema 3 runs
    // transitions on what it converted.
    assert_eq!(coord.migrate(false).await.unwrap(), (0, 0));
    start(&coord, "long", Action::Pause)
        .await
        .succeed()
        .await
        .unwrap();
    assert_eq!(get("long").await.state, State::Paused);
    assert_eq!(encoding(&redis, "long").await, "listpack");
}

/// A damaged schema-2 record is refused by migrate (`Corrupt`, naming it)
/// with nothing written, like every script's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_damaged_schema_2_record_and_writes_nothing() {
    let redis = TestRedis::start().await;
    let mut v2 = fixture::v2::V2::new(redis.client().await, &redis.namespace());
    v2.register(TEAM, "s1", "e1", BENCH_DATA).await;
    let mut conn = redis.client().await;
    raw(
        &mut conn,
        &["HSET", &record_key(&redis, "s1"), "fence", "0x10"],
    )
    .await;
    let coord = coordinator(&redis).await;
    let before = fixture::dump_all(&redis).await;
    match coord.migrate(false).await {
        Err(Error::Corrupt { detail }) => assert!(detail.contains("fence"), "{detail}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fixture::dump_all(&redis).await, before, "nothing written");
    assert_eq!(encoding(&redis, "s1").await, "hashtable");
}
