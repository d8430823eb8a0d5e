#!/bin/bash
# CLIENT-SIDE PROFILE of one uncontended transition (issue 18, "sequential
# p50"): where the Rust library spends its time in begin(Snapshot) +
# succeed(), beyond the two script round trips and Redis's own time.
#
#   benches/coordination/client_profile.sh [all|build|sizes|callgrind|wall|perf]
#
# Writes a small driver crate (the Rust program below, public API only)
# under $CARGO_TARGET_DIR/client-profile, builds it in release, starts a
# private redis-server (unix socket; killed on exit) and:
#   sizes      prints the sizes of the begin and succeed futures;
#   callgrind  runs each side (ours, ours-nowatchdog, raw, raw-args) under
#              callgrind at N1 and N2 iterations and reports the difference
#              per iteration (set-up cancelled): instructions by subsystem,
#              calls per iteration (malloc, format!, wakes, syscalls...),
#              the library's top inclusive functions, the callers of the
#              costliest leaves; allocator calls from a counting allocator;
#   wall       WALL_N iterations x WALL_ROUNDS interleaved rounds of the
#              four sides natively: p50/p90/p99 and Redis time per side
#              (INFO commandstats), and the issue-18 target;
#   perf       perf stat (task-clock, context switches) of the ours side.
# Knobs: SIDES (default "ours ours-nowatchdog raw raw-args"), N1 (200),
# N2 (1200), WALL_N (2000), WALL_ROUNDS (3), TRANSPORT=tcp (loopback TCP
# instead of the unix socket), PROFILE_RT=current (a current-thread
# runtime), PROFILE_OBSERVED=1 (a tracing subscriber and a metrics
# recorder installed; give it its own OUT), OUT (default
# $CARGO_TARGET_DIR/client-profile/out). Needs valgrind, python3,
# redis-server, redis-cli; builds offline from Cargo.lock.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${CARGO_TARGET_DIR:=$ROOT/target}"
export CARGO_TARGET_DIR
CRATE=$CARGO_TARGET_DIR/client-profile
OUT=${OUT:-$CRATE/out}
N1=${N1:-200}; N2=${N2:-1200}
WALL_N=${WALL_N:-2000}; WALL_ROUNDS=${WALL_ROUNDS:-3}
TRANSPORT=${TRANSPORT:-unix}
WHAT=${1:-all}
BIN=$CARGO_TARGET_DIR/release/client_profile
mkdir -p "$CRATE/src" "$OUT"

write_crate() {
cat > "$CRATE/Cargo.toml" <<TOML
[package]
name = "client-profile"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "client_profile"
path = "src/main.rs"

[dependencies]
sandbox-coordinator = { path = "$ROOT" }
redis = { version = "1", default-features = false, features = ["aio", "tokio-comp", "script", "cluster-async", "tokio-rustls-comp", "tls-rustls"] }
tokio = { version = "1", features = ["rt", "rt-multi-thread", "time"] }
# PROFILE_OBSERVED=1: a tracing subscriber and a metrics recorder installed
# (as a service would have them), the test suite's own crates.
tracing-subscriber = { version = "0.3", default-features = false, features = ["registry", "std"] }
metrics-util = { version = "0.20", default-features = false, features = ["debugging"] }

[profile.release]
debug = "line-tables-only"

[workspace]
TOML
cp "$ROOT/Cargo.lock" "$CRATE/Cargo.lock"
cat > "$CRATE/src/main.rs" <<'RUST'
//! Profile driver for the client side of one uncontended transition
//! (issue 18, "sequential p50"): where the library spends its time beyond
//! the two script round trips and Redis's own time.
//!
//! Written and built by benches/coordination/client_profile.sh (a crate of
//! its own under $CARGO_TARGET_DIR/client-profile, release with line
//! tables), which also runs it:
//!
//! ```text
//! $P URL ours N       # N sequential begin(Snapshot) + succeed() on one sandbox
//! $P URL ours-nowatchdog N   # the same with BeginOptions::watchdog(false)
//! $P URL raw N        # N × two EVALSHA of `return 1` (no keys, no args)
//! $P URL raw-args N   # N × two EVALSHA of `return 1` with the keys and
//!                     # arguments begin and finish send (5 keys + 7 args each)
//! $P URL sizes 0     # sizes of the begin and succeed futures
//! $P URL wall N R     # R interleaved rounds of the four sides, N each:
//!                     # latency percentiles and INFO commandstats per side
//! ```
//!
//! Each mode first builds its client and runs 200 warm-up iterations, then
//! runs the N measured ones and prints the allocator calls they made (a
//! counting global allocator) and the wall time. Run a mode under callgrind
//! at two values of N and subtract: the difference divided by the
//! difference of N is the cost of one iteration, set-up cancelled
//! (the script does this).
//!
//! Every side uses a redis-rs `MultiplexedConnection` on the same kind of
//! link (the library's default `Connections::Multiplexed(1)`; the raw sides
//! one connection with redis-rs's default config, which also has a response
//! timeout) and a multi-threaded tokio runtime (`PROFILE_RT=current` for a
//! current-thread one). With `PROFILE_OBSERVED=1` a tracing subscriber (a
//! bare registry) and a metrics recorder are installed, as in a service.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::MultiplexedConnection;
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, NewSandbox};

