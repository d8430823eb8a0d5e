//! Damaged data in Redis (issue 16): what the scripts make of a record or an
//! index that an operator, a partial restore or a bug left wrong. The first
//! tests prove one point each; `damage_fuzzer` then writes damaged values
//! into every key the scripts read and drives the public API, asserting a
//! bounded answer, a bounded number of script calls, a clear error or a
//! decision the lifecycle allows, and nothing written by a call that
//! refused.
//!
//! `DAMAGE_SEED` (default 16) and `DAMAGE_SECONDS` (default 15) tune the
//! fuzzer: `DAMAGE_SECONDS=600 cargo test --test damage damage_fuzzer --
//! --nocapture` runs it for ten minutes (nextest stops a test after 3).

mod fixture;
mod support;

use fixture::started;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fixture::{TEAM, coordinator_with, dump_connection, evalsha_calls, raw, sandbox};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox_coordinator::keys::slot_of;
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Decision, DoneReason, Error, Finish, LeaseView,
    Lifecycle, NewSandbox, State, Transition,
};
use support::TestRedis;
use tokio::time::{Instant, timeout};

/// Bound on any single call in the targeted tests.
const BOUND: Duration = Duration::from_secs(20);

async fn run(coord: &Coordinator, team: &str, id: &str, action: Action) {
    started(
        timeout(
            BOUND,
            coord.begin(team, id, action, BeginOptions::default()),
        )
        .await
        .unwrap()
        .unwrap(),
    )
    .succeed()
    .await
    .unwrap();
}

fn in_team(team: &str, id: &str) -> NewSandbox {
    NewSandbox {
        team: team.into(),
        ..sandbox(id, "e1")
    }
}

fn due(team: &str, id: &str) -> NewSandbox {
    NewSandbox {
        end_time: (SystemTime::now() - Duration::from_secs(10)).into(),
        ..in_team(team, id)
    }
}

/// Another team whose keys hash to the same slot as `team`'s.
fn team_in_the_slot_of(team: &str) -> String {
    let slot = slot_of(team);
    (0u64..)
        .map(|n| format!("u{n}"))
        .find(|t| slot_of(t) == slot && t != team)
        .unwrap()
}

async fn members(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    let mut m = raw(conn, &["SMEMBERS", key]).await;
    m.sort();
    m
}

fn kill_deletes_paused(b: sandbox_coordinator::Builder) -> sandbox_coordinator::Builder {
    b.lifecycle(Lifecycle::sandbox().kill_deletes_paused())
}

// ----- 2. a transition out of a tombstone -----------------------------------------------

/// With the example server's table (a kill of a paused sandbox starts a
/// deletion), the kill makes the record live in every index in the script
/// that starts it: in `expiry` (end pulled to now), out of `tombs`, no
/// tombstone TTL. A repair finds nothing while it runs, and when it fails
/// (stays `killing`) the evictor sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_of_a_paused_sandbox_is_live_in_every_index_while_it_runs() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, kill_deletes_paused).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    run(&coord, TEAM, "s1", Action::Pause).await;
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    let drift = coord.repair(true).await.unwrap().drift;
    assert!(drift.is_empty(), "while the kill runs: {drift:?}");
    let record = coord.namespace().sandbox(TEAM, "s1").unwrap().record;
    assert_eq!(raw(&mut conn, &["PTTL", &record]).await, ["-1"]);
    kill.fail("node unreachable").await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Killing
    );
    assert_eq!(
        coord.due_for_eviction(TEAM, 10).await.unwrap(),
        ["s1"],
        "a failed kill is retried by the evictor"
    );
    assert!(coord.repair(true).await.unwrap().drift.is_empty());
}

/// The kill of a paused sandbox outlives the paused tombstone's retention:
/// the record is not dropped under a live lease, a reservation of the id is
/// refused, and the holder's finish is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_of_a_paused_sandbox_outlives_the_tombstone_retention() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| {
        kill_deletes_paused(b).tombstone_retention(Duration::from_millis(300))
    })
    .await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    run(&coord, TEAM, "s1", Action::Pause).await;
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sb = coord.get(TEAM, "s1").await.unwrap();
    assert_eq!(sb.map(|s| s.state), Some(State::Killing));
    match coord.reserve(TEAM, "s1", Duration::from_secs(10)).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a reservation while the kill runs: {other:?}"),
    }
    kill.succeed().await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().map(|s| s.state),
        Some(State::Killed)
    );
}

// ----- 6. one damaged team ----------------------------------------------------------------

/// Two teams in one slot, both with a due sandbox; one team's tombstone
/// index is damaged. Fleet-wide eviction still returns the other team's
/// sandbox, and a repair reports the damaged team (and goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_team_is_skipped_and_reported_by_fleet_eviction() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| b).await;
    let mut conn = redis.client().await;
    let other = team_in_the_slot_of(TEAM);
    coord.register(due(TEAM, "s1")).await.unwrap();
    coord.register(due(&other, "s2")).await.unwrap();
    let tombs = coord.namespace().team(&other).unwrap().key("tombs");
    raw(&mut conn, &["SET", &tombs, "x"]).await;
    let found = timeout(BOUND, coord.due_for_eviction_all(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, [(TEAM.to_string(), "s1".to_string())]);
    let report = coord.repair(true).await.unwrap();
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.team == other && d.index == "tombs" && d.problem == "type"),
        "{:?}",
        report.drift
    );
    assert!(
        report.drift.iter().all(|d| d.team == other),
        "{:?}",
        report.drift
    );
}

