//! The benchmark program: performance of `sandbox-coordinator` as ratios
//! measured in one run against one Redis, because absolute times on shared
//! machines drift.
//!
//! ```text
//! make bench                   # both benches, full runs (coordination: ~6.5 min)
//! cargo bench --bench coordination -- --quick   # smoke run, < 30 s (CI)
//! cargo bench --bench coordination -- --docs    # also rewrites docs/BENCHMARKS.md
//! cargo bench --bench coordination -- --dump-scripts DIR  # what lua_cost.py counts
//! cargo bench --bench coordination -- --help    # every option
//! ```
//!
//! Sections, one module each:
//!
//! - [`limit`]: raw `EVALSHA` of a trivial script (`return 1`) on the same
//!   kind of connection, and the single-connection round trip: the ceiling.
//! - [`minimal`]: a minimal begin/finish script pair doing only the
//!   essential Redis work of a transition: the floor (bench only).
//! - [`ours`]: uncontended `begin` + `succeed` through the library.
//! - [`reference`]: the reference system's lock-based protocol, re-written
//!   here for comparison only (clearly not the library).
//! - [`conns`]: the connection strategies every side is measured on
//!   (`Multiplexed(1)`, the library's default; `Multiplexed(n)`; `Pooled`).
//! - [`commands`]: commands per transition from `INFO commandstats`.
//! - [`instructions`]: instructions Redis executes per transition, per
//!   side, with callgrind (`lua_cost.py`).
//! - [`wakeup`]: waiters joined on in-flight transitions: time from
//!   `succeed` to each waiter's return, over pub/sub and poll-only.
//! - [`scale`]: throughput and memory with 1e3, 1e5, 1e6 sandboxes.
//! - [`report`] and [`plots`]: the tables, verdicts and SVGs.
//!
//! [`side`] names the four sides; [`server`] starts the private
//! `redis-server` (loopback TCP, free port, no persistence) unless
//! `--url`/`REDIS_URL` names one; [`load`] is the closed-loop driver and the
//! command pool; [`stats`] the percentiles.
//!
//! Throughput rounds are interleaved (ceiling, minimal, ours, reference,
//! ceiling, …) on one connection strategy at a time, and the median per side
//! is reported, so drift from other load on the machine hits all four alike.

mod commands;
mod conns;
mod instructions;
mod limit;
mod load;
mod minimal;
mod ours;
mod plots;
mod reference;
mod report;
mod result;
mod scale;
mod server;
mod side;
mod stats;
mod wakeup;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sandbox_coordinator::Coordinator;

use crate::conns::Strategy;
use crate::limit::Limit;
use crate::minimal::Minimal;
use crate::ours::Fleet;
use crate::reference::Reference;
use crate::report::{Meta, Point, Results, Sequential};
use crate::result::{BoxError, Result};
use crate::server::{Admin, Server};
use crate::side::Side;
use crate::stats::Summary;
use crate::wakeup::Path;

