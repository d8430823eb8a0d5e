//! Shared support for the integration tests: one throw-away Redis server per test.
//!
//! Every integration test file includes this module with `mod support;` and
//! starts its own server with [`TestRedis::start`]. Tests run under
//! cargo-nextest, one process per test, several in parallel, so every server is
//! private to one test (except for the `External` backend, see [`Backend`]).
//!
//! # Backend selection (first match wins)
//!
//! 1. `REDIS_URL` is set: [`Backend::External`], that server is shared by all
//!    tests; isolate keys with [`TestRedis::namespace`] / [`TestRedis::key`].
//! 2. `REDIS_TEST_BACKEND=native|container` forces a backend (debugging aid).
//! 3. A Docker engine answers `GET /_ping` on `DOCKER_HOST` (or the default
//!    socket locations testcontainers uses): [`Backend::Container`] running
//!    `REDIS_TEST_IMAGE` (default `redis:7`, or `valkey/valkey:8` with
//!    `REDIS_TEST_SERVER=valkey`; `make test` and CI use the local images
//!    built by `docker/build-redis-image.sh`).
//! 4. Otherwise [`Backend::Native`]: a `redis-server` child process listening
//!    on a unix socket in a private temp dir (no TCP port at all).
//!
//! If Docker answers but the container cannot be started (e.g. the image can't
//! be pulled) the harness warns and falls back to `Native`, unless
//! `CI=true` and `REDIS_TEST_REQUIRE_CONTAINER=1`, in which case it panics.
//!
//! Dropping a [`TestRedis`] removes its container / kills its process and
//! deletes its temp dir, also when the test panics. Native processes are
//! also killed by the kernel if the test process dies without running
//! destructors (nextest's timeout): see [`server`].
//!
//! # Redis 7 or Valkey 8: `REDIS_TEST_SERVER`
//!
//! `REDIS_TEST_SERVER=valkey` makes every harness run Valkey 8 instead of
//! Redis 7: `valkey-server` for native processes, `valkey-cli` to create
//! clusters, the `valkey-server` entrypoint and a Valkey default image for
//! containers (`make test-valkey` also sets `REDIS_TEST_IMAGE` to the local
//! Valkey image). [`TestRedis::server_info`] says what really runs.
//!
//! # The other harnesses
//!
//! Native processes only (no Docker needed, `redis-server` / `valkey-server`
//! installed), each in its own module:
//!
//! * [`cluster`] — [`TestCluster`]: a Redis Cluster with replicas; kill a
//!   master and wait for its replica to take over, restart a node, move a
//!   slot with its keys while clients write, `INFO commandstats` summed over
//!   the nodes.
//! * [`tls`] — [`TestTls`]: a TLS-only server with a private CA, client
//!   certificates for mutual TLS, and an untrusted CA; certificates are made
//!   at test time with `openssl`.
//! * [`replicated`] — [`TestReplicated`]: a primary with `replicaof`
//!   replicas, for `WAIT` and manual failover.
//! * [`server`] — what they share: [`ServerKind`], [`ServerInfo`], free
//!   ports, server processes tied to the test process.
//!
//! # Tests that need a capability: visible skips
//!
//! Some scenarios need what only some backends can do: freezing the server
//! ([`Capability::Pause`], Container backend only) or restarting it
//! ([`Capability::Restart`], Container and Native, not External). Such a test
//!
//! * is named with the prefix `needs_pause_` or `needs_restart_` (e.g.
//!   `needs_pause_redis_paused_longer_than_the_lease_...`), and
//! * calls [`require`]`(Capability::...)` first (or
//!   [`TestRedis::require`] once it has a server).
//!
//! `make test` works out the backend the tests will get (the same rules as
//! above) and passes nextest a filterset that leaves out the prefixes that
//! backend cannot serve, e.g. `-E 'not test(/(^|::)needs_pause_/)'` on the
//! native backend: nextest reports those tests as SKIPPED in its summary,
//! instead of them passing without having run. [`require`] never returns
//! without the capability: it panics, with the reason, when the test runs
//! anyway — under CI (`CI=true` + `REDIS_TEST_REQUIRE_CONTAINER=1`) that
//! means the CI machine lost what it must have; elsewhere, that the test was
//! run without `make test`'s filter on a backend that cannot serve it.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod replicated;
pub mod server;
pub mod tls;