// ----- 7. every check before the first write ----------------------------------------------

/// `set_team_limit` with a wrong-typed slot team set refuses (Corrupt)
/// and writes nothing (it wrote the limit before the failing SADD).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_team_limit_writes_nothing_when_it_refuses() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| b).await;
    let mut conn = redis.client().await;
    let tk = coord.namespace().team(TEAM).unwrap();
    raw(&mut conn, &["SET", &tk.slot_key("teams"), "x"]).await;
    raw(&mut conn, &["HSET", &tk.key("team"), "floor", "7"]).await;
    let before = dump_connection(&mut conn).await;
    let got = coord.set_team_limit(TEAM, Some(3)).await;
    assert!(matches!(got, Ok(_) | Err(Error::Corrupt { .. })), "{got:?}");
    if got.is_err() {
        assert_eq!(dump_connection(&mut conn).await, before);
    }
}

/// Migrating a schema-1 record with a wrong-typed id index refuses
/// (Corrupt, not a raw WRONGTYPE) and leaves the record at schema 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_writes_nothing_when_an_index_is_damaged() {
    let redis = TestRedis::start().await;
    let mut conn = redis.client().await;
    let mut v1 = fixture::v1::V1::new(conn.clone(), &redis.namespace());
    v1.register(TEAM, "s1", "e1").await;
    let coord = coordinator_with(&redis, |b| b).await;
    let ids = coord.namespace().team(TEAM).unwrap().key("ids");
    raw(&mut conn, &["SET", &ids, "x"]).await;
    let before = dump_connection(&mut conn).await;
    match coord.migrate(false).await {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("migrate over a damaged index: {other:?}"),
    }
    assert_eq!(dump_connection(&mut conn).await, before);
}

/// Every operation, against each key of the team (and of its slot) turned
/// into a key of another type: a clear error (never a raw WRONGTYPE) and
/// nothing written when it refuses; fleet-wide eviction still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_refuses_each_wrong_typed_key_before_writing() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, kill_deletes_paused).await;
    let mut conn = redis.client().await;
    let tk = coord.namespace().team(TEAM).unwrap();
    let rec = |id: &str| coord.namespace().sandbox(TEAM, id).unwrap().record;
    let keys: Vec<(String, &str)> = vec![
        (rec("s1"), "string"),
        (rec("s2"), "zset"),
        (tk.key("expiry"), "string"),
        (tk.key("tombs"), "hash"),
        (tk.key("ids"), "set"),
        (tk.key("resv"), "string"),
        (tk.key("team"), "zset"),
        (tk.slot_key("teams"), "string"),
        (tk.slot_key("listed"), "hash"),
        (coord.namespace().slots(), "string"),
        (tk.key("seq"), "hash"),
    ];
    let mut findings = Vec::new();
    let mut calls = 0;
    for (key, kind) in &keys {
        for op in 0..OPS {
            fixture::clear_namespace(&redis).await;
            coord.register(due(TEAM, "s1")).await.unwrap();
            coord.register(due(TEAM, "s2")).await.unwrap();
            run(&coord, TEAM, "s2", Action::Pause).await;
            coord.register(due(TEAM, "s3")).await.unwrap();
            wrong_type(&mut conn, key, kind).await;
            let before = dump_connection(&mut conn).await;
            let (name, got) = operation(&coord, op).await;
            calls += 1;
            let refused = matches!(
                got,
                Err(Error::Corrupt { .. } | Error::SchemaMismatch { .. })
            );
            if let Err(Error::Redis(e)) = &got {
                findings.push(format!("{name} with {key} a {kind}: raw error {e}"));
            }
            if refused {
                let after = dump_connection(&mut conn).await;
                if after != before {
                    findings.push(format!(
                        "{name} with {key} a {kind} refused ({got:?}) but wrote:\n{}",
                        fixture::dump_diff(&before, &after)
                    ));
                }
            }
        }
    }
    eprintln!("{calls} calls against wrong-typed keys");
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

const OPS: usize = 13;