/// Benchmarks sandbox-coordinator against the raw Redis limit and the
/// reference lock-based protocol, in one run on one Redis.
#[derive(Parser, Debug)]
#[command(name = "coordination")]
struct Args {
    /// Smoke mode: tiny sizes, well under 30 s (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Use this Redis instead of starting a private one. Nothing is flushed;
    /// keys live under `bench<pid>-*` namespaces and are deleted at the end.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    url: Option<String>,
    /// Concurrencies of the throughput section (default 1,8,64,256).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Round-robin multiplexed connection counts measured besides the
    /// default single connection and the pool (default 2,4).
    #[arg(long, value_delimiter = ',')]
    multiplexed: Option<Vec<usize>>,
    /// Transitions per side of the callgrind count (default 1000).
    #[arg(long)]
    callgrind_n: Option<usize>,
    /// Write the library's assembled scripts (`scripts::assemble` with the
    /// defaults) and the bench's own scripts into DIR, then exit (what
    /// `lua_cost.py` measures).
    #[arg(long, value_name = "DIR")]
    dump_scripts: Option<PathBuf>,
    /// Seconds measured per throughput round and side (default 2).
    #[arg(long)]
    window: Option<f64>,
    /// Interleaved rounds per concurrency (default 3).
    #[arg(long)]
    rounds: Option<usize>,
    /// Fleet sizes of the scale section (default 1000,100000,1000000).
    #[arg(long, value_delimiter = ',')]
    scale: Option<Vec<usize>>,
    /// Only these sections.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Option<Vec<Section>>,
    /// Tokio worker threads of the client (default: 2, this machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where report.md and the SVGs go.
    #[arg(long, default_value_os_t = workspace().join("target/bench"))]
    out: PathBuf,
    /// Also rewrite the generated block of docs/BENCHMARKS.md and
    /// docs/bench-throughput.svg, docs/bench-wakeup.svg.
    #[arg(long)]
    docs: bool,
    /// Run even when not started by `cargo bench` (which passes --bench).
    #[arg(long)]
    run: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Throughput,
    Commands,
    Instructions,
    Wakeup,
    Scale,
}

/// Sizes of one run.
struct Plan {
    concurrency: Vec<usize>,
    /// Strategies measured at concurrencies above 1 (at 1 only the default:
    /// one request in flight uses one connection whatever the strategy).
    strategies: Vec<Strategy>,
    callgrind_n: usize,
    warmup: Duration,
    window: Duration,
    rounds: usize,
    /// Sequential latency: blocks × ops per block, per side.
    seq_blocks: usize,
    seq_block: usize,
    /// Transitions counted for commands per transition.
    count_n: u64,
    /// (K waiters on one transition, rounds).
    on_one: Vec<(usize, usize)>,
    poll_k: usize,
    many_sandboxes: usize,
    many_waiters: usize,
    poll_interval: Duration,
    scale: Vec<usize>,
    scale_sample: usize,
    scale_rounds: usize,
    teams: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let mut p = if args.quick {
            Plan {
                concurrency: vec![1, 64],
                strategies: vec![],
                callgrind_n: 200,
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(300),
                rounds: 1,
                seq_blocks: 2,
                seq_block: 150,
                count_n: 50,
                on_one: vec![(1, 5), (10, 3), (100, 2)],
                poll_k: 100,
                many_sandboxes: 100,
                many_waiters: 2,
                poll_interval: Duration::from_millis(250),
                scale: vec![1_000, 10_000],
                scale_sample: 1_024,
                scale_rounds: 1,
                teams: 10,
            }
        } else {
            Plan {
                concurrency: vec![1, 8, 64, 256],
                strategies: vec![],
                callgrind_n: 1000,
                warmup: Duration::from_millis(400),
                window: Duration::from_millis(1500),
                rounds: 3,
                seq_blocks: 6,
                seq_block: 500,
                count_n: 500,
                on_one: vec![(1, 100), (10, 40), (100, 10), (1_000, 5)],
                poll_k: 1_000,
                many_sandboxes: 1_000,
                many_waiters: 2,
                poll_interval: Duration::from_secs(1),
                scale: vec![1_000, 100_000, 1_000_000],
                scale_sample: 4_096,
                scale_rounds: 3,
                teams: 10,
            }
        };
        let multiplexed = args.multiplexed.clone().unwrap_or_else(|| vec![2, 4]);
        p.strategies = std::iter::once(Strategy::DEFAULT)
            .chain(std::iter::once(Strategy::Pooled))
            .chain(
                multiplexed
                    .into_iter()
                    .filter(|&n| n > 1)
                    .map(Strategy::Multiplexed),
            )
            .collect();
        if let Some(n) = args.callgrind_n {
            p.callgrind_n = n.max(10);
        }
        if let Some(c) = &args.concurrency {
            p.concurrency = c.iter().copied().filter(|&c| c > 0).collect();
        }
        if let Some(w) = args.window {
            p.window = Duration::from_secs_f64(w.max(0.05));
        }
        if let Some(r) = args.rounds {
            p.rounds = r.max(1);
        }
        if let Some(s) = &args.scale {
            p.scale = s.clone();
            p.scale.sort_unstable();
        }
        p
    }

    fn steps(&self, on: impl Fn(Section) -> bool) -> u64 {
        let mut n = 0;
        if on(Section::Throughput) {
            let per_c: usize = self
                .concurrency
                .iter()
                .map(|&c| self.strategies_at(c).len())
                .sum();
            n += 2 + (per_c * self.rounds * Side::ALL.len()) as u64;
        }
        if on(Section::Commands) {
            n += 3;
        }
        if on(Section::Instructions) {
            n += 1;
        }
        if on(Section::Wakeup) {
            n += self.on_one.len() as u64 + 3;
        }
        if on(Section::Scale) {
            n += (self.scale.len() * (1 + self.scale_rounds)) as u64 + 1;
        }
        n
    }
}