pub use cluster::{ClusterNode, ClusterOptions, Role, TestCluster, slot_of};
pub use replicated::{Member, TestReplicated};
pub use server::{ServerInfo, ServerKind, add_user};
pub use tls::{ClientAuth, TestTls, TlsOptions};

use std::{
    fmt,
    io::{Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, Once, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    core::{IntoContainerPort, WaitFor, logs::LogFrame},
    runners::AsyncRunner,
};

/// Image used when `REDIS_TEST_IMAGE` is not set (what a developer with
/// internet access would pull): `redis:7`, or `valkey/valkey:8` with
/// `REDIS_TEST_SERVER=valkey`.
pub fn default_image() -> &'static str {
    ServerKind::from_env().default_image()
}
/// Label put on every container the harness starts (`make test` and `.ci/run`
/// remove leftovers with `docker ps -aq --filter label=...`).
pub const CONTAINER_LABEL: &str = "sandbox-coordinator.test-redis";
/// Redis port inside the container.
const REDIS_PORT: u16 = 6379;
/// Bound on every "wait until the server answers" loop.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a container start (create + start + "Ready to accept connections").
const CONTAINER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Response / connect timeouts of connections returned by [`TestRedis::client`].
const CLIENT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which kind of server a [`TestRedis`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A private Docker container (via testcontainers) running `image`.
    /// Supports faults: pause / unpause / restart.
    Container { image: String },
    /// A private `redis-server` child process on a unix socket. Supports
    /// restart (kill + respawn on the same socket), not pause.
    Native,
    /// The server at `REDIS_URL`, shared with every other test. No faults.
    External,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Container { image } => write!(f, "container image={image}"),
            Backend::Native => write!(f, "native"),
            Backend::External => write!(f, "external"),
        }
    }
}

/// One Redis server for one test. Dropping it stops and removes the server.
pub struct TestRedis {
    inner: Inner,
    /// Current URL; changes when a container restart maps a new host port.
    url: Mutex<String>,
    namespace: String,
}

enum Inner {
    Container(Box<ContainerServer>),
    Native(NativeServer),
    External,
}

struct ContainerServer {
    image: String,
    /// `None` only while dropping.
    container: Option<ContainerAsync<GenericImage>>,
    id: String,
    /// Hosts to try, in order, when connecting to mapped ports.
    hosts: Vec<String>,
    paused: AtomicBool,
}