/// Counts allocator calls (all threads).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WARMUP: usize = 200;
const TEAM: &str = "00000000-0000-4000-8000-000000000001";
const ID: &str = "i0000000000000000001";
const EXECUTION: &str = "e0000000-0000-4000-8000-000000000001";
const DATA: &str = r#"{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench","purpose":"load"}}"#;

fn counts() -> [u64; 4] {
    [
        ALLOCS.load(Relaxed),
        FREES.load(Relaxed),
        REALLOCS.load(Relaxed),
        BYTES.load(Relaxed),
    ]
}

fn report(side: &str, n: usize, before: [u64; 4], took: Duration) {
    let after = counts();
    let per = |i: usize| (after[i] - before[i]) as f64 / n as f64;
    println!(
        "{side}: n={n} allocs/iter={:.2} frees/iter={:.2} reallocs/iter={:.2} bytes/iter={:.0} wall/iter={:.1}us",
        per(0),
        per(1),
        per(2),
        per(3),
        took.as_secs_f64() * 1e6 / n as f64
    );
}

/// The library under test: a coordinator with its defaults and one sandbox.
struct Ours {
    coord: Coordinator,
    /// `BeginOptions::default()`, or with the watchdog off (side
    /// `ours-nowatchdog`: what the lease keeper costs per transition).
    opts: BeginOptions,
}

impl Ours {
    async fn new(url: &str) -> Res<Ours> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let ns = format!("prof{}-{}", std::process::id(), NEXT.fetch_add(1, Relaxed));
        let coord = Coordinator::builder(url).namespace(ns).build().await?;
        coord
            .register(NewSandbox {
                team: TEAM.into(),
                id: ID.into(),
                execution: EXECUTION.into(),
                end_time: (SystemTime::now() + Duration::from_secs(30 * 24 * 3600)).into(),
                data: DATA.into(),
            })
            .await?;
        Ok(Ours {
            coord,
            opts: BeginOptions::default(),
        })
    }

    /// One uncontended transition: begin(Snapshot) then succeed().
    async fn once(&self) -> Res<()> {
        match self
            .coord
            .begin(TEAM, ID, Action::Snapshot, self.opts.clone())
            .await?
        {
            Begun::Started(t) => Ok(t.succeed().await?),
            Begun::AlreadyDone(d) => Err(format!("snapshot did not start: {d:?}").into()),
        }
    }
}

/// Two raw script round trips on one multiplexed connection.
struct Raw {
    conn: MultiplexedConnection,
    sha: String,
    /// Keys and arguments shaped like begin's and finish's (empty: none).
    begin: (Vec<String>, Vec<String>),
    finish: (Vec<String>, Vec<String>),
}