impl Plan {
    fn strategies_at(&self, c: usize) -> Vec<Strategy> {
        if c <= 1 {
            vec![Strategy::DEFAULT]
        } else {
            self.strategies.clone()
        }
    }
}

/// The progress bar; plain lines on stderr when it is not a terminal.
struct Progress {
    bar: ProgressBar,
    plain: bool,
    started: Instant,
}

impl Progress {
    fn new(steps: u64) -> Progress {
        let plain = !std::io::stderr().is_terminal();
        let bar = if plain {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:32.cyan/blue}] {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        Progress {
            bar,
            plain,
            started: Instant::now(),
        }
    }

    /// Announces the step about to run (and counts the previous one done).
    fn step(&self, what: impl Into<String>) {
        let what = what.into();
        if self.plain {
            eprintln!("[{:>5.1} s] {what}", self.started.elapsed().as_secs_f64());
        }
        self.bar.set_message(what);
    }

    fn done(&self) {
        self.bar.inc(1);
    }

    fn note(&self, line: impl AsRef<str>) {
        self.bar.suspend(|| eprintln!("{}", line.as_ref()));
    }
}

/// The repository's root (this package is its `benches/` directory).
fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn main() {
    // cargo-nextest lists the tests of every target, this one included
    // (`--list --format terse`): there are none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let args = Args::parse();
    if let Some(dir) = &args.dump_scripts {
        match instructions::dump_scripts(dir) {
            Ok(n) => eprintln!("wrote {n} scripts to {}", dir.display()),
            Err(e) => {
                eprintln!("--dump-scripts: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if !args.bench && !args.run && !args.quick {
        eprintln!(
            "coordination bench: run it with `make bench` or \
             `cargo bench --bench coordination -- [--quick]` \
             (or pass --run)"
        );
        return;
    }
    let threads = args.threads.unwrap_or(2).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(args, threads)) {
        eprintln!("\nbench failed: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args, threads: usize) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::new(&args);
    // The callgrind count is slow (Redis under valgrind): in --quick runs
    // only when asked for by name.
    let on = |s: Section| match &args.only {
        Some(o) => o.contains(&s),
        None => !(args.quick && s == Section::Instructions),
    };
    let server = Server::start(args.url.clone())?;
    let admin = Admin::connect(&server.url).await?;
    let ns = Namespaces::new(server.private);
    let mut results = Results {
        meta: meta(&args, &admin, &server, threads).await?,
        poll_interval: plan.poll_interval,
        scale_teams: plan.teams,
        scale_sample: plan.scale_sample,
        ..Default::default()
    };
    eprintln!(
        "coordination bench ({}): Redis {} on {}",
        results.meta.mode, results.meta.redis_version, results.meta.transport
    );
    let progress = Progress::new(plan.steps(on));

    let outcome = async {
        // Commands first: the throughput section reads the Redis time of
        // each window with the count's split of sent / in-script commands.
        if on(Section::Commands) {
            results.counts = Some(count(&plan, &server, &admin, &ns, &progress).await?);
        }
        if on(Section::Throughput) {
            throughput(&plan, &server, &admin, &ns, &progress, &mut results).await?;
        }
        if on(Section::Instructions) {
            progress.step(format!(
                "instructions: callgrind, {} transitions per side",
                plan.callgrind_n
            ));
            match instructions::measure(plan.callgrind_n) {
                Ok(i) => results.instructions = Some(i),
                Err(e) => progress.note(format!("  instructions skipped: {e}")),
            }
            progress.done();
        }
        if on(Section::Wakeup) {
            wake(&plan, &server, &ns, &progress, &mut results).await?;
        }
        if on(Section::Scale) {
            scale(&plan, &server, &admin, &ns, &progress, &mut results).await?;
        }
        Ok::<_, BoxError>(())
    }
    .await;
    progress.bar.finish_and_clear();
    if !server.private {
        let deleted = admin.delete_matching(&format!("{}*", ns.base)).await?;
        eprintln!("deleted {deleted} bench keys from the external server");
    }
    outcome?;

    results.meta.load_after = loadavg();
    results.meta.wall = started.elapsed();
    let text = results.markdown();
    println!("\n{text}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.md"), &text)?;
    plots::throughput(&results, &args.out.join("bench-throughput.svg"))?;
    plots::wakeup(&results, &args.out.join("bench-wakeup.svg"))?;
    eprintln!("wrote {}/{{report.md, bench-*.svg}}", args.out.display());
    if args.docs {
        let docs = workspace().join("docs");
        std::fs::create_dir_all(&docs)?;
        let md = docs.join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&md).ok();
        std::fs::write(&md, report::splice_docs(existing, &text))?;
        plots::throughput(&results, &docs.join("bench-throughput.svg"))?;
        plots::wakeup(&results, &docs.join("bench-wakeup.svg"))?;
        eprintln!("updated {} and its plots", md.display());
    }
    Ok(())
}

/// Key namespaces of each section (per process on a shared server).
struct Namespaces {
    base: String,
    private: bool,
}

impl Namespaces {
    fn new(private: bool) -> Namespaces {
        Namespaces {
            base: format!("bench{}-", std::process::id()),
            private,
        }
    }

    fn get(&self, section: &str) -> String {
        // On the private server the scale section uses the library's
        // default prefix, so key sizes are the production ones.
        if self.private && section == "scale" {
            return "sbx".into();
        }
        format!("{}{section}", self.base)
    }
}

/// A coordinator with the library's defaults (one multiplexed connection).
async fn coordinator(server: &Server, ns: &str) -> Result<Coordinator> {
    ours::coordinator(&server.url, ns, Strategy::DEFAULT, 1).await
}

async fn meta(args: &Args, admin: &Admin, server: &Server, threads: usize) -> Result<Meta> {
    let info = admin.info("server").await?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let passed: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let command = if passed.is_empty() {
        "cargo bench --bench coordination".to_string()
    } else {
        format!("cargo bench --bench coordination -- {}", passed.join(" "))
    };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(Meta {
        command,
        mode: if args.quick { "quick" } else { "full" }.into(),
        date,
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        redis_version: info.get("redis_version").cloned().unwrap_or_default(),
        transport: server.transport.clone(),
        threads,
        load_before: loadavg(),
        ..Default::default()
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The four sides on one connection strategy, for `concurrency` tasks.
struct Sides {
    limit: Arc<Limit>,
    minimal: Arc<Minimal>,
    ours: Coordinator,
    reference: Arc<Reference>,
}

/// Namespaces of the throughput section's sides.
struct SideNs {
    minimal: String,
    ours: String,
    reference: String,
}

impl Sides {
    async fn new(server: &Server, ns: &SideNs, strategy: Strategy, c: usize) -> Result<Sides> {
        Ok(Sides {
            limit: Arc::new(Limit::new(&server.url, strategy, c).await?),
            minimal: Arc::new(Minimal::new(&server.url, strategy, c, &ns.minimal).await?),
            ours: ours::coordinator(&server.url, &ns.ours, strategy, c).await?,
            reference: Arc::new(Reference::new(&server.url, strategy, c, &ns.reference).await?),
        })
    }

    async fn run(
        &self,
        side: Side,
        plan: &Plan,
        fleet: &Fleet,
        admin: &Admin,
        c: usize,
    ) -> Result<load::Run> {
        let (w, win) = (plan.warmup, plan.window);
        match side {
            Side::Ceiling => self.limit.throughput(admin, c, w, win).await,
            Side::Minimal => self.minimal.throughput(fleet, admin, c, w, win).await,
            Side::Ours => ours::throughput(&self.ours, fleet, admin, c, w, win).await,
            Side::Reference => {
                let run = self.reference.throughput(fleet, admin, c, w, win).await;
                self.reference.settle().await;
                run
            }
        }
    }
}

/// Sections 1–4: ceiling, minimal pair, ours and the reference protocol,
/// sequential and at each concurrency on each connection strategy,
/// interleaved.
async fn throughput(
    plan: &Plan,
    server: &Server,
    admin: &Admin,
    ns: &Namespaces,
    progress: &Progress,
    results: &mut Results,
) -> Result<()> {
    let max_c = plan.concurrency.iter().copied().max().unwrap_or(1);
    let fleet = Fleet::new(0, (16 * max_c).max(4_096), 16);
    let side_ns = SideNs {
        minimal: ns.get("min"),
        ours: ns.get("tp"),
        reference: ns.get("ref"),
    };
    progress.step(format!("registering {} sandboxes", fleet.ids.len()));
    let setup = coordinator(server, &side_ns.ours).await?;
    fleet.register(&setup, 64).await?;
    drop(setup);
    let seeding = Sides::new(server, &side_ns, Strategy::DEFAULT, 1).await?;
    seeding.minimal.seed(&fleet).await?;
    seeding.reference.seed(&fleet).await?;
    drop(seeding);
    progress.done();

    progress.step("sequential latency (concurrency 1, one connection)");
    let sides = Sides::new(server, &side_ns, Strategy::DEFAULT, 1).await?;
    let n = fleet.ids.len() as u64;
    let pick = |i: u64| &fleet.ids[(i % n) as usize];
    let (mut rtt, mut ping, mut m, mut o, mut b) = (vec![], vec![], vec![], vec![], vec![]);
    let warm = plan.seq_block / 5;
    for block in 0..plan.seq_blocks {
        let w = if block == 0 { warm } else { 0 };
        let off = (block * plan.seq_block) as u64;
        rtt.extend(load::sequential(w, plan.seq_block, |_| sides.limit.call()).await?);
        ping.extend(load::sequential(w, plan.seq_block, |_| sides.limit.ping()).await?);
        m.extend(
            load::sequential(w, plan.seq_block, |i| {
                let (team, id) = pick(off + i);
                sides.minimal.transition(team, id)
            })
            .await?,
        );
        o.extend(
            load::sequential(w, plan.seq_block, |i| {
                let (team, id) = pick(off + i);
                ours::transition(&sides.ours, team, id)
            })
            .await?,
        );
        b.extend(
            load::sequential(w, plan.seq_block, |i| {
                let (team, id) = pick(off + i);
                sides.reference.transition(team, id)
            })
            .await?,
        );
    }
    sides.reference.settle().await;
    results.sequential = Some(Sequential {
        rtt: Summary::of(&rtt),
        ping: Summary::of(&ping),
        minimal: Summary::of(&m),
        ours: Summary::of(&o),
        reference: Summary::of(&b),
    });
    drop(sides);
    progress.done();

    for &c in &plan.concurrency {
        for strategy in plan.strategies_at(c) {
            let sides = Sides::new(server, &side_ns, strategy, c).await?;
            let mut point = Point::new(c, strategy);
            for r in 1..=plan.rounds {
                for side in Side::ALL {
                    progress.step(format!(
                        "{side}, concurrency {c}, {}, round {r}/{}",
                        strategy.label(c),
                        plan.rounds
                    ));
                    let run = sides.run(side, plan, &fleet, admin, c).await?;
                    point.push(side, run);
                    progress.done();
                }
            }
            progress.note(format!(
                "  c={c:<4} {:<15} ceiling {:>7.0}/s  minimal {:>7.0}/s  ours {:>7.0}/s  reference {:>7.0}/s",
                strategy.label(c),
                point.rate(Side::Ceiling),
                point.rate(Side::Minimal),
                point.rate(Side::Ours),
                point.rate(Side::Reference),
            ));
            results.points.push(point);
        }
    }
    Ok(())
}

/// Section 0: commands per transition, every side, one connection.
async fn count(
    plan: &Plan,
    server: &Server,
    admin: &Admin,
    ns: &Namespaces,
    progress: &Progress,
) -> Result<report::Counts> {
    let fleet = Fleet::new(0, 64, 4);
    let side_ns = SideNs {
        minimal: ns.get("countmin"),
        ours: ns.get("count"),
        reference: ns.get("countref"),
    };
    let sides = Sides::new(server, &side_ns, Strategy::DEFAULT, 1).await?;
    fleet.register(&sides.ours, 1).await?;
    sides.minimal.seed(&fleet).await?;
    sides.reference.seed(&fleet).await?;
    let pick = |i: u64| &fleet.ids[i as usize % fleet.ids.len()];
    // One unmeasured transition each, so every connection exists already.
    let (t0, i0) = pick(0);
    ours::transition(&sides.ours, t0, i0).await?;
    sides.minimal.transition(t0, i0).await?;
    sides.reference.transition(t0, i0).await?;
    sides.reference.settle().await;
    sides.limit.call().await?;

    progress.step("commands per transition: ours");
    let o = commands::count(
        admin,
        plan.count_n,
        |i| {
            let (team, id) = pick(i);
            ours::transition(&sides.ours, team, id)
        },
        || async {},
    )
    .await?;
    progress.done();
    progress.step("commands per transition: minimal pair");
    let m = commands::count(
        admin,
        plan.count_n,
        |i| {
            let (team, id) = pick(i);
            sides.minimal.transition(team, id)
        },
        || async {},
    )
    .await?;
    progress.done();
    progress.step("commands per transition: reference, ceiling");
    let b = commands::count(
        admin,
        plan.count_n,
        |i| {
            let (team, id) = pick(i);
            sides.reference.transition(team, id)
        },
        || sides.reference.settle(),
    )
    .await?;
    // The ceiling's "transition": two trivial calls.
    let l = commands::count(
        admin,
        plan.count_n,
        |_| async {
            sides.limit.call().await?;
            sides.limit.call().await
        },
        || async {},
    )
    .await?;
    progress.done();
    Ok(report::Counts {
        ours: o,
        minimal: m,
        reference: b,
        limit: l,
    })
}

/// Section 5: wake-up latency, pub/sub and poll only.
async fn wake(
    plan: &Plan,
    server: &Server,
    ns: &Namespaces,
    progress: &Progress,
    results: &mut Results,
) -> Result<()> {
    let wake_ns = ns.get("wake");
    let holder = coordinator(server, &wake_ns).await?;
    let waiters = coordinator(server, &wake_ns).await?;
    let fleet = Fleet::new(0, plan.many_sandboxes, 10);
    let single = Fleet::new(plan.many_sandboxes, 1, 10);
    fleet.register(&holder, 32).await?;
    single.register(&holder, 1).await?;
    let target = single.ids[0].clone();

    for &(k, rounds) in &plan.on_one {
        progress.step(format!(
            "wake-up: {k} waiter(s) on one transition × {rounds}"
        ));
        let case = wakeup::joined_on_one(&holder, &waiters, &target, k, rounds, Path::PubSub, None)
            .await?;
        results.wake.push(case);
        progress.done();
    }
    progress.step(format!(
        "wake-up: {} sandboxes × {} waiters, pub/sub",
        plan.many_sandboxes, plan.many_waiters
    ));
    let case = wakeup::many_sandboxes(
        &holder,
        &waiters,
        &fleet,
        plan.many_waiters,
        Path::PubSub,
        None,
    )
    .await?;
    results.wake.push(case);
    progress.done();
    drop(waiters);

    progress.step("wake-up: poll only (notifications off)");
    let polled = Coordinator::builder(server.url.as_str())
        .namespace(&wake_ns)
        .poll_interval(plan.poll_interval)
        .notifications(false)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await?;
    let stagger = Some(plan.poll_interval);
    let one = wakeup::joined_on_one(
        &holder,
        &polled,
        &target,
        plan.poll_k,
        1,
        Path::PollOnly,
        stagger,
    )
    .await?;
    progress.done();
    progress.step(format!(
        "wake-up: {} sandboxes × {} waiters, poll only",
        plan.many_sandboxes, plan.many_waiters
    ));
    let many = wakeup::many_sandboxes(
        &holder,
        &polled,
        &fleet,
        plan.many_waiters,
        Path::PollOnly,
        stagger,
    )
    .await?;
    results.wake.push(one);
    results.wake.push(many);
    progress.done();
    Ok(())
}

/// Section 6: throughput and memory as the fleet grows.
async fn scale(
    plan: &Plan,
    server: &Server,
    admin: &Admin,
    ns: &Namespaces,
    progress: &Progress,
    results: &mut Results,
) -> Result<()> {
    let scale_ns = ns.get("scale");
    if server.private {
        // The sections before leave millions of outcome keys (kept for the
        // outcome retention); their expiry would run in the scale windows.
        admin.cmd::<()>(&redis::cmd("FLUSHALL")).await?;
    }
    let mut scale = scale::Scale::new(&server.url, &scale_ns, plan.teams).await?;
    let coord = coordinator(server, &scale_ns).await?;
    let limit = Arc::new(Limit::new(&server.url, Strategy::DEFAULT, 64).await?);
    for &n in &plan.scale {
        progress.step(format!("scale: seeding to {n} sandboxes"));
        let seed_secs = scale.grow(admin, n).await?;
        scale.check_layout(&coord).await?;
        let (used_memory, bytes_per_sandbox) = scale.memory(admin).await?;
        progress.done();
        let fleet = scale.sample(plan.scale_sample);
        let mut step = scale::Step {
            sandboxes: n,
            used_memory,
            bytes_per_sandbox,
            seed_secs,
            ours: Vec::new(),
            limit: Vec::new(),
        };
        for r in 1..=plan.scale_rounds {
            progress.step(format!(
                "scale: {n} sandboxes, round {r}/{}",
                plan.scale_rounds
            ));
            step.limit.push(
                limit
                    .throughput(admin, 64, plan.warmup, plan.window)
                    .await?,
            );
            step.ours
                .push(ours::throughput(&coord, &fleet, admin, 64, plan.warmup, plan.window).await?);
            progress.done();
        }
        progress.note(format!(
            "  {n:>8} sandboxes: ours {:>8.0}/s, limit {:>8.0}/s, {:.0} B/sandbox",
            report::median_rate(&step.ours),
            report::median_rate(&step.limit) / 2.0,
            bytes_per_sandbox
        ));
        results.scale.push(step);
    }
    progress.step("scale: key sizes");
    results.key_sizes = Some(scale.key_sizes(admin, &coord).await?);
    progress.done();
    Ok(())
}
