//! Differential tests: the pure Rust specification `Lifecycle::decide`
//! against what the generated `begin_<action>` scripts actually decide,
//! cell by cell.
//!
//! Every (state, lease, action) cell gets a record written directly into
//! Redis the way the scripts leave it; the coordinator's assembled begin
//! script for the action (the rule row generated from the `Lifecycle` under
//! test) is then run with `EVAL` and the argument layout of its header. The
//! reply's status word must be the specification's decision; join, done
//! and invalid decisions must write nothing, a wait must only queue the
//! caller, and a start must write exactly the opened transition.

mod fixture;
mod support;

use std::collections::BTreeMap;

use fixture::{TEAM, dump_all, raw, sandbox};
use sandbox_coordinator::keys::{SCHEMA_VERSION, SandboxKeys};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Decision, DoneReason, Error, LeaseView, Lifecycle,
    State, StateClass,
};
use support::TestRedis;

/// The fence of the transition written into every cell's record.
const FENCE: u64 = 5;
const HOLDER: &str = "diff/1";
const LEASE_MS: u64 = 30_000;

/// The status word the begin script replies with for a decision.
fn status_of(d: Decision) -> &'static str {
    match d {
        Decision::Start => "started",
        Decision::Join => "join",
        Decision::WaitThenRedecide => "wait",
        Decision::AlreadyInState => "same",
        Decision::Absorbed => "absorbed",
        Decision::Invalid => "invalid",
    }
}

/// The action a record in `state` was last touched by: the action whose
/// in-flight state it is, or the action whose success leads to it.
fn owning_action(lc: &Lifecycle, state: State) -> Action {
    if let StateClass::InFlight(a) = lc.class(state) {
        return a;
    }
    Action::ALL
        .into_iter()
        .find(|a| lc.spec(*a).on_success == state)
        .unwrap_or(Action::Snapshot)
}

async fn server_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let t = raw(conn, &["TIME"]).await;
    t[0].parse::<u64>().unwrap() * 1000 + t[1].parse::<u64>().unwrap() / 1000
}

/// Every cell of the table: in-flight states with a live and a stuck lease,
/// settled states without one.
fn cells(lc: &Lifecycle) -> Vec<(State, LeaseView, Action)> {
    let mut out = Vec::new();
    for state in State::ALL {
        for lease in [LeaseView::Live, LeaseView::None] {
            if lease == LeaseView::Live && !matches!(lc.class(state), StateClass::InFlight(_)) {
                continue;
            }
            for action in Action::ALL {
                out.push((state, lease, action));
            }
        }
    }
    out
}

/// Writes a record in `state` as the scripts would have left it after
/// transition `FENCE`: live lease, stuck (failed, no lease), or settled;
/// with its index entries.
#[allow(clippy::too_many_arguments)]
async fn write_record(
    conn: &mut redis::aio::MultiplexedConnection,
    lc: &Lifecycle,
    keys: &SandboxKeys,
    id: &str,
    state: State,
    lease: LeaseView,
    end_ms: u64,
    now: u64,
) {
    let owner = owning_action(lc, state);
    let in_flight = matches!(lc.class(state), StateClass::InFlight(_));
    let fence = FENCE.to_string();
    let end = end_ms.to_string();
    let started = (now - 1000).to_string();
    let digest = lc.digest();
    let until = (now + LEASE_MS).to_string();
    let mut hset = vec![
        "HSET",
        &keys.record,
        "v",
        SCHEMA_VERSION,
        "lc",
        &digest,
        "state",
        state.as_str(),
        "exec",
        "exec-1",
        "end_ms",
        &end,
        "fence",
        &fence,
        "action",
        owner.as_str(),
        "data",
        "{\"vm\":1}",
        "started_ms",
        &started,
    ];
    if lease == LeaseView::Live {
        hset.extend(["holder", "holder-x", "until_ms", &until]);
    }
    // The last finished transition: for a live one the previous fence (a
    // snapshot that succeeded); otherwise transition FENCE itself, failed if
    // the record is stuck in flight, succeeded if it settled.
    let previous = (FENCE - 1).to_string();
    let (last_fence, last_action, last_outcome, last_reason) = match (in_flight, lease) {
        (true, LeaseView::Live) => (previous.as_str(), "snapshot", "succeeded", ""),
        (true, LeaseView::None) => (fence.as_str(), owner.as_str(), "failed", "boom"),
        (false, _) => (fence.as_str(), owner.as_str(), "succeeded", ""),
    };
    hset.extend([
        "last_fence",
        last_fence,
        "last_action",
        last_action,
        "last_outcome",
        last_outcome,
        "last_reason",
        last_reason,
    ]);
    raw(conn, &hset).await;
    raw(conn, &["ZADD", &keys.team.key("ids"), "0", id]).await;
    if lc.class(state).is_tombstone() {
        raw(conn, &["PEXPIRE", &keys.record, "86400000"]).await;
        let expires = (now + 86_400_000).to_string();
        raw(conn, &["ZADD", &keys.team.key("tombs"), &expires, id]).await;
    } else {
        raw(conn, &["ZADD", &keys.team.key("expiry"), &end, id]).await;
    }
}

