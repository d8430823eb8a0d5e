//! Everything one run measured, and its rendering: the Markdown tables
//! printed at the end (and written to `report.md`), the target-by-target
//! verdicts, and the generated block of `docs/BENCHMARKS.md`.

use std::fmt::Write;
use std::time::Duration;

use crate::commands::{Count, trim};
use crate::load::Run;
use crate::scale::{KeySizes, Step};
use crate::stats::{Summary, bytes, ms, thousands, us};
use crate::wakeup::{Case, Path};

/// Where and how the run happened.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub command: String,
    pub mode: String,
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub redis_version: String,
    pub transport: String,
    pub threads: usize,
    pub load_before: String,
    pub load_after: String,
    pub wall: Duration,
}

/// Throughput at one concurrency: every round of every side.
#[derive(Debug, Clone, Default)]
pub struct Point {
    pub concurrency: usize,
    pub limit: Vec<Run>,
    pub ours: Vec<Run>,
    pub baseline: Vec<Run>,
}

/// Median of the rounds' rates.
pub fn median_rate(runs: &[Run]) -> f64 {
    let mut r: Vec<f64> = runs.iter().map(Run::rate).collect();
    r.sort_by(f64::total_cmp);
    match r.len() {
        0 => 0.0,
        n if n % 2 == 1 => r[n / 2],
        n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
    }
}

fn mean(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
}

fn latency(runs: &[Run]) -> Summary {
    let all: Vec<Duration> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    Summary::of(&all)
}

impl Point {
    /// Transitions/s the limit allows: half the raw `EVALSHA` rate.
    pub fn ceiling(&self) -> f64 {
        median_rate(&self.limit) / 2.0
    }
    pub fn ours(&self) -> f64 {
        median_rate(&self.ours)
    }
    pub fn baseline(&self) -> f64 {
        median_rate(&self.baseline)
    }
}

/// Sequential (concurrency 1) latencies.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    pub rtt: Summary,
    pub ping: Summary,
    pub ours: Summary,
    pub baseline: Summary,
}

/// Commands per transition of each side (the limit's "transition" is two
/// trivial calls).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub ours: Count,
    pub baseline: Count,
    pub limit: Count,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub meta: Meta,
    pub sequential: Option<Sequential>,
    pub points: Vec<Point>,
    pub counts: Option<Counts>,
    pub wake: Vec<Case>,
    pub poll_interval: Duration,
    pub scale: Vec<Step>,
    pub key_sizes: Option<KeySizes>,
    pub scale_teams: usize,
    pub scale_sample: usize,
}

/// One row of the verdict table.
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub verdict: &'static str,
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

impl Results {
    fn point(&self, c: usize) -> Option<&Point> {
        self.points.iter().find(|p| p.concurrency == c)
    }

