//! `sandboxctl` against a real Redis: each command's output on state made
//! with the library, `--json` that parses, a repair with a stale fence that
//! is refused and writes nothing, script SHAs equal to `SCRIPT LOAD`'s, and
//! the demo on its embedded Redis — which must be gone when it exits, also
//! after Ctrl-C.

#[path = "../../tests/fixture/mod.rs"]
mod fixture;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::Command;
use fixture::{TEAM, coordinator, dump_all, parked_n, raw, sandbox};
use sandbox_coordinator::{Action, BeginOptions, Begun, Error, Transition};
use serde_json::Value;
use support::{Backend, TestRedis};

const BIN: &str = env!("CARGO_BIN_EXE_sandboxctl");

/// The command with no Redis from the environment.
fn sandboxctl() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("REDIS_URL")
        .env_remove("SANDBOXCTL_NAMESPACE")
        .timeout(Duration::from_secs(120));
    cmd
}

/// Runs `sandboxctl --url <test redis> --namespace <test ns> ARGS` off the
/// runtime (a held transition's watchdog keeps running meanwhile).
async fn ctl(redis: &TestRedis, args: &[&str]) -> Output {
    let mut cmd = sandboxctl();
    cmd.arg("--url")
        .arg(redis.url())
        .arg("--namespace")
        .arg(redis.namespace())
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("sandboxctl runs"))
        .await
        .expect("blocking task")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "sandboxctl failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn refused(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

fn json(out: &Output) -> Value {
    succeeded(out);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(out)))
}

fn started(b: Begun) -> Transition {
    match b {
        Begun::Started(t) => t,
        Begun::AlreadyDone(d) => panic!("expected Started, got AlreadyDone({d:?})"),
    }
}

/// Every key of the test's namespace (the server may be shared).
async fn namespace_dump(redis: &TestRedis) -> Vec<(String, String)> {
    let prefix = format!("{}:", redis.namespace());
    dump_all(redis)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect()
}

/// The embedded server sandboxctl announced on stderr: (pid, socket).
fn embedded_server(stderr: &str) -> (u32, PathBuf) {
    let line = stderr
        .lines()
        .find(|l| l.contains("private redis-server (pid"))
        .unwrap_or_else(|| panic!("no embedded redis-server announced:\n{stderr}"));
    let pid = line
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let socket = line
        .split(" on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no socket in {line:?}"));
    (pid, socket)
}

/// Asserts the embedded server's process and directory are gone.
fn assert_embedded_gone(pid: u32, socket: &std::path::Path) {
    // sandboxctl reaps its child, so its /proc entry is gone (a pid is not
    // reused within the milliseconds this takes).
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(cmdline) = std::fs::read(proc.join("cmdline")) {
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains("redis-server"),
            "redis-server (pid {pid}) still runs: {cmdline}"
        );
    }
    assert!(!socket.exists(), "{} still exists", socket.display());
    let dir = socket.parent().expect("socket has a directory");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