/// Runs the coordinator's begin script for `action` by hand (EVAL of the
/// assembled source) with the argument layout of its header.
async fn call_begin(
    conn: &mut redis::aio::MultiplexedConnection,
    coord: &Coordinator,
    keys: &SandboxKeys,
    id: &str,
    action: Action,
) -> Vec<String> {
    let source = fixture::script(coord, &format!("begin_{action}"));
    let lease_ms = LEASE_MS.to_string();
    raw(
        conn,
        &[
            "EVAL",
            &source,
            "1",
            &keys.record,
            &keys.team.prefix,
            id,
            HOLDER,
            &lease_ms,
            "",
            "0",
            "4000",
        ],
    )
    .await
}

async fn hget(conn: &mut redis::aio::MultiplexedConnection, key: &str, field: &str) -> String {
    raw(conn, &["HGET", key, field]).await.remove(0)
}

/// Runs every cell of `lc` against its generated scripts and returns the
/// cells whose outcome disagrees with the specification (empty when all
/// agree).
async fn run_grid(redis: &TestRedis, lc: &Lifecycle) -> Vec<String> {
    let coord = Coordinator::builder(redis.url())
        .namespace(redis.namespace())
        .lifecycle(lc.clone())
        .notifications(false)
        .build()
        .await
        .unwrap();
    let ns = coord.namespace().clone();
    let mut conn = redis.client().await;
    let mut wrong = Vec::new();
    for (n, (state, lease, action)) in cells(lc).into_iter().enumerate() {
        let team = format!("d{n}");
        let id = "s1";
        let keys = ns.sandbox(&team, id).unwrap();
        let cell = format!("{action} on {state} (lease {lease:?})");
        let now = server_now_ms(&mut conn).await;
        let end_ms = now + 3_600_000;
        // Each cell alone in the keyspace, so the snapshots stay small.
        fixture::clear_namespace(redis).await;
        write_record(&mut conn, lc, &keys, id, state, lease, end_ms, now).await;

        let fields_before = hgetall(&mut conn, &keys.record).await;
        let before = dump_all(redis).await;
        let reply = call_begin(&mut conn, &coord, &keys, id, action).await;
        let after = dump_all(redis).await;

        let want = lc.decide(state, lease, action);
        let got = reply.first().map(String::as_str).unwrap_or("");
        if got != status_of(want) {
            wrong.push(format!(
                "{cell}: spec says {want:?} ({:?}), script replied {reply:?}",
                status_of(want)
            ));
            continue;
        }
        match want {
            Decision::Start => {
                check_started(
                    &mut conn,
                    lc,
                    &keys,
                    &cell,
                    action,
                    end_ms,
                    &reply,
                    &fields_before,
                    &before,
                    &after,
                    &mut wrong,
                )
                .await
            }
            Decision::WaitThenRedecide => {
                // Only the caller's place in the queue is written.
                let queue = hget(&mut conn, &keys.record, "queue").await;
                if !queue.starts_with(&format!("{HOLDER}@")) || queue.contains(' ') {
                    wrong.push(format!("{cell}: wait queued {queue:?}"));
                }
                let mut fields_after = hgetall(&mut conn, &keys.record).await;
                fields_after.remove("queue");
                if fields_after != fields_before {
                    wrong.push(format!("{cell}: wait changed more than the queue"));
                }
                if reply.get(1).map(String::as_str) != Some("5") {
                    wrong.push(format!("{cell}: wait names fence {reply:?}"));
                }
            }
            _ => {
                if before != after {
                    wrong.push(format!(
                        "{cell}: {want:?} wrote something:\n{}",
                        diff(&before, &after)
                    ));
                }
                match want {
                    Decision::Join => {
                        if reply.get(1).map(String::as_str) != Some("5")
                            || reply.get(3).map(String::as_str) != Some("holder-x")
                        {
                            wrong.push(format!("{cell}: join reply {reply:?}"));
                        }
                    }
                    _ => {
                        if reply != [status_of(want), state.as_str()] {
                            wrong.push(format!("{cell}: {want:?} reply {reply:?}"));
                        }
                    }
                }
            }
        }
    }
    wrong
}

