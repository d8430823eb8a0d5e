//! Native server processes for every harness (the native backend of
//! [`TestRedis`](super::TestRedis), [`TestCluster`](super::TestCluster),
//! [`TestTls`](super::TestTls), [`TestReplicated`](super::TestReplicated)):
//! which server the suite runs (Redis 7 or Valkey 8), its binaries, private
//! directories, free loopback ports, and child processes that cannot outlive
//! the test process.
//!
//! # Which server: `REDIS_TEST_SERVER`
//!
//! `REDIS_TEST_SERVER=redis` (the default) runs `redis-server` / `redis-cli`,
//! `REDIS_TEST_SERVER=valkey` runs `valkey-server` / `valkey-cli` (Debian's
//! Valkey 8 from bookworm-backports). `REDIS_SERVER_BIN` and `REDIS_CLI_BIN`
//! override the binaries. The container backend picks its image and
//! entrypoint from the same setting ([`ServerKind::default_image`],
//! [`ServerKind::entrypoint`]). Every harness can say what it really runs:
//! [`ServerInfo`], parsed from `INFO server` (Valkey reports
//! `server_name:valkey` and `valkey_version`, and a `redis_version` of 7.2.4
//! for compatibility, so `redis_version` alone cannot tell them apart).
//!
//! # No orphans
//!
//! nextest ends a test that overruns its slow-timeout with SIGTERM, then
//! SIGKILL: no destructor runs. So every server is spawned with
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills it as soon as the
//! test process is gone, however it went. The death signal is tied to the
//! *thread* that forked the child, not to the process, so all spawns go
//! through one spawner thread that lives as long as the process (a tokio
//! blocking-pool thread, for one, exits after 10 s idle and would take its
//! servers with it). The directories of test processes that died that way
//! (`sc-<harness>-<pid>-<random>` in the temp dir) are removed by the next
//! harness start in any test process ([`private_dir`]).
//!
//! # Ports
//!
//! TCP servers get a random port in [`PORT_RANGE`], below Linux's ephemeral
//! range (32768–60999) together with its cluster bus port (port + 10000), so
//! that no outgoing connection can take either. A port is probed by binding
//! it (and the bus port), and the server is started on it; since another test
//! process may take the port between the probe and the server's own bind,
//! [`start_on_free_port`] retries with a new port when the server logs
//! "Address already in use".

use std::{
    fmt,
    io::{self, Read, Seek, SeekFrom},
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, Once, OnceLock, mpsc},
    time::{Duration, Instant},
};

/// Loopback ports the harnesses pick from: the cluster bus port (+10000)
/// stays below 32768, where Linux's ephemeral ports begin.
pub const PORT_RANGE: std::ops::Range<u16> = 15000..22700;
/// Offset of the cluster bus port (Redis' and Valkey's default).
pub const BUS_PORT_OFFSET: u16 = 10000;
/// Bound on a server start (spawn to "Ready to accept connections").
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts [`start_on_free_port`] makes before giving up.
const PORT_ATTEMPTS: usize = 12;

// ----- which server -------------------------------------------------------

/// The server implementation the suite runs (`REDIS_TEST_SERVER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Redis 7 (`redis-server`), the default.
    Redis,
    /// Valkey 8 (`valkey-server`).
    Valkey,
}