/// Operation `op` of the wrong-type table, on sandboxes s1 (running, due),
/// s2 (paused), s3 (running).
async fn operation(coord: &Coordinator, op: usize) -> (&'static str, Result<(), Error>) {
    let opts = || {
        BeginOptions::default()
            .wait_timeout(Duration::from_millis(300))
            .watchdog(false)
    };
    // The begin's own answer (its finish may refuse a damaged index later,
    // which the fuzzer checks on its own).
    let begun = |b: Result<Begun, Error>| async {
        match b {
            Ok(Begun::Started(t)) => {
                let _ = t.fail("done").await;
                Ok(())
            }
            Ok(Begun::AlreadyDone(_)) => Ok(()),
            Err(e) => Err(e),
        }
    };
    let call = async {
        match op {
            0 => (
                "register",
                coord.register(sandbox("s9", "e1")).await.map(|_| ()),
            ),
            1 => (
                "register (resume)",
                coord.register(sandbox("s2", "e2")).await.map(|_| ()),
            ),
            2 => (
                "begin pause",
                begun(coord.begin(TEAM, "s1", Action::Pause, opts()).await).await,
            ),
            3 => (
                "begin kill of paused",
                begun(coord.begin(TEAM, "s2", Action::Kill, opts()).await).await,
            ),
            4 => (
                "begin snapshot",
                begun(coord.begin(TEAM, "s3", Action::Snapshot, opts()).await).await,
            ),
            5 => ("remove", coord.remove(TEAM, "s1").await.map(|_| ())),
            6 => ("list", coord.list(TEAM).await.map(|_| ())),
            7 => ("count", coord.count(TEAM).await.map(|_| ())),
            8 => (
                "due_for_eviction_all",
                coord.due_for_eviction_all(100).await.map(|_| ()),
            ),
            9 => (
                "set_end_time",
                coord
                    .set_end_time(TEAM, "s1", Duration::from_secs(60), None)
                    .await
                    .map(|_| ()),
            ),
            10 => (
                "reserve",
                match coord.reserve(TEAM, "s8", Duration::from_secs(5)).await {
                    Ok(r) => r.release().await.map(|_| ()),
                    Err(e) => Err(e),
                },
            ),
            11 => (
                "set_team_limit",
                coord.set_team_limit(TEAM, Some(5)).await.map(|_| ()),
            ),
            _ => ("repair", coord.repair(false).await.map(|_| ())),
        }
    };
    timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("operation {op} hung"))
}

/// Replaces `key` with a key of type `kind`.
async fn wrong_type(conn: &mut redis::aio::MultiplexedConnection, key: &str, kind: &str) {
    raw(conn, &["DEL", key]).await;
    match kind {
        "string" => raw(conn, &["SET", key, "x"]).await,
        "hash" => raw(conn, &["HSET", key, "f", "v"]).await,
        "set" => raw(conn, &["SADD", key, "m"]).await,
        "zset" => raw(conn, &["ZADD", key, "1", "m"]).await,
        _ => raw(conn, &["RPUSH", key, "x"]).await,
    };
}

// ----- the team's sequence (team views) ----------------------------------------------------

/// Damage to the team's sequence `<ns>:{team}:seq` (team views): a key of
/// each other type, and a string that is no sequence number.
/// The strings: no number, the end of INCR's range, a number INCR refuses
/// (leading zeros), a negative one, and the last one a Lua number holds
/// exactly (its INCR would not be: 2^53 - 1).
const SEQUENCE_DAMAGE: &[&str] = &[
    "hash",
    "set",
    "zset",
    "list",
    "x",
    "9223372036854775807",
    "007",
    "-5",
    "9007199254740991",
];

/// The scene of the sequence test: s1 running and due, s2 paused, s3
/// running, s4 under a started pause (watchdog off), s5 stuck (pausing, its
/// lease long gone), s6 reserved, s7's record vanished behind the
/// library's back (its index entries left, due: a sweep or a repair drops
/// them).
async fn sequence_scene(
    redis: &TestRedis,
    coord: &Coordinator,
    conn: &mut redis::aio::MultiplexedConnection,
) -> (Transition, sandbox_coordinator::Reservation) {
    fixture::clear_namespace(redis).await;
    coord.register(due(TEAM, "s1")).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    run(coord, TEAM, "s2", Action::Pause).await;
    coord.register(sandbox("s3", "e1")).await.unwrap();
    coord.register(sandbox("s4", "e1")).await.unwrap();
    let held = started(
        coord
            .begin(
                TEAM,
                "s4",
                Action::Pause,
                BeginOptions::default().watchdog(false),
            )
            .await
            .unwrap(),
    );
    coord.register(sandbox("s5", "e1")).await.unwrap();
    let rec = |id: &str| coord.namespace().sandbox(TEAM, id).unwrap().record;
    raw(
        conn,
        &[
            "HSET",
            &rec("s5"),
            "state",
            "pausing",
            "fence",
            "5000",
            "action",
            "pause",
            "holder",
            "dead/1",
            "until_ms",
            "1",
            "started_ms",
            "1",
        ],
    )
    .await;
    let reservation = coord
        .reserve(TEAM, "s6", Duration::from_secs(60))
        .await
        .unwrap();
    coord.register(due(TEAM, "s7")).await.unwrap();
    raw(conn, &["DEL", &rec("s7")]).await;
    (held, reservation)
}