/// A start must write exactly the opened transition: a fence above the
/// record's and at least the server time in µs, the in-flight state, the
/// lease (holder, deadline), the start time, the end time pulled for
/// pause/kill with the expiry index in step, and nothing else.
#[allow(clippy::too_many_arguments)]
async fn check_started(
    conn: &mut redis::aio::MultiplexedConnection,
    lc: &Lifecycle,
    keys: &SandboxKeys,
    cell: &str,
    action: Action,
    end_ms: u64,
    reply: &[String],
    fields_before: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    wrong: &mut Vec<String>,
) {
    let spec = lc.spec(action);
    let mut problems = Vec::new();
    let fence: u64 = reply.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    let started: u64 = hget(conn, &keys.record, "started_ms")
        .await
        .parse()
        .unwrap_or(0);
    if fence <= FENCE || fence < started * 1000 {
        problems.push(format!(
            "reply fence {fence}: not above {FENCE} and the start's µs"
        ));
    }
    if reply.get(2).map(String::as_str) != Some(&LEASE_MS.to_string())
        || reply.get(3).map(String::as_str) != Some("exec-1")
    {
        problems.push(format!("started reply {reply:?}"));
    }
    if hget(conn, &keys.record, "state").await != spec.in_flight.as_str() {
        problems.push("state is not the in-flight state".to_string());
    }
    if hget(conn, &keys.record, "fence").await != fence.to_string() {
        problems.push("record fence is not the reply's".to_string());
    }
    if hget(conn, &keys.record, "action").await != action.as_str() {
        problems.push("record action not set".to_string());
    }
    if hget(conn, &keys.record, "holder").await != HOLDER {
        problems.push("holder not written".to_string());
    }
    let until: u64 = hget(conn, &keys.record, "until_ms")
        .await
        .parse()
        .unwrap_or(0);
    if until != started + LEASE_MS {
        problems.push(format!("until_ms {until}, want start + lease"));
    }
    let stored_end: u64 = hget(conn, &keys.record, "end_ms").await.parse().unwrap();
    let want_end = if spec.ends_sandbox { started } else { end_ms };
    if stored_end != want_end {
        problems.push(format!("end_ms {stored_end}, want {want_end}"));
    }
    // A start makes the record live in every index, also a start from a
    // tombstone state (it leaves the tombstone index in the same script).
    let from_tombstone = lc
        .class(
            State::ALL
                .into_iter()
                .find(|s| s.as_str() == fields_before["state"])
                .unwrap(),
        )
        .is_tombstone();
    let score = raw(conn, &["ZSCORE", &keys.team.key("expiry"), "s1"]).await;
    if score != [want_end.to_string()] {
        problems.push(format!("expiry index {score:?}, want {want_end}"));
    }
    if from_tombstone {
        let tomb = raw(conn, &["ZSCORE", &keys.team.key("tombs"), "s1"]).await;
        if tomb.iter().any(|s| !s.is_empty()) {
            problems.push(format!("still in the tombstone index {tomb:?}"));
        }
    }
    // Only the record and the expiry index may change (and the tombstone
    // index, which a start from a tombstone state leaves).
    let tombs = keys.team.key("tombs");
    for (key, value) in before {
        let changed = after.get(key) != Some(value);
        let allowed = [&keys.record, &keys.team.key("expiry")].contains(&key)
            || (from_tombstone && key == &tombs);
        if changed && !allowed {
            problems.push(format!("{key} changed"));
        }
    }
    // Within the record, only the transition's own fields may change.
    let fields_after = hgetall(conn, &keys.record).await;
    for (field, value) in fields_after.iter() {
        let changed = fields_before.get(field) != Some(value);
        if changed
            && ![
                "state",
                "fence",
                "action",
                "end_ms",
                "started_ms",
                "holder",
                "until_ms",
            ]
            .contains(&field.as_str())
        {
            problems.push(format!("record field {field} changed"));
        }
    }
    if !problems.is_empty() {
        wrong.push(format!(
            "{cell}: start wrote wrongly: {}",
            problems.join("; ")
        ));
    }
}