struct NativeServer {
    dir: PathBuf,
    socket: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl TestRedis {
    /// Starts a fresh server with the default arguments (no persistence).
    pub async fn start() -> TestRedis {
        Self::start_with_args(&[]).await
    }

    /// Starts a fresh server with extra `redis-server` arguments appended, e.g.
    /// `&["--appendonly", "yes"]` (later arguments override the defaults).
    ///
    /// For the `External` backend the arguments are applied with `CONFIG SET`
    /// on the shared server (and the test panics if Redis refuses one).
    pub async fn start_with_args(args: &[&str]) -> TestRedis {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let namespace = new_namespace();

        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.trim().is_empty()
        {
            return Self::start_external(url, args, namespace).await;
        }

        let required = container_required();
        let forced = std::env::var("REDIS_TEST_BACKEND")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let want_container = match forced.as_str() {
            "" | "auto" => {
                if CONTAINER_BROKEN.load(Ordering::SeqCst) {
                    false
                } else {
                    match docker_probe() {
                        Ok(_) => true,
                        Err(why) => {
                            if required {
                                panic!(
                                    "[test-redis] CI=true and REDIS_TEST_REQUIRE_CONTAINER=1 but \
                                     no Docker engine answers: {why}"
                                );
                            }
                            note_once(&format!(
                                "no Docker engine ({why}); using native redis-server"
                            ));
                            false
                        }
                    }
                }
            }
            "container" | "docker" => true,
            "native" => {
                if required {
                    panic!(
                        "[test-redis] REDIS_TEST_BACKEND=native contradicts CI=true + \
                         REDIS_TEST_REQUIRE_CONTAINER=1"
                    );
                }
                false
            }
            other => panic!(
                "[test-redis] unknown REDIS_TEST_BACKEND={other:?} (expected auto, container or \
                 native; use REDIS_URL for an external server)"
            ),
        };

        if want_container {
            match Self::start_container(&args, &namespace).await {
                Ok(redis) => return redis,
                Err(err) => {
                    if required || forced == "container" || forced == "docker" {
                        panic!("[test-redis] could not start a Redis container: {err}");
                    }
                    CONTAINER_BROKEN.store(true, Ordering::SeqCst);
                    eprintln!(
                        "[test-redis] WARNING: Docker answers but the Redis container failed to \
                         start ({err}); falling back to native redis-server. Hint: `make \
                         redis-image` and REDIS_TEST_IMAGE=sandbox-coordinator/redis-test:7.0"
                    );
                }
            }
        }
        Self::start_native(args, namespace).await
    }

    /// URL of the server: `redis://HOST:PORT` (container), `redis+unix:///path`
    /// (native) or `REDIS_URL` (external). May change after [`Self::restart`].
    pub fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Container(c) => Backend::Container {
                image: c.image.clone(),
            },
            Inner::Native(_) => Backend::Native,
            Inner::External => Backend::External,
        }
    }

    /// Unique per `TestRedis` (`"t"` + 16 hex digits; never contains `:`, `{`,
    /// `}` or spaces). Prefix keys with it so tests can share an external server.
    pub fn namespace(&self) -> String {
        self.namespace.clone()
    }

    /// `"{namespace}:{name}"`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{}", self.namespace, name)
    }

    /// True when [`Self::pause`] / [`Self::unpause`] work (Container backend).
    pub fn supports_faults(&self) -> bool {
        matches!(self.inner, Inner::Container(_))
    }

    /// True when [`Self::restart`] works (Container and Native backends).
    pub fn supports_restart(&self) -> bool {
        !matches!(self.inner, Inner::External)
    }

    /// Panics unless this server can do `cap` (see [`require`], which
    /// decides before a server exists; this checks the backend the test
    /// really got, e.g. after a container start fell back to native).
    pub fn require(&self, cap: Capability) {
        cap.assert_supported_by(&self.backend());
    }

    /// Which server runs and its version (`INFO server`): Redis 7 or Valkey
    /// 8, whatever the backend.
    pub async fn server_info(&self) -> ServerInfo {
        ServerInfo::query(&mut self.client().await).await
    }

    /// Docker container id (Container backend only).
    pub fn container_id(&self) -> Option<String> {
        match &self.inner {
            Inner::Container(c) => Some(c.id.clone()),
            _ => None,
        }
    }

    /// Freezes the server (`docker pause`): connections stay open but nothing
    /// is answered until [`Self::unpause`]. Container backend only.
    pub async fn pause(&self) {
        let c = self.container_or_panic("pause");
        c.container()
            .pause()
            .await
            .unwrap_or_else(|e| panic!("[test-redis] docker pause {} failed: {e}", c.id));
        c.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes a paused server (`docker unpause`). Container backend only.
    pub async fn unpause(&self) {
        let c = self.container_or_panic("unpause");
        c.container()
            .unpause()
            .await
            .unwrap_or_else(|e| panic!("[test-redis] docker unpause {} failed: {e}", c.id));
        c.paused.store(false, Ordering::SeqCst);
    }

    /// Stops the server (SIGTERM, graceful) and starts it again.
    ///
    /// * Container: `docker stop` + `docker start` of the same container; the
    ///   container filesystem is kept, so data survives only with
    ///   `--appendonly yes`. The host port may change: use [`Self::url`] again.
    /// * Native: the process is terminated and respawned with the same
    ///   arguments on the same unix socket and data dir.
    /// * External: panics.
    ///
    /// Returns once the server answers PING again. Existing connections break.
    pub async fn restart(&self) {
        match &self.inner {
            Inner::Container(c) => {
                if c.paused.load(Ordering::SeqCst) {
                    self.unpause().await;
                }
                let container = c.container();
                container
                    .stop_with_timeout(Some(10))
                    .await
                    .unwrap_or_else(|e| panic!("[test-redis] docker stop {} failed: {e}", c.id));
                container
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("[test-redis] docker start {} failed: {e}", c.id));
                let port = container
                    .get_host_port_ipv4(REDIS_PORT.tcp())
                    .await
                    .unwrap_or_else(|e| panic!("[test-redis] no mapped port after restart: {e}"));
                let host = wait_tcp_ready(&c.hosts, port, READY_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "[test-redis] container {} not ready after restart: {e}",
                            c.id
                        )
                    });
                *self.url.lock().unwrap() = format!("redis://{host}:{port}");
            }
            Inner::Native(n) => {
                let old = n.child.lock().unwrap().take();
                if let Some(child) = old {
                    let socket = n.socket.clone();
                    tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(10)))
                        .await
                        .expect("terminate task panicked");
                    let _ = std::fs::remove_file(&socket);
                }
                let child = spawn_native(&n.dir, &n.socket, &n.args);
                *n.child.lock().unwrap() = Some(child);
                wait_native_ready(n).await;
            }
            Inner::External => panic!(
                "[test-redis] restart() is not possible with the External backend (REDIS_URL); \
                 check supports_restart() first"
            ),
        }
    }

    /// A `redis::Client` for the current URL.
    pub fn redis_client(&self) -> redis::Client {
        let url = self.url();
        redis::Client::open(url.as_str())
            .unwrap_or_else(|e| panic!("[test-redis] invalid redis url {url}: {e}"))
    }

    /// A fresh multiplexed connection to the current URL (connect timeout 5 s,
    /// response timeout 10 s). Panics if the server does not answer.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CLIENT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(CLIENT_RESPONSE_TIMEOUT));
        self.redis_client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap_or_else(|e| panic!("[test-redis] cannot connect to {}: {e}", self.url()))
    }

    fn container_or_panic(&self, what: &str) -> &ContainerServer {
        match &self.inner {
            Inner::Container(c) => c,
            _ => panic!(
                "[test-redis] {what}() needs the Container backend, but this server is {}; check \
                 supports_faults() first (Docker needed: run `make test` on a machine with Docker)",
                self.backend()
            ),
        }
    }

    // ----- backends -------------------------------------------------------

    async fn start_container(args: &[String], namespace: &str) -> Result<TestRedis, String> {
        let image = std::env::var("REDIS_TEST_IMAGE")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default_image().to_string());
        let (name, tag) = split_image(&image);
        let container_name = format!("sc-redis-{namespace}");
        let mut cmd: Vec<String> = ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cmd.extend(args.iter().cloned());

        // Container output, kept to explain a failed start (testcontainers
        // removes a container that exits before it is ready).
        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = Arc::clone(&output);

        let started = Instant::now();
        // The entrypoint is overridden so that the public `redis` / `valkey`
        // images (whose entrypoint is a shell script) and our scratch images
        // (entrypoint = the server) take the same command line.
        let request = GenericImage::new(name, tag)
            .with_entrypoint(ServerKind::from_env().entrypoint())
            .with_exposed_port(REDIS_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_cmd(cmd)
            .with_container_name(container_name.clone())
            .with_label(CONTAINER_LABEL, "1")
            .with_label(
                format!("{CONTAINER_LABEL}.owner"),
                format!("pid={} ns={namespace}", std::process::id()),
            )
            .with_startup_timeout(CONTAINER_START_TIMEOUT)
            .with_log_consumer(move |frame: &LogFrame| {
                let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
                if out.len() < 64 * 1024 {
                    out.extend_from_slice(frame.bytes());
                }
            });
        let container = match request.start().await {
            Ok(c) => c,
            Err(e) => {
                // testcontainers leaves a created-but-not-ready container
                // behind when the start fails or times out: show its output,
                // then remove it by name.
                let mut logs = docker_container_logs(&container_name).unwrap_or_default();
                let _ = docker_remove_container(&container_name);
                // The log consumer runs in a background task: give it a moment.
                for _ in 0..20 {
                    if !logs.trim().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    logs = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
                }
                let logs = if logs.trim().is_empty() {
                    String::new()
                } else {
                    format!("\n--- container output ---\n{}", logs.trim_end())
                };
                return Err(format!("{image}: {e}{logs}"));
            }
        };
        let id = container.id().to_string();
        let port = match container.get_host_port_ipv4(REDIS_PORT.tcp()).await {
            Ok(p) => p,
            Err(e) => return Err(format!("{image}: no mapped port for 6379: {e}")),
        };
        let mut hosts = Vec::new();
        if let Ok(h) = std::env::var("REDIS_TEST_HOST")
            && !h.trim().is_empty()
        {
            hosts.push(h);
        } else {
            if let Some(h) = docker_tcp_host() {
                hosts.push(h);
            }
            hosts.push("127.0.0.1".to_string());
            if let Ok(h) = container.get_host().await {
                let h = h.to_string();
                if h != "localhost" && !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        }
        // `container` is dropped (and removed) on the error path.
        let host = wait_tcp_ready(&hosts, port, READY_TIMEOUT)
            .await
            .map_err(|e| format!("{image}: container {id} does not answer PING: {e}"))?;
        let url = format!("redis://{host}:{port}");
        announce(&format!(
            "backend=container image={image} (ready in {} ms)",
            started.elapsed().as_millis()
        ));
        Ok(TestRedis {
            inner: Inner::Container(Box::new(ContainerServer {
                image,
                container: Some(container),
                id,
                hosts,
                paused: AtomicBool::new(false),
            })),
            url: Mutex::new(url),
            namespace: namespace.to_string(),
        })
    }

    async fn start_native(args: Vec<String>, namespace: String) -> TestRedis {
        let started = Instant::now();
        let dir = native_dir(&namespace);
        let socket = dir.join("redis.sock");
        let child = spawn_native(&dir, &socket, &args);
        let server = NativeServer {
            dir,
            socket: socket.clone(),
            args,
            child: Mutex::new(Some(child)),
        };
        // From here on `redis` owns the child: a panic below still cleans up.
        let redis = TestRedis {
            url: Mutex::new(format!("redis+unix://{}", socket.display())),
            inner: Inner::Native(server),
            namespace,
        };
        if let Inner::Native(n) = &redis.inner {
            wait_native_ready(n).await;
        }
        announce(&format!(
            "backend=native redis-server={} (ready in {} ms)",
            redis_server_bin(),
            started.elapsed().as_millis()
        ));
        redis
    }

    async fn start_external(url: String, args: Vec<String>, namespace: String) -> TestRedis {
        let redis = TestRedis {
            inner: Inner::External,
            url: Mutex::new(url.clone()),
            namespace,
        };
        let mut conn = redis.client().await;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("[test-redis] REDIS_URL={url} does not answer PING: {e}"));
        assert_eq!(pong, "PONG");
        for (name, value) in config_pairs(&args) {
            let res: redis::RedisResult<()> = redis::cmd("CONFIG")
                .arg("SET")
                .arg(&name)
                .arg(&value)
                .query_async(&mut conn)
                .await;
            if let Err(e) = res {
                panic!(
                    "[test-redis] External backend: cannot apply `--{name} {value}` with CONFIG \
                     SET on {url}: {e}"
                );
            }
        }
        announce(&format!("backend=external url={url}"));
        redis
    }
}

