//! The embedded Redis: a private `redis-server` child on a unix socket in a
//! fresh temporary directory — no TCP port, no persistence — for when no
//! `--url` or `REDIS_URL` is given.
//!
//! Its life is bound to sandboxctl's three ways: [`EmbeddedRedis::stop`]
//! (and `Drop`) kill it, wait for it and remove the directory; `main`
//! calls that after Ctrl-C and SIGTERM too; and on Linux the child gets
//! `SIGKILL` from the kernel if sandboxctl dies without cleaning up
//! (`PR_SET_PDEATHSIG`). It runs in its own process group so a Ctrl-C in
//! the terminal reaches sandboxctl only, which then stops it in order.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

/// How long the server gets to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable naming another `redis-server` binary (the test
/// harness honours the same one).
const SERVER_BIN_VAR: &str = "REDIS_SERVER_BIN";

/// What to tell a user without `redis-server`.
pub const INSTALL_HINT: &str = "redis-server not found: install it with `apt-get install \
    redis-server` (Debian/Ubuntu) or pass --url (or set REDIS_URL) to use a running Redis";

/// A running private `redis-server`.
pub struct EmbeddedRedis {
    child: Option<Child>,
    /// Removed (with the socket and log in it) when dropped, after the child
    /// has been reaped.
    dir: Option<TempDir>,
    socket: PathBuf,
    pid: u32,
}

impl EmbeddedRedis {
    /// Starts the server and waits (bounded) until it answers PING.
    pub fn start() -> anyhow::Result<EmbeddedRedis> {
        let dir = private_dir()?;
        let socket = dir.path().join("redis.sock");
        let log_path = dir.path().join("redis.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log.try_clone().context("cannot duplicate the log handle")?;
        let bin = std::env::var(SERVER_BIN_VAR)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "redis-server".to_string());

        let mut cmd = Command::new(&bin);
        cmd.arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{INSTALL_HINT}"),
            Err(e) => return Err(anyhow!(e).context(format!("cannot run `{bin}`"))),
        };
        let mut redis = EmbeddedRedis {
            pid: child.id(),
            child: Some(child),
            dir: Some(dir),
            socket,
        };
        // On failure `redis` is dropped here, which kills and reaps the
        // child and removes the directory.
        redis.wait_ready(&log_path)?;
        Ok(redis)
    }

    /// The URL of the server (`redis+unix:///…/redis.sock`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The unix socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding the socket and the server's log.
    pub fn dir(&self) -> &Path {
        self.socket.parent().unwrap_or(Path::new("/"))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the server, waits for it to exit and removes the directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // Nothing to save (no persistence), so no graceful shutdown is
            // needed: SIGKILL cannot be ignored or delayed.
            if let Ok(None) = child.try_wait() {
                child
                    .kill()
                    .with_context(|| format!("cannot kill redis-server (pid {})", self.pid))?;
            }
            child
                .wait()
                .with_context(|| format!("cannot reap redis-server (pid {})", self.pid))?;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            dir.close()
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    fn wait_ready(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last_error = match ping(&self.socket) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().context("cannot poll redis-server")?,
                None => None,
            };
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let state = match exited {
                    Some(status) => format!("exited with {status}"),
                    None => format!("did not answer PING within {READY_TIMEOUT:?} ({last_error})"),
                };
                bail!(
                    "the private redis-server on {} {state}; its log:\n{}",
                    self.socket.display(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EmbeddedRedis {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("sandboxctl: {e:#}");
        }
    }
}

/// A fresh 0700 directory for the socket. A unix socket path must fit in
/// `sun_path` (108 bytes), so a long `$TMPDIR` falls back to `/tmp`.
fn private_dir() -> anyhow::Result<TempDir> {
    let mut base = std::env::temp_dir();
    // "sandboxctl-" + 6 random characters + "/redis.sock"
    if base.as_os_str().len() + 30 > 100 {
        base = PathBuf::from("/tmp");
    }
    tempfile::Builder::new()
        .prefix("sandboxctl-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a temporary directory in {}", base.display()))
}

/// Sends one PING over a fresh connection and expects `+PONG`.
fn ping(socket: &Path) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
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

/// Asks the kernel to SIGKILL the child when the thread that spawned it
/// exits (sandboxctl spawns from the main thread, which lives until the
/// process ends), so a `kill -9` of sandboxctl leaves no server behind.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("sandboxctl exited during startup"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}