async fn hgetall(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> BTreeMap<String, String> {
    let v: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap();
    v
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for key in before.keys().chain(after.keys()) {
        let (b, a) = (before.get(key), after.get(key));
        if b != a {
            out.push_str(&format!("  {key}: {b:?} -> {a:?}\n"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_script_decides_every_cell_like_the_spec() {
    let redis = TestRedis::start().await;
    let lc = Lifecycle::sandbox();
    assert_eq!(cells(&lc).len(), 27, "9 table rows x 3 actions");
    let wrong = run_grid(&redis, &lc).await;
    assert!(
        wrong.is_empty(),
        "the begin scripts disagree with Lifecycle::decide:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_changed_in_rust_changes_the_script_decision() {
    let redis = TestRedis::start().await;
    let changed = Lifecycle::sandbox().kill_deletes_paused();
    assert_eq!(changed.validate(), Ok(()));
    assert_ne!(changed, Lifecycle::sandbox());

    // The whole grid agrees with the changed table.
    let wrong = run_grid(&redis, &changed).await;
    assert!(
        wrong.is_empty(),
        "the begin scripts disagree with the changed table:\n{}",
        wrong.join("\n")
    );

    // And through the public API: kill of a paused sandbox now starts.
    fixture::clear_namespace(&redis).await;
    let coord = Coordinator::builder(redis.url())
        .namespace(redis.namespace())
        .lifecycle(changed)
        .build()
        .await
        .unwrap();
    let default = fixture::coordinator(&redis).await;
    for (c, id) in [(&coord, "s1"), (&coord, "s2"), (&default, "s3")] {
        c.register(sandbox(id, "e1")).await.unwrap();
        let Begun::Started(pause) = c
            .begin(TEAM, id, Action::Pause, BeginOptions::default())
            .await
            .unwrap()
        else {
            panic!("pause of a running sandbox must start");
        };
        pause.succeed().await.unwrap();
    }
    let pause_fence = coord.get(TEAM, "s1").await.unwrap().unwrap().fence;

    let kill = match coord
        .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::Started(t) => t,
        Begun::AlreadyDone(d) => panic!("the changed rule must start the kill, got {d:?}"),
    };
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

    // A server deciding by the default table refuses the records the
    // changed table created, naming both digests, and writes nothing...
    let before = dump_all(&redis).await;
    match default
        .begin(TEAM, "s2", Action::Kill, BeginOptions::default())
        .await
    {
        Err(Error::LifecycleMismatch {
            found, expected, ..
        }) => {
            assert_eq!(found, coord.lifecycle().digest());
            assert_eq!(expected, default.lifecycle().digest());
        }
        other => panic!("two tables on one namespace must be detected, got {other:?}"),
    }
    assert_eq!(dump_all(&redis).await, before);
    // ...and its own records still absorb the kill.
    match default
        .begin(TEAM, "s3", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
        Begun::Started(t) => panic!("the default table absorbs the kill, started {}", t.fence()),
    }
    fixture::assert_index_agrees(&redis, &coord, &["s1", "s2"]).await;
}