impl ContainerServer {
    fn container(&self) -> &ContainerAsync<GenericImage> {
        self.container.as_ref().expect("container already dropped")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Container(c) => {
                let Some(container) = c.container.take() else {
                    return;
                };
                // testcontainers' Drop removes the container (`docker rm -f -v`)
                // by blocking on the removal: `block_in_place` on a multi-thread
                // runtime, a helper thread on a current-thread runtime. Both need
                // a tokio runtime context (it panics without one), so outside a
                // runtime remove it ourselves through the Docker socket instead.
                if tokio::runtime::Handle::try_current().is_ok() {
                    drop(container);
                } else {
                    if let Err(e) = docker_remove_container(&c.id) {
                        eprintln!(
                            "[test-redis] WARNING: could not remove container {}: {e}",
                            c.id
                        );
                    }
                    std::mem::forget(container);
                }
            }
            Inner::Native(n) => {
                if let Some(mut child) = n.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let _ = std::fs::remove_dir_all(&n.dir);
            }
            Inner::External => {}
        }
    }
}

impl fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRedis")
            .field("backend", &self.backend())
            .field("url", &self.url())
            .field("namespace", &self.namespace)
            .finish()
    }
}

// ----- helpers -------------------------------------------------------------

/// Set once a container start failed in this process (when allowed to fall
/// back), so later starts go straight to the native backend.
static CONTAINER_BROKEN: AtomicBool = AtomicBool::new(false);