/// Every script that announces to team views bumps the team's sequence
/// with an INCR after its writes; a damaged sequence (a key of another
/// type, a string that is no number, a number at the end of its range)
/// would fail that INCR with the writes already done (Redis does not roll
/// back a script). So each of them reads the sequence before its first
/// write and refuses with `Corrupt`, nothing written: register, resume,
/// begin (a start, a start out of a tombstone, a settle of a stuck record),
/// succeed, fail, extend, set_end_time, remove, reserve, release,
/// set_team_limit; the sweep of a vanished record writes nothing either
/// (housekeeping: its caller answers), and a repair reports the sequence
/// and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_team_sequence_is_corrupt_before_any_write() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, kill_deletes_paused).await;
    let mut conn = redis.client().await;
    let seq = coord.namespace().team(TEAM).unwrap().key("seq");
    let opts = || {
        BeginOptions::default()
            .wait_timeout(Duration::from_millis(300))
            .watchdog(false)
    };
    let mut findings = Vec::new();
    for damage in SEQUENCE_DAMAGE {
        for op in 0..15 {
            let (held, reservation) = sequence_scene(&redis, &coord, &mut conn).await;
            // (Kept until after the dump: a handle dropped earlier would
            // finish or give back in the background meanwhile.)
            let (mut held, mut reservation) = (Some(held), Some(reservation));
            match *damage {
                kind @ ("hash" | "set" | "zset" | "list") => {
                    wrong_type(&mut conn, &seq, kind).await
                }
                text => {
                    raw(&mut conn, &["SET", &seq, text]).await;
                }
            }
            let before = dump_connection(&mut conn).await;
            let (name, got) = timeout(BOUND, async {
                match op {
                    0 => (
                        "register",
                        coord.register(sandbox("s9", "e1")).await.map(drop),
                    ),
                    1 => (
                        "resume",
                        coord.register(sandbox("s2", "e2")).await.map(drop),
                    ),
                    2 => (
                        "begin pause",
                        coord
                            .begin(TEAM, "s1", Action::Pause, opts())
                            .await
                            .map(drop),
                    ),
                    3 => (
                        "begin kill of paused",
                        coord
                            .begin(TEAM, "s2", Action::Kill, opts())
                            .await
                            .map(drop),
                    ),
                    4 => (
                        "begin over a stuck record",
                        coord
                            .begin(TEAM, "s5", Action::Pause, opts())
                            .await
                            .map(drop),
                    ),
                    5 => ("extend", held.as_ref().unwrap().extend().await.map(drop)),
                    6 => ("succeed", held.take().unwrap().succeed().await),
                    7 => ("fail", held.take().unwrap().fail("x").await),
                    8 => (
                        "set_end_time",
                        coord
                            .set_end_time(TEAM, "s1", Duration::from_secs(60), None)
                            .await
                            .map(drop),
                    ),
                    9 => ("remove", coord.remove(TEAM, "s3").await.map(drop)),
                    10 => (
                        "reserve",
                        coord
                            .reserve(TEAM, "s8", Duration::from_secs(5))
                            .await
                            .map(drop),
                    ),
                    11 => (
                        "release",
                        reservation.take().unwrap().release().await.map(drop),
                    ),
                    12 => (
                        "set_team_limit",
                        coord.set_team_limit(TEAM, Some(5)).await.map(drop),
                    ),
                    13 => (
                        "due_for_eviction (sweep)",
                        match coord.due_for_eviction(TEAM, 10).await {
                            Ok(_) => Err(Error::Corrupt {
                                detail: "housekeeping".into(),
                            }),
                            Err(e) => Err(e),
                        },
                    ),
                    _ => (
                        "repair",
                        match coord.repair(false).await {
                            Ok(r) if r.drift.iter().any(|d| d.index == "seq") => {
                                Err(Error::Corrupt {
                                    detail: "reported".into(),
                                })
                            }
                            other => other.map(drop),
                        },
                    ),
                }
            })
            .await
            .unwrap_or_else(|_| panic!("operation {op} hung"));
            let after = dump_connection(&mut conn).await;
            if !matches!(got, Err(Error::Corrupt { .. })) {
                findings.push(format!("{name} with the sequence {damage}: {got:?}"));
            }
            if after != before {
                findings.push(format!(
                    "{name} with the sequence {damage} wrote:\n{}",
                    fixture::dump_diff(&before, &after)
                ));
            }
            raw(&mut conn, &["DEL", &seq]).await;
            if let Some(t) = held {
                t.fail("done").await.unwrap();
            }
            if let Some(r) = reservation {
                r.release().await.unwrap();
            }
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

// ----- 8. the slot's team set ---------------------------------------------------------------

/// A team leaves its slot's team set with its last record (removed, or a
/// tombstone whose retention ended and was swept), and joins it again with
/// its next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_leaves_its_slot_set_with_its_last_record() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| {
        b.tombstone_retention(Duration::from_millis(200))
    })
    .await;
    let mut conn = redis.client().await;
    let teams = coord.namespace().team(TEAM).unwrap().slot_key("teams");
    coord.register(sandbox("s1", "e1")).await.unwrap();
    coord.register(sandbox("s2", "e1")).await.unwrap();
    assert_eq!(members(&mut conn, &teams).await, [TEAM]);
    assert!(coord.remove(TEAM, "s1").await.unwrap());
    assert_eq!(members(&mut conn, &teams).await, [TEAM], "s2 is left");
    assert!(coord.remove(TEAM, "s2").await.unwrap());
    assert!(
        members(&mut conn, &teams).await.is_empty(),
        "a team without records stays in its slot's set"
    );
    coord.register(sandbox("s3", "e1")).await.unwrap();
    assert_eq!(members(&mut conn, &teams).await, [TEAM]);
    // The last record is a tombstone that lapses: the evictor's sweep
    // drops the team.
    run(&coord, TEAM, "s3", Action::Kill).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(coord.due_for_eviction_all(100).await.unwrap().is_empty());
    assert!(
        members(&mut conn, &teams).await.is_empty(),
        "a team whose last tombstone lapsed stays in its slot's set"
    );
    assert!(coord.repair(true).await.unwrap().drift.is_empty());
}

