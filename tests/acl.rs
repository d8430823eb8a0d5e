//! Least privilege (issue 9, point 2): a Redis user made from the rules
//! `acl_rules` prints — `ACL SETUSER coord $(sandboxctl acl) '>secret'`,
//! each word as its own argument, as an operator runs it — runs every
//! operation of the library (on a Redis Cluster too, also while its team's
//! slot moves), is denied everything outside its namespace, needs the admin
//! rules for the operator tools, and a user missing any one permission the
//! library needs is refused with `Error::NoPermission` naming it, with
//! nothing written.
//!
//! Single servers are the suite's `TestRedis` (containers when Docker
//! answers); clusters are native (`TestCluster`). The ACL user is created
//! through the default user, which stays all-powerful for the assertions
//! (dumps, `INFO commandstats`). Waiting coordinators poll every 30 s, so a
//! waiter that returns within its 5 s bound was woken by a notification.

mod fixture;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fixture::{dump_connection, dump_diff, evalsha_calls, pause_joined_by_notification, sandbox};
use sandbox_coordinator::{
    Abandonment, Action, BeginOptions, Begun, Builder, Coordinator, DoneReason, EndTime, Error,
    Finish, NewSandbox, Outcome, Registration, State, Transition, acl_rules,
};
use support::{ClusterOptions, TestCluster, TestRedis};

const USER: &str = "coord";
const SECRET: &str = "secret";
/// Longer than every bound here: a waiter back in time was notified.
const POLL: Duration = Duration::from_secs(30);
const BOUND: Duration = Duration::from_secs(5);

type Conn = redis::aio::MultiplexedConnection;

// ----- users ------------------------------------------------------------------------------

/// `ACL SETUSER <user> <rule> <rule>... ><password>`, the rules word by word.
async fn set_user(conn: &mut Conn, user: &str, rules: &[String]) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    for rule in rules {
        cmd.arg(rule);
    }
    cmd.arg(format!(">{SECRET}"));
    cmd.query_async(conn).await
}

fn words(rules: &str) -> Vec<String> {
    rules.split(' ').map(str::to_string).collect()
}

/// Creates `user` from printed rules. A word the server refuses as an
/// unknown command is a library bug of its own, proved (and left failing)
/// by `the_printed_rules_are_accepted_by_the_server_as_they_are`; here it
/// is left out, loudly, so that the other tests still prove everything else
/// on that server.
async fn create_user(conn: &mut Conn, user: &str, rules: &str) {
    let mut rules = words(rules);
    loop {
        let Err(e) = set_user(conn, user, &rules).await else {
            return;
        };
        let text = e.to_string();
        let unknown = text
            .contains("Unknown command")
            .then(|| text.split('\'').nth(1).map(str::to_string))
            .flatten()
            .filter(|w| rules.contains(w));
        match unknown {
            Some(word) => {
                eprintln!(
                    "[acl] LIBRARY BUG: the server refuses the printed rule {word:?} ({text}); \
                     creating {user} without it"
                );
                rules.retain(|r| *r != word);
            }
            None => panic!("ACL SETUSER {user} {}: {e}", rules.join(" ")),
        }
    }
}

/// The printed rules without `+<command>` (which they must contain).
fn rules_without(namespace: &str, command: &str) -> String {
    let rules = acl_rules(namespace, false).unwrap();
    let rule = format!("+{command}");
    assert!(
        rules.split(' ').any(|r| r == rule),
        "the rules have no {rule}: {rules}"
    );
    rules
        .split(' ')
        .filter(|r| *r != rule)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `url` with `user:secret` as its credentials.
fn url_as(url: &str, user: &str) -> String {
    if let Some(rest) = url.strip_prefix("redis://") {
        format!("redis://{user}:{SECRET}@{rest}")
    } else if url.starts_with("redis+unix://") {
        format!("{url}?user={user}&pass={SECRET}")
    } else {
        panic!("no credentials for {url}")
    }
}

/// A coordinator on `url` as `user` (username and password options).
fn as_user(url: &str, namespace: &str, user: &str) -> Builder {
    Coordinator::builder(url)
        .namespace(namespace)
        .username(user)
        .password(SECRET)
        .poll_interval(POLL)
}

/// A coordinator on a cluster's seed nodes as `user`.
fn cluster_as_user(cluster: &TestCluster, namespace: &str, user: &str) -> Builder {
    Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(namespace)
        .username(user)
        .password(SECRET)
        .poll_interval(POLL)
}

/// Creates `user` from `rules` on every node of the cluster (ACLs are per
/// node: a replica promoted later must know the user too).
async fn create_user_on_every_node(cluster: &TestCluster, user: &str, rules: &str) {
    for node in cluster.nodes() {
        create_user(&mut cluster.node_connection(node.port).await, user, rules).await;
    }
}

// ----- results ------------------------------------------------------------------------------

fn ok<T>(step: &str, result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("{step}, as the ACL user: {e} ({e:?})"))
}