fn truthy(var: &str) -> bool {
    matches!(
        std::env::var(var)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "1" | "true" | "yes"
    )
}

/// `CI=true` and `REDIS_TEST_REQUIRE_CONTAINER=1`: no silent fallback allowed.
pub fn container_required() -> bool {
    truthy("CI") && truthy("REDIS_TEST_REQUIRE_CONTAINER")
}

/// The backend [`TestRedis::start`] will choose in this environment, found
/// without starting anything (the rules of the module docs; a container
/// that then fails to start may still fall back to native outside CI).
pub fn planned_backend() -> Backend {
    if std::env::var("REDIS_URL").is_ok_and(|u| !u.trim().is_empty()) {
        return Backend::External;
    }
    let image = std::env::var("REDIS_TEST_IMAGE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default_image().to_string());
    let forced = std::env::var("REDIS_TEST_BACKEND")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match forced.as_str() {
        "container" | "docker" => Backend::Container { image },
        "native" => Backend::Native,
        _ if CONTAINER_BROKEN.load(Ordering::SeqCst) => Backend::Native,
        _ if docker_probe().is_ok() => Backend::Container { image },
        _ => Backend::Native,
    }
}

/// What a scenario may need from its server beyond commands (see "Tests
/// that need a capability" in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// [`TestRedis::pause`] / [`TestRedis::unpause`]: Container backend.
    /// Tests named `needs_pause_*`.
    Pause,
    /// [`TestRedis::restart`]: Container and Native backends. Tests named
    /// `needs_restart_*`.
    Restart,
}

