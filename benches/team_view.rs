//! Team views under load (issue 19): a team of 10,000 sandboxes, 8
//! coordinators each holding its view and listing it 20 times a second,
//! while 500 transitions a second (snapshot: begin + succeed) run on the
//! team. Reports the Redis time reads cost (the views' polls) against the
//! same lists served by `list`, the memory per cached sandbox, the time
//! from a `succeed` returning to the change being visible in every other
//! coordinator's view, and what the announcements add to a transition's
//! Redis time (the same scripts with `announce` stubbed out, alternated in
//! the same run, `INFO commandstats` usec per call).
//!
//! ```text
//! cargo bench --bench team_view            # 10,000 sandboxes, 10 s of load
//! cargo bench --bench team_view -- --quick # 1,000 sandboxes, 3 s (smoke)
//! cargo bench --bench team_view -- --announce  # only the announcements' cost
//! ```
//!
//! Wall-clock figures (staleness, list time) depend on the machine's load;
//! Redis time per call from commandstats does not.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sandbox_coordinator::scripts::{ScriptOptions, assemble};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Lifecycle, NewSandbox, ViewUpdate,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TEAM: &str = "big";
const VIEWS: usize = 8;
const LISTS_PER_SECOND: u64 = 20;
const TRANSITIONS_PER_SECOND: u64 = 500;

struct Server {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("sbx-view-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server {
        child,
        url: format!("redis://127.0.0.1:{port}"),
        dir,
    })
}

/// EVALSHA+EVAL (calls, usec) from `INFO commandstats`.
async fn scripts(conn: &mut redis::aio::MultiplexedConnection) -> Result<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let (mut calls, mut usec) = (0, 0);
    for line in info.lines() {
        if let Some(rest) = line
            .strip_prefix("cmdstat_evalsha:")
            .or_else(|| line.strip_prefix("cmdstat_eval:"))
        {
            for part in rest.split(',') {
                if let Some(v) = part.strip_prefix("calls=") {
                    calls += v.parse::<u64>()?;
                } else if let Some(v) = part.strip_prefix("usec=") {
                    usec += v.parse::<u64>()?;
                }
            }
        }
    }
    Ok((calls, usec))
}