fn started(step: &str, begun: Result<Begun, Error>) -> Transition {
    match ok(step, begun) {
        Begun::Started(t) => t,
        Begun::AlreadyDone(d) => panic!("{step}: expected a start, got {d:?}"),
    }
}

fn in_team(team: &str, id: &str, execution: &str) -> NewSandbox {
    NewSandbox {
        team: team.into(),
        ..sandbox(id, execution)
    }
}

fn no_perm_code(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
}

/// A raw command as the ACL user that must be refused with `NOPERM`.
async fn assert_noperm(conn: &mut Conn, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query_async::<redis::Value>(conn).await {
        Err(e) if no_perm_code(&e) => {}
        other => panic!("{args:?} as the ACL user: expected NOPERM, got {other:?}"),
    }
}

// ----- the core scenarios -------------------------------------------------------------------

/// Every operation of the library on `team`, as the ACL user (`coord`, and
/// `joiner`, a second coordinator as the same user). `evalsha` counts the
/// scripts run by the server that holds the team.
async fn core_scenarios(
    coord: &Coordinator,
    joiner: &Coordinator,
    team: &str,
    evalsha: impl AsyncFn() -> u64,
) {
    let hour = Duration::from_secs(3600);
    for (id, exec) in [("s1", "e1"), ("s2", "e2"), ("s3", "e3")] {
        let (_, how) = ok("register", coord.register(in_team(team, id, exec)).await);
        assert_eq!(how, Registration::Created);
    }

    // begin + succeed, with a joiner woken by the outcome's notification.
    pause_joined_by_notification(coord, joiner, team, "s1", evalsha).await;
    match ok(
        "kill of a paused sandbox",
        coord
            .begin(team, "s1", Action::Kill, BeginOptions::default())
            .await,
    ) {
        Begun::AlreadyDone(d) => assert_eq!(d.why, DoneReason::Absorbed { by: State::Paused }),
        Begun::Started(t) => panic!("a kill of a paused sandbox started (fence {})", t.fence()),
    }

    // fail
    let snapshot = started(
        "snapshot",
        coord
            .begin(team, "s2", Action::Snapshot, BeginOptions::default())
            .await,
    );
    ok("fail", snapshot.fail("disk full").await);
    let s2 = ok("get", coord.get(team, "s2").await).expect("s2");
    let last = s2.last.expect("a recorded outcome");
    assert_eq!(
        (s2.state, last.outcome, last.reason.as_str()),
        (State::Running, Outcome::Failed, "disk full")
    );

    // wait_idle, woken when the transition in flight ends.
    let snapshot = started(
        "snapshot",
        coord
            .begin(
                team,
                "s2",
                Action::Snapshot,
                BeginOptions::default().watchdog(false),
            )
            .await,
    );
    let (j, t) = (joiner.clone(), team.to_string());
    let idle = tokio::spawn(async move { j.wait_idle(&t, "s2", Duration::from_secs(20)).await });
    fixture::parked_n(joiner, 1).await;
    ok("succeed", snapshot.succeed().await);
    let s2 = ok(
        "wait_idle",
        tokio::time::timeout(BOUND, idle)
            .await
            .expect("wait_idle woken within 5 s")
            .unwrap(),
    );
    assert!(s2.lease.is_none() && s2.state == State::Running, "{s2:?}");

    // set_end_time, both forms.
    let at = SystemTime::now() + 2 * hour;
    ok(
        "set_end_time(At)",
        coord.set_end_time(team, "s2", at, None).await,
    );
    let end_at = ok("get", coord.get(team, "s2").await).unwrap().end_time;
    let skew = |a: SystemTime, b: SystemTime| a.duration_since(b).unwrap_or_else(|e| e.duration());
    assert!(
        skew(end_at, at) < Duration::from_millis(2),
        "{end_at:?} vs {at:?}"
    );
    ok(
        "set_end_time(In)",
        coord
            .set_end_time(team, "s2", EndTime::In(3 * hour), Some("e2"))
            .await,
    );
    let end_in = ok("get", coord.get(team, "s2").await).unwrap().end_time;
    assert!(end_in > end_at + Duration::from_secs(50 * 60), "{end_in:?}");

    // list, list_page, count
    let ids =
        |v: Vec<sandbox_coordinator::Sandbox>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(ok("list", coord.list(team).await)), ["s1", "s2", "s3"]);
    let page = ok("list_page", coord.list_page(team, None, 2).await);
    assert_eq!(
        (ids(page.sandboxes), page.next.as_deref()),
        (vec!["s1".to_string(), "s2".to_string()], Some("s2"))
    );
    let page = ok("list_page", coord.list_page(team, Some("s2"), 2).await);
    assert_eq!(
        (ids(page.sandboxes), page.next),
        (vec!["s3".to_string()], None)
    );
    let count = ok("count", coord.count(team).await);
    assert_eq!((count.live, count.paused, count.reserved), (2, 1, 0));

    // set_team_limit and a refusal by it
    assert_eq!(
        ok("set_team_limit", coord.set_team_limit(team, Some(2)).await),
        None
    );
    match coord.register(in_team(team, "s4", "e4")).await {
        Err(Error::TeamLimit { live, limit, .. }) => assert_eq!((live, limit), (2, 2)),
        other => panic!("register over the limit: {other:?}"),
    }
    assert_eq!(
        ok("set_team_limit", coord.set_team_limit(team, None).await),
        Some(2)
    );

    // reserve + Reservation::register, reserve_resume
    let place = ok(
        "reserve",
        coord.reserve(team, "s5", Duration::from_secs(30)).await,
    );
    assert_eq!(ok("count", coord.count(team).await).reserved, 1);
    let (_, how) = ok(
        "Reservation::register",
        place.register(in_team(team, "s5", "e5")).await,
    );
    assert_eq!(how, Registration::Created);
    let resume = ok(
        "reserve_resume",
        coord
            .reserve_resume(team, "s1", Duration::from_secs(30))
            .await,
    );
    let (_, how) = ok(
        "Reservation::register (resume)",
        resume.register(in_team(team, "s1", "e1b")).await,
    );
    assert_eq!(
        how,
        Registration::Resumed {
            previous_execution: "e1".into()
        }
    );

    // due_for_eviction, due_for_eviction_all, and the eviction itself
    ok(
        "set_end_time (past)",
        coord
            .set_end_time(team, "s3", SystemTime::now() - hour, None)
            .await,
    );
    assert_eq!(
        ok("due_for_eviction", coord.due_for_eviction(team, 10).await),
        ["s3"]
    );
    let all = ok(
        "due_for_eviction_all",
        coord.due_for_eviction_all(100).await,
    );
    assert!(
        all.contains(&(team.to_string(), "s3".to_string())),
        "{all:?}"
    );
    let evict = started(
        "eviction",
        coord
            .begin(team, "s3", Action::Kill, BeginOptions::default().eviction())
            .await,
    );
    ok("succeed", evict.succeed().await);

    // abandon: the operator ends a transition; its holder is fenced.
    let pause = started(
        "pause",
        coord
            .begin(
                team,
                "s2",
                Action::Pause,
                BeginOptions::default().watchdog(false),
            )
            .await,
    );
    match ok(
        "abandon",
        coord.abandon(team, "s2", pause.fence(), "operator").await,
    ) {
        Abandonment::Abandoned { reason, .. } => assert_eq!(reason, "operator"),
        other => panic!("abandon: {other:?}"),
    }
    assert!(matches!(pause.succeed().await, Err(Error::Fenced { .. })));

    // Transition::extend
    let snapshot = started(
        "snapshot",
        coord
            .begin(
                team,
                "s5",
                Action::Snapshot,
                BeginOptions::default()
                    .watchdog(false)
                    .lease(Duration::from_secs(20)),
            )
            .await,
    );
    let ttl = ok("extend", snapshot.extend().await);
    assert!(
        ttl > Duration::ZERO && ttl <= Duration::from_secs(20),
        "{ttl:?}"
    );
    ok("succeed", snapshot.succeed().await);

    // A dropped transition is failed in the background; close() waits for it.
    let dropped = started(
        "snapshot",
        coord
            .begin(team, "s5", Action::Snapshot, BeginOptions::default())
            .await,
    );
    drop(dropped);
    assert!(coord.close(BOUND).await, "close() within 5 s");
    let s5 = ok("get", coord.get(team, "s5").await).unwrap();
    assert!(s5.lease.is_none(), "{s5:?}");
    let last = s5.last.expect("the dropped transition's outcome");
    assert_eq!(
        (last.outcome, last.reason.as_str()),
        (Outcome::Failed, "dropped")
    );

    // remove, remove_execution
    assert!(ok("remove", coord.remove(team, "s2").await));
    match coord.remove_execution(team, "s5", "not-e5").await {
        Err(Error::ExecutionMismatch { actual, .. }) => assert_eq!(actual, "e5"),
        other => panic!("remove_execution of another execution: {other:?}"),
    }
    assert!(ok(
        "remove_execution",
        coord.remove_execution(team, "s5", "e5").await
    ));
    assert!(ok("remove", coord.remove(team, "s1").await));
    assert!(ok("remove", coord.remove(team, "s3").await));
    assert!(ok("list", coord.list(team).await).is_empty());
    assert!(coord.close(BOUND).await, "close() within 5 s");
}

