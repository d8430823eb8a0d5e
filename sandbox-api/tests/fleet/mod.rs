//! The fleet the HTTP tests run against: a private Redis (the repository's
//! `support` harness), one `sandbox-api node` and N `sandbox-api serve`
//! processes — the built binary, on ephemeral ports read from their first
//! stdout line — and a real HTTP client. Process logs go to files under
//! the target's tmp dir; a failing test prints their tails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sandbox_coordinator::{Coordinator, Lifecycle};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::TestRedis;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sandbox-api");

/// Bound on a process printing its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any one HTTP request of a test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A private directory for one test's logs.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "sandbox-api-{name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("create the test dir");
    dir
}

/// One `sandbox-api` child process.
pub struct Process {
    pub name: String,
    pub url: String,
    child: Child,
    /// Kept open: the child may write to stdout again.
    _stdout: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

impl Process {
    /// Starts `sandbox-api <args>` and waits for `listening on http://...`.
    pub async fn start(name: &str, args: &[String], dir: &Path) -> Process {
        Process::start_with_env(name, args, &[], dir).await
    }

    /// [`Process::start`] with `env` added to the environment.
    pub async fn start_with_env(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Process {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("create a log file");
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,sandbox_coordinator=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(START_TIMEOUT, stdout.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "{name} printed no first line ({other:?}); its log:\n{}",
                tail(&log, 40)
            ),
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}'s first line is {line:?}"))
            .to_owned();
        assert!(
            url.starts_with("http://"),
            "{name}'s first line is {line:?}"
        );
        Process {
            name: name.to_owned(),
            url,
            child,
            _stdout: stdout,
            log,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process is running") as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid}");
    }

    /// Waits for the process to exit, at most `bound`.
    pub async fn wait(&mut self, bound: Duration) -> ExitStatus {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!(
                "{} did not exit within {bound:?}; its log:\n{}",
                self.name,
                tail(&self.log, 40)
            ),
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One line of the node's `GET /ops`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeOp {
    pub team: String,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    pub action: String,
    pub fence: Option<u64>,
    pub start_ms: f64,
    pub end_ms: f64,
    pub result: String,
}

/// One line of the node's `GET /inflight`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub team: String,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    pub action: String,
    pub fence: Option<u64>,
}

/// One overlap the node recorded (`GET /violations`).
#[derive(Clone, Debug, Deserialize)]
pub struct Overlap {
    pub running: Running,
    pub started: Running,
}

/// An HTTP answer, with how long it took.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    pub elapsed: Duration,
}

impl Reply {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("")
    }
}

/// A client for the API, with the team header.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(64)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// `method url` with `X-Team-ID: team` (if any) and a JSON body (if any).
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        team: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let started = Instant::now();
        let mut request = self.http.request(method.clone(), url);
        if let Some(team) = team {
            request = request.header("X-Team-ID", team);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            retry_after,
            elapsed: started.elapsed(),
        }
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> T {
        self.http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

/// Redis, one node and `servers` API servers.
pub struct Fleet {
    pub redis: Option<TestRedis>,
    pub redis_url: String,
    pub namespace: String,
    pub node: Process,
    pub servers: Vec<Process>,
    pub client: Client,
    pub dir: PathBuf,
}

impl Fleet {
    /// Starts the fleet. `node_args` and `serve_args` are appended to the
    /// required ones (`--listen`, `--redis-url`, ...).
    pub async fn start(
        name: &str,
        servers: usize,
        node_args: &[&str],
        serve_args: &[&str],
    ) -> Fleet {
        let redis = TestRedis::start().await;
        let (redis_url, namespace) = (redis.url(), redis.namespace());
        let dir = test_dir(name);
        let mut args: Vec<String> = ["node", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.extend(node_args.iter().map(|s| s.to_string()));
        let node = Process::start("node", &args, &dir).await;
        let mut fleet = Fleet {
            redis: Some(redis),
            redis_url,
            namespace,
            node,
            servers: Vec::new(),
            client: Client::new(),
            dir,
        };
        for _ in 0..servers {
            fleet.add_server(serve_args).await;
        }
        eprintln!("[fleet] logs in {}", fleet.dir.display());
        fleet
    }

    /// Starts one more API server.
    pub async fn add_server(&mut self, serve_args: &[&str]) -> &Process {
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &self.redis_url,
            "--namespace",
            &self.namespace,
            "--node-url",
            &self.node.url,
            "--poll-interval-ms",
            "200",
        ]
        .map(String::from)
        .to_vec();
        args.extend(serve_args.iter().map(|s| s.to_string()));
        let name = format!("serve-{}", self.servers.len());
        let server = Process::start(&name, &args, &self.dir).await;
        self.servers.push(server);
        self.servers.last().expect("just pushed")
    }

    /// The base URL of server `i`.
    pub fn api(&self, i: usize) -> &str {
        &self.servers[i].url
    }

    /// The node's log.
    pub async fn node_ops(&self) -> Vec<NodeOp> {
        self.client
            .get_json(&format!("{}/ops", self.node.url))
            .await
    }

    /// The overlaps the node recorded.
    pub async fn overlaps(&self) -> Vec<Overlap> {
        self.client
            .get_json(&format!("{}/violations", self.node.url))
            .await
    }

    /// Waits until the node is running an operation that `pred` accepts
    /// (polling every 2 ms, at most `bound`). Returns false if the
    /// operation had already ended by the time a poll looked (then the
    /// caller's intended interleaving did not happen; its checks still
    /// hold, and it should say so).
    pub async fn until_node_runs(&self, bound: Duration, pred: impl Fn(&Running) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let running: Vec<Running> = self
                .client
                .get_json(&format!("{}/inflight", self.node.url))
                .await;
            if running.iter().any(&pred) {
                return true;
            }
            let ended = self.node_ops().await.iter().any(|op| {
                pred(&Running {
                    team: op.team.clone(),
                    sandbox_id: op.sandbox_id.clone(),
                    action: op.action.clone(),
                    fence: op.fence,
                })
            });
            if ended {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not start the expected operation within {bound:?}; running: {running:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A coordinator on the fleet's Redis, with the servers' lifecycle, to
    /// look at records (and leases) directly and to set team limits.
    pub async fn coordinator(&self) -> Coordinator {
        Coordinator::builder(&self.redis_url)
            .namespace(&self.namespace)
            .lifecycle(Lifecycle::sandbox().kill_deletes_paused())
            .build()
            .await
            .expect("a coordinator")
    }

    /// Stops Redis (the servers keep running).
    pub fn stop_redis(&mut self) {
        drop(self.redis.take());
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in std::iter::once(&self.node).chain(&self.servers) {
                eprintln!(
                    "---- {} ({}) log tail ----\n{}",
                    p.name,
                    p.url,
                    tail(&p.log, 30)
                );
            }
        }
    }
}

/// Requests of one endpoint: statuses and latencies.
#[derive(Default)]
pub struct EndpointStats {
    pub statuses: BTreeMap<u16, usize>,
    pub latencies: Vec<Duration>,
}

impl EndpointStats {
    pub fn record(&mut self, reply: &Reply) {
        *self.statuses.entry(reply.status).or_default() += 1;
        self.latencies.push(reply.elapsed);
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort();
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    pub fn count(&self) -> usize {
        self.latencies.len()
    }
}
