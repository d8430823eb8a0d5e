//! The Redis the bench talks to, and the admin connection that reads its
//! counters.
//!
//! By default a private `redis-server` is started on a free loopback TCP port
//! (the targets are stated "on loopback", and a unix socket would flatter
//! every side equally but hide the network stack), in a temp dir, with no
//! persistence; it is stopped when [`Server`] drops, also on Ctrl-C. With
//! `--url` / `REDIS_URL` that server is used instead: nothing is flushed, keys
//! live under a per-process namespace and are deleted at the end.
//!
//! [`Admin`] is one connection, named `bench-admin` so that the command count
//! can leave its own `INFO`/`SLOWLOG` calls out, that reads `INFO` sections,
//! `MEMORY USAGE` and the slow log.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use sandbox_coordinator::redact_url;

use crate::result::Result;

/// Name the admin connection gives itself (`CLIENT SETNAME`).
pub const ADMIN_NAME: &str = "bench-admin";

/// Commands the bench's own admin connection sends, left out of the count.
pub fn is_admin(name: &str) -> bool {
    name == "info"
        || name.starts_with("slowlog")
        || name.starts_with("config")
        || name.starts_with("client")
}

/// The server under test.
pub struct Server {
    pub url: String,
    /// "loopback TCP 127.0.0.1:PORT (private redis-server)" or "external URL".
    pub transport: String,
    /// Whether this process started (and owns) the server.
    pub private: bool,
    child: Arc<Mutex<Option<Child>>>,
    dir: Option<PathBuf>,
}

impl Server {
    /// Uses `url` if given, else starts a private server.
    pub fn start(url: Option<String>) -> Result<Server> {
        if let Some(url) = url {
            return Ok(Server {
                transport: format!("external server {}", redact_url(&url)),
                url,
                private: false,
                child: Arc::new(Mutex::new(None)),
                dir: None,
            });
        }
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let dir = std::env::temp_dir().join(format!(
            "sbx-bench-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut last_err = String::new();
        // A port found free can be taken before redis binds it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let log = std::fs::File::create(dir.join("redis.log"))?;
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "no", "--maxclients", "10000"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot run `{bin}` ({e}): install redis-server \
                         (`apt-get install redis-server`), set REDIS_SERVER_BIN, or pass --url"
                    )
                })?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(ping) {
                    let child = Arc::new(Mutex::new(Some(child)));
                    stop_on_ctrl_c(Arc::clone(&child), dir.clone());
                    return Ok(Server {
                        url: format!("redis://127.0.0.1:{port}/"),
                        transport: format!(
                            "loopback TCP 127.0.0.1:{port} (private redis-server, no persistence)"
                        ),
                        private: true,
                        child,
                        dir: Some(dir),
                    });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!(
                        "redis-server exited with {status}: {}",
                        std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = "redis-server did not answer PING within 10 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_err.into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&self.child);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn stop(child: &Mutex<Option<Child>>) {
    if let Some(mut c) = child.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The server is our child: without this, Ctrl-C would leave it running.
fn stop_on_ctrl_c(child: Arc<Mutex<Option<Child>>>, dir: PathBuf) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop(&child);
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("\ninterrupted: private redis-server stopped");
                std::process::exit(130);
            }
        });
    }
}

fn ping(mut s: std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// One named connection for counters and server-side setup.
pub struct Admin {
    conn: MultiplexedConnection,
}

/// One slow-log entry (with a 0 µs threshold: one executed command).
pub struct SlowEntry {
    /// The command and its arguments (the server may truncate long ones).
    pub args: Vec<String>,
    /// Client address; `?:0` for commands run inside a Lua script.
    pub addr: String,
    /// Client name.
    pub client: String,
}

/// `INFO commandstats`: command name -> (calls, usec).
pub type CommandStats = HashMap<String, (u64, u64)>;

/// `after − before`, command by command (those that ran at all).
pub fn stats_delta(before: &CommandStats, after: &CommandStats) -> CommandStats {
    after
        .iter()
        .filter_map(|(name, (calls, usec))| {
            let (c0, u0) = before.get(name).copied().unwrap_or_default();
            (*calls > c0).then(|| (name.clone(), (calls - c0, usec.saturating_sub(u0))))
        })
        .collect()
}

impl Admin {
    pub async fn connect(url: &str) -> Result<Admin> {
        let client = redis::Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(120)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(ADMIN_NAME)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(Admin { conn })
    }

    pub async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// One `INFO` section as key -> value.
    pub async fn info(&self, section: &str) -> Result<HashMap<String, String>> {
        let text: String = self.cmd(redis::cmd("INFO").arg(section)).await?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    pub async fn info_u64(&self, section: &str, field: &str) -> Result<u64> {
        let info = self.info(section).await?;
        info.get(field)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("INFO {section} has no numeric {field}").into())
    }

    /// Seconds of CPU the server has used (user + system, all its threads).
    pub async fn cpu_seconds(&self) -> Result<f64> {
        let info = self.info("cpu").await?;
        let get = |k: &str| {
            info.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(get("used_cpu_user") + get("used_cpu_sys"))
    }

    pub async fn commandstats(&self) -> Result<CommandStats> {
        let info = self.info("commandstats").await?;
        let mut out = HashMap::new();
        for (k, v) in info {
            let Some(name) = k.strip_prefix("cmdstat_") else {
                continue;
            };
            let field = |f: &str| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix(f))
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            out.insert(name.to_string(), (field("calls="), field("usec=")));
        }
        Ok(out)
    }

    /// `MEMORY USAGE key SAMPLES 0` (exact for small values), 0 if absent.
    pub async fn memory_usage(&self, key: &str) -> Result<u64> {
        let v: Option<u64> = self
            .cmd(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub async fn config_get(&self, name: &str) -> Result<String> {
        let v: Vec<String> = self.cmd(redis::cmd("CONFIG").arg("GET").arg(name)).await?;
        v.get(1)
            .cloned()
            .ok_or_else(|| format!("CONFIG GET {name}: no value").into())
    }

    pub async fn config_set(&self, name: &str, value: &str) -> Result<()> {
        self.cmd::<()>(redis::cmd("CONFIG").arg("SET").arg(name).arg(value))
            .await
    }

    /// Every slow-log entry, oldest last.
    pub async fn slowlog(&self) -> Result<Vec<SlowEntry>> {
        let v: Value = self.cmd(redis::cmd("SLOWLOG").arg("GET").arg(-1)).await?;
        let Value::Array(entries) = v else {
            return Err("SLOWLOG GET: not an array".into());
        };
        let text = |v: &Value| redis::from_redis_value_ref::<String>(v).unwrap_or_default();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Value::Array(fields) = e else { continue };
            let args = match fields.get(3) {
                Some(Value::Array(a)) => a.iter().map(text).collect(),
                _ => Vec::new(),
            };
            out.push(SlowEntry {
                args,
                addr: fields.get(4).map(text).unwrap_or_default(),
                client: fields.get(5).map(text).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Deletes every key matching `pattern` (SCAN + UNLINK), for `--url` runs.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64> {
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .cmd(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(10_000),
                )
                .await?;
            if !keys.is_empty() {
                deleted += self.cmd::<u64>(redis::cmd("UNLINK").arg(&keys)).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}