impl Raw {
    async fn new(url: &str, with_args: bool) -> Res<Raw> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .query_async(&mut conn)
            .await?;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = format!("prof:{{{TEAM}}}:");
        let (begin, finish) = if with_args {
            (
                (
                    s(&[
                        &format!("{p}rec:{ID}"),
                        &format!("{p}expiry"),
                        &format!("{p}tombs"),
                        &format!("{p}ids"),
                        &format!("{p}seq"),
                    ]),
                    s(&[&p, ID, "0123456789abcdef0123/12345", "30000", "", "0", "2000"]),
                ),
                (
                    s(&[
                        &format!("{p}rec:{ID}"),
                        &format!("{p}out:{ID}:12345"),
                        &format!("{p}expiry"),
                        &format!("{p}tombs"),
                        &format!("{p}seq"),
                    ]),
                    s(&[
                        &p,
                        ID,
                        "12345",
                        "0123456789abcdef0123/12345",
                        "snapshot",
                        "succeeded",
                        "",
                    ]),
                ),
            )
        } else {
            Default::default()
        };
        Ok(Raw {
            conn,
            sha,
            begin,
            finish,
        })
    }

    async fn call(&self, (keys, args): &(Vec<String>, Vec<String>)) -> Res<()> {
        let mut conn = self.conn.clone();
        let v: i64 = redis::cmd("EVALSHA")
            .arg(&self.sha)
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .query_async(&mut conn)
            .await?;
        if v != 1 {
            return Err("return 1 did not return 1".into());
        }
        Ok(())
    }

    async fn once(&self) -> Res<()> {
        self.call(&self.begin).await?;
        self.call(&self.finish).await
    }
}

#[inline(never)]
async fn ours_loop(o: &Ours, n: usize) -> Res<()> {
    for _ in 0..n {
        o.once().await?;
    }
    Ok(())
}

#[inline(never)]
async fn raw_loop(r: &Raw, n: usize) -> Res<()> {
    for _ in 0..n {
        r.once().await?;
    }
    Ok(())
}

async fn profile(url: &str, mode: &str, n: usize) -> Res<()> {
    match mode {
        "ours" | "ours-nowatchdog" => {
            let mut o = Ours::new(url).await?;
            if mode == "ours-nowatchdog" {
                o.opts = BeginOptions::default().watchdog(false);
            }
            ours_loop(&o, WARMUP).await?;
            let (before, t) = (counts(), Instant::now());
            ours_loop(&o, n).await?;
            report(mode, n, before, t.elapsed());
            o.coord.close(Duration::from_secs(5)).await;
        }
        "raw" | "raw-args" => {
            let r = Raw::new(url, mode == "raw-args").await?;
            raw_loop(&r, WARMUP).await?;
            let (before, t) = (counts(), Instant::now());
            raw_loop(&r, n).await?;
            report(mode, n, before, t.elapsed());
        }
        "sizes" => {
            // The futures the caller awaits (moved by value on every
            // await of a wrapper: memcpy in the profile).
            let o = Ours::new(url).await?;
            let begin = o
                .coord
                .begin(TEAM, ID, Action::Snapshot, BeginOptions::default());
            println!("size of the begin future: {} B", std::mem::size_of_val(&begin));
            match begin.await? {
                Begun::Started(t) => {
                    println!("size of a Transition: {} B", std::mem::size_of_val(&t));
                    let succeed = t.succeed();
                    println!("size of the succeed future: {} B", std::mem::size_of_val(&succeed));
                    succeed.await?;
                }
                Begun::AlreadyDone(d) => return Err(format!("did not start: {d:?}").into()),
            }
            let r = Raw::new(url, false).await?;
            let call = r.call(&r.begin);
            println!("size of a raw EVALSHA future (this driver's): {} B", std::mem::size_of_val(&call));
            call.await?;
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `cmdstat_evalsha`'s calls and usec since the last CONFIG RESETSTAT.
async fn evalsha_stats(admin: &mut MultiplexedConnection) -> Res<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await?;
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("calls"), field("usec")))
}

