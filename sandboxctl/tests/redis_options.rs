//! `sandboxctl`'s Redis options against the repository's real harnesses:
//! a native Redis Cluster given by its nodes (`--cluster`), a TLS-only
//! server with a private CA (`--tls-ca`) that may require a client
//! certificate (`--tls-cert`/`--tls-key`), an ACL user logged in with
//! `--username` and `--password-file` or `REDIS_PASSWORD` — and no
//! password ever shown, by `--help` or by an error.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, NewSandbox};
use serde_json::Value;
use support::{ClientAuth, TestCluster, TestRedis, TestTls, TlsOptions};

const BIN: &str = env!("CARGO_BIN_EXE_sandboxctl");
const TEAM: &str = "team-a";
/// A password no output may contain.
const PASSWORD: &str = "hunter2-never-shown";

/// The command with no Redis options from the environment.
fn sandboxctl() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "REDIS_URL",
        "SANDBOXCTL_CLUSTER",
        "SANDBOXCTL_NAMESPACE",
        "REDIS_USERNAME",
        "REDIS_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// Runs `cmd` off the runtime.
async fn run(mut cmd: Command) -> Output {
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

/// Asserts success and returns stdout as JSON.
fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "sandboxctl failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(out)))
}

/// Asserts failure; returns stderr.
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "sandboxctl succeeded:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

fn new_sandbox(id: &str) -> NewSandbox {
    NewSandbox {
        team: TEAM.into(),
        id: id.into(),
        execution: "exec-1".into(),
        end_time: (SystemTime::now() + Duration::from_secs(3600)).into(),
        data: "{}".into(),
    }
}

/// Registers `ids` in [`TEAM`] with `coord`.
async fn register(coord: &Coordinator, ids: &[&str]) {
    for id in ids {
        coord.register(new_sandbox(id)).await.expect("register");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

// ----- no secret is shown --------------------------------------------------------------

/// Issue 16 point 5: clap prints the values of options fed from the
/// environment in `--help` unless told not to; a Redis URL, a cluster's
/// node URLs and the username come from the environment, with passwords.
#[test]
fn help_never_shows_a_password_from_the_environment() {
    let url = format!("redis://coord:{PASSWORD}@127.0.0.1:6379");
    for args in [
        &["--help"][..],
        &["-h"],
        &["count", "--help"],
        &["demo", "--help"],
    ] {
        let out = sandboxctl()
            .args(args)
            .env("REDIS_URL", &url)
            .env("SANDBOXCTL_CLUSTER", format!("{url},{url}"))
            .env("REDIS_USERNAME", "coord")
            .env("REDIS_PASSWORD", PASSWORD)
            .output()
            .expect("sandboxctl runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert!(
            !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
            "`sandboxctl {}` shows the password:\n{stdout}{stderr}",
            args.join(" ")
        );
    }
}

/// A URL whose `?pass=` cannot be used (no server there): the error names
/// the URL without the password.
#[test]
fn a_connection_error_does_not_show_the_urls_password() {
    let out = sandboxctl()
        .args(["count", TEAM])
        .env(
            "REDIS_URL",
            format!("redis+unix:///nonexistent/redis.sock?user=coord&pass={PASSWORD}"),
        )
        .output()
        .expect("sandboxctl runs");
    let stderr = failed(&out);
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(stderr.contains("pass=<redacted>"), "{stderr}");
}

// ----- a Redis Cluster -------------------------------------------------------------------

/// `--cluster n1,n2,n3` (and the option repeated, and `SANDBOXCTL_CLUSTER`)
/// reach a native 3-master cluster: `count` and `list` through the
/// coordinator, `transitions` through sandboxctl's own connection (the slot
/// registry and team sets, on other nodes than the team's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_reach_a_redis_cluster_given_by_its_nodes() {
    let cluster = TestCluster::start(3, 0).await;
    let nodes = cluster.seed_urls();
    let ns = format!("ctl{:08x}", rand::random::<u32>());
    let coord = Coordinator::builder_cluster(nodes.clone())
        .namespace(&ns)
        .build()
        .await
        .expect("a cluster coordinator");
    register(&coord, &["s1", "s2"]).await;
    let pause = match coord
        .begin(TEAM, "s1", Action::Pause, BeginOptions::default())
        .await
        .expect("begin")
    {
        Begun::Started(t) => t,
        Begun::AlreadyDone(d) => panic!("not started: {d:?}"),
    };

    let mut cmd = sandboxctl();
    cmd.args(["--cluster", &nodes.join(","), "--namespace", &ns])
        .args(["count", TEAM, "--json"]);
    let v = json(&run(cmd).await);
    assert_eq!(
        (&v["live"], &v["in_flight"]),
        (&Value::from(1), &Value::from(1)),
        "{v:#}"
    );

    let mut cmd = sandboxctl();
    for node in &nodes {
        cmd.args(["--cluster", node]);
    }
    cmd.args(["--namespace", &ns, "transitions", "--json"]);
    let v = json(&run(cmd).await);
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{v:#}");
    assert_eq!(
        (&rows[0]["id"], &rows[0]["fence"]),
        (&Value::from("s1"), &Value::from(pause.fence()))
    );

    let mut cmd = sandboxctl();
    cmd.env("SANDBOXCTL_CLUSTER", nodes.join(",")).args([
        "--namespace",
        &ns,
        "list",
        TEAM,
        "--json",
    ]);
    let v = json(&run(cmd).await);
    let ids: Vec<&str> = v
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    pause.succeed().await.expect("succeed");
}

/// `--cluster` and `--redis-url` together are refused, before anything is
/// sent.
#[test]
fn a_cluster_and_a_url_together_are_refused() {
    let out = sandboxctl()
        .args(["--cluster", "redis://127.0.0.1:1", "count", TEAM])
        .env("REDIS_URL", "redis://127.0.0.1:2")
        .output()
        .expect("sandboxctl runs");
    let stderr = failed(&out);
    assert!(
        stderr.contains("--cluster") && stderr.contains("--redis-url"),
        "{stderr}"
    );
}

// ----- TLS --------------------------------------------------------------------------------

/// A TLS-only server whose certificate a private CA signed: `--tls-ca`
/// makes `count` (the coordinator) and `transitions` (sandboxctl's own
/// connection) reach it; without it the server is not trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_given_by_tls_ca_reaches_a_tls_server() {
    let tls = TestTls::start(TlsOptions::default()).await;
    let ca = &tls.material().ca_cert;
    for args in [&["count", TEAM, "--json"][..], &["transitions", "--json"]] {
        let mut cmd = sandboxctl();
        cmd.args(["--tls-ca", path(ca), "--redis-url", &tls.url()])
            .args(args);
        json(&run(cmd).await);
    }
    let mut cmd = sandboxctl();
    cmd.args(["--redis-url", &tls.url(), "count", TEAM]);
    let stderr = failed(&run(cmd).await);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// A server that requires a client certificate: `--tls-cert` and
/// `--tls-key` present one; without them the handshake is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_reaches_a_server_that_requires_one() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let m = tls.material();
    let with_cert = [
        "--tls-ca",
        path(&m.ca_cert),
        "--tls-cert",
        path(&m.client_cert),
        "--tls-key",
        path(&m.client_key),
    ];
    for args in [&["count", TEAM, "--json"][..], &["transitions", "--json"]] {
        let mut cmd = sandboxctl();
        cmd.args(with_cert)
            .args(["--redis-url", &tls.url()])
            .args(args);
        json(&run(cmd).await);
    }
    let mut cmd = sandboxctl();
    cmd.args(["--tls-ca", path(&m.ca_cert), "--redis-url", &tls.url()])
        .args(["count", TEAM]);
    failed(&run(cmd).await);
}

/// `--tls-cert` without `--tls-key` (and the reverse) is a usage error
/// naming the missing one, before anything is sent.
#[test]
fn a_client_certificate_without_its_key_is_refused() {
    for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
        let out = sandboxctl()
            .args([
                given,
                "/nonexistent.pem",
                "--redis-url",
                "redis://127.0.0.1:1",
            ])
            .args(["count", TEAM])
            .output()
            .expect("sandboxctl runs");
        let stderr = failed(&out);
        assert!(stderr.contains(missing), "{stderr}");
    }
}