// ----- 9. a delete is final ------------------------------------------------------------------

/// A removal is not held back by requests queued to re-decide (a queue
/// that never empties would block it for ever): the record goes, and the
/// queued requests are told (`c <id>`) and find it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_is_final_while_waiters_are_queued() {
    let redis = TestRedis::start().await;
    let coord = coordinator_with(&redis, |b| b).await;
    let mut conn = redis.client().await;
    coord.register(sandbox("s1", "e1")).await.unwrap();
    let record = coord.namespace().sandbox(TEAM, "s1").unwrap().record;
    let t = raw(&mut conn, &["TIME"]).await;
    let now_ms = t[0].parse::<u64>().unwrap() * 1000;
    let queue = format!("other/1@{} other/2@{}", now_ms + 60_000, now_ms + 60_000);
    raw(&mut conn, &["HSET", &record, "queue", &queue]).await;
    assert_eq!(coord.get(TEAM, "s1").await.unwrap().unwrap().waiting, 2);
    assert!(coord.remove(TEAM, "s1").await.unwrap());
    assert!(coord.get(TEAM, "s1").await.unwrap().is_none());
    match coord
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a begin after the removal: {other:?}"),
    }
}

// ----- the damage fuzzer ---------------------------------------------------------------------

/// Values a damaged field may hold (None: the field is missing).
const VALUES: &[Option<&str>] = &[
    None,
    Some(""),
    Some("abc"),
    Some("-1"),
    Some("1e12"),
    Some("nan"),
    Some("inf"),
    Some("-0"),
    Some("1.5"),
    Some(" 1"),
    Some("0x1f"),
    Some("0"),
    Some("9007199254740992"),
    Some("18446744073709551616"),
    Some("999999999999999"),
    Some("a b"),
    Some("h@1"),
    Some("@"),
    Some("dead/9@99999999999999"),
    Some("pause"),
    Some("kill"),
    Some("succeeded"),
    Some("running"),
    Some("paused"),
    Some("killing"),
    Some("2"),
    Some("1"),
];

const RECORD_FIELDS: &[&str] = &[
    "v",
    "lc",
    "state",
    "exec",
    "end_ms",
    "fence",
    "action",
    "holder",
    "until_ms",
    "started_ms",
    "last_fence",
    "last_action",
    "last_outcome",
    "last_reason",
    "queue",
    "resv",
    "floor",
    "data",
    "junk",
];

const TEAM_FIELDS: &[&str] = &["limit", "floor", "listed", "tok:r6", "tok:ghost"];

/// The fuzzer's sandboxes: r1 running and due, r2 paused, r3 killed, r4
/// pausing under a live lease (held by `dead/2`, fence 4000), r5 stuck
/// (pausing, lease ended, fence 5000), r6 reserved (no record), u1 of the
/// other team in the same slot, running and due.
const IDS: &[&str] = &["r1", "r2", "r3", "r4", "r5", "r6", "r7"];