async fn wall(url: &str, n: usize, rounds: usize) -> Res<()> {
    let ours = Ours::new(url).await?;
    let mut ours_nowd = Ours::new(url).await?;
    ours_nowd.opts = BeginOptions::default().watchdog(false);
    let raw = Raw::new(url, false).await?;
    let raw_args = Raw::new(url, true).await?;
    let mut admin = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    ours_loop(&ours, WARMUP).await?;
    ours_loop(&ours_nowd, WARMUP).await?;
    raw_loop(&raw, WARMUP).await?;
    raw_loop(&raw_args, WARMUP).await?;
    const SIDES: usize = 4;
    let names = [
        "ours (begin+succeed)",
        "ours, watchdog(false)",
        "raw 2×EVALSHA `return 1`",
        "raw-args 2×EVALSHA `return 1`, same keys+args",
    ];
    // Per side: per-iteration latencies (µs), Redis usec and calls.
    let mut lat: [Vec<f64>; SIDES] = Default::default();
    let mut single: [Vec<f64>; SIDES] = Default::default();
    let mut redis_us = [0u64; SIDES];
    let mut redis_calls = [0u64; SIDES];
    for round in 0..rounds {
        for side in 0..SIDES {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut admin)
                .await?;
            for _ in 0..n {
                let t = Instant::now();
                match side {
                    0 => ours.once().await?,
                    1 => ours_nowd.once().await?,
                    _ => {
                        let r = if side == 2 { &raw } else { &raw_args };
                        r.call(&r.begin).await?;
                        single[side].push(t.elapsed().as_secs_f64() * 1e6);
                        let t2 = Instant::now();
                        r.call(&r.finish).await?;
                        single[side].push(t2.elapsed().as_secs_f64() * 1e6);
                    }
                }
                lat[side].push(t.elapsed().as_secs_f64() * 1e6);
            }
            let (calls, usec) = evalsha_stats(&mut admin).await?;
            redis_calls[side] += calls;
            redis_us[side] += usec;
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    println!(
        "| side | iterations | p50 µs | p90 µs | p99 µs | mean µs | one call p50 µs | Redis µs/iter (commandstats) | EVALSHA/iter |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut p50 = [0.0; SIDES];
    for side in 0..SIDES {
        let v = &mut lat[side];
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        p50[side] = pct(v, 0.5);
        let one = if single[side].is_empty() {
            "".to_string()
        } else {
            format!("{:.1}", pct(&mut single[side], 0.5))
        };
        let iters = v.len() as f64;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.2} |",
            names[side],
            v.len(),
            p50[side],
            pct(v, 0.9),
            pct(v, 0.99),
            mean,
            one,
            redis_us[side] as f64 / iters,
            redis_calls[side] as f64 / iters,
        );
    }
    let iters = lat[0].len() as f64;
    let extra_redis = (redis_us[0] as f64 - redis_us[2] as f64) / iters;
    println!(
        "ours p50 / raw pair p50 = {:.2}; ours p50 - raw pair p50 = {:.1} µs, of which extra Redis time (ours - raw, commandstats) = {:.1} µs; client residue ≈ {:.1} µs; watchdog on - off (p50) = {:.1} µs",
        p50[0] / p50[2],
        p50[0] - p50[2],
        extra_redis,
        p50[0] - p50[2] - extra_redis,
        p50[0] - p50[1],
    );
    println!(
        "issue-18 target: ours p50 ≤ 1.3 × (raw pair p50 + ours' Redis time - raw's) = {:.1} µs",
        1.3 * (p50[2] + extra_redis)
    );
    ours.coord.close(Duration::from_secs(5)).await;
    ours_nowd.coord.close(Duration::from_secs(5)).await;
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: client_profile URL (ours|raw|raw-args) N | URL wall N ROUNDS".into());
    }
    let (url, mode) = (args[1].as_str(), args[2].as_str());
    let n: usize = args[3].parse()?;
    if std::env::var_os("PROFILE_OBSERVED").is_some() {
        // Every span recorded by a registry (no output layer: the least a
        // service with tracing pays) and every metric by a recorder.
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry().try_init()?;
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .map_err(|e| e.to_string())?;
    }
    let rt = match std::env::var("PROFILE_RT").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    rt.block_on(async {
        if mode == "wall" {
            let rounds = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(3);
            wall(url, n, rounds).await
        } else {
            profile(url, mode, n).await
        }
    })
}
RUST
}

