//! Differential tests: the pure Rust specification `Lifecycle::decide` against
//! what `lua/begin.lua` actually decides, cell by cell.
//!
//! Every (state, lease, action) cell gets its own team (so fence counters do
//! not interfere) with a record written directly into Redis the way the
//! scripts leave it; `begin.lua` is then called directly with EVALSHA and the
//! argument layout of its header, with the rule row and state classes
//! rendered from the `Lifecycle` under test. The reply's status word must be
//! the specification's decision; non-start decisions must write nothing, and
//! start decisions must write exactly the opened transition.

mod fixture;
mod support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use fixture::{TEAM, dump_all, raw, sandbox};
use sandbox_coordinator::keys::{Namespace, SCHEMA_VERSION, SandboxKeys};
use sandbox_coordinator::scripts::SCRIPTS;
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Decision, DoneReason, LeaseView, Lifecycle, State,
    StateClass,
};
use support::TestRedis;

/// The fence of the transition written into every cell's record.
const FENCE: u64 = 5;
const HOLDER: &str = "diff-holder";
const LEASE_MS: u64 = 30_000;
const RETENTION_MS: &str = "600000";

/// The status word `begin.lua` replies with for a decision.
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
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
/// transition `FENCE`: live lease, stuck (failed, no lease), or settled.
async fn write_record(
    conn: &mut redis::aio::MultiplexedConnection,
    lc: &Lifecycle,
    keys: &SandboxKeys,
    id: &str,
    state: State,
    lease: LeaseView,
    end_ms: u64,
) {
    let owner = owning_action(lc, state);
    let in_flight = matches!(lc.class(state), StateClass::InFlight(_));
    let fence = FENCE.to_string();
    let end = end_ms.to_string();
    let started = (now_ms() - 1000).to_string();
    let mut hset = vec![
        "HSET",
        &keys.record,
        "v",
        SCHEMA_VERSION,
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
    // The last finished transition: for a live one the previous fence (a
    // snapshot that succeeded); otherwise transition FENCE itself, failed if
    // the record is stuck in flight, succeeded if it settled.
    let (last_fence, last_action, last_outcome, last_reason) = match (in_flight, lease) {
        (true, LeaseView::Live) => ((FENCE - 1).to_string(), "snapshot", "succeeded", ""),
        (true, LeaseView::None) => (fence.clone(), owner.as_str(), "failed", "boom"),
        (false, _) => (fence.clone(), owner.as_str(), "succeeded", ""),
    };
    hset.extend([
        "last_fence",
        &last_fence,
        "last_action",
        last_action,
        "last_outcome",
        last_outcome,
        "last_reason",
        last_reason,
    ]);
    raw(conn, &hset).await;
    let outcome = format!("{last_action} {last_outcome} {last_reason}");
    raw(conn, &["HSET", &keys.outcomes, &last_fence, &outcome]).await;
    raw(conn, &["PEXPIRE", &keys.outcomes, RETENTION_MS]).await;
    raw(conn, &["SET", &keys.fence, &fence]).await;
    if lc.class(state).is_tombstone() {
        raw(conn, &["PEXPIRE", &keys.record, "86400000"]).await;
    } else {
        raw(conn, &["ZADD", &keys.expiry, &end, id]).await;
    }
    if lease == LeaseView::Live {
        let value = format!("{FENCE} {} holder-x", owner.as_str());
        raw(conn, &["SET", &keys.lease, &value, "PX", "30000"]).await;
    }
}

/// Calls begin.lua directly (EVALSHA, as the coordinator does) with the
/// argument layout of its header.
async fn call_begin(
    conn: &mut redis::aio::MultiplexedConnection,
    lc: &Lifecycle,
    ns: &Namespace,
    team: &str,
    id: &str,
    action: Action,
) -> Vec<String> {
    let keys = ns.sandbox(team, id).unwrap();
    let spec = lc.spec(action);
    let classes = lc.classes_arg();
    let rules = lc.rules_arg(action);
    let lease_ms = LEASE_MS.to_string();
    let channel = ns.channel();
    raw(
        conn,
        &[
            "EVALSHA",
            &SCRIPTS.begin.sha,
            "5",
            &keys.record,
            &keys.lease,
            &keys.outcomes,
            &keys.expiry,
            &keys.fence,
            SCHEMA_VERSION,
            team,
            id,
            action.as_str(),
            spec.in_flight.as_str(),
            if spec.ends_sandbox { "1" } else { "0" },
            &lease_ms,
            HOLDER,
            "0",
            "",
            &channel,
            RETENTION_MS,
            &classes,
            &rules,
        ],
    )
    .await
}

async fn hget(conn: &mut redis::aio::MultiplexedConnection, key: &str, field: &str) -> String {
    raw(conn, &["HGET", key, field]).await.remove(0)
}

/// Runs every cell of `lc` against the scripts and returns the cells whose
/// outcome disagrees with the specification (empty when all agree).
async fn run_grid(redis: &TestRedis, lc: &Lifecycle) -> Vec<String> {
    let ns = Namespace::new(&redis.namespace()).unwrap();
    let mut conn = redis.client().await;
    let loaded = raw(&mut conn, &["SCRIPT", "LOAD", SCRIPTS.begin.source]).await;
    assert_eq!(loaded, [SCRIPTS.begin.sha.as_str()], "SHA1 of begin.lua");

    let mut wrong = Vec::new();
    for (n, (state, lease, action)) in cells(lc).into_iter().enumerate() {
        let team = format!("d{n}");
        let id = "s1";
        let keys = ns.sandbox(&team, id).unwrap();
        let cell = format!("{action} on {state} (lease {lease:?})");
        let end_ms = now_ms() + 3_600_000;
        // Each cell alone in the keyspace (its own team besides), so the
        // before/after snapshots stay small.
        fixture::clear_namespace(redis).await;
        write_record(&mut conn, lc, &keys, id, state, lease, end_ms).await;

        let fields_before = hgetall(&mut conn, &keys.record).await;
        let before = dump_all(redis).await;
        let reply = call_begin(&mut conn, lc, &ns, &team, id, action).await;
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
            _ => {
                if before != after {
                    wrong.push(format!(
                        "{cell}: {want:?} wrote something:\n{}",
                        diff(&before, &after)
                    ));
                }
                match want {
                    Decision::Join | Decision::WaitThenRedecide => {
                        if reply.get(1).map(String::as_str) != Some("5") {
                            wrong.push(format!("{cell}: {want:?} names fence {reply:?}"));
                        }
                    }
                    Decision::Invalid => {
                        if reply != ["invalid", state.as_str()] {
                            wrong.push(format!("{cell}: invalid reply {reply:?}"));
                        }
                    }
                    _ => {
                        if reply.get(3).map(String::as_str) != Some(state.as_str()) {
                            wrong.push(format!("{cell}: {want:?} reply {reply:?}"));
                        }
                    }
                }
            }
        }
    }
    wrong
}