// ----- inspect -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_record_lease_last_outcome_and_tombstone() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let snap_fence = snap.fence();
    snap.succeed().await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = pause.fence();

    let v = json(&ctl(&redis, &["inspect", TEAM, "s1", "--json"]).await);
    assert_eq!(v["team"], TEAM);
    assert_eq!(v["id"], "s1");
    assert_eq!(v["execution"], "exec-1");
    assert_eq!(v["state"], "pausing");
    assert_eq!(v["in_flight"], true);
    assert_eq!(v["stuck"], false);
    assert_eq!(v["fence"], fence);
    assert_eq!(v["lease"]["fence"], fence);
    assert_eq!(v["lease"]["action"], "pause");
    let holder = v["lease"]["holder"].as_str().expect("holder");
    assert!(holder.starts_with(coord.holder_id()), "{holder}");
    let ttl = v["lease"]["ttl_ms"].as_u64().expect("ttl_ms");
    assert!(ttl > 0 && ttl <= 30_000, "ttl {ttl}");
    assert!(v["lease"]["age_ms"].as_u64().expect("age_ms") < 30_000);
    assert_eq!(v["last"]["fence"], snap_fence);
    assert_eq!(v["last"]["action"], "snapshot");
    assert_eq!(v["last"]["outcome"], "succeeded");
    assert_eq!(v["tombstone_ttl_ms"], Value::Null);
    assert_eq!(v["data"], "{\"vm\":1}");

    let out = ctl(&redis, &["inspect", TEAM, "s1"]).await;
    succeeded(&out);
    let text = stdout(&out);
    assert!(text.contains(&format!("sandbox     {TEAM}/s1")), "{text}");
    assert!(text.contains("pausing (in flight)"), "{text}");
    assert!(
        text.contains(&format!("fence {fence} pause, held by {holder}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("fence {snap_fence} snapshot succeeded")),
        "{text}"
    );
    assert!(text.contains("none (the record does not expire)"), "{text}");

    pause.succeed().await.unwrap();
    let v = json(&ctl(&redis, &["inspect", TEAM, "s1", "--json"]).await);
    assert_eq!(v["state"], "paused");
    assert_eq!(v["lease"], Value::Null);
    assert_eq!(v["last"]["fence"], fence);
    assert_eq!(v["last"]["outcome"], "succeeded");
    let tombstone = v["tombstone_ttl_ms"]
        .as_u64()
        .expect("a paused record expires");
    assert!(
        tombstone > 0 && tombstone <= 24 * 3600 * 1000,
        "{tombstone}"
    );
    let out = ctl(&redis, &["inspect", TEAM, "s1"]).await;
    assert!(
        stdout(&out).contains("expires in 23h59m"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn inspect_of_a_missing_sandbox_names_it_and_fails() {
    let redis = TestRedis::start().await;
    let out = ctl(&redis, &["inspect", TEAM, "nope"]).await;
    refused(&out);
    assert!(
        stderr(&out).contains(&format!("sandbox {TEAM}/nope does not exist")),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn bad_ids_are_refused_before_anything_is_sent() {
    let redis = TestRedis::start().await;
    let out = ctl(&redis, &["inspect", "a:b", "s1"]).await;
    refused(&out);
    assert!(stderr(&out).contains("invalid team id"), "{}", stderr(&out));
}

// ----- list and transitions -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_exactly_the_teams_sandboxes() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for id in ["s2", "s1", "s3"] {
        coord.register(sandbox(id, "exec-1")).await.unwrap();
    }
    let mut other = sandbox("x1", "exec-1");
    other.team = "team-b".into();
    coord.register(other).await.unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s3", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    kill.succeed().await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s2", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );

    let v = json(&ctl(&redis, &["list", TEAM, "--json"]).await);
    let rows = v.as_array().expect("an array");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "pausing", "killed"]);
    assert_eq!(rows[1]["lease"]["fence"], pause.fence());
    assert!(rows[2]["tombstone_ttl_ms"].as_u64().is_some());

    let out = ctl(&redis, &["list", TEAM]).await;
    succeeded(&out);
    let text = stdout(&out);
    let header = text.lines().next().unwrap_or("");
    for column in ["ID", "STATE", "EXECUTION", "FENCE", "LEASE", "LAST", "ENDS"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        text.contains(&format!("#{} pause", pause.fence())),
        "{text}"
    );
    assert!(text.contains("3 sandboxes in team team-a"), "{text}");
    assert!(!text.contains("x1"), "{text}");

    let out = ctl(&redis, &["list", "team-nobody"]).await;
    succeeded(&out);
    assert!(stdout(&out).contains("no sandboxes in team team-nobody"));
    let v = json(&ctl(&redis, &["list", "team-nobody", "--json"]).await);
    assert_eq!(v, Value::Array(vec![]));
    pause.succeed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_lists_every_in_flight_transition_across_teams() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();
    coord.register(sandbox("idle", "exec-1")).await.unwrap();
    let mut b = sandbox("s9", "exec-1");
    b.team = "team-b".into();
    coord.register(b).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let snap = started(
        coord
            .begin(
                "team-b",
                "s9",
                Action::Snapshot,
                BeginOptions::default().lease(Duration::from_secs(20)),
            )
            .await
            .unwrap(),
    );

    let v = json(&ctl(&redis, &["transitions", "--json"]).await);
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{v:#}");
    let find = |team: &str| {
        rows.iter()
            .find(|r| r["team"] == team)
            .unwrap_or_else(|| panic!("no row for {team}: {v:#}"))
    };
    let a = find(TEAM);
    assert_eq!(a["id"], "s1");
    assert_eq!(a["action"], "pause");
    assert_eq!(a["fence"], pause.fence());
    assert_eq!(a["state"], "pausing");
    assert!(a["holder"].as_str().unwrap().starts_with(coord.holder_id()));
    let ttl = a["ttl_ms"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
    assert!(a["age_ms"].as_u64().unwrap() < 30_000);
    let b = find("team-b");
    assert_eq!(
        (b["id"].as_str(), b["action"].as_str()),
        (Some("s9"), Some("snapshot"))
    );
    assert!(b["ttl_ms"].as_u64().unwrap() <= 20_000);

    let out = ctl(&redis, &["transitions"]).await;
    succeeded(&out);
    let text = stdout(&out);
    for column in ["TEAM", "ID", "ACTION", "FENCE", "HOLDER", "AGE", "TTL LEFT"] {
        assert!(text.lines().next().unwrap_or("").contains(column), "{text}");
    }
    assert!(text.contains("2 transitions in flight"), "{text}");
    assert!(!text.contains("idle"), "{text}");

    pause.succeed().await.unwrap();
    snap.succeed().await.unwrap();
    let out = ctl(&redis, &["transitions"]).await;
    succeeded(&out);
    assert!(
        stdout(&out).contains("no transitions in flight"),
        "{}",
        stdout(&out)
    );
}

// ----- scripts ---------------------------------------------------------------

#[tokio::test]
async fn scripts_shas_equal_script_load_replies() {
    let redis = TestRedis::start().await;
    let v = json(&ctl(&redis, &["scripts", "--load", "--json"]).await);
    let rows = v.as_array().expect("an array");
    let scripts = sandbox_coordinator::scripts::assemble(
        &sandbox_coordinator::Lifecycle::sandbox(),
        sandbox_coordinator::scripts::ScriptOptions::default(),
    );
    assert_eq!(rows.len(), scripts.len());
    let mut conn = redis.client().await;
    for (row, script) in rows.iter().zip(&scripts) {
        assert_eq!(row["name"], script.name());
        assert_eq!(row["cached"], true, "{row}");
        assert_eq!(row["loaded_sha1"], row["sha1"], "{row}");
        let loaded = raw(&mut conn, &["SCRIPT", "LOAD", script.source()]).await;
        assert_eq!(
            row["sha1"].as_str(),
            Some(loaded[0].as_str()),
            "{}",
            script.name()
        );
    }
    let out = ctl(&redis, &["scripts"]).await;
    succeeded(&out);
    let text = stdout(&out);
    for script in &scripts {
        assert!(text.contains(script.sha()), "{text}");
    }
    assert!(text.contains(&format!("{0} of {0} scripts cached", scripts.len())));
}

#[tokio::test]
async fn scripts_check_fails_until_the_scripts_are_loaded() {
    let redis = TestRedis::start().await;
    if redis.backend() == Backend::External {
        eprintln!("skipped: SCRIPT FLUSH would disturb the shared server");
        return;
    }
    let mut conn = redis.client().await;
    raw(&mut conn, &["SCRIPT", "FLUSH"]).await;

    let out = ctl(&redis, &["scripts", "--check", "--json"]).await;
    refused(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v.as_array().unwrap().iter().all(|r| r["cached"] == false));
    assert!(stderr(&out).contains("not cached"), "{}", stderr(&out));

    succeeded(&ctl(&redis, &["scripts", "--load", "--check"]).await);
    succeeded(&ctl(&redis, &["scripts", "--check"]).await);
}

// ----- abandon ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_with_a_stale_fence_is_refused_and_writes_nothing() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();
    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let old = snap.fence();
    snap.succeed().await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let live = pause.fence();
    let before = namespace_dump(&redis).await;

    for stale in [old, live + 1, 0] {
        let stale = stale.to_string();
        let out = ctl(&redis, &["abandon", TEAM, "s1", "--fence", &stale]).await;
        refused(&out);
        assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was written"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        namespace_dump(&redis).await,
        before,
        "a refused abandon wrote"
    );

    // The live holder is untouched and finishes normally.
    pause.succeed().await.unwrap();
    let out = ctl(
        &redis,
        &["abandon", TEAM, "s1", "--fence", &live.to_string()],
    )
    .await;
    refused(&out);
    assert!(
        stderr(&out).contains("already ended: succeeded"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_of_the_live_fence_wakes_its_joiners() {
    let redis = TestRedis::start().await;
    let holder = coordinator(&redis).await;
    let other = coordinator(&redis).await;
    holder.register(sandbox("s1", "exec-1")).await.unwrap();
    let pause = started(
        holder
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = pause.fence();
    let joiner = tokio::spawn({
        let other = other.clone();
        async move {
            other
                .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
                .await
        }
    });
    parked_n(&other, 1).await;

    let out = ctl(
        &redis,
        &[
            "abandon",
            TEAM,
            "s1",
            "--fence",
            &fence.to_string(),
            "--reason",
            "vm host lost",
        ],
    )
    .await;
    succeeded(&out);
    assert!(
        stdout(&out).contains(&format!(
            "abandoned pause of {TEAM}/s1 (fence {fence}): vm host lost"
        )),
        "{}",
        stdout(&out)
    );

    // Woken by the notification, far before the 30 s lease would expire.
    let joined = tokio::time::timeout(Duration::from_secs(5), joiner)
        .await
        .expect("the joiner woke")
        .expect("joiner task");
    match joined {
        Err(Error::Abandoned {
            fence: f, reason, ..
        }) => {
            assert_eq!(f, fence);
            assert_eq!(reason, "vm host lost");
        }
        other => panic!("expected Abandoned, got {other:?}"),
    }
    let v = json(&ctl(&redis, &["inspect", TEAM, "s1", "--json"]).await);
    assert_eq!(v["state"], "pausing");
    assert_eq!(v["stuck"], true);
    assert_eq!(v["lease"], Value::Null);
    assert_eq!(v["last"]["fence"], fence);
    assert_eq!(v["last"]["outcome"], "abandoned");
    assert_eq!(v["last"]["reason"], "vm host lost");

    // The former holder is fenced out.
    assert!(matches!(pause.succeed().await, Err(Error::Fenced { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_reports_json() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s1", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );
    let fence = kill.fence();
    let v = json(
        &ctl(
            &redis,
            &[
                "abandon",
                TEAM,
                "s1",
                "--fence",
                &fence.to_string(),
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(v["abandoned"], true);
    assert_eq!(v["fence"], fence);
    assert_eq!(v["action"], "kill");
    assert_eq!(v["outcome"], "abandoned");
    assert_eq!(v["state"], "killing");
    assert!(matches!(kill.succeed().await, Err(Error::Fenced { .. })));
}

// ----- watch -----------------------------------------------------------------

/// Reads `child`'s stderr on a thread, forwarding lines.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`, at most `limit`; returns it and
/// every line before it.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} within {limit:?}; stderr so far:\n{seen}"),
        }
    }
}

/// Waits for `child` to exit, at most `limit` (killing it on timeout).
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sandboxctl did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `sandboxctl ARGS` (a `watch`) and returns once it says it is
/// watching (at most 20 s), with its stderr lines (kept open: a watch
/// writes there when it reconnects).
fn spawn_watching(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Process::new(BIN)
        .env_remove("REDIS_URL")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sandboxctl watch starts");
    let lines = stderr_lines(&mut child);
    tokio::task::block_in_place(|| wait_for_line(&lines, "watching", Duration::from_secs(20)));
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_outcome_as_it_is_published() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();

    let (mut child, _stderr) = spawn_watching(&[
        "--url",
        &redis.url(),
        "--namespace",
        &redis.namespace(),
        "watch",
        "--count",
        "2",
        "--json",
    ]);

    let snap = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    let snap_fence = snap.fence();
    snap.succeed().await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    let pause_fence = pause.fence();
    pause.fail("vm did not stop").await.unwrap();

    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(20)));
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let notices: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(notices.len(), 2, "{out}");
    let fields = |n: &Value| {
        (
            n["team"].as_str().unwrap().to_string(),
            n["id"].as_str().unwrap().to_string(),
            n["fence"].as_u64().unwrap(),
            n["action"].as_str().unwrap().to_string(),
            n["outcome"].as_str().unwrap().to_string(),
            n["reason"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        fields(&notices[0]),
        (
            TEAM.into(),
            "s1".into(),
            snap_fence,
            "snapshot".into(),
            "succeeded".into(),
            String::new()
        )
    );
    assert_eq!(
        fields(&notices[1]),
        (
            TEAM.into(),
            "s1".into(),
            pause_fence,
            "pause".into(),
            "failed".into(),
            "vm did not stop".into()
        )
    );
}

/// On a Redis Cluster the library publishes with sharded pub/sub: `watch
/// --team` follows the team's channel with `SSUBSCRIBE` (it used to refuse
/// `--cluster` altogether), and without `--team` it says why it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_redis_cluster_follows_one_teams_outcomes() {
    let cluster = support::TestCluster::start(3, 0).await;
    let nodes = cluster.seed_urls().join(",");
    let ns = format!("ctl{:08x}", rand::random::<u32>());
    let coord = sandbox_coordinator::Coordinator::builder_cluster(cluster.seed_urls())
        .namespace(&ns)
        .build()
        .await
        .expect("a cluster coordinator");
    coord.register(sandbox("s1", "exec-1")).await.unwrap();

    let all = Process::new(BIN)
        .env_remove("REDIS_URL")
        .args([
            "--cluster",
            &nodes,
            "--namespace",
            &ns,
            "watch",
            "--count",
            "1",
        ])
        .output()
        .expect("sandboxctl runs");
    assert!(!all.status.success());
    let err = String::from_utf8_lossy(&all.stderr);
    assert!(err.contains("needs --team"), "{err}");

    let (mut child, _stderr) = spawn_watching(&[
        "--cluster",
        &nodes,
        "--namespace",
        &ns,
        "watch",
        "--team",
        TEAM,
        "--count",
        "2",
        "--json",
    ]);
    let mut fences = Vec::new();
    for (action, fail) in [(Action::Snapshot, false), (Action::Pause, true)] {
        let t = started(
            coord
                .begin(TEAM, "s1", action, BeginOptions::default())
                .await
                .unwrap(),
        );
        fences.push(t.fence());
        if fail {
            t.fail("vm did not stop").await.unwrap();
        } else {
            t.succeed().await.unwrap();
        }
    }
    let status = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(20)));
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let notices: Vec<(u64, String, String, String)> = out
        .lines()
        .map(|l| {
            let n: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                n["fence"].as_u64().unwrap(),
                n["action"].as_str().unwrap().to_string(),
                n["outcome"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        notices,
        [
            (
                fences[0],
                "snapshot".into(),
                "succeeded".into(),
                String::new()
            ),
            (
                fences[1],
                "pause".into(),
                "failed".into(),
                "vm did not stop".into()
            ),
        ],
        "{out}"
    );
}

// ----- demo and the embedded Redis -------------------------------------------

#[test]
fn demo_with_a_small_fleet_passes_every_invariant_and_leaves_no_redis_behind() {
    let out = sandboxctl()
        .args(["demo", "--servers", "2", "--sandboxes", "6", "--teams", "2"])
        .args(["--ops", "60", "--seed", "7"])
        .output()
        .expect("sandboxctl runs");
    succeeded(&out);
    let text = stdout(&out);
    let passes = text
        .lines()
        .filter(|l| l.trim_start().starts_with("PASS"))
        .count();
    assert_eq!(passes, 6, "{text}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("FAIL ")),
        "{text}"
    );
    assert!(text.contains("all 6 invariants held"), "{text}");
    for check in [
        "one live transition per sandbox",
        "fences strictly increasing",
        "joiners saw their leader's outcome",
    ] {
        assert!(text.contains(check), "{text}");
    }
    let (pid, socket) = embedded_server(&stderr(&out));
    assert_embedded_gone(pid, &socket);
    assert!(stderr(&out).contains("stopped the private redis-server"));
}

#[tokio::test]
async fn demo_reports_json_and_removes_its_keys_from_a_given_server() {
    let redis = TestRedis::start().await;
    let mut cmd = sandboxctl();
    cmd.args(["--url", &redis.url(), "--json", "demo"]).args([
        "--servers",
        "2",
        "--sandboxes",
        "4",
        "--teams",
        "2",
        "--ops",
        "40",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("runs"))
        .await
        .unwrap();
    let v = json(&out);
    assert_eq!(v["pass"], true, "{v:#}");
    let checks = v["invariants"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    assert!(checks.iter().all(|c| c["pass"] == true), "{v:#}");
    let actions = v["actions"].as_array().unwrap();
    let names: Vec<&str> = actions
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pause", "kill", "snapshot", "all"]);
    assert_eq!(actions[3]["requests"], 40);
    assert!(actions[3]["p99_ms"].as_f64().unwrap() >= actions[3]["p50_ms"].as_f64().unwrap());

    let ns = v["namespace"].as_str().unwrap();
    let mut conn = redis.client().await;
    let left = raw(&mut conn, &["KEYS", &format!("{ns}:*")]).await;
    assert!(left.iter().all(String::is_empty), "left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_the_demo_and_its_embedded_redis() {
    let mut child = Process::new(BIN)
        .env_remove("REDIS_URL")
        .args(["demo", "--ops", "1000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sandboxctl demo starts");
    let lines = stderr_lines(&mut child);
    let seen = wait_for_line(&lines, "private redis-server (pid", Duration::from_secs(20));
    let (pid, socket) = embedded_server(&seen);
    std::thread::sleep(Duration::from_millis(800));

    let sent = Process::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("interrupted by Ctrl-C")),
        "{rest:?}"
    );
    assert_embedded_gone(pid, &socket);
}

#[test]
fn without_redis_server_it_says_how_to_install_it() {
    let empty = std::env::temp_dir().join(format!("sandboxctl-no-bin-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = sandboxctl()
        .env("PATH", &empty)
        .env_remove("REDIS_SERVER_BIN")
        .args(["list", TEAM])
        .output()
        .expect("sandboxctl runs");
    let _ = std::fs::remove_dir(&empty);
    refused(&out);
    assert!(
        stderr(&out)
            .contains("redis-server not found: install it with `apt-get install redis-server`"),
        "{}",
        stderr(&out)
    );
}

// ----- count ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_reports_a_teams_sandboxes_by_state_class_and_its_limit() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for id in ["s1", "s2", "s3", "s4"] {
        coord.register(sandbox(id, "exec-1")).await.unwrap();
    }
    let mut other = sandbox("x1", "exec-1");
    other.team = "team-b".into();
    coord.register(other).await.unwrap();
    coord.set_team_limit(TEAM, Some(10)).await.unwrap();
    let pause = started(
        coord
            .begin(TEAM, "s3", Action::Pause, BeginOptions::default())
            .await
            .unwrap(),
    );
    pause.succeed().await.unwrap();
    let kill = started(
        coord
            .begin(TEAM, "s4", Action::Kill, BeginOptions::default())
            .await
            .unwrap(),
    );

    let v = json(&ctl(&redis, &["count", TEAM, "--json"]).await);
    assert_eq!(v["team"], TEAM);
    assert_eq!(
        (&v["live"], &v["in_flight"], &v["paused"], &v["killed"]),
        (
            &Value::from(2),
            &Value::from(1),
            &Value::from(1),
            &Value::from(0)
        ),
        "{v:#}"
    );
    assert_eq!(v["taken"], 3, "{v:#}");
    assert_eq!(v["limit"], 10, "{v:#}");

    let out = ctl(&redis, &["count", TEAM]).await;
    succeeded(&out);
    assert!(stdout(&out).contains("3 of 10 places"), "{}", stdout(&out));

    kill.succeed().await.unwrap();
    let v = json(&ctl(&redis, &["count", TEAM, "--json"]).await);
    assert_eq!(
        (&v["in_flight"], &v["killed"]),
        (&Value::from(0), &Value::from(1))
    );
    let v = json(&ctl(&redis, &["count", "team-b", "--json"]).await);
    assert_eq!((&v["live"], &v["limit"]), (&Value::from(1), &Value::Null));
}

// ----- acl -------------------------------------------------------------------

/// `url` with the credentials of `user` (a TCP or a unix-socket URL).
fn url_as(url: &str, user: &str, password: &str) -> String {
    if let Some(rest) = url.strip_prefix("redis://") {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("redis://{user}:{password}@{rest}")
    } else if url.starts_with("redis+unix://") || url.starts_with("unix://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}user={user}&pass={password}")
    } else {
        panic!("cannot add credentials to {url}")
    }
}

/// Runs `sandboxctl --url URL --namespace NS ARGS`.
async fn ctl_at(url: &str, ns: &str, args: &[&str]) -> Output {
    let mut cmd = sandboxctl();
    cmd.arg("--url")
        .arg(url)
        .arg("--namespace")
        .arg(ns)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("sandboxctl runs"))
        .await
        .expect("blocking task")
}

/// `sandboxctl acl` without any Redis: the rules on stdout, no server started.
fn acl_rules_of(ns: &str, admin: bool) -> Vec<String> {
    let mut cmd = sandboxctl();
    cmd.args(["acl", "--namespace", ns]);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("sandboxctl runs");
    succeeded(&out);
    assert!(
        !stderr(&out).contains("redis-server"),
        "acl started a server: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one line of rules: {text}");
    assert_eq!(
        text.trim_end(),
        sandbox_coordinator::acl_rules(ns, admin).unwrap(),
        "not the library's rules"
    );
    text.split_whitespace().map(str::to_string).collect()
}

async fn set_user(conn: &mut redis::aio::MultiplexedConnection, user: &str, rules: &[String]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg(rules)
        .arg(">secret")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER {user} {rules:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_rules_make_a_user_that_reads_the_namespace_and_nothing_else() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();
    coord.register(sandbox("s2", "exec-1")).await.unwrap();
    let mut admin = redis.client().await;
    let _: () = redis::cmd("SET")
        .arg("other:kept")
        .arg("v")
        .query_async(&mut admin)
        .await
        .unwrap();
    let user = format!("coord-{ns}");
    set_user(&mut admin, &user, &acl_rules_of(&ns, false)).await;
    let as_user = url_as(&redis.url(), &user, "secret");

    // The library's reads, through sandboxctl, as that user.
    let v = json(&ctl_at(&as_user, &ns, &["list", TEAM, "--json"]).await);
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    let v = json(&ctl_at(&as_user, &ns, &["inspect", TEAM, "s1", "--json"]).await);
    assert_eq!(v["state"], "running");
    json(&ctl_at(&as_user, &ns, &["count", TEAM, "--json"]).await);
    json(&ctl_at(&as_user, &ns, &["transitions", "--json"]).await);

    // Another namespace is not this user's: refused by Redis.
    let out = ctl_at(&as_user, "other", &["list", TEAM]).await;
    refused(&out);
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("noperm") || err.contains("permission"),
        "{err}"
    );
    let client = redis::Client::open(as_user.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let denied: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg("other:kept")
        .query_async(&mut conn)
        .await;
    let e = denied.expect_err("a key outside the namespace must be denied");
    assert!(e.to_string().to_lowercase().contains("noperm"), "{e}");
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query_async(&mut conn).await;
    assert!(flush.is_err(), "FLUSHALL allowed");
    let own: Option<String> = redis::cmd("GET")
        .arg(format!("{ns}:anything"))
        .query_async(&mut conn)
        .await
        .expect("a key of the namespace is allowed");
    assert_eq!(own, None);

    // repair scans, which only the --admin rules allow.
    let out = ctl_at(&as_user, &ns, &["repair", "--dry-run"]).await;
    refused(&out);
    assert!(
        stderr(&out).to_lowercase().contains("scan"),
        "{}",
        stderr(&out)
    );
    set_user(&mut admin, &user, &acl_rules_of(&ns, true)).await;
    let v = json(&ctl_at(&as_user, &ns, &["repair", "--dry-run", "--json"]).await);
    assert_eq!(
        (&v["records"], &v["found"]),
        (&Value::from(2), &Value::Array(vec![]))
    );
    succeeded(&ctl_at(&as_user, &ns, &["scripts", "--load", "--check"]).await);

    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg("other:kept")
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[test]
fn acl_refuses_a_namespace_that_would_be_a_glob() {
    let out = sandboxctl()
        .args(["acl", "--namespace", "sbx*"])
        .output()
        .unwrap();
    refused(&out);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).contains("glob"), "{}", stderr(&out));
}

// ----- scripts --dump --------------------------------------------------------

/// `redis-cli` arguments that reach the test server.
fn cli_target(url: &str) -> Vec<String> {
    if let Some(path) = url
        .strip_prefix("redis+unix://")
        .or_else(|| url.strip_prefix("unix://"))
    {
        vec!["-s".into(), path.split('?').next().unwrap().into()]
    } else {
        vec!["-u".into(), url.into()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_dump_writes_the_coordinators_scripts_runnable_with_redis_cli() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for id in ["s1", "s2"] {
        coord.register(sandbox(id, "exec-1")).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = sandboxctl()
        .args(["scripts", "--dump"])
        .arg(dir.path())
        .arg("--json")
        .output()
        .unwrap();
    let v = json(&out);
    assert!(
        !stderr(&out).contains("redis-server"),
        "--dump alone started a server: {}",
        stderr(&out)
    );
    let scripts = coord.scripts();
    assert_eq!(v.as_array().unwrap().len(), scripts.len(), "{v:#}");
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = scripts
        .iter()
        .map(|s| format!("{}.lua", s.name()))
        .collect();
    names.sort();
    assert_eq!(files, names);

    // Redis computes each file's SHA1: the coordinator's EVALSHA names.
    let mut conn = redis.client().await;
    for script in &scripts {
        let text =
            std::fs::read_to_string(dir.path().join(format!("{}.lua", script.name()))).unwrap();
        let sha = raw(&mut conn, &["SCRIPT", "LOAD", &text]).await;
        assert_eq!(sha[0], script.sha(), "{}.lua", script.name());
    }

    // One runs as it is with redis-cli --eval, on the library's data.
    let ns = redis.namespace();
    let tp = format!("{ns}:{{{TEAM}}}:");
    let mut cli = Process::new(support::ServerKind::from_env().cli_bin());
    cli.args(cli_target(&redis.url()))
        .arg("--eval")
        .arg(dir.path().join("count.lua"))
        .arg(format!("{tp}ids"))
        .arg(format!("{tp}resv"))
        .arg(format!("{tp}team"))
        .arg(",")
        .arg(&tp);
    let out = tokio::task::spawn_blocking(move || cli.output().expect("redis-cli runs"))
        .await
        .unwrap();
    succeeded(&out);
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.first(), Some(&"count"), "{lines:?}");
    assert_eq!(lines.get(1), Some(&"2"), "two live sandboxes: {lines:?}");
}

// ----- repair ----------------------------------------------------------------

fn drift_of(v: &Value, key: &str) -> Vec<(String, String, String)> {
    let mut found: Vec<(String, String, String)> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {v:#}"))
        .iter()
        .map(|d| {
            (
                d["index"].as_str().unwrap().to_string(),
                d["problem"].as_str().unwrap().to_string(),
                d["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_fixes_a_hand_damaged_index_and_a_dry_run_changes_nothing() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    for id in ["s1", "s2", "s3"] {
        coord.register(sandbox(id, "exec-1")).await.unwrap();
    }
    let keys = coord.namespace().team(TEAM).unwrap();
    let mut conn = redis.client().await;
    // Behind the library's back: s2 lost from the expiry index, s1 given a
    // wrong end time there, and an id without a record in the id index.
    raw(&mut conn, &["ZREM", &keys.key("expiry"), "s2"]).await;
    raw(&mut conn, &["ZADD", &keys.key("expiry"), "1", "s1"]).await;
    raw(&mut conn, &["ZADD", &keys.key("ids"), "0", "ghost"]).await;
    let damaged = namespace_dump(&redis).await;
    let expected = vec![
        (
            "expiry".to_string(),
            "missing".to_string(),
            "s2".to_string(),
        ),
        ("expiry".into(), "score".into(), "s1".into()),
        ("ids".into(), "dangling".into(), "ghost".into()),
    ];
    let mut expected = expected;
    expected.sort();

    let out = ctl(&redis, &["repair", "--dry-run", "--json"]).await;
    refused(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(drift_of(&v, "found"), expected, "{v:#}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["records"], 3);
    let out = ctl(&redis, &["repair", "--dry-run"]).await;
    refused(&out);
    assert!(
        stdout(&out).contains("nothing was written"),
        "{}",
        stdout(&out)
    );
    assert_eq!(namespace_dump(&redis).await, damaged, "a dry run wrote");

    let v = json(&ctl(&redis, &["repair", "--json"]).await);
    assert_eq!(drift_of(&v, "found"), expected, "{v:#}");
    assert_eq!(v["left"], Value::Array(vec![]), "{v:#}");
    fixture::assert_index_agrees(&redis, &coord, &["s1", "s2", "s3"]).await;
    let ids = raw(&mut conn, &["ZRANGE", &keys.key("ids"), "0", "-1"]).await;
    assert_eq!(ids, ["s1", "s2", "s3"]);

    let out = ctl(&redis, &["repair"]).await;
    succeeded(&out);
    assert!(stdout(&out).contains("no drift"), "{}", stdout(&out));
}

// ----- migrate ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_converts_a_namespace_written_by_schema_1() {
    let redis = TestRedis::start().await;
    let ns = redis.namespace();
    let mut v1 = fixture::v1::V1::new(redis.client().await, &ns);
    for id in ["s1", "s2", "s3"] {
        v1.register(TEAM, id, "exec-1").await;
    }
    v1.register("team-b", "x1", "exec-9").await;
    let pause = v1.begin(TEAM, "s2", Action::Pause).await;
    v1.succeed(TEAM, "s2", Action::Pause, pause).await;
    let kill = v1.begin(TEAM, "s3", Action::Kill).await;

    // A schema-1 transition in flight: refused, nothing converted.
    let before = namespace_dump(&redis).await;
    let out = ctl(&redis, &["migrate"]).await;
    refused(&out);
    let err = stderr(&out);
    assert!(err.contains("nothing was converted"), "{err}");
    assert!(err.contains("s3") && err.contains("kill"), "{err}");
    assert_eq!(
        namespace_dump(&redis).await,
        before,
        "a refused migrate wrote"
    );

    v1.succeed(TEAM, "s3", Action::Kill, kill).await;
    let v = json(&ctl(&redis, &["migrate", "--json"]).await);
    assert_eq!(v["converted"], 4, "{v:#}");
    let teams = v["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 2, "{v:#}");
    assert_eq!(teams[0]["team"], TEAM);
    assert_eq!(
        (&teams[0]["live"], &teams[0]["paused"], &teams[0]["killed"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{v:#}"
    );
    assert_eq!(
        (&teams[1]["team"], &teams[1]["live"]),
        (&Value::from("team-b"), &Value::from(1))
    );

    // The converted records read like the library's own.
    let v = json(&ctl(&redis, &["list", TEAM, "--json"]).await);
    let states: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "paused", "killed"]);
    let v = json(&ctl(&redis, &["inspect", TEAM, "s2", "--json"]).await);
    assert_eq!(
        (
            &v["last"]["fence"],
            &v["last"]["action"],
            &v["last"]["outcome"]
        ),
        (
            &Value::from(pause),
            &Value::from("pause"),
            &Value::from("succeeded")
        )
    );
    let coord = coordinator(&redis).await;
    let t = started(
        coord
            .begin(TEAM, "s1", Action::Snapshot, BeginOptions::default())
            .await
            .unwrap(),
    );
    assert!(
        t.fence() > kill,
        "fence {} after schema 1's {kill}",
        t.fence()
    );
    t.succeed().await.unwrap();
    let out = ctl(&redis, &["repair", "--dry-run"]).await;
    succeeded(&out);

    let out = ctl(&redis, &["migrate"]).await;
    succeeded(&out);
    assert!(
        stdout(&out).contains("converted 0 record(s)"),
        "{}",
        stdout(&out)
    );
}