build() {
  write_crate
  (cd "$CRATE" && cargo build --release --offline -q)
  # callgrind names functions by symbol; without the line tables an
  # inlined function counts in the function it was inlined into (one
  # entry per real function, no per-file duplicates).
  objcopy --strip-debug "$BIN" "$BIN.nodebug"
}

SERVER_PID=
start_server() {
  SOCK=$OUT/redis.sock
  local port=0
  if [ "$TRANSPORT" = tcp ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  rm -f "$SOCK"
  redis-server --bind 127.0.0.1 --port "$port" --unixsocket "$SOCK" --unixsocketperm 700 --save '' \
    --appendonly no --dir "$OUT" --daemonize no >"$OUT/redis.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  if [ "$TRANSPORT" = tcp ]; then URL="redis://127.0.0.1:$port"; else URL="unix://$SOCK"; fi
}
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}
trap stop_server EXIT

# callgrind of one side at N iterations -> $OUT/cg.<side>.<N>.{out,alloc,
# incl.txt,self.txt,tree.txt}
cg_run() {
  local side=$1 n=$2
  redis-cli -s "$SOCK" flushall >/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$side.$n.out" \
    "$BIN.nodebug" "$URL" "$side" "$n" >"$OUT/cg.$side.$n.alloc" 2>"$OUT/cg.$side.$n.log"
  callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$OUT/cg.$side.$n.out" >"$OUT/cg.$side.$n.incl.txt"
  callgrind_annotate --inclusive=no --threshold=100 --auto=no "$OUT/cg.$side.$n.out" >"$OUT/cg.$side.$n.self.txt"
  callgrind_annotate --tree=caller --inclusive=yes --threshold=100 --auto=no "$OUT/cg.$side.$n.out" >"$OUT/cg.$side.$n.tree.txt"
}

# The per-iteration report of the callgrind runs (N2 minus N1, divided by
# N2 - N1): instructions by subsystem (self), calls per iteration of what a
# transition should not need, the top inclusive functions of the library,
# and the callers of the costliest leaves.
cg_report() {
  python3 - "$OUT" "$N1" "$N2" "$@" <<'PY'
import re, sys
out, n1, n2, sides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
n = n2 - n1
def clean(s):
    s = re.sub(r'^\?\?\?:', '', s); s = re.sub(r' \[[^\]]*\]$', '', s)
    return re.sub(r'^\./\S*?:', '', s)
def flat(path):
    total, fns = 0, {}
    for line in open(path):
        m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)\s*$', line)
        if m:
            v, name = int(m.group(1).replace(',', '')), m.group(2)
            if 'PROGRAM TOTALS' in name: total = v
            else: fns[clean(name)] = fns.get(clean(name), 0) + v
    return total, fns
def tree(path):
    pairs, callers = {}, []
    for line in open(path):
        m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+<\s+(.*?) \(([\d,]+)x\)', line)
        if m:
            callers.append((clean(m.group(2)), int(m.group(1).replace(',', '')), int(m.group(3).replace(',', ''))))
            continue
        m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+\*\s+(.*?)\s*$', line)
        if m:
            callee = clean(m.group(2))
            for c, ir, k in callers:
                x = pairs.get((callee, c), (0, 0)); pairs[(callee, c)] = (x[0] + ir, x[1] + k)
        if not line.strip() or m: callers = []
    return pairs
def diff(a, b, f=lambda v: v):
    return {k: (f(b.get(k, 0)) - f(a.get(k, 0))) / n for k in set(a) | set(b)}