impl ServerKind {
    /// `REDIS_TEST_SERVER`: unset, empty or `redis` -> Redis, `valkey` ->
    /// Valkey; anything else panics (a typo must not run the wrong server).
    pub fn from_env() -> ServerKind {
        let value = std::env::var("REDIS_TEST_SERVER").unwrap_or_default();
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "redis" => ServerKind::Redis,
            "valkey" => ServerKind::Valkey,
            other => panic!(
                "[test-redis] unknown REDIS_TEST_SERVER={other:?} (expected redis or valkey)"
            ),
        }
    }

    /// `"redis"` or `"valkey"`, as in `REDIS_TEST_SERVER`.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis",
            ServerKind::Valkey => "valkey",
        }
    }

    /// The server binary: `REDIS_SERVER_BIN` if set, else `redis-server` or
    /// `valkey-server` from `PATH`.
    pub fn server_bin(self) -> String {
        env_nonempty("REDIS_SERVER_BIN").unwrap_or_else(|| self.entrypoint().to_string())
    }

    /// The CLI (`--cluster create`): `REDIS_CLI_BIN` if set, else the
    /// server's own (`valkey-cli` for Valkey; Debian ships it in
    /// valkey-tools). redis-cli 7.0 can create a Valkey 8 cluster too, so it
    /// is the fallback when valkey-cli is missing.
    pub fn cli_bin(self) -> String {
        if let Some(bin) = env_nonempty("REDIS_CLI_BIN") {
            return bin;
        }
        match self {
            ServerKind::Redis => "redis-cli".into(),
            ServerKind::Valkey if on_path("valkey-cli") => "valkey-cli".into(),
            ServerKind::Valkey => "redis-cli".into(),
        }
    }

    /// Image the container backend runs when `REDIS_TEST_IMAGE` is unset
    /// (what a developer with internet access would pull).
    pub fn default_image(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis:7",
            ServerKind::Valkey => "valkey/valkey:8",
        }
    }

    /// The server executable's name, also the container entrypoint: both
    /// the public images and ours (docker/build-redis-image.sh) have it on
    /// `PATH`.
    pub fn entrypoint(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis-server",
            ServerKind::Valkey => "valkey-server",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a running server says it is (`INFO server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub kind: ServerKind,
    /// `valkey_version` for Valkey, `redis_version` for Redis, e.g. `8.0.1`.
    pub version: String,
    /// `redis_version` as reported (Valkey 8 reports 7.2.4 for clients that
    /// check it).
    pub redis_version: String,
    /// `standalone` or `cluster`.
    pub mode: String,
}

impl ServerInfo {
    /// Parses the text of `INFO server`.
    pub fn parse(info: &str) -> ServerInfo {
        let fields = info_fields(info);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let redis_version = get("redis_version").unwrap_or_default();
        let valkey =
            get("server_name").is_some_and(|n| n == "valkey") || get("valkey_version").is_some();
        let (kind, version) = if valkey {
            (
                ServerKind::Valkey,
                get("valkey_version").unwrap_or_else(|| redis_version.clone()),
            )
        } else {
            (ServerKind::Redis, redis_version.clone())
        };
        ServerInfo {
            kind,
            version,
            redis_version,
            mode: get("redis_mode")
                .or_else(|| get("server_mode"))
                .unwrap_or_default(),
        }
    }

    /// Asks a connection's server (`INFO server`).
    pub async fn query<C: redis::aio::ConnectionLike + Send>(conn: &mut C) -> ServerInfo {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("[test-redis] INFO server failed: {e}"));
        ServerInfo::parse(&info)
    }

    /// Major version, e.g. 7 or 8.
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

impl fmt::Display for ServerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.version)
    }
}

/// `name:value` lines of an `INFO` section (comments and blanks skipped).
pub fn info_fields(info: &str) -> Vec<(String, String)> {
    info.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The value of one `INFO` field, if present.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info_fields(info)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The state (`wait_bgsave`, `send_bulk`, `online`...) in which a primary's
/// `INFO replication` lists the replica on `replica_port`, if it lists it.
/// A replica counts for `WAIT` only once `online`, which can come after the
/// replica itself reports `master_link_status:up` (with diskless sync the
/// primary waits for the replica's first ACK).
pub fn replica_state(primary_replication_info: &str, replica_port: u16) -> Option<String> {
    info_fields(primary_replication_info)
        .into_iter()
        .filter(|(name, _)| {
            let index = name
                .strip_prefix("slave")
                .or_else(|| name.strip_prefix("replica"));
            index.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        })
        .find_map(|(_, value)| {
            let field = |k: &str| {
                value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k).map(str::to_string))
            };
            (field("port=")? == replica_port.to_string()).then(|| field("state="))?
        })
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|s| !s.trim().is_empty())
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
}

// ----- admin connections --------------------------------------------------

/// Connect timeout of the harnesses' own (admin) connections (the TLS
/// handshake and HELLO included, so a starved server needs the margin).
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Response timeout of admin connections (MIGRATE of a batch included).
const ADMIN_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh multiplexed connection for the harness's own commands (bounded
/// connect and response times). A new connection per admin command keeps
/// the harness correct across restarts and failovers at no measurable cost
/// on loopback.
pub async fn admin_connection(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ADMIN_CONNECT_TIMEOUT))
        .set_response_timeout(Some(ADMIN_RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Runs one command on a fresh admin connection.
pub async fn admin_query<T: redis::FromRedisValue>(
    client: &redis::Client,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let mut conn = admin_connection(client).await?;
    cmd.query_async(&mut conn).await
}

/// `ACL SETUSER <user> on ><password>... ~* &* +@all`: a user allowed
/// everything, who logs in with any of `passwords`.
pub async fn add_user<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    user: &str,
    passwords: &[&str],
) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user).arg("on");
    for password in passwords {
        cmd.arg(format!(">{password}"));
    }
    let () = cmd
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER {user}: {e}"));
}

/// `redis://127.0.0.1:PORT` as a client (panics only on a malformed URL,
/// which would be a harness bug).
pub fn loopback_client(port: u16) -> redis::Client {
    redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("loopback url")
}

// ----- private directories ------------------------------------------------

/// A fresh private directory `sc-<harness>-<pid>-<random>` (mode 0700) in
/// the temp dir. The first call in a process removes the directories of
/// dead test processes (a test killed by nextest's timeout cannot remove
/// its own).
pub fn private_dir(harness: &str) -> PathBuf {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_dead_dirs);
    let dir = std::env::temp_dir().join(format!(
        "sc-{harness}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("[test-redis] cannot create {}: {e}", dir.display()));
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    dir
}

/// Removes `sc-<harness>-<pid>-*` directories whose process is gone.
fn sweep_dead_dirs() {
    let mut bases = vec![std::env::temp_dir()];
    if bases[0] != Path::new("/tmp") {
        bases.push(PathBuf::from("/tmp"));
    }
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(4, '-');
            let (Some("sc"), Some(harness), Some(pid)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !matches!(harness, "redis" | "cluster" | "tls" | "repl") {
                continue;
            }
            let Ok(pid) = pid.parse::<i32>() else {
                continue;
            };
            if pid > 0 && pid != std::process::id() as i32 && !process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// True while a process with this pid exists (zombies included).
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

// ----- spawning -----------------------------------------------------------

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The process-lifetime thread every server is forked from (see the module
/// docs: the parent-death signal follows the forking thread).
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("[test-redis] cannot start the spawner thread");
        tx
    })
}

/// Spawns `cmd` so that the kernel SIGKILLs it when this test process dies.
pub fn spawn_tied_to_test(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never
            // come, so do not start at all.
            if libc::getppid() != parent {
                return Err(io::Error::other("test process exited during spawn"));
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .send((cmd, tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// Why a server did not become ready.
#[derive(Debug)]
pub enum StartError {
    /// Its port (or cluster bus port) was taken: retry on another.
    AddrInUse(String),
    /// It exited (bad arguments, missing file...), with its log.
    Exited(ExitStatus, String),
    /// It did not log "Ready to accept connections" in time.
    Timeout(String),
    /// It could not be spawned at all (binary missing).
    Spawn(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AddrInUse(log) => write!(f, "address already in use; log:\n{log}"),
            StartError::Exited(status, log) => write!(f, "exited with {status}; log:\n{log}"),
            StartError::Timeout(log) => {
                write!(f, "not ready within {START_TIMEOUT:?}; log:\n{log}")
            }
            StartError::Spawn(why) => f.write_str(why),
        }
    }
}

/// One native server process: its binary, arguments and directory, so that
/// it can be killed and started again the same way. The log (stdout and
/// stderr) is `server.log` in the directory, appended across restarts.
/// Dropping it SIGKILLs the process (the directory belongs to the caller).
pub struct ServerProcess {
    bin: String,
    dir: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
    /// Length of the log when the current process was spawned: readiness
    /// is looked for after it.
    log_offset: Mutex<u64>,
}

impl ServerProcess {
    /// Spawns `bin args...` in `dir` (created if missing), tied to the test
    /// process. Does not wait for readiness: see [`Self::wait_ready`].
    pub fn spawn(bin: &str, dir: &Path, args: Vec<String>) -> Result<ServerProcess, StartError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::Spawn(format!("cannot create {}: {e}", dir.display())))?;
        let process = ServerProcess {
            bin: bin.to_string(),
            dir: dir.to_path_buf(),
            args,
            child: Mutex::new(None),
            log_offset: Mutex::new(0),
        };
        process.start_child()?;
        Ok(process)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn start_child(&self) -> Result<(), StartError> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| StartError::Spawn(format!("cannot open {}: {e}", log_path.display())))?;
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = spawn_tied_to_test(cmd).map_err(|e| {
            StartError::Spawn(format!(
                "cannot run `{}` ({e}): install it (`apt-get install redis-server`, or \
                 `apt-get install -t bookworm-backports valkey-server` for \
                 REDIS_TEST_SERVER=valkey) or set REDIS_SERVER_BIN",
                self.bin
            ))
        })?;
        *self.log_offset.lock().unwrap() = offset;
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The arguments it runs with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Pid of the current process, if one runs (or exited unreaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Exit status, if the current process has exited (reaps it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while the current process runs.
    pub fn is_running(&self) -> bool {
        self.pid().is_some() && self.exit_status().is_none()
    }

    /// SIGKILL (a crash: nothing is flushed) and reap. No-op if not running.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a clean shutdown: the AOF is flushed), SIGKILL after `grace`.
    pub async fn terminate(&self, grace: Duration) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts the server again with the same arguments (after [`Self::kill`]
    /// or [`Self::terminate`]; a still running process is killed first).
    pub fn respawn(&self) -> Result<(), StartError> {
        self.kill();
        self.start_child()
    }

    /// The last `max` bytes of the log.
    pub fn log_tail(&self, max: u64) -> String {
        let Ok(mut file) = std::fs::File::open(self.log_path()) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
        let mut out = String::new();
        let _ = file.read_to_string(&mut out);
        out
    }

    /// The log written by the current process.
    fn current_log(&self) -> String {
        let offset = *self.log_offset.lock().unwrap();
        let Ok(mut file) = std::fs::File::open(self.log_path()) else {
            return String::new();
        };
        let _ = file.seek(SeekFrom::Start(offset));
        let mut out = String::new();
        let _ = file.read_to_string(&mut out);
        out
    }

    /// Waits (bounded) until the current process logs that it is ready to
    /// accept connections — printed only after every listener (plain, TLS,
    /// unix socket, cluster bus) is bound, so the port that then answers is
    /// this server's and not another test's.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.current_log();
            // "Ready to accept connections" (TCP/TLS listeners), "The server
            // is now ready to accept connections at <socket>" (unix only).
            if log
                .to_ascii_lowercase()
                .contains("ready to accept connections")
            {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                let log = self.current_log();
                return Err(if log.contains("Address already in use") {
                    StartError::AddrInUse(log)
                } else {
                    StartError::Exited(status, log)
                });
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout(self.current_log()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A random port in [`PORT_RANGE`] that is free right now on 127.0.0.1,
/// together with its cluster bus port if `with_bus`.
pub fn pick_free_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let port = rand::random_range(PORT_RANGE);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && (!with_bus || free(port + BUS_PORT_OFFSET)) {
            return port;
        }
    }
    panic!("[test-redis] no free loopback port in {PORT_RANGE:?} after 1000 tries");
}

/// Starts `bin` on a free port: `args(port)` gives its arguments, `dir` its
/// directory. Retries on another port when the chosen one was taken in the
/// meantime; panics (with the server's log) on any other failure.
pub async fn start_on_free_port(
    bin: &str,
    dir: &Path,
    with_bus: bool,
    args: impl Fn(u16) -> Vec<String>,
) -> (ServerProcess, u16) {
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = pick_free_port(with_bus);
        let process = ServerProcess::spawn(bin, dir, args(port))
            .unwrap_or_else(|e| panic!("[test-redis] {e}"));
        match process.wait_ready(START_TIMEOUT).await {
            Ok(()) => return (process, port),
            Err(StartError::AddrInUse(log)) => {
                drop(process);
                last = log;
                // A fresh start next time: no leftover nodes.conf or AOF.
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(e) => panic!(
                "[test-redis] `{bin}` on port {port} in {}: {e}",
                dir.display()
            ),
        }
    }
    panic!("[test-redis] `{bin}`: every port tried was taken; last log:\n{last}");
}