// ----- the printed rules ------------------------------------------------------------------

/// The rules exactly as `acl_rules` prints them are accepted by the server
/// (Redis 7.0 and Valkey 8 are both supported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_rules_are_accepted_by_the_server_as_they_are() {
    let redis = TestRedis::start().await;
    let mut admin = redis.client().await;
    let info = redis.server_info().await;
    for admin_rules in [false, true] {
        let rules = acl_rules(&redis.namespace(), admin_rules).unwrap();
        if let Err(e) = set_user(&mut admin, USER, &words(&rules)).await {
            panic!("{info} refuses `ACL SETUSER {USER} {rules} >...`: {e}");
        }
    }
}

/// The core scenarios as the user, logged in with `username` and
/// `password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_runs_the_core_scenarios_with_username_and_password() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let admin = redis.client().await;
    create_user(&mut admin.clone(), USER, &acl_rules(&ns, false).unwrap()).await;
    let coord = ok("build", as_user(&redis.url(), &ns, USER).build().await);
    let joiner = ok("build", as_user(&redis.url(), &ns, USER).build().await);
    core_scenarios(&coord, &joiner, "team-a", async || {
        evalsha_calls(&admin).await
    })
    .await;
}

/// The core scenarios as the user, logged in by `redis://coord:secret@host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_runs_the_core_scenarios_with_credentials_in_the_url() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let admin = redis.client().await;
    create_user(&mut admin.clone(), USER, &acl_rules(&ns, false).unwrap()).await;
    let url = url_as(&redis.url(), USER);
    let build = || {
        Coordinator::builder(url.clone())
            .namespace(ns.clone())
            .poll_interval(POLL)
            .build()
    };
    let coord = ok("build", build().await);
    let joiner = ok("build", build().await);
    core_scenarios(&coord, &joiner, "team-a", async || {
        evalsha_calls(&admin).await
    })
    .await;
}