S, I, T, TOT = {}, {}, {}, {}
for side in sides:
    p = lambda n_, kind: f'{out}/cg.{side}.{n_}.{kind}'
    (t1, s1), (t2, s2) = flat(p(n1, 'self.txt')), flat(p(n2, 'self.txt'))
    TOT[side] = (t2 - t1) / n; S[side] = diff(s1, s2)
    I[side] = diff(flat(p(n1, 'incl.txt'))[1], flat(p(n2, 'incl.txt'))[1])
    a, b = tree(p(n1, 'tree.txt')), tree(p(n2, 'tree.txt'))
    T[side] = {k: ((b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0]) / n, (b.get(k, (0, 0))[1] - a.get(k, (0, 0))[1]) / n) for k in set(a) | set(b)}
RULES = [
 ('libc memcpy/memmove', r'memcpy|memmove'),
 ('malloc/free/realloc (libc + Rust shims + RawVec growth)', r'^(_int_|malloc|free|realloc|unlink_chunk|cfree|tcache)|__rustc::__rust_(alloc|dealloc|realloc|no_alloc)|alloc::raw_vec|RawVecInner|malloc_consolidate'),
 ('formatting (core::fmt, alloc::fmt, itoa)', r'core::fmt|alloc::fmt|itoa|Formatter|as core::fmt::Display|as core::fmt::Write|flt2dec'),
 ('clock (Instant, clock_gettime, pow: tokio worker stats)', r'Timespec|Instant|clock_gettime|__vdso|pow'),
 ('redis-rs RESP parsing (combine)', r'combine::|redis::parser'),
 ('redis-rs encoding + multiplexed connection', r'^<?redis::|redis::cmd|redis::aio|RedisWrite'),
 ('tokio time (timer wheel, Sleep, Timeout)', r'tokio::runtime::time|tokio::time'),
 ('tokio io, mio, syscalls, codec', r'tokio::runtime::io|tokio::io|tokio::net|mio::|epoll|^(read|write|recv|send|__libc_recv|__libc_send|syscall|__GI___|__pthread_(en|dis)able)|tokio_util|bytes::'),
 ('tokio sync (mpsc, watch, notify, oneshot)', r'tokio::sync|atomic_waker'),
 ('tokio scheduler, tasks, wakers', r'tokio::'),
 ('futures-util', r'futures_util|futures_'),
 ('tracing', r'tracing'),
 ('metrics', r'metrics'),
 ('sandbox_coordinator (self)', r'sandbox_coordinator'),
 ('driver loop', r'client_profile'),
 ('std (futex, mutex, thread) and rest', r'.'),
]
def group(name):
    for g, pat in RULES:
        if re.search(pat, name): return g
print(f'### Instructions per iteration by subsystem (self cost; callgrind, N={n2} minus N={n1})\n')
print('| subsystem | ' + ' | '.join(sides) + ' |'); print('|---|' + '---:|' * len(sides))
G = {s: {} for s in sides}
for s in sides:
    for k, v in S[s].items(): G[s][group(k)] = G[s].get(group(k), 0) + v
for g, _ in RULES:
    print(f'| {g} | ' + ' | '.join(f'{G[s].get(g, 0):,.0f}' for s in sides) + ' |')
print('| **total** | ' + ' | '.join(f'**{TOT[s]:,.0f}**' for s in sides) + ' |\n')
def calls(s, pat):
    return sum(c for (callee, _), (_, c) in T[s].items() if re.search(pat, callee))