struct Scene {
    t: String,
    u: String,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

async fn set_scene(
    coord: &Coordinator,
    conn: &mut redis::aio::MultiplexedConnection,
    u: &str,
) -> Scene {
    raw(conn, &["FLUSHALL"]).await;
    let t = raw(conn, &["TIME"]).await;
    let now_ms = t[0].parse::<u64>().unwrap() * 1000 + t[1].parse::<u64>().unwrap() / 1000;
    coord.register(due(TEAM, "r1")).await.unwrap();
    for id in ["r2", "r3", "r4", "r5"] {
        coord.register(sandbox(id, "e1")).await.unwrap();
    }
    run(coord, TEAM, "r2", Action::Pause).await;
    run(coord, TEAM, "r3", Action::Kill).await;
    let ns = coord.namespace();
    let rec = |id: &str| ns.sandbox(TEAM, id).unwrap().record;
    let until = (now_ms + 600_000).to_string();
    let now_s = now_ms.to_string();
    raw(
        conn,
        &[
            "HSET",
            &rec("r4"),
            "state",
            "pausing",
            "fence",
            "4000",
            "action",
            "pause",
            "holder",
            "dead/2",
            "until_ms",
            &until,
            "started_ms",
            &now_s,
        ],
    )
    .await;
    raw(
        conn,
        &[
            "HSET",
            &rec("r5"),
            "state",
            "pausing",
            "fence",
            "5000",
            "action",
            "pause",
            "holder",
            "dead/1",
            "until_ms",
            "1",
            "started_ms",
            "1",
        ],
    )
    .await;
    let tk = ns.team(TEAM).unwrap();
    raw(conn, &["ZADD", &tk.key("resv"), &until, "r6"]).await;
    raw(conn, &["HSET", &tk.key("team"), "tok:r6", "tokX"]).await;
    coord.register(due(u, "u1")).await.unwrap();
    Scene {
        t: TEAM.to_string(),
        u: u.to_string(),
    }
}

/// A command whose refusal is part of the damage (an earlier damage made
/// the key another type): its reply as strings, or the error's text.
async fn try_raw(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> Vec<String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query_async::<redis::Value>(conn).await {
        Ok(redis::Value::BulkString(b)) => vec![String::from_utf8_lossy(&b).into_owned()],
        Ok(redis::Value::SimpleString(s)) => vec![s],
        Ok(v) => vec![format!("{v:?}")],
        Err(e) => vec![e.to_string()],
    }
}

/// Writes one random piece of damage; returns what it did.
async fn damage(
    rng: &mut StdRng,
    coord: &Coordinator,
    conn: &mut redis::aio::MultiplexedConnection,
    scene: &Scene,
) -> String {
    let ns = coord.namespace();
    let team = if rng.random_bool(0.85) {
        &scene.t
    } else {
        &scene.u
    };
    let tk = ns.team(team).unwrap();
    let id = *pick(rng, if team == &scene.u { &["u1"][..] } else { IDS });
    let rec = ns.sandbox(team, id).unwrap().record;
    let value = |rng: &mut StdRng| -> Option<String> {
        if rng.random_bool(0.05) {
            Some("x".repeat(rng.random_range(1000..20_000)))
        } else {
            pick(rng, VALUES).map(str::to_string)
        }
    };
    match rng.random_range(0..8) {
        0..=2 => {
            let field = *pick(rng, RECORD_FIELDS);
            match value(rng) {
                None => try_raw(conn, &["HDEL", &rec, field]).await,
                Some(v) => try_raw(conn, &["HSET", &rec, field, &v]).await,
            };
            format!("{rec}.{field} damaged")
        }
        3 => {
            let key = pick(
                rng,
                &[
                    rec.clone(),
                    tk.key("expiry"),
                    tk.key("tombs"),
                    tk.key("ids"),
                    tk.key("resv"),
                    tk.key("team"),
                    tk.slot_key("teams"),
                    tk.slot_key("listed"),
                    ns.slots(),
                    tk.key("seq"),
                ],
            )
            .clone();
            let kind = *pick(rng, &["string", "hash", "set", "zset", "list"]);
            let t = try_raw(conn, &["TYPE", &key]).await;
            if t[0] == kind || (t[0] == "none" && kind == "string") {
                try_raw(conn, &["DEL", &key]).await;
                return format!("{key} deleted");
            }
            try_raw(conn, &["DEL", &key]).await;
            wrong_type(conn, &key, kind).await;
            format!("{key} made a {kind}")
        }
        4 => {
            let key = pick(
                rng,
                &[
                    tk.key("expiry"),
                    tk.key("tombs"),
                    tk.key("ids"),
                    tk.key("resv"),
                ],
            )
            .clone();
            let score = *pick(
                rng,
                &["-inf", "+inf", "1e300", "-5", "0", "1", "9007199254740993"],
            );
            let member = *pick(rng, &[id, "ghost", "a:b", "x y", ""]);
            if rng.random_bool(0.3) {
                try_raw(conn, &["ZREM", &key, member]).await;
                format!("{member} removed from {key}")
            } else {
                let t = try_raw(conn, &["TYPE", &key]).await;
                if t[0] != "zset" && t[0] != "none" {
                    return format!("{key} left a {}", t[0]);
                }
                try_raw(conn, &["ZADD", &key, score, member]).await;
                format!("{member} at {score} in {key}")
            }
        }
        5 => {
            let field = *pick(rng, TEAM_FIELDS);
            let t = try_raw(conn, &["TYPE", &tk.key("team")]).await;
            if t[0] != "hash" && t[0] != "none" {
                return "team hash left".into();
            }
            match value(rng) {
                None => try_raw(conn, &["HDEL", &tk.key("team"), field]).await,
                Some(v) => try_raw(conn, &["HSET", &tk.key("team"), field, &v]).await,
            };
            format!("{}.{field} damaged", tk.key("team"))
        }
        6 => {
            // An outcome key without its transition.
            let fence = *pick(rng, &["4000", "5000", "1", "0", "4001"]);
            let content = *pick(
                rng,
                &[
                    "pause succeeded ",
                    "pause failed x",
                    "kill abandoned why",
                    "snapshot succeeded ",
                    "garbage",
                    "",
                    "pause nope x",
                ],
            );
            let key = format!("{}out:{id}:{fence}", tk.prefix);
            try_raw(conn, &["SET", &key, content]).await;
            format!("{key} = {content:?}")
        }
        _ => {
            let member = *pick(rng, &["abc", "99999", "-1", "0", "16383", ""]);
            let t = try_raw(conn, &["TYPE", &ns.slots()]).await;
            if t[0] != "set" && t[0] != "none" {
                return "slots left".into();
            }
            try_raw(conn, &["SADD", &ns.slots(), member]).await;
            format!("{member:?} in {}", ns.slots())
        }
    }
}

/// One public call against the damaged data: what it was and its answer.
struct Answer {
    what: String,
    result: Result<String, Error>,
    /// The decision the lifecycle gives for a begin on the record as
    /// `get` read it before the call (settled, no lease, no queue, no
    /// reservation), if it gives exactly one.
    expected: Option<Decision>,
}

async fn call(rng: &mut StdRng, coord: &Coordinator, scene: &Scene, label: &mut String) -> Answer {
    let team = if rng.random_bool(0.85) {
        scene.t.clone()
    } else {
        scene.u.clone()
    };
    let id = if team == scene.u {
        "u1"
    } else {
        *pick(rng, IDS)
    };
    let short = Duration::from_millis(300);
    let mut expected = None;
    let op = rng.random_range(0..13);
    *label = format!("operation {op} on {team}/{id}");
    let (what, result) = match op {
        0..=3 => {
            let action = *pick(rng, &[Action::Pause, Action::Kill, Action::Snapshot]);
            let mut opts = BeginOptions::default().wait_timeout(short).watchdog(false);
            let eviction = rng.random_bool(0.2);
            if eviction {
                opts = opts.eviction();
            }
            let pinned = rng.random_bool(0.2);
            if pinned {
                opts = opts.expect_execution(*pick(rng, &["e1", "zz"]));
            }
            if let Ok(Some(sb)) = coord.get(&team, id).await {
                let settled = !matches!(
                    coord.lifecycle().class(sb.state),
                    sandbox_coordinator::StateClass::InFlight(_)
                );
                if settled
                    && sb.lease.is_none()
                    && sb.waiting == 0
                    && sb.reserved.is_none()
                    && !eviction
                    && !pinned
                {
                    expected = Some(coord.lifecycle().decide(sb.state, LeaseView::None, action));
                }
            }
            let got = coord.begin(&team, id, action, opts).await;
            let result = match got {
                Ok(Begun::Started(t)) => {
                    let _ = t.fail("fuzz").await;
                    Ok("started".to_string())
                }
                Ok(Begun::AlreadyDone(d)) => Ok(format!("{:?}", d.why)),
                Err(e) => Err(e),
            };
            (format!("begin {action} {team}/{id}"), result)
        }
        4 => {
            let how = if rng.random_bool(0.5) {
                Finish::Succeeded
            } else {
                Finish::Failed("x".into())
            };
            let r = coord
                .finish(&team, "r4", Action::Pause, 4000, "dead/2", how)
                .await;
            (
                format!("finish {team}/r4"),
                r.map(|_| "finished".to_string()),
            )
        }
        5 => {
            let r = coord.wait_idle(&team, id, short).await;
            (
                format!("wait_idle {team}/{id}"),
                r.map(|s| format!("{:?}", s.state)),
            )
        }
        6 => {
            let exec = *pick(rng, &["e1", "e2"]);
            let r = coord
                .register(NewSandbox {
                    team: team.clone(),
                    ..sandbox(id, exec)
                })
                .await;
            (
                format!("register {team}/{id} {exec}"),
                r.map(|(_, how)| format!("{how:?}")),
            )
        }
        7 => (
            format!("remove {team}/{id}"),
            coord.remove(&team, id).await.map(|b| b.to_string()),
        ),
        8 => (
            format!("list {team}"),
            coord.list(&team).await.map(|l| l.len().to_string()),
        ),
        9 => (
            "due_for_eviction_all".to_string(),
            coord
                .due_for_eviction_all(100)
                .await
                .map(|d| format!("{d:?}")),
        ),
        10 => {
            let dry = rng.random_bool(0.5);
            (
                format!("repair dry={dry}"),
                coord
                    .repair(dry)
                    .await
                    .map(|r| format!("{} drift", r.drift.len())),
            )
        }
        11 => (
            format!("count {team}"),
            coord.count(&team).await.map(|c| format!("{c:?}")),
        ),
        _ => (
            format!("get {team}/{id}"),
            coord
                .get(&team, id)
                .await
                .map(|s| format!("{:?}", s.map(|s| s.state))),
        ),
    };
    Answer {
        what,
        result,
        expected,
    }
}

/// Whether `result` is what a begin may answer for `decision`.
fn allowed(decision: Decision, result: &Result<String, Error>) -> bool {
    match (decision, result) {
        (Decision::Start, Ok(s)) => s == "started",
        (Decision::AlreadyInState, Ok(s)) => s == &format!("{:?}", DoneReason::AlreadyInState),
        (Decision::Absorbed, Ok(s)) => s.starts_with("Absorbed"),
        (Decision::Invalid, Err(Error::InvalidTransition { .. })) => true,
        // A refusal of the damaged data or of its team's indexes.
        (_, Err(Error::Corrupt { .. } | Error::SchemaMismatch { .. })) => true,
        (_, Err(Error::LifecycleMismatch { .. })) => true,
        _ => false,
    }
}

/// Whether the only writes between two dumps are a stuck transition's
/// `abandoned` outcome (its new outcome key and its record): a begin or
/// wait first records how the dead holder's transition ended (settle.lua,
/// its own script), then decides — and the decision may refuse.
fn only_settled(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> bool {
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    let settled = changed.iter().find_map(|k| {
        let (prefix, rest) = k.split_once(":out:")?;
        let (id, _fence) = rest.rsplit_once(':')?;
        let new = before.get(*k).is_none() && after.get(*k)?.contains(" abandoned ");
        new.then(|| format!("{prefix}:rec:{id}"))
    });
    let Some(record) = settled else {
        return false;
    };
    // The settle announces its write to team views: the team's sequence
    // moves with it.
    let seq = format!("{}:seq", record.split_once(":rec:").map_or("", |(p, _)| p));
    changed
        .iter()
        .all(|k| k.contains(":out:") && before.get(*k).is_none() || **k == record || **k == seq)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The damage fuzzer (see the module docs). Every finding is printed with
/// the seed and case that make it again; the test fails if there is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_fuzzer() {
    let seed = env_u64("DAMAGE_SEED", 16);
    let budget = Duration::from_secs(env_u64("DAMAGE_SECONDS", 15));
    let redis = TestRedis::start().await;
    let plain = coordinator_with(&redis, |b| b).await;
    let deleting = coordinator_with(&redis, kill_deletes_paused).await;
    let mut conn = redis.client().await;
    let u = team_in_the_slot_of(TEAM);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut findings: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut note = |class: String, detail: String| {
        let e = findings.entry(class).or_insert((0, detail));
        e.0 += 1;
    };
    let t0 = Instant::now();
    let mut cases = 0u64;
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    while t0.elapsed() < budget {
        cases += 1;
        let coord = if rng.random_bool(0.5) {
            &plain
        } else {
            &deleting
        };
        let scene = set_scene(coord, &mut conn, &u).await;
        let mut damages = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            damages.push(damage(&mut rng, coord, &mut conn, &scene).await);
        }
        let before = dump_connection(&mut conn).await;
        let calls_before = evalsha_calls(&conn).await;
        let mut label = String::new();
        let answer = timeout(
            Duration::from_secs(5),
            call(&mut rng, coord, &scene, &mut label),
        )
        .await;
        let case = format!("seed {seed} case {cases}: {damages:?}");
        let Ok(answer) = answer else {
            note(format!("no answer within 5 s ({label})"), case);
            continue;
        };
        let calls = evalsha_calls(&conn).await - calls_before;
        let what = answer.what.split(' ').next().unwrap_or("").to_string();
        if calls > 40 {
            note(
                format!("{what}: {calls} script calls"),
                format!("{case} -> {} {:?}", answer.what, answer.result),
            );
        }
        let kind = match &answer.result {
            Ok(_) => "ok",
            Err(Error::Corrupt { .. }) => "corrupt",
            Err(Error::SchemaMismatch { .. }) => "schema",
            Err(Error::LifecycleMismatch { .. }) => "lifecycle",
            Err(Error::Redis(_)) => "redis",
            Err(_) => "other error",
        };
        *outcomes.entry(kind).or_default() += 1;
        if let Err(Error::Redis(e)) = &answer.result {
            note(
                format!("{what}: raw Redis error {:?}", e.kind()),
                format!("{case} -> {} {e}", answer.what),
            );
        }
        if let Err(Error::Corrupt { detail }) = &answer.result
            && detail.contains("unexpected reply")
        {
            note(
                format!("{what}: unexpected reply"),
                format!("{case} -> {} {detail}", answer.what),
            );
        }
        if matches!(
            answer.result,
            Err(Error::Corrupt { .. }
                | Error::SchemaMismatch { .. }
                | Error::LifecycleMismatch { .. }
                | Error::InvalidInput { .. })
        ) {
            let after = dump_connection(&mut conn).await;
            if after != before && !only_settled(&before, &after) {
                note(
                    format!("{what}: refused but wrote"),
                    format!(
                        "{case} -> {} {:?}\n{}",
                        answer.what,
                        answer.result,
                        fixture::dump_diff(&before, &after)
                    ),
                );
            }
        }
        if let Some(decision) = answer.expected
            && !allowed(decision, &answer.result)
        {
            note(
                format!("{what}: {decision:?} answered otherwise"),
                format!("{case} -> {} {:?}", answer.what, answer.result),
            );
        }
    }
    eprintln!(
        "damage fuzzer: seed {seed}, {cases} cases in {:.1} s, answers {outcomes:?}",
        t0.elapsed().as_secs_f64()
    );
    for (class, (n, example)) in &findings {
        eprintln!("FINDING ({n}x) {class}\n  e.g. {example}");
    }
    assert!(findings.is_empty(), "{} kinds of findings", findings.len());
}