    /// The 1,000-sandbox (or largest) many-sandboxes case on a path.
    fn many(&self, path: Path) -> Option<&Case> {
        self.wake
            .iter()
            .filter(|c| c.path == path && c.many)
            .max_by_key(|c| c.transitions)
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut v = Vec::new();
        if let Some(Counts {
            ours,
            baseline: base,
            ..
        }) = &self.counts
        {
            let o = ours.client_total();
            v.push(Verdict {
                target: "Commands per uncontended transition: 2".into(),
                measured: format!(
                    "ours {} ({}); baseline {} ({})",
                    o.map(trim).unwrap_or_else(|| "n/a".into()),
                    ours.client_breakdown(),
                    base.client_total()
                        .map(trim)
                        .unwrap_or_else(|| "n/a".into()),
                    base.client_breakdown()
                ),
                verdict: match o {
                    Some(x) => met((x - 2.0).abs() < 1e-9),
                    None => "n/a (no slow log)",
                },
            });
        }
        if let Some(p) = self.point(64) {
            let r = p.ours() / p.ceiling().max(1e-9);
            v.push(Verdict {
                target: "Throughput at concurrency 64 ≥ 70 % of the limit (½ raw EVALSHA rate)"
                    .into(),
                measured: format!(
                    "{}/s of {}/s = {}",
                    thousands(p.ours()),
                    thousands(p.ceiling()),
                    pct(r)
                ),
                verdict: met(r >= 0.70),
            });
            let b = p.ours() / p.baseline().max(1e-9);
            v.push(Verdict {
                target: "Throughput at concurrency 64 ≥ 3 × the baseline".into(),
                measured: format!(
                    "{}/s vs {}/s = {b:.2} ×",
                    thousands(p.ours()),
                    thousands(p.baseline())
                ),
                verdict: met(b >= 3.0),
            });
        }
        if let Some(s) = &self.sequential {
            let two = 2.0 * us(s.rtt.p50);
            let r = us(s.ours.p50) / two.max(1e-9);
            v.push(Verdict {
                target: "Sequential latency p50 ≤ 1.3 × two round trips".into(),
                measured: format!(
                    "{:.0} µs vs 2 × {:.0} µs = {r:.2} ×",
                    us(s.ours.p50),
                    us(s.rtt.p50)
                ),
                verdict: met(r <= 1.3),
            });
        }
        if let Some(c) = self.many(Path::PubSub) {
            let s = c.summary();
            v.push(Verdict {
                target: format!(
                    "Wake-up p99 after succeed, {} waiting sandboxes: < 2 ms",
                    c.transitions
                ),
                measured: format!(
                    "p99 {:.3} ms (p50 {:.3}, max {:.3})",
                    ms(s.p99),
                    ms(s.p50),
                    ms(s.max)
                ),
                verdict: met(s.p99 < Duration::from_millis(2)),
            });
        }
        if let (Some(first), Some(last)) = (self.scale.first(), self.scale.last())
            && self.scale.len() > 1
        {
            let ratio = |s: &Step| median_rate(&s.ours) / median_rate(&s.limit).max(1e-9);
            let cpu = |s: &Step| mean(&s.ours, Run::server_us_per_op);
            let dr = ratio(last) / ratio(first) - 1.0;
            let dc = cpu(last) / cpu(first) - 1.0;
            v.push(Verdict {
                target: format!(
                    "Flat cost from {} to {} sandboxes (within 15 %)",
                    thousands(first.sandboxes as f64),
                    thousands(last.sandboxes as f64)
                ),
                measured: format!(
                    "throughput/limit {:+.1} %, Redis CPU per transition {:+.1} % ({:.1} → {:.1} µs)",
                    dr * 100.0,
                    dc * 100.0,
                    cpu(first),
                    cpu(last)
                ),
                verdict: met(dr.abs() <= 0.15 && dc.abs() <= 0.15),
            });
            v.push(Verdict {
                target: "Redis memory per idle sandbox record reported".into(),
                measured: format!(
                    "{} per idle sandbox at {} (used_memory delta: record + expiry entry; `MEMORY USAGE` of a record {})",
                    bytes(last.bytes_per_sandbox),
                    thousands(last.sandboxes as f64),
                    self.key_sizes
                        .as_ref()
                        .map(|k| bytes(k.record as f64))
                        .unwrap_or_else(|| "n/a".into())
                ),
                verdict: "reported",
            });
        }
        v
    }

