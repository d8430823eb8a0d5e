//! `sandbox-api serve`'s Redis options against the repository's real
//! harnesses: a native Redis Cluster given by its nodes (`--cluster`), a
//! TLS-only server with a private CA that requires a client certificate
//! (`--tls-ca`, `--tls-cert`, `--tls-key`) and an ACL user logged in with
//! `--username` and `--password-file` — and no password ever shown, by
//! `--help` or in the server's log.

#[path = "../../tests/support/mod.rs"]
mod support;

mod fleet;

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::json;

use fleet::{Client, Process, test_dir};
use support::{ClientAuth, TestCluster, TestRedis, TestTls, TlsOptions};

const TEAM: &str = "team-a";
/// A password no output may contain.
const PASSWORD: &str = "hunter2-never-shown";

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// Starts a node and one `serve` with `redis_args` (how to reach Redis),
/// then creates a sandbox and reads it back: 201, then 200 `running`.
/// `env` is added to its environment. Returns the server's log.
async fn create_and_get(name: &str, redis_args: &[String], env: &[(&str, &str)]) -> String {
    let dir = test_dir(name);
    let node_args = ["node", "--listen", "127.0.0.1:0"].map(String::from);
    let node = Process::start("node", &node_args, &dir).await;
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--node-url", &node.url]
        .map(String::from)
        .to_vec();
    args.extend([
        "--namespace".to_string(),
        format!("api{:08x}", rand::random::<u32>()),
    ]);
    args.extend(redis_args.iter().cloned());
    let serve = Process::start_with_env("serve", &args, env, &dir).await;
    let client = Client::new();
    let created = client
        .call(
            Method::POST,
            &format!("{}/sandboxes", serve.url),
            Some(TEAM),
            Some(json!({ "sandboxID": "s1" })),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}\n{}", serve.log());
    let got = client
        .call(
            Method::GET,
            &format!("{}/sandboxes/s1", serve.url),
            Some(TEAM),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body["state"], "running", "{got:?}");
    serve.log()
}

/// Issue 16 point 5: `serve --help` shows neither the URL's password from
/// `SANDBOX_API_REDIS_URL` nor one in `SANDBOX_API_CLUSTER` (clap prints
/// the values of options fed from the environment unless told not to).
#[test]
fn serve_help_never_shows_a_password_from_the_environment() {
    let url = format!("redis://coord:{PASSWORD}@127.0.0.1:6379");
    for args in [&["serve", "--help"][..], &["serve", "-h"], &["--help"]] {
        let out = Command::new(fleet::BIN)
            .args(args)
            .env("SANDBOX_API_REDIS_URL", &url)
            .env("SANDBOX_API_CLUSTER", format!("{url},{url}"))
            .env("REDIS_USERNAME", "coord")
            .env("REDIS_PASSWORD", PASSWORD)
            .output()
            .expect("sandbox-api runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "`sandbox-api {}` shows the password:\n{text}",
            args.join(" ")
        );
    }
}

/// `serve --cluster n1,n2,n3` runs on a native 3-master cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_redis_cluster_creates_and_gets_a_sandbox() {
    let cluster = TestCluster::start(3, 0).await;
    let nodes = cluster.seed_urls().join(",");
    create_and_get("cluster", &["--cluster".to_string(), nodes], &[]).await;
}

/// `serve` on a TLS-only server with a private CA that requires a client
/// certificate, as an ACL user whose password is in a file: it starts and
/// answers, and its log never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_mutual_tls_as_an_acl_user_never_logs_the_password() {
    let tls = TestTls::start(TlsOptions::default().client_auth(ClientAuth::Required)).await;
    let user = "api";
    let mut admin = tls
        .client(true)
        .get_multiplexed_async_connection()
        .await
        .expect("an admin connection");
    support::add_user(&mut admin, user, &[PASSWORD]).await;
    let m = tls.material();
    let password_file = m.dir.join("redis-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write the password file");
    let log = create_and_get(
        "tls",
        &[
            "--redis-url".to_string(),
            tls.url(),
            "--tls-ca".to_string(),
            path(&m.ca_cert),
            "--tls-cert".to_string(),
            path(&m.client_cert),
            "--tls-key".to_string(),
            path(&m.client_key),
            "--username".to_string(),
            user.to_string(),
            "--password-file".to_string(),
            path(&password_file),
        ],
        &[],
    )
    .await;
    assert!(!log.contains(PASSWORD), "{log}");
}

/// `serve` as an ACL user named by `REDIS_USERNAME` whose password is in
/// `REDIS_PASSWORD`: it starts and answers, and its log never shows the
/// password. With a wrong password in the environment, or a password in a
/// URL whose server does not answer, it exits and says why without
/// showing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_credentials_from_the_environment_logs_in_and_never_shows_them() {
    let redis = TestRedis::start().await;
    let mut admin = redis.client().await;
    let user = format!("api-{:08x}", rand::random::<u32>());
    support::add_user(&mut admin, &user, &[PASSWORD]).await;
    let url = redis.url();
    let log = create_and_get(
        "env-credentials",
        &["--redis-url".to_string(), url.clone()],
        &[("REDIS_USERNAME", &user), ("REDIS_PASSWORD", PASSWORD)],
    )
    .await;
    assert!(!log.contains(PASSWORD), "{log}");

    let wrong = format!("{PASSWORD}-wrong");
    let refused_url = format!("redis://coord:{PASSWORD}@127.0.0.1:1");
    for (redis_url, password) in [(url.as_str(), wrong.as_str()), (&refused_url, PASSWORD)] {
        let out = tokio::process::Command::new(fleet::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--node-url"])
            .arg("http://127.0.0.1:1")
            .args(["--redis-url", redis_url, "--redis-timeout-ms", "2000"])
            .env("REDIS_USERNAME", &user)
            .env("REDIS_PASSWORD", password)
            .env("RUST_LOG", "debug")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
            .await
            .expect("serve exits when it cannot log in")
            .expect("sandbox-api runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{redis_url}: {text}");
        assert!(text.contains("cannot connect"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}