/// A start must write exactly the opened transition: next fence from the
/// team counter, in-flight state, lease, record persisted, end time pulled
/// for pause/kill, expiry index in step, no outcome recorded.
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
    let next = (FENCE + 1).to_string();
    let mut problems = Vec::new();
    if reply.get(1) != Some(&next) {
        problems.push(format!("reply fence {:?}, want {next}", reply.get(1)));
    }
    if hget(conn, &keys.record, "state").await != spec.in_flight.as_str() {
        problems.push("state is not the in-flight state".to_string());
    }
    if hget(conn, &keys.record, "fence").await != next {
        problems.push("record fence not bumped".to_string());
    }
    if hget(conn, &keys.record, "action").await != action.as_str() {
        problems.push("record action not set".to_string());
    }
    if raw(conn, &["GET", &keys.fence]).await != [next.clone()] {
        problems.push("team fence counter not bumped".to_string());
    }
    let lease = format!("{next} {} {HOLDER}", action.as_str());
    if raw(conn, &["GET", &keys.lease]).await != [lease] {
        problems.push("lease not written".to_string());
    }
    let lease_pttl: i64 = raw(conn, &["PTTL", &keys.lease]).await[0].parse().unwrap();
    if !(1..=LEASE_MS as i64).contains(&lease_pttl) {
        problems.push(format!("lease PTTL {lease_pttl}"));
    }
    if raw(conn, &["PTTL", &keys.record]).await != ["-1"] {
        problems.push("record still expires (not persisted)".to_string());
    }
    let stored_end: u64 = hget(conn, &keys.record, "end_ms").await.parse().unwrap();
    // Reply: status, fence, lease_pttl, then the record fields, of which
    // the 13th is the server's now.
    let server_now: u64 = reply[3 + 12].parse().unwrap();
    if hget(conn, &keys.record, "started_ms").await != server_now.to_string() {
        problems.push("started_ms is not the server time of the start".to_string());
    }
    let want_end = if spec.ends_sandbox {
        server_now
    } else {
        end_ms
    };
    if stored_end != want_end {
        problems.push(format!("end_ms {stored_end}, want {want_end}"));
    }
    let score = raw(conn, &["ZSCORE", &keys.expiry, "s1"]).await;
    if score != [want_end.to_string()] {
        problems.push(format!("expiry index {score:?}, want {want_end}"));
    }
    // Only the record, lease, counter and index may change.
    for (key, value) in before {
        let changed = after.get(key) != Some(value);
        let allowed = [&keys.record, &keys.lease, &keys.fence, &keys.expiry].contains(&key);
        if changed && !allowed {
            problems.push(format!("{key} changed"));
        }
    }
    // Within the record, only the transition's own fields may change.
    let fields_after = hgetall(conn, &keys.record).await;
    for (field, value) in fields_before {
        let changed = fields_after.get(field) != Some(value);
        if changed
            && !["state", "fence", "action", "end_ms", "started_ms"].contains(&field.as_str())
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
        "begin.lua disagrees with Lifecycle::decide:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_changed_in_rust_changes_the_script_decision() {
    let redis = TestRedis::start().await;
    let changed = Lifecycle::sandbox().with_rule(
        Action::Kill,
        State::Paused,
        LeaseView::None,
        Decision::Start,
    );
    assert_eq!(changed.validate(), Ok(()));
    assert_ne!(changed, Lifecycle::sandbox());

    // The whole grid agrees with the changed table, with the same Lua.
    let wrong = run_grid(&redis, &changed).await;
    assert!(
        wrong.is_empty(),
        "begin.lua disagrees with the changed table:\n{}",
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
    for id in ["s1", "s2"] {
        coord.register(sandbox(id, "e1")).await.unwrap();
        let Begun::Started(pause) = coord
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
    assert_eq!(kill.sandbox().state, State::Killing);
    kill.succeed().await.unwrap();
    assert_eq!(
        coord.get(TEAM, "s1").await.unwrap().unwrap().state,
        State::Killed
    );

    // The default table, same server and scripts, still absorbs it.
    match default
        .begin(TEAM, "s2", Action::Kill, BeginOptions::default())
        .await
        .unwrap()
    {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
        Begun::Started(t) => panic!("the default table absorbs the kill, started {}", t.fence()),
    }
    fixture::assert_index_agrees(&redis, &coord, &["s1", "s2"]).await;
}