impl Capability {
    /// The test-name prefix that `make test`'s filterset matches.
    pub fn test_prefix(self) -> &'static str {
        match self {
            Capability::Pause => "needs_pause_",
            Capability::Restart => "needs_restart_",
        }
    }

    pub fn supported_by(self, backend: &Backend) -> bool {
        match self {
            Capability::Pause => matches!(backend, Backend::Container { .. }),
            Capability::Restart => !matches!(backend, Backend::External),
        }
    }

    fn assert_supported_by(self, backend: &Backend) {
        if self.supported_by(backend) {
            return;
        }
        if container_required() {
            panic!(
                "[test-redis] CI requires {self:?}, but the backend is {backend}: CI=true and \
                 REDIS_TEST_REQUIRE_CONTAINER=1 promise containers, which can do everything"
            );
        }
        panic!(
            "[test-redis] this test needs {self:?}, which the {backend} backend cannot do. `make \
             test` leaves `{}*` tests out on this backend (nextest counts them SKIPPED); run it \
             with a Docker engine (container backend), e.g. `make test`",
            self.test_prefix()
        );
    }
}

/// Panics unless the backend this test will get ([`planned_backend`]) can
/// do `cap`. Call it first in every `needs_pause_*` / `needs_restart_*`
/// test: `make test` filters such tests out where they cannot run, so
/// reaching this without the capability is an error, never a silent pass.
pub fn require(cap: Capability) {
    cap.assert_supported_by(&planned_backend());
}

fn announce(msg: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| eprintln!("[test-redis] {msg}"));
}

fn note_once(msg: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| eprintln!("[test-redis] {msg}"));
}

fn new_namespace() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// `"redis:7"` -> ("redis", "7"); `"host:5000/a/b"` -> ("host:5000/a/b", "latest").
fn split_image(image: &str) -> (String, String) {
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// `["--appendonly", "yes", "--save", ""]` -> [("appendonly","yes"), ("save","")].
fn config_pairs(args: &[String]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
    for arg in args {
        if let Some(name) = arg.strip_prefix("--") {
            pairs.push((name.to_string(), Vec::new()));
        } else if let Some((_, values)) = pairs.last_mut() {
            values.push(arg.clone());
        } else {
            panic!("[test-redis] redis-server argument {arg:?} must follow an --option");
        }
    }
    pairs.into_iter().map(|(n, v)| (n, v.join(" "))).collect()
}

/// Sends one `PING` over a fresh connection and expects `+PONG`.
fn ping_stream<S: Read + Write>(mut stream: S) -> std::io::Result<()> {
    stream.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    if buf[..n].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&buf[..n])
        )))
    }
}

fn ping_tcp(host: &str, port: u16) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    ping_stream(stream)
}