COUNTS = [('malloc', r'^malloc$'), ('realloc', r'^realloc$'), ('free', r'^free$'), ('memcpy', r'memcpy_avx_unaligned_erms$'),
 ('format! (alloc::fmt::format_inner)', r'format_inner$'), ('String::clone', r'String as core::clone::Clone>::clone$'),
 ('clock_gettime', r'^clock_gettime'), ('futex syscall', r'^syscall$'), ('epoll_wait', r'^epoll_wait'),
 ('write(2) (socket, eventfd wake)', r'^(__libc_write|write|__GI___libc_write)$'), ('recv(2) (socket)', r'^recv$'), ('writev(2)', r'^writev$'),
 ('task wakes (tokio waker wake_by_val/ref)', r'tokio::runtime::task::waker::wake_by_(val|ref)$'),
 ('worker thread unparks', r'multi_thread::park::Unparker::unpark$'), ('worker parks', r'worker::Context::park_internal$'),
 ('mpsc unbounded send (keeper jobs)', r'UnboundedSender<T>::send$'), ('tokio Sleep created', r'Sleep::new_timeout$'),
 ('boxed redis-rs request future', r'ConnectionLike>::req_packed_commands?$'), ('RESP values parsed (top level)', r'Dispatch<.*>::parse_mode$'),
 ('metrics Key built', r'metrics::key::Key::builder$')]
print('### Calls per iteration\n')
print('| call | ' + ' | '.join(sides) + ' |'); print('|---|' + '---:|' * len(sides))
for label, pat in COUNTS:
    print(f'| {label} | ' + ' | '.join(f'{calls(s, pat):.1f}' for s in sides) + ' |')
print()
for s in sides:
    if not s.startswith('ours'): continue
    print(f'### {s}: top inclusive functions of the library and its I/O path (per iteration)\n')
    rows = sorted(((v, k) for k, v in I[s].items() if re.search(r'sandbox_coordinator|Instrumented|keeper|redis::|Timeout<T>|mpsc|watch::', k)), reverse=True)
    for v, k in rows[:40]:
        print(f'    {v:9,.0f}  {k[:160]}')
    print(f'\n### {s}: callers of the costliest leaves (Ir inclusive / calls, per iteration)\n')
    for pat in [r'memcpy_avx_unaligned_erms$', r'^malloc$', r'^realloc$', r'format_inner$', r'String as core::clone::Clone>::clone$', r'UnboundedSender<T>::send$']:
        for callee in sorted({k[0] for k in T[s] if re.search(pat, k[0])}):
            rows = sorted(((v[0], v[1], k[1]) for k, v in T[s].items() if k[0] == callee and (v[0] >= 50 or v[1] >= 0.5)), reverse=True)
            if not rows: continue
            print(f'    {callee[:100]}:')
            for ir, c, caller in rows[:8]:
                print(f'      {ir:9,.0f} {c:6.2f}x  {caller[:150]}')
    print()
PY
}

callgrind() {
  start_server
  local sides=${SIDES:-ours ours-nowatchdog raw raw-args}
  for side in $sides; do
    cg_run "$side" "$N1"; cg_run "$side" "$N2"
    echo "allocator (counting global allocator, measured loop under callgrind): $(cat "$OUT/cg.$side.$N2.alloc")"
  done
  stop_server
  echo
  cg_report $sides
}

wall() {
  start_server
  echo "transport: $TRANSPORT ($URL); runtime: ${PROFILE_RT:-multi_thread}"
  echo "uptime before: $(uptime)"
  "$BIN" "$URL" wall "$WALL_N" "$WALL_ROUNDS"
  echo "uptime after: $(uptime)"
  stop_server
}

perfstat() {
  if perf stat -e task-clock true >/dev/null 2>&1; then
    start_server
    perf stat -e task-clock,context-switches,cpu-migrations "$BIN" "$URL" ours "$WALL_N" 2>&1
    stop_server
  else
    echo "perf not usable here (perf stat true failed)"
  fi
}

case $WHAT in
  build) build ;;
  callgrind) build; callgrind ;;
  wall) build; wall ;;
  perf) build; perfstat ;;
  sizes) build; start_server; "$BIN" "$URL" sizes 0; stop_server ;;
  all) build; start_server; "$BIN" "$URL" sizes 0; stop_server; callgrind; wall; perfstat ;;
  *) echo "usage: $0 [all|build|sizes|callgrind|wall|perf]" >&2; exit 2 ;;
esac