// ----- what the user is denied ----------------------------------------------------------

/// Keys and channels outside the namespace, and the dangerous commands, are
/// refused with `NOPERM`; the namespace's own keys and channels are not.
/// A script cannot reach outside the namespace either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_is_denied_keys_channels_and_commands_outside_the_namespace() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let mut admin = redis.client().await;
    create_user(&mut admin, USER, &acl_rules(&ns, false).unwrap()).await;
    let _: () = redis::cmd("SET")
        .arg("other:kept")
        .arg("1")
        .query_async(&mut admin)
        .await
        .unwrap();
    let user = redis::Client::open(url_as(&redis.url(), USER)).unwrap();
    let mut conn = user.get_multiplexed_async_connection().await.unwrap();

    // Its own namespace: allowed.
    let own_key = format!("{ns}:x");
    let own_channel = format!("{ns}:{{team-a}}:notify");
    let _: () = redis::cmd("SET")
        .arg(&own_key)
        .arg("1")
        .query_async(&mut conn)
        .await
        .expect("a key of the namespace");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&own_channel)
        .arg("m")
        .query_async(&mut conn)
        .await
        .expect("a channel of the namespace");

    assert_noperm(&mut conn, &["GET", "other:x"]).await;
    assert_noperm(&mut conn, &["SET", "other:x", "1"]).await;
    assert_noperm(&mut conn, &["PUBLISH", "other:channel", "m"]).await;
    assert_noperm(&mut conn, &["FLUSHALL"]).await;
    assert_noperm(&mut conn, &["KEYS", "*"]).await;
    assert_noperm(&mut conn, &["CONFIG", "GET", "*"]).await;
    let mut pubsub = user.get_async_pubsub().await.unwrap();
    match pubsub.subscribe("other:channel").await {
        Err(e) if no_perm_code(&e) => {}
        other => panic!("SUBSCRIBE other:channel: expected NOPERM, got {other:?}"),
    }
    pubsub
        .subscribe(&own_channel)
        .await
        .expect("SUBSCRIBE to a channel of the namespace");
    // A script runs with the user's permissions.
    let escaped: redis::RedisResult<redis::Value> = redis::cmd("EVAL")
        .arg("return redis.call('SET', 'other:x', '1')")
        .arg(0)
        .query_async(&mut conn)
        .await;
    assert!(
        escaped.is_err(),
        "a script wrote outside the namespace: {escaped:?}"
    );

    let exists: (bool, bool, bool) = redis::pipe()
        .exists("other:x")
        .exists("other:kept")
        .exists(&own_key)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        exists,
        (false, true, true),
        "other:x, other:kept, {own_key}"
    );
}

