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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_outcome_as_it_is_published() {
    let redis = TestRedis::start().await;
    let coord = coordinator(&redis).await;
    coord.register(sandbox("s1", "exec-1")).await.unwrap();

    let mut child = Process::new(BIN)
        .env_remove("REDIS_URL")
        .args(["--url", &redis.url(), "--namespace", &redis.namespace()])
        .args(["watch", "--count", "2", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sandboxctl watch starts");
    let lines = stderr_lines(&mut child);
    tokio::task::block_in_place(|| wait_for_line(&lines, "watching", Duration::from_secs(20)));

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