async fn reset(conn: &mut redis::aio::MultiplexedConnection) -> Result<()> {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await?;
    Ok(())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn connect(url: &str) -> Result<Coordinator> {
    Ok(Coordinator::builder(url).pool_size(4).build().await?)
}

/// The begin_snapshot and finish scripts, and the same with everything the
/// announcements do stubbed out: the team's sequence (its INCR, or its
/// check before the writes), the change line (built from the writes, or read
/// back) and the announcement (the wake-up message still published, as
/// before views).
fn script_pair(stub: bool) -> (String, String) {
    let all = assemble(&Lifecycle::sandbox(), ScriptOptions::default());
    let stubs = [
        (
            "local function announce(change, message, now, seq)\n",
            "local function announce(change, message, now, seq)\n  if message then redis.call(PUBLISH, TP .. 'notify', message) end\n  do return end\n",
        ),
        (
            "local function record_change(id)\n",
            "local function record_change(id)\n  do return '' end\n",
        ),
        (
            "local function change_line(id, state, exec, fence, end_ms, action, holder, until_ms, resv, ttl)\n",
            "local function change_line(id, state, exec, fence, end_ms, action, holder, until_ms, resv, ttl)\n  do return '' end\n",
        ),
        (
            "local function sequence_refusal()\n",
            "local function sequence_refusal()\n  do return nil end\n",
        ),
        (
            "local function claim_sequence()\n",
            "local function claim_sequence()\n  do return '0', nil end\n",
        ),
    ];
    let get = |name: &str| {
        let mut s = all
            .iter()
            .find(|s| s.name() == name)
            .expect("script")
            .source()
            .to_string();
        if stub {
            // (A script holds only the helpers it calls: a stub whose helper
            // is not there has nothing to stub. announce is always there.)
            assert!(s.contains(stubs[0].0), "{name} has no announce to stub");
            for (from, to) in stubs {
                s = s.replace(from, to);
            }
        }
        s
    };
    (get("begin_snapshot"), get("finish"))
}

/// `n` snapshot transitions on `id` by raw EVALSHA of `begin`/`finish`:
/// (calls, usec) of the script calls.
async fn raw_transitions(
    conn: &mut redis::aio::MultiplexedConnection,
    coord: &Coordinator,
    (begin, finish): &(String, String),
    id: &str,
    n: usize,
) -> Result<(u64, u64)> {
    let tk = coord.namespace().team(TEAM)?;
    let rec = tk.record(id);
    let begin = redis::Script::new(begin);
    let finish = redis::Script::new(finish);
    reset(conn).await?;
    for i in 0..n {
        let holder = format!("bench/{i}");
        let started: Vec<String> = begin
            .key(&rec)
            .key(tk.expiry())
            .key(tk.tombs())
            .key(tk.ids())
            .key(tk.seq())
            .arg(&tk.prefix)
            .arg(id)
            .arg(&holder)
            .arg(30_000)
            .arg("")
            .arg("0")
            .arg(4_000)
            .invoke_async(conn)
            .await?;
        assert_eq!(started[0], "started", "{started:?}");
        let fence = &started[1];
        let done: Vec<String> = finish
            .key(&rec)
            .key(tk.key(&format!("out:{id}:{fence}")))
            .key(tk.expiry())
            .key(tk.tombs())
            .key(tk.seq())
            .arg(&tk.prefix)
            .arg(id)
            .arg(fence)
            .arg(&holder)
            .arg("snapshot")
            .arg("succeeded")
            .arg("")
            .invoke_async(conn)
            .await?;
        assert_eq!(done[0], "finished", "{done:?}");
    }
    scripts(conn).await
}

/// Alternated rounds of the scripts with and without announcements: the
/// median µs of Redis time per transition (begin + finish) of each.
async fn ab(
    stats: &mut redis::aio::MultiplexedConnection,
    writer: &Coordinator,
    quick: bool,
    subscribers: usize,
) -> Result<()> {
    let n = if quick { 300 } else { 2_000 };
    let rounds = if quick { 5 } else { 9 };
    let (with, without) = (script_pair(false), script_pair(true));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (c, u) = raw_transitions(stats, writer, &with, "ab-1", n).await?;
        a.push(2.0 * u as f64 / c as f64);
        let (c, u) = raw_transitions(stats, writer, &without, "ab-1", n).await?;
        b.push(2.0 * u as f64 / c as f64);
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (with_us, without_us) = (a[rounds / 2], b[rounds / 2]);
    println!(
        "announcements, {subscribers} subscribers: a transition (begin + finish) costs {with_us:.2} µs \
         of Redis time with them, {without_us:.2} µs without: +{:.2} µs (+{:.1}%) \
         (medians of {rounds} alternated rounds of {n}; rounds {a:.1?} vs {b:.1?})",
        with_us - without_us,
        (with_us / without_us - 1.0) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let announce_only = std::env::args().any(|a| a == "--announce");
    let (team_size, load_secs): (usize, u64) = if quick { (1_000, 3) } else { (10_000, 10) };
    let server = start_server()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = redis::Client::open(server.url.as_str())?;
    let mut stats = client.get_multiplexed_async_connection().await?;
    let writer = connect(&server.url).await?;
    if announce_only {
        return announcements_only(&server.url, &mut stats, &writer, quick).await;
    }

    // The team.
    let t = Instant::now();
    let ids: Vec<String> = (0..team_size).map(|i| format!("sb-{i:05}")).collect();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(team_size.div_ceil(32)) {
        let (coord, chunk) = (writer.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                coord
                    .register(NewSandbox {
                        team: TEAM.into(),
                        id,
                        execution: "e1".into(),
                        end_time: Duration::from_secs(3600).into(),
                        data: "{}".into(),
                    })
                    .await?;
            }
            Ok::<_, sandbox_coordinator::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "team: {team_size} sandboxes registered in {:?}",
        t.elapsed()
    );

    // What one `list` of the team costs Redis.
    reset(&mut stats).await?;
    let t = Instant::now();
    let n = writer.list(TEAM).await?.len();
    let (list_calls, list_usec) = scripts(&mut stats).await?;
    println!(
        "list: {n} sandboxes, {list_calls} script calls, {:.1} ms of Redis time, {:?} wall",
        list_usec as f64 / 1e3,
        t.elapsed()
    );

    // What the announcements add to a transition's Redis time, nobody
    // subscribed yet (the announcement itself), then below with the views
    // subscribed (its fan-out to them).
    writer
        .register(NewSandbox {
            team: TEAM.into(),
            id: "ab-1".into(),
            execution: "e1".into(),
            end_time: Duration::from_secs(3600).into(),
            data: "{}".into(),
        })
        .await?;
    ab(&mut stats, &writer, quick, 0).await?;

    // The views: one per coordinator.
    let mut coords = vec![writer.clone()];
    for _ in 1..VIEWS {
        coords.push(connect(&server.url).await?);
    }
    reset(&mut stats).await?;
    let rss_before = rss_bytes();
    let t = Instant::now();
    let mut views = Vec::new();
    for c in &coords {
        views.push(c.team_view(TEAM).await?);
    }
    let (snap_calls, snap_usec) = scripts(&mut stats).await?;
    let rss_after = rss_bytes();
    println!(
        "views: {VIEWS} opened in {:?}; snapshot {:.1} script calls and {:.1} ms of Redis time per view; \
         RSS +{:.1} MB = {:.0} bytes per cached sandbox",
        t.elapsed(),
        snap_calls as f64 / VIEWS as f64,
        snap_usec as f64 / 1e3 / VIEWS as f64,
        (rss_after.saturating_sub(rss_before)) as f64 / 1e6,
        rss_after.saturating_sub(rss_before) as f64 / (VIEWS * team_size) as f64
    );

    // Reads alone for a while: only the views' polls reach Redis.
    let listers = |views: &Vec<sandbox_coordinator::TeamView>| {
        views
            .iter()
            .map(|v| {
                let v = v.clone();
                tokio::spawn(async move {
                    let mut every =
                        tokio::time::interval(Duration::from_millis(1000 / LISTS_PER_SECOND));
                    let mut times = Vec::new();
                    loop {
                        every.tick().await;
                        let t = Instant::now();
                        let n = v.list().len();
                        times.push(t.elapsed());
                        if n == usize::MAX || times.len() > 1_000_000 {
                            return times;
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let quiet = listers(&views);
    reset(&mut stats).await?;
    tokio::time::sleep(Duration::from_secs(load_secs)).await;
    let (q_calls, q_usec) = scripts(&mut stats).await?;
    for l in quiet {
        l.abort();
    }
    println!(
        "reads, no writes, {load_secs} s: {} lists served by the views, {q_calls} script calls \
         (polls), {:.3} ms of Redis time per second; the same lists by `list`: {:.0} ms of Redis time per second",
        VIEWS as u64 * LISTS_PER_SECOND * load_secs,
        q_usec as f64 / 1e3 / load_secs as f64,
        list_usec as f64 / 1e3 * (VIEWS as u64 * LISTS_PER_SECOND) as f64
    );

    // Under load: who saw which change when.
    type Seen = Arc<Mutex<HashMap<(String, u64), Instant>>>;
    let seen: Vec<Seen> = (0..VIEWS).map(|_| Seen::default()).collect();
    let watchers: Vec<_> = views
        .iter()
        .zip(&seen)
        .map(|(v, s)| {
            let (mut updates, s) = (v.updates(), Arc::clone(s));
            tokio::spawn(async move {
                loop {
                    if let ViewUpdate::Sandbox(sb) = updates.next().await
                        && sb.lease.is_none()
                    {
                        s.lock().unwrap().insert((sb.id, sb.fence), Instant::now());
                    }
                }
            })
        })
        .collect();
    let loaded = listers(&views);
    let finished: Arc<Mutex<Vec<(String, u64, Instant)>>> = Arc::default();
    reset(&mut stats).await?;
    let t = Instant::now();
    let mut every =
        tokio::time::interval(Duration::from_micros(1_000_000 / TRANSITIONS_PER_SECOND));
    let mut running = Vec::new();
    let total = TRANSITIONS_PER_SECOND * load_secs;
    for i in 0..total {
        every.tick().await;
        let (coord, id, finished) = (
            writer.clone(),
            ids[i as usize % team_size].clone(),
            Arc::clone(&finished),
        );
        running.push(tokio::spawn(async move {
            if let Ok(Begun::Started(tr)) = coord
                .begin(TEAM, &id, Action::Snapshot, BeginOptions::default())
                .await
            {
                let fence = tr.fence();
                if tr.succeed().await.is_ok() {
                    finished.lock().unwrap().push((id, fence, Instant::now()));
                }
            }
        }));
    }
    for r in running {
        let _ = r.await;
    }
    let took = t.elapsed();
    let (l_calls, l_usec) = scripts(&mut stats).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut list_times = Vec::new();
    for l in loaded {
        l.abort();
        if let Err(e) = l.await
            && e.is_cancelled()
        {
            continue;
        }
    }
    for w in watchers {
        w.abort();
    }
    let finished = finished.lock().unwrap().clone();
    let mut lags = Vec::new();
    let mut missing = 0;
    for (id, fence, at) in &finished {
        let mut worst = Duration::ZERO;
        for s in &seen[1..] {
            match s.lock().unwrap().get(&(id.clone(), *fence)) {
                Some(when) => worst = worst.max(when.saturating_duration_since(*at)),
                None => missing += 1,
            }
        }
        lags.push(worst);
    }
    println!(
        "load: {} transitions in {took:?} ({:.0}/s); {l_calls} script calls, {:.1} µs of Redis time per call",
        finished.len(),
        finished.len() as f64 / took.as_secs_f64(),
        l_usec as f64 / l_calls.max(1) as f64
    );
    println!(
        "staleness (succeed returned -> visible in all {} other views): p50 {:?} p99 {:?} max {:?} \
         ({missing} not seen; 0 when a view applied it before succeed returned)",
        VIEWS - 1,
        quantile(&mut lags, 0.5),
        quantile(&mut lags, 0.99),
        quantile(&mut lags, 1.0),
    );
    for v in &views {
        list_times.push(v.resyncs());
    }
    println!("resyncs per view: {list_times:?}");

    ab(&mut stats, &writer, quick, VIEWS).await?;
    Ok(())
}

/// `--announce`: only what the announcements add to a transition's Redis
/// time, with nobody subscribed and with a view in each of 8 coordinators
/// (on a team of one sandbox).
async fn announcements_only(
    url: &str,
    stats: &mut redis::aio::MultiplexedConnection,
    writer: &Coordinator,
    quick: bool,
) -> Result<()> {
    writer
        .register(NewSandbox {
            team: TEAM.into(),
            id: "ab-1".into(),
            execution: "e1".into(),
            end_time: Duration::from_secs(3600).into(),
            data: "{}".into(),
        })
        .await?;
    ab(stats, writer, quick, 0).await?;
    let mut views = Vec::new();
    for _ in 0..VIEWS {
        let c = connect(url).await?;
        views.push((c.team_view(TEAM).await?, c));
    }
    ab(stats, writer, quick, VIEWS).await?;
    Ok(())
}