// ----- credentials ------------------------------------------------------------------------

/// An ACL user logs in with `--username` and `--password-file` (the file's
/// trailing newline trimmed), or with `REDIS_USERNAME` and
/// `REDIS_PASSWORD`; a wrong password is refused without being shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_file_or_the_environment_log_in_and_are_never_shown() {
    let redis = TestRedis::start().await;
    let mut admin = redis.client().await;
    let user = format!("ctl-{:08x}", rand::random::<u32>());
    support::add_user(&mut admin, &user, &[PASSWORD]).await;
    let ns = redis.namespace();
    let dir = tempfile::tempdir().expect("a temp dir");
    let good = dir.path().join("password");
    std::fs::write(&good, format!("{PASSWORD}\n")).expect("write the password file");
    let wrong = dir.path().join("wrong");
    let wrong_password = format!("{PASSWORD}-wrong");
    std::fs::write(&wrong, &wrong_password).expect("write the password file");

    for args in [&["count", TEAM, "--json"][..], &["transitions", "--json"]] {
        let mut cmd = sandboxctl();
        cmd.args(["--redis-url", &redis.url(), "--namespace", &ns])
            .args(["--username", &user, "--password-file", path(&good)])
            .args(args);
        json(&run(cmd).await);
        let mut cmd = sandboxctl();
        cmd.env("REDIS_USERNAME", &user)
            .env("REDIS_PASSWORD", PASSWORD)
            .args(["--redis-url", &redis.url(), "--namespace", &ns])
            .args(args);
        json(&run(cmd).await);
    }

    let mut cmd = sandboxctl();
    cmd.args(["--redis-url", &redis.url(), "--namespace", &ns])
        .args(["--username", &user, "--password-file", path(&wrong)])
        .args(["count", TEAM]);
    let stderr = failed(&run(cmd).await);
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .map(|_: i64| ())
        .expect("ACL DELUSER");
}

/// Credentials are for a server named by a URL or a cluster: without one,
/// a `REDIS_PASSWORD` and `REDIS_USERNAME` left in the environment do not
/// keep sandboxctl from using its embedded server (which has no users).
#[test]
fn credentials_in_the_environment_do_not_break_the_embedded_server() {
    let out = sandboxctl()
        .args(["count", TEAM, "--json"])
        .env("REDIS_USERNAME", "coord")
        .env("REDIS_PASSWORD", PASSWORD)
        .output()
        .expect("sandboxctl runs");
    let v = json(&out);
    assert_eq!(v["team"], TEAM, "{v:#}");
    assert!(!stderr(&out).contains(PASSWORD), "{}", stderr(&out));
}