// ----- the operator tools -------------------------------------------------------------

/// `repair` and `migrate` find records with `SCAN`, which the plain rules
/// leave out: refused with `NoPermission` naming it, not a vague error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_migrate_as_the_plain_user_fail_with_no_permission_naming_scan() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    create_user(
        &mut redis.client().await,
        USER,
        &acl_rules(&ns, false).unwrap(),
    )
    .await;
    let coord = ok("build", as_user(&redis.url(), &ns, USER).build().await);
    ok("register", coord.register(sandbox("s1", "e1")).await);
    for (what, result) in [
        ("repair", coord.repair(false).await.map(|_| ())),
        ("migrate", coord.migrate(false).await.map(|_| ())),
    ] {
        match result {
            Err(Error::NoPermission { detail }) => {
                assert!(detail.to_lowercase().contains("scan"), "{what}: {detail}")
            }
            other => panic!(
                "LIBRARY BUG: {what} as the plain user (no +scan) must be refused with \
                 NoPermission naming scan, got {other:?}"
            ),
        }
    }
}

/// With `acl_rules(ns, true)`: `repair` finds and fixes drift, and
/// `migrate` converts a schema-1 record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_migrate_work_with_the_admin_rules() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let mut admin = redis.client().await;
    create_user(&mut admin, USER, &acl_rules(&ns, true).unwrap()).await;
    let coord = ok("build", as_user(&redis.url(), &ns, USER).build().await);
    ok("register", coord.register(sandbox("s1", "e1")).await);
    ok("register", coord.register(sandbox("s2", "e2")).await);
    // Drift behind the library's back: s2's expiry entry lost.
    let team_keys = coord.namespace().team(fixture::TEAM).unwrap();
    let _: i64 = redis::cmd("ZREM")
        .arg(team_keys.key("expiry"))
        .arg("s2")
        .query_async(&mut admin)
        .await
        .unwrap();
    // A record of schema 1, written by its own register script.
    fixture::v1::V1::new(redis.client().await, &ns)
        .register(fixture::TEAM, "old", "e0")
        .await;

    assert_eq!(ok("migrate", coord.migrate(false).await), (1, 0));
    let old = ok("get", coord.get(fixture::TEAM, "old").await).expect("the migrated record");
    assert_eq!((old.execution.as_str(), old.state), ("e0", State::Running));
    let report = ok("repair", coord.repair(false).await);
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.index == "expiry" && d.problem == "missing" && d.id == "s2"),
        "{report:?}"
    );
    let again = ok("repair", coord.repair(true).await);
    assert!(
        again.drift.is_empty(),
        "drift left after a repair: {again:?}"
    );
}

// ----- one permission missing ---------------------------------------------------------

