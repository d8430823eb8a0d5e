//! How load is applied: a closed loop of `concurrency` tasks, each running
//! one operation after the other for a fixed time, and a sequential loop for
//! latency. Both read the server's and this process's CPU clocks around the
//! measured window, so a table can say where the time went.
//! The `INFO commandstats` delta of the window is kept whole, so the Redis
//! time of a side can be read from the same window as its throughput.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::result::Result;
use crate::server::{Admin, CommandStats, is_admin};
use crate::stats::own_cpu_seconds;

/// One closed-loop measurement.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Operations completed inside the window.
    pub ops: u64,
    pub secs: f64,
    /// Latency of every operation that started inside the window.
    pub latencies: Vec<Duration>,
    /// Server CPU seconds used during the window.
    pub server_cpu: f64,
    /// This process's CPU seconds used during the window.
    pub client_cpu: f64,
    /// `INFO commandstats` during the window: command -> (calls, µs).
    /// Commands run inside scripts are counted under their own names too,
    /// and a script's µs include theirs.
    pub stats: CommandStats,
}

/// Of each command's calls, the share the client sent (the rest ran
/// inside scripts): from the command count (`commands.rs`). Commands not
/// named count as sent when they are `evalsha`, else as run inside scripts
/// (true for every side that sends nothing but `EVALSHA`).
pub type Shares = std::collections::BTreeMap<String, f64>;

fn share(shares: &Shares, name: &str) -> f64 {
    shares
        .get(name)
        .copied()
        .unwrap_or(if name == "evalsha" { 1.0 } else { 0.0 })
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
    /// Server CPU µs per operation.
    pub fn server_us_per_op(&self) -> f64 {
        self.server_cpu * 1e6 / (self.ops.max(1) as f64)
    }
    /// Redis execution µs per operation of what the client sent (a
    /// script's time includes the commands it ran): `commandstats` usec.
    pub fn redis_us_per_op(&self, shares: &Shares) -> f64 {
        self.weighted_us(|name| share(shares, name)) / self.ops.max(1) as f64
    }

    /// Of those, µs per operation in the commands scripts ran.
    pub fn in_script_us_per_op(&self, shares: &Shares) -> f64 {
        self.weighted_us(|name| 1.0 - share(shares, name)) / self.ops.max(1) as f64
    }

    fn weighted_us(&self, weight: impl Fn(&str) -> f64) -> f64 {
        self.stats
            .iter()
            .filter(|(name, _)| !is_admin(name))
            .map(|(name, (_, usec))| *usec as f64 * weight(name))
            .sum()
    }

    /// Client CPU µs per operation.
    pub fn client_us_per_op(&self) -> f64 {
        self.client_cpu * 1e6 / (self.ops.max(1) as f64)
    }
}

/// Runs `op(worker, iteration)` in `concurrency` tasks for `warmup` +
/// `window` and measures the window. Any error stops the run.
pub async fn closed_loop<F, Fut>(
    admin: &Admin,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    op: F,
) -> Result<Run>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (op, done, measuring, stop) = (
            Arc::clone(&op),
            Arc::clone(&done),
            Arc::clone(&measuring),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let counted = measuring.load(Ordering::Relaxed);
                let t = Instant::now();
                op(w, i).await?;
                if counted {
                    lat.push(t.elapsed());
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, crate::result::BoxError>(lat)
        }));
    }
    tokio::time::sleep(warmup).await;
    if tasks.iter().any(|t| t.is_finished()) {
        // A worker failed during the warm-up: stop and report its error.
        stop.store(true, Ordering::Relaxed);
        join(tasks).await?;
        return Err("a worker stopped during the warm-up".into());
    }
    let stats0 = admin.commandstats().await?;
    let cpu0 = admin.cpu_seconds().await?;
    let own0 = own_cpu_seconds();
    let n0 = done.load(Ordering::Relaxed);
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    let n1 = done.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    let own1 = own_cpu_seconds();
    let cpu1 = admin.cpu_seconds().await?;
    let stats1 = admin.commandstats().await?;
    stop.store(true, Ordering::Relaxed);
    let latencies = join(tasks).await?;
    Ok(Run {
        ops: n1 - n0,
        secs,
        latencies,
        server_cpu: cpu1 - cpu0,
        client_cpu: own1 - own0,
        stats: crate::server::stats_delta(&stats0, &stats1),
    })
}

type Worker = tokio::task::JoinHandle<Result<Vec<Duration>>>;

/// Waits (bounded) for stopped workers and gathers their latencies; the
/// first error wins and the remaining workers are aborted.
async fn join(mut tasks: Vec<Worker>) -> Result<Vec<Duration>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut all = Vec::new();
    let mut failure: Option<crate::result::BoxError> = None;
    for t in &mut tasks {
        match tokio::time::timeout_at(deadline, &mut *t).await {
            Ok(Ok(Ok(lat))) => all.extend(lat),
            Ok(Ok(Err(e))) => failure = failure.or(Some(e)),
            Ok(Err(e)) => failure = failure.or(Some(format!("worker panicked: {e}").into())),
            Err(_) => {
                failure = failure.or(Some("a worker did not stop within 60 s".into()));
                break;
            }
        }
    }
    tasks.iter().for_each(|t| t.abort());
    match failure {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// Runs `op(i)` `n` times one after the other (after `warmup` unmeasured
/// runs) and returns each latency.
pub async fn sequential<F, Fut>(warmup: usize, n: usize, mut op: F) -> Result<Vec<Duration>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for i in 0..warmup {
        op(i as u64).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        op((warmup + i) as u64).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}