    /// All tables as Markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.meta;
        let _ = writeln!(o, "Command: `{}` ({} mode), {}.", m.command, m.mode, m.date);
        let _ = writeln!(
            o,
            "Machine: {} × {}; Redis {} on {}; client: tokio, {} worker threads. \
             Load average before / after: {} / {}. Wall time {:.0} s.",
            m.cores,
            m.cpu,
            m.redis_version,
            m.transport,
            m.threads,
            m.load_before,
            m.load_after,
            m.wall.as_secs_f64()
        );
        let verdicts = self.verdicts();
        if !verdicts.is_empty() {
            let _ = writeln!(o, "\n### Targets\n");
            let _ = writeln!(
                o,
                "| target | measured (one run) | verdict |\n|---|---|---|"
            );
            for v in verdicts {
                let _ = writeln!(o, "| {} | {} | {} |", v.target, v.measured, v.verdict);
            }
        }
        self.throughput_table(&mut o);
        self.sequential_table(&mut o);
        self.count_table(&mut o);
        self.wake_table(&mut o);
        self.scale_table(&mut o);
        o
    }

    fn throughput_table(&self, o: &mut String) {
        if self.points.is_empty() {
            return;
        }
        let rounds = self.points[0].ours.len();
        let _ = writeln!(
            o,
            "\n### Throughput (transitions/s; median of {rounds} interleaved round(s))\n\n\
             Limit = ½ × raw `EVALSHA return 1` calls/s. Pool size = concurrency on every side. \
             Latency = one whole transition (begin + succeed). CPU = µs per transition \
             (Redis server process / this bench process). Script exec = mean time one `EVALSHA` runs \
             inside Redis (`commandstats`), limit vs ours.\n"
        );
        let _ = writeln!(
            o,
            "| concurrency | raw EVALSHA/s | limit | ours | ours p50 / p99 | baseline | baseline p50 / p99 | ours / limit | ours / baseline | CPU Redis / client: limit | ours | baseline | script exec: limit / ours |"
        );
        let _ = writeln!(
            o,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for p in &self.points {
            let (lo, lb) = (latency(&p.ours), latency(&p.baseline));
            let cpu = |runs: &[Run], per_transition: f64| {
                format!(
                    "{:.1} / {:.1}",
                    mean(runs, Run::server_us_per_op) * per_transition,
                    mean(runs, Run::client_us_per_op) * per_transition
                )
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.0} / {:.0} µs | {} | {:.0} / {:.0} µs | {} | {:.2} × | {} | {} | {} | {:.1} / {:.1} µs |",
                p.concurrency,
                thousands(median_rate(&p.limit)),
                thousands(p.ceiling()),
                thousands(p.ours()),
                us(lo.p50),
                us(lo.p99),
                thousands(p.baseline()),
                us(lb.p50),
                us(lb.p99),
                pct(p.ours() / p.ceiling().max(1e-9)),
                p.ours() / p.baseline().max(1e-9),
                cpu(&p.limit, 2.0),
                cpu(&p.ours, 1.0),
                cpu(&p.baseline, 1.0),
                mean(&p.limit, |r| r.evalsha_us().unwrap_or(0.0)),
                mean(&p.ours, |r| r.evalsha_us().unwrap_or(0.0)),
            );
        }
    }

    fn sequential_table(&self, o: &mut String) {
        let Some(s) = &self.sequential else { return };
        let two = 2.0 * us(s.rtt.p50);
        let _ = writeln!(
            o,
            "\n### Sequential latency (concurrency 1, one connection)\n\n\
             | what | n | p50 | p99 | p50 / (2 × RTT) |\n|---|---:|---:|---:|---:|"
        );
        let row = |o: &mut String, what: &str, s: &Summary, ratio: bool| {
            let _ = writeln!(
                o,
                "| {what} | {} | {:.0} µs | {:.0} µs | {} |",
                s.n,
                us(s.p50),
                us(s.p99),
                if ratio {
                    format!("{:.2} ×", us(s.p50) / two.max(1e-9))
                } else {
                    String::new()
                }
            );
        };
        row(o, "round trip: `EVALSHA return 1` (RTT)", &s.rtt, false);
        row(o, "round trip: `PING`", &s.ping, false);
        row(o, "ours: begin + succeed", &s.ours, true);
        row(o, "baseline: begin + complete", &s.baseline, true);
    }

    fn count_table(&self, o: &mut String) {
        let Some(counts) = &self.counts else {
            return;
        };
        let ours = &counts.ours;
        let _ = writeln!(
            o,
            "\n### Commands per transition (`INFO commandstats` deltas over {} sequential transitions; exact)\n\n\
             \"Sent\" = commands the client sent (round trips, plus the baseline's fire-and-forget publishes); \
             \"in scripts\" = commands Redis ran inside Lua on their behalf (told apart with the slow log). \
             \"Redis time\" = execution time inside Redis of what was sent (`commandstats` usec, from a \
             second pass with the slow log off; excludes network I/O and parsing).\n\n\
             | side | sent | sent, by command | in scripts | in scripts, by command | Redis time / transition | Redis time per call |\n\
             |---|---:|---|---:|---|---:|---|",
            ours.transitions
        );
        for (name, c) in [
            ("ours", &counts.ours),
            ("baseline", &counts.baseline),
            ("limit (2 × trivial EVALSHA)", &counts.limit),
        ] {
            let sent = c.client_total();
            let _ = writeln!(
                o,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                sent.map(trim).unwrap_or_else(|| "n/a".into()),
                c.client_breakdown(),
                sent.map(|s| trim(c.executed_total() - s))
                    .unwrap_or_else(|| format!("{} total", trim(c.executed_total()))),
                c.script_breakdown(),
                c.server_us()
                    .map(|u| format!("{u:.1} µs"))
                    .unwrap_or_else(|| "n/a".into()),
                c.server_time_breakdown(),
            );
        }
    }

    fn wake_table(&self, o: &mut String) {
        if self.wake.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n### Wake-up latency after `succeed` returns\n\n\
             Waiters run in a second coordinator (another \"server\"); \"before\" = waiters that \
             returned before the holder's `succeed` did (counted as 0). Poll-only waiters run in a \
             coordinator built with `notifications(false)`; poll interval {:?}, arrivals spread \
             over one interval.\n\n\
             | scenario | path | waiters | p50 | p99 | max | before |\n|---|---|---:|---:|---:|---:|---:|",
            self.poll_interval
        );
        for c in &self.wake {
            let s = c.summary();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {} |",
                c.scenario,
                c.path,
                s.n,
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
                c.before
            );
        }
    }

    fn scale_table(&self, o: &mut String) {
        if self.scale.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\n### Scale (concurrency 64 on {} random sandboxes of the fleet; {} teams)\n\n\
             | sandboxes | seeded in | used_memory | per sandbox | limit | ours | ours / limit | Redis CPU µs / transition | ours p50 / p99 |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            thousands(self.scale_sample as f64),
            self.scale_teams
        );
        for s in &self.scale {
            let limit = median_rate(&s.limit) / 2.0;
            let l = latency(&s.ours);
            let _ = writeln!(
                o,
                "| {} | {:.1} s | {} | {} | {} | {} | {} | {:.1} | {:.0} / {:.0} µs |",
                thousands(s.sandboxes as f64),
                s.seed_secs,
                bytes(s.used_memory as f64),
                bytes(s.bytes_per_sandbox),
                thousands(limit),
                thousands(median_rate(&s.ours)),
                pct(median_rate(&s.ours) / limit.max(1e-9)),
                mean(&s.ours, Run::server_us_per_op),
                us(l.p50),
                us(l.p99),
            );
        }
        if let Some(k) = &self.key_sizes {
            let _ = writeln!(
                o,
                "\n`MEMORY USAGE`: record {} when registered (encoding `{}`; the {}-byte `data` is over \
                 Redis' default `hash-max-listpack-value` 64), {} after its first transition, lease {} \
                 (while a transition runs), recent-outcomes hash {} (kept 10 min after a transition), \
                 expiry index ≈ {:.0} B per member.",
                bytes(k.record as f64),
                k.encoding,
                crate::ours::DATA.len(),
                bytes(k.record_after as f64),
                bytes(k.lease as f64),
                bytes(k.outcomes as f64),
                k.expiry_per_member
            );
        }
    }
}

/// Replaces (or appends) the generated block of `docs/BENCHMARKS.md`.
pub fn splice_docs(existing: Option<String>, generated: &str) -> String {
    const BEGIN: &str = "<!-- BEGIN GENERATED: cargo bench --bench coordination -- --docs -->";
    const END: &str = "<!-- END GENERATED -->";
    let block = format!("{BEGIN}\n{generated}\n{END}");
    match existing {
        Some(text) => match (text.find(BEGIN), text.find(END)) {
            (Some(b), Some(e)) if e > b => {
                format!("{}{block}{}", &text[..b], &text[e + END.len()..])
            }
            _ => format!("{}\n\n{block}\n", text.trim_end()),
        },
        None => format!("# Benchmarks\n\n{block}\n"),
    }
}