/// What a write refused for lack of `command` must look like:
/// `NoPermission` whose detail names the command, and nothing written.
/// `None` when it does; else what is wrong.
fn refusal_problem(
    command: &str,
    error: &Error,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Option<String> {
    let mut wrong = Vec::new();
    match error {
        Error::NoPermission { detail } => {
            let name = command.split('|').next_back().unwrap_or(command);
            if !detail.to_lowercase().contains(name) {
                wrong.push(format!("NoPermission does not name `{command}`: {detail}"));
            }
        }
        other => wrong.push(format!("not NoPermission but {other:?}")),
    }
    if before != after {
        wrong.push(format!("it wrote:\n{}", dump_diff(before, after)));
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

fn assert_refused_cleanly(
    what: &str,
    command: &str,
    result: Result<impl std::fmt::Debug, Error>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    match result {
        Ok(v) => panic!("{what} without +{command} succeeded: {v:?}"),
        Err(e) => {
            if let Some(problem) = refusal_problem(command, &e, before, after) {
                panic!("LIBRARY BUG: {what} without +{command}: {problem}");
            }
        }
    }
}

/// Notes what is wrong with a refusal of `op` (see [`refusal_problem`]).
fn note_refusal(
    problems: &mut Vec<String>,
    command: &str,
    op: &str,
    error: Error,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    if let Some(p) = refusal_problem(command, &error, before, after) {
        problems.push(format!("-{command}: {op}: {p}"));
    }
}

/// Notes a read that answered other than the full user's `theirs`, or was
/// refused without naming `command`.
fn note_read(
    problems: &mut Vec<String>,
    command: &str,
    op: &str,
    mine: Result<String, Error>,
    theirs: String,
) {
    match mine {
        Ok(answer) if answer == theirs => {}
        Ok(answer) => problems.push(format!(
            "-{command}: {op}: answered {answer} where the full user reads {theirs}"
        )),
        Err(e) => {
            let none = BTreeMap::new();
            note_refusal(problems, command, op, e, &none, &none);
        }
    }
}

/// A user missing a command every write path needs is refused by
/// `build()` itself, as `NoPermission` naming the command, and nothing is
/// written: `zadd` (the indexes a register and a pause keep) and `publish`
/// (the notice a finish sends its waiters), rather than finding out at the
/// first register or the first finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_zadd_or_publish_build_is_refused_with_no_permission_naming_it_and_writes_nothing()
{
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let mut admin = redis.client().await;
    let full = fixture::coordinator(&redis).await;
    full.register(sandbox("s1", "e1")).await.unwrap();
    for command in ["zadd", "publish"] {
        let user = format!("coord-no-{command}");
        create_user(&mut admin, &user, &rules_without(&ns, command)).await;
        let before = dump_connection(&mut admin).await;
        let result = as_user(&redis.url(), &ns, &user).build().await;
        let after = dump_connection(&mut admin).await;
        assert_refused_cleanly("build()", command, result, &before, &after);
    }
}

/// For every command of the printed rules, a user without just that one:
/// each write the library makes (register, set_end_time, reserve, begin,
/// finish, remove) either works (the command was not needed for it) or is
/// refused with `NoPermission` naming the command, with nothing written;
/// each read (get, list, count, due_for_eviction, due_for_eviction_all)
/// answers what a full user reads, or is refused the same way. A write that
/// the user was refused is then made by a full user, so that the next one
/// starts from the state it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_missing_any_one_command_is_refused_cleanly_by_every_operation() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let mut admin = redis.client().await;
    let full = fixture::coordinator(&redis).await;
    let commands: Vec<String> = acl_rules(&ns, false)
        .unwrap()
        .split(' ')
        .filter_map(|r| r.strip_prefix('+'))
        .map(str::to_string)
        .collect();
    let mut problems: Vec<String> = Vec::new();

    for (i, command) in commands.iter().enumerate() {
        // Each command starts from an empty namespace (and small dumps).
        fixture::clear_namespace(&redis).await;
        let user = format!("coord-{i}");
        let team = format!("team-{i}");
        let team = team.as_str();
        create_user(&mut admin, &user, &rules_without(&ns, command)).await;
        let coord = match as_user(&redis.url(), &ns, &user).build().await {
            Ok(c) => c,
            Err(e) => {
                // Refused up front: fine if it says what is missing.
                let no_change = BTreeMap::new();
                if let Some(p) = refusal_problem(command, &e, &no_change, &no_change) {
                    problems.push(format!("-{command}: build(): {p}"));
                }
                continue;
            }
        };
        let before = dump_connection(&mut admin).await;
        if let Err(e) = coord.register(in_team(team, "s1", "e1")).await {
            let after = dump_connection(&mut admin).await;
            note_refusal(&mut problems, command, "register", e, &before, &after);
            full.register(in_team(team, "s1", "e1")).await.unwrap();
        }
        // A sandbox already due, for the reads below (the team's first
        // record was the user's register above: that path lists the team).
        full.register(NewSandbox {
            end_time: (SystemTime::now() - Duration::from_secs(3600)).into(),
            ..in_team(team, "s0", "e0")
        })
        .await
        .unwrap();

        let before = dump_connection(&mut admin).await;
        if let Err(e) = coord
            .set_end_time(team, "s1", Duration::from_secs(7200), None)
            .await
        {
            let after = dump_connection(&mut admin).await;
            note_refusal(&mut problems, command, "set_end_time", e, &before, &after);
        }

        let before = dump_connection(&mut admin).await;
        match coord.reserve(team, "s2", Duration::from_secs(30)).await {
            Ok(place) => {
                let _ = place.release().await;
            }
            Err(e) => {
                let after = dump_connection(&mut admin).await;
                note_refusal(&mut problems, command, "reserve", e, &before, &after);
            }
        }
        coord.close(BOUND).await;

        let before = dump_connection(&mut admin).await;
        let pause = match coord
            .begin(
                team,
                "s1",
                Action::Pause,
                BeginOptions::default().watchdog(false),
            )
            .await
        {
            Ok(Begun::Started(t)) => t,
            Ok(Begun::AlreadyDone(d)) => panic!("-{command}: begin: {d:?}"),
            Err(e) => {
                let after = dump_connection(&mut admin).await;
                note_refusal(&mut problems, command, "begin(pause)", e, &before, &after);
                match full
                    .begin(
                        team,
                        "s1",
                        Action::Pause,
                        BeginOptions::default().watchdog(false),
                    )
                    .await
                    .unwrap()
                {
                    Begun::Started(t) => t,
                    Begun::AlreadyDone(d) => panic!("-{command}: begin as the full user: {d:?}"),
                }
            }
        };

        let (fence, holder) = (pause.fence(), pause.holder().to_string());
        let before = dump_connection(&mut admin).await;
        if let Err(e) = coord
            .finish(team, "s1", Action::Pause, fence, &holder, Finish::Succeeded)
            .await
        {
            let after = dump_connection(&mut admin).await;
            note_refusal(&mut problems, command, "finish(pause)", e, &before, &after);
            // Finish what may be half-finished, as the full user.
            let _ = full
                .finish(team, "s1", Action::Pause, fence, &holder, Finish::Succeeded)
                .await;
        }
        // Its drop (a fail, refused: the outcome is recorded) must be done
        // before the next dump.
        drop(pause);
        coord.close(BOUND).await;
        full.close(BOUND).await;

        // The reads: the full user's answer, or a refusal naming the command
        // (never a silently wrong answer).
        let states = |list: Vec<sandbox_coordinator::Sandbox>| {
            format!(
                "{:?}",
                list.into_iter()
                    .map(|s| (s.id, s.state))
                    .collect::<Vec<_>>()
            )
        };
        note_read(
            &mut problems,
            command,
            "get",
            coord.get(team, "s0").await.map(|s| format!("{s:?}")),
            format!("{:?}", full.get(team, "s0").await.unwrap()),
        );
        note_read(
            &mut problems,
            command,
            "list",
            coord.list(team).await.map(states),
            states(full.list(team).await.unwrap()),
        );
        note_read(
            &mut problems,
            command,
            "count",
            coord.count(team).await.map(|c| format!("{c:?}")),
            format!("{:?}", full.count(team).await.unwrap()),
        );
        note_read(
            &mut problems,
            command,
            "due_for_eviction",
            coord
                .due_for_eviction(team, 10)
                .await
                .map(|d| format!("{d:?}")),
            format!("{:?}", full.due_for_eviction(team, 10).await.unwrap()),
        );
        note_read(
            &mut problems,
            command,
            "due_for_eviction_all",
            coord
                .due_for_eviction_all(1000)
                .await
                .map(|d| format!("{d:?}")),
            format!("{:?}", full.due_for_eviction_all(1000).await.unwrap()),
        );

        let before = dump_connection(&mut admin).await;
        if let Err(e) = coord.remove(team, "s1").await {
            let after = dump_connection(&mut admin).await;
            note_refusal(&mut problems, command, "remove", e, &before, &after);
        }
    }
    assert!(
        problems.is_empty(),
        "LIBRARY BUG: {} operations of a user missing one permission did not fail \
         cleanly (NoPermission naming the command, nothing written, never a wrong \
         answer):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ----- Redis Cluster ---------------------------------------------------------------------

/// The core scenarios as the user on a Redis Cluster (user created on every
/// node), on a team of each master: sharded pub/sub, the slot registry and
/// the per-slot scripts all within the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_runs_the_core_scenarios_on_a_redis_cluster() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 0)).await;
    let ns = "aclc";
    create_user_on_every_node(&cluster, USER, &acl_rules(ns, false).unwrap()).await;
    let coord = ok("build", cluster_as_user(&cluster, ns, USER).build().await);
    let joiner = ok("build", cluster_as_user(&cluster, ns, USER).build().await);
    assert!(coord.is_cluster());
    for team in cluster.teams_on_every_master(1) {
        let master = cluster.master_for_slot(support::slot_of(&team));
        let admin = cluster.node_connection(master.port).await;
        core_scenarios(&coord, &joiner, &team, async || evalsha_calls(&admin).await).await;
    }
}

/// On a cluster the outcome goes out with `SPUBLISH`: a user without
/// `+spublish` is refused by `build()` itself, as `NoPermission` naming the
/// command, before anything is written (no finish could wake its waiters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_spublish_build_on_a_cluster_is_refused_with_no_permission_and_writes_nothing() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 0)).await;
    let ns = "aclc";
    create_user_on_every_node(&cluster, USER, &rules_without(ns, "spublish")).await;
    let full = Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(ns)
        .build()
        .await
        .unwrap();
    let team = "team-a";
    full.register(in_team(team, "s1", "e1")).await.unwrap();
    let master = cluster.master_for_slot(support::slot_of(team));
    let mut node = cluster.node_connection(master.port).await;

    let before = dump_connection(&mut node).await;
    let result = cluster_as_user(&cluster, ns, USER).build().await;
    let after = dump_connection(&mut node).await;
    assert_refused_cleanly("build() on a cluster", "spublish", result, &before, &after);
}

/// While a team's slot moves between masters (its keys already on the
/// target, the slot still MIGRATING/IMPORTING), the cluster answers `-ASK`
/// and the client must send `ASKING` to the target: the user keeps working
/// as a full user does (a failover or resharding is transient, never a
/// refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_keeps_working_while_its_teams_slot_is_being_moved() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 0)).await;
    let ns = "aclc";
    create_user_on_every_node(&cluster, USER, &acl_rules(ns, false).unwrap()).await;
    let full = Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(ns)
        .build()
        .await
        .unwrap();
    let coord = ok("build", cluster_as_user(&cluster, ns, USER).build().await);
    let team = "team-a";
    ok("register", coord.register(in_team(team, "s1", "e1")).await);
    let slot = support::slot_of(team);
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| !m.owns(slot))
        .expect("another master");
    let mut moving = cluster.begin_slot_move(slot, &to.id).await;
    while moving.migrate_batch(100).await > 0 {}

    // The full user follows -ASK: the harness and the cluster are fine.
    assert!(full.get(team, "s1").await.unwrap().is_some());
    let step = |what: &str| format!("{what} during the slot move (ASK to {})", to.port);
    let s1 = ok(&step("get"), coord.get(team, "s1").await).expect("s1");
    assert_eq!(s1.state, State::Running);
    // A script whose declared keys do not all exist on the importing node
    // (the outcome key a finish will write, an index not yet created) is
    // answered TRYAGAIN until the move ends (Redis Cluster's rule for
    // multi-key commands during a migration): the begin goes on, retrying,
    // while the move finishes.
    let c = coord.clone();
    let begin = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match c
                .begin(team, "s1", Action::Pause, BeginOptions::default())
                .await
            {
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    moving.finish().await;
    let pause = started(&step("begin"), begin.await.unwrap());
    ok(&step("succeed"), pause.succeed().await);
    assert_eq!(
        ok("get", coord.get(team, "s1").await).unwrap().state,
        State::Paused
    );
}

// ----- credentials are never shown ------------------------------------------------------

/// Issue 16 point 5: the password of a URL — its userinfo, or the `?pass=`
/// of a `redis+unix://` URL (the native backend's form) — is shown by
/// neither the builder's `Debug`, nor `Coordinator::redis()`, of a
/// coordinator that logged in with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_shown_by_neither_debug_nor_redis() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let admin = redis.client().await;
    create_user(&mut admin.clone(), USER, &acl_rules(&ns, false).unwrap()).await;
    let url = url_as(&redis.url(), USER);
    let builder = Coordinator::builder(url.clone()).namespace(ns);
    let debug = format!("{builder:?}");
    assert!(
        !debug.contains(SECRET) && debug.contains("<redacted>"),
        "{debug}"
    );
    let coord = ok("build", builder.build().await);
    let shown = coord.redis().join(" ");
    assert!(
        !shown.contains(SECRET) && shown.contains("<redacted>"),
        "{shown}"
    );
}

/// The error of a URL that does not parse shows the URL without its
/// `?pass=` (nothing is sent: it fails before connecting).
#[tokio::test]
async fn an_invalid_url_error_does_not_show_its_password() {
    let url = format!("redis+unix:///nonexistent/redis.sock?user={USER}&pass={SECRET}&db=x");
    let builder = Coordinator::builder(url);
    let debug = format!("{builder:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    let e = builder
        .build()
        .await
        .expect_err("db=x is not a database number");
    let (display, debug) = (e.to_string(), format!("{e:?}"));
    assert!(
        matches!(e, Error::InvalidInput { .. }),
        "{display} ({debug})"
    );
    assert!(
        !display.contains(SECRET) && !debug.contains(SECRET),
        "{display} ({debug})"
    );
}