fn ping_unix(path: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    ping_stream(stream)
}

/// Waits until one of `hosts` answers PING on `port`; returns that host.
async fn wait_tcp_ready(hosts: &[String], port: u16, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("not tried");
    loop {
        for host in hosts {
            let h = host.clone();
            let res = tokio::task::spawn_blocking(move || ping_tcp(&h, port))
                .await
                .map_err(|e| e.to_string())?;
            match res {
                Ok(()) => return Ok(host.clone()),
                Err(e) => last_err = format!("{host}:{port}: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no PONG within {timeout:?} (last error: {last_err})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `redis-server`, `valkey-server` (`REDIS_TEST_SERVER=valkey`) or `REDIS_SERVER_BIN`.
fn redis_server_bin() -> String {
    ServerKind::from_env().server_bin()
}

/// A fresh private directory for one native server; the unix socket path must
/// stay below the ~107 byte `sun_path` limit, hence the `/tmp` fallback.
fn native_dir(namespace: &str) -> PathBuf {
    let leaf = format!("sc-redis-{}-{namespace}", std::process::id());
    let mut base = std::env::temp_dir();
    if base.join(&leaf).join("redis.sock").as_os_str().len() > 100 {
        base = PathBuf::from("/tmp");
    }
    let dir = base.join(leaf);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("[test-redis] cannot create {}: {e}", dir.display()));
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

fn spawn_native(dir: &Path, socket: &Path, args: &[String]) -> Child {
    let bin = redis_server_bin();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .unwrap_or_else(|e| panic!("[test-redis] cannot create log in {}: {e}", dir.display()));
    let log_err = log.try_clone().expect("clone log fd");
    let mut cmd = Command::new(&bin);
    cmd.arg("--port")
        .arg("0")
        .arg("--unixsocket")
        .arg(socket)
        .arg("--unixsocketperm")
        .arg("700")
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Killed by the kernel if the test process dies without running Drop.
    server::spawn_tied_to_test(cmd).unwrap_or_else(|e| {
        panic!(
            "[test-redis] cannot run `{bin}` ({e}). No Docker engine and no REDIS_URL, so the \
             native backend needs redis-server (valkey-server with REDIS_TEST_SERVER=valkey): \
             `apt-get install redis-server`, or set REDIS_SERVER_BIN, REDIS_URL, or start Docker"
        )
    })
}

async fn wait_native_ready(n: &NativeServer) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let socket = n.socket.clone();
        let res = tokio::task::spawn_blocking(move || ping_unix(&socket))
            .await
            .expect("ping task panicked");
        let err = match res {
            Ok(()) => return,
            Err(e) => e,
        };
        let exited = n
            .child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if exited.is_some() || Instant::now() >= deadline {
            let log = std::fs::read_to_string(n.dir.join("redis.log")).unwrap_or_default();
            let state = match exited {
                Some(status) => format!("exited with {status}"),
                None => format!("no PONG within {READY_TIMEOUT:?} (last error: {err})"),
            };
            panic!(
                "[test-redis] native redis-server on {} {state}; its log:\n{log}",
                n.socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGTERM: i32 = 15;

/// SIGTERM (redis shuts down gracefully, flushing the AOF), SIGKILL after `grace`.
fn terminate(mut child: Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: plain kill(2) on our own, not yet reaped, child.
    unsafe {
        kill(child.id() as i32, SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ----- minimal Docker Engine API client (no extra dependencies) -------------

/// Where the Docker engine is, resolved like testcontainers does: `DOCKER_HOST`,
/// else the first existing default socket.
#[derive(Clone, Debug)]
enum DockerEndpoint {
    Unix(PathBuf),
    Tcp(String),
}

fn docker_endpoint() -> Result<DockerEndpoint, String> {
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.trim().is_empty()
    {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(DockerEndpoint::Unix(PathBuf::from(path)));
        }
        for scheme in ["tcp://", "http://", "https://"] {
            if let Some(rest) = host.strip_prefix(scheme) {
                return Ok(DockerEndpoint::Tcp(rest.trim_end_matches('/').to_string()));
            }
        }
        return Err(format!("unsupported DOCKER_HOST={host}"));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let runtime = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
    let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
    if !runtime.is_empty() {
        candidates.push(PathBuf::from(&runtime).join(".docker/run/docker.sock"));
    }
    if !home.is_empty() {
        candidates.push(PathBuf::from(&home).join(".docker/run/docker.sock"));
        candidates.push(PathBuf::from(&home).join(".docker/desktop/docker.sock"));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .map(DockerEndpoint::Unix)
        .ok_or_else(|| "no Docker socket (DOCKER_HOST unset, /var/run/docker.sock missing)".into())
}

/// Host part of a `tcp://` DOCKER_HOST (mapped ports are published there).
fn docker_tcp_host() -> Option<String> {
    match docker_endpoint() {
        Ok(DockerEndpoint::Tcp(addr)) => {
            let host = match addr.rsplit_once(':') {
                Some((h, _)) => h.to_string(),
                None => addr,
            };
            Some(host.trim_matches(['[', ']']).to_string())
        }
        _ => None,
    }
}

/// One HTTP/1.0 request to the Docker API (the engine answers without
/// chunking and closes the connection); returns (status, body).
fn docker_request(method: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let endpoint = docker_endpoint()?;
    let request = format!("{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    let timeout = Some(Duration::from_secs(5));
    let mut response = Vec::new();
    match &endpoint {
        DockerEndpoint::Unix(p) => {
            let mut s = UnixStream::connect(p).map_err(|e| format!("{}: {e}", p.display()))?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            s.set_write_timeout(timeout).map_err(|e| e.to_string())?;
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            s.read_to_end(&mut response).map_err(|e| e.to_string())?;
        }
        DockerEndpoint::Tcp(addr) => {
            if truthy("DOCKER_TLS_VERIFY") {
                return Err("TLS Docker endpoints are not supported by the probe".into());
            }
            let mut s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            s.set_write_timeout(timeout).map_err(|e| e.to_string())?;
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            s.read_to_end(&mut response).map_err(|e| e.to_string())?;
        }
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer from {endpoint:?}"))?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer from {endpoint:?}"))?;
    Ok((status, response[head_end + 4..].to_vec()))
}

/// Does a Docker engine answer? Cached per process. `Ok` carries a description
/// of the endpoint. A `tcp://` endpoint with TLS only gets a TCP connect check.
pub fn docker_probe() -> Result<String, String> {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let endpoint = docker_endpoint()?;
            if let DockerEndpoint::Tcp(addr) = &endpoint
                && truthy("DOCKER_TLS_VERIFY")
            {
                return TcpStream::connect(addr)
                    .map(|_| format!("{endpoint:?}"))
                    .map_err(|e| format!("{addr}: {e}"));
            }
            match docker_request("GET", "/_ping")? {
                (200, _) => Ok(format!("{endpoint:?}")),
                (status, body) => Err(format!(
                    "{endpoint:?} /_ping -> {status} {}",
                    String::from_utf8_lossy(&body)
                )),
            }
        })
        .clone()
}

/// `docker rm -f -v NAME_OR_ID`; a missing container counts as removed.
pub fn docker_remove_container(name_or_id: &str) -> Result<(), String> {
    match docker_request("DELETE", &format!("/containers/{name_or_id}?force=1&v=1"))? {
        (204 | 404, _) => Ok(()),
        (status, body) => Err(format!(
            "DELETE {name_or_id} -> {status} {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// `Some(true)` if the container exists (in any state), `Some(false)` if not,
/// `None` if Docker cannot be asked.
pub fn docker_container_exists(name_or_id: &str) -> Option<bool> {
    match docker_request("GET", &format!("/containers/{name_or_id}/json")) {
        Ok((200, _)) => Some(true),
        Ok((404, _)) => Some(false),
        _ => None,
    }
}

/// stdout + stderr of a container (`docker logs`), de-multiplexed.
pub fn docker_container_logs(name_or_id: &str) -> Result<String, String> {
    let (status, body) = docker_request(
        "GET",
        &format!("/containers/{name_or_id}/logs?stdout=1&stderr=1&tail=200"),
    )?;
    if status != 200 {
        return Err(format!("logs {name_or_id} -> {status}"));
    }
    // Non-TTY containers: frames of [stream, 0, 0, 0, len(u32 BE)] + payload.
    let mut out = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 8 && rest[0] <= 2 && rest[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    Ok(String::from_utf8_lossy(&out).into_owned())
}
