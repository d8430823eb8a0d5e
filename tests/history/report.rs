//! What a run did, in numbers: answers by kind, histories checked,
//! violations, how long callers waited for other holders and how long a
//! woken waiter took to answer after the transition it waited on ended.
//! Printed as the soak's summary table; the soak's progress bar lives here
//! too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::checker::{Verdict, Violation};
use super::model::{Op, Ret};
use super::recorder::Entry;

/// Counters over one or more runs.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub operations: u64,
    pub started: u64,
    pub joined: u64,
    pub absorbed: u64,
    pub already_in_state: u64,
    pub invalid: u64,
    /// Joiners answered `TransitionFailed`.
    pub failed: u64,
    pub abandoned: u64,
    pub outcome_unknown: u64,
    pub fenced: u64,
    pub finished: u64,
    pub not_found: u64,
    pub timeouts: u64,
    /// Calls whose answer was an error the model does not describe.
    pub unknown: u64,
    pub registrations: u64,
    pub removals: u64,
    pub expiries: u64,
    pub histories: u64,
    /// Histories shown to have no linearization.
    pub violations: u64,
    /// Histories the checker could not decide within its budget: neither
    /// passed nor shown wrong (a soak with any fails, like a violation).
    pub undecided: u64,
    pub rounds: u64,
    /// Durations of `begin` calls answered by a join (time spent waiting
    /// for another holder), in microseconds.
    pub waits_us: Vec<u64>,
    /// From the end of a transition (its holder's finish returned) to each
    /// joiner's answer, in microseconds.
    pub wakeups_us: Vec<u64>,
    pub by_scenario: Vec<(String, u64, u64)>,
}

impl Tally {
    /// Counts a run's recorded calls.
    pub fn add_entries(&mut self, entries: &[Entry]) {
        let mut ended: HashMap<(&str, u64), Instant> = HashMap::new();
        for e in entries {
            if let (Op::Finish { fence, .. }, Some(Ret::Finished)) = (&e.op, &e.ret) {
                ended.insert((e.sandbox.as_str(), *fence), e.returned);
            }
        }
        for e in entries {
            if e.error.as_deref() == Some(super::recorder::RETRY_COPY) {
                continue;
            }
            if matches!(e.op, Op::Expire { .. } | Op::Cancel { .. } | Op::Lose) {
                self.expiries += u64::from(matches!(e.op, Op::Expire { .. }));
                continue;
            }
            self.operations += 1;
            let Some(ret) = &e.ret else {
                self.unknown += 1;
                continue;
            };
            let joined_fence = match ret {
                Ret::Started(_) => {
                    self.started += 1;
                    None
                }
                Ret::Joined(f) => {
                    self.joined += 1;
                    Some(*f)
                }
                Ret::TransitionFailed { fence, .. } => {
                    self.failed += 1;
                    Some(*fence)
                }
                Ret::Abandoned(f) => {
                    self.abandoned += 1;
                    Some(*f)
                }
                Ret::OutcomeUnknown(_) => {
                    self.outcome_unknown += 1;
                    None
                }
                Ret::Absorbed(_) => {
                    self.absorbed += 1;
                    None
                }
                Ret::AlreadyInState(_) => {
                    self.already_in_state += 1;
                    None
                }
                Ret::Invalid(_) => {
                    self.invalid += 1;
                    None
                }
                Ret::Fenced => {
                    self.fenced += 1;
                    None
                }
                Ret::Finished => {
                    self.finished += 1;
                    None
                }
                Ret::NotFound => {
                    self.not_found += 1;
                    None
                }
                Ret::Timeout => {
                    self.timeouts += 1;
                    None
                }
                Ret::Created | Ret::Resumed { .. } => {
                    self.registrations += 1;
                    None
                }
                Ret::Removed => {
                    self.removals += 1;
                    None
                }
                _ => None,
            };
            if let Some(f) = joined_fence {
                let waited = e.returned - e.invoked;
                self.waits_us.push(waited.as_micros() as u64);
                if let Some(end) = ended.get(&(e.sandbox.as_str(), f)) {
                    let wake = e.returned.saturating_duration_since(*end);
                    self.wakeups_us.push(wake.as_micros() as u64);
                }
            }
        }
    }

    pub fn add_verdict(&mut self, scenario: &str, verdict: &Verdict) {
        self.histories += verdict.histories as u64;
        self.violations += (verdict.violations.len() - verdict.undecided) as u64;
        self.undecided += verdict.undecided as u64;
        self.rounds += 1;
        match self.by_scenario.iter_mut().find(|(s, _, _)| s == scenario) {
            Some((_, rounds, histories)) => {
                *rounds += 1;
                *histories += verdict.histories as u64;
            }
            None => self
                .by_scenario
                .push((scenario.to_string(), 1, verdict.histories as u64)),
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f += other.$f; )* };
        }
        add!(
            operations,
            started,
            joined,
            absorbed,
            already_in_state,
            invalid,
            failed,
            abandoned,
            outcome_unknown,
            fenced,
            finished,
            not_found,
            timeouts,
            unknown,
            registrations,
            removals,
            expiries,
            histories,
            violations,
            undecided,
            rounds
        );
        self.waits_us.extend(&other.waits_us);
        self.wakeups_us.extend(&other.wakeups_us);
        for (s, r, h) in &other.by_scenario {
            match self.by_scenario.iter_mut().find(|(x, _, _)| x == s) {
                Some((_, rr, hh)) => {
                    *rr += r;
                    *hh += h;
                }
                None => self.by_scenario.push((s.clone(), *r, *h)),
            }
        }
    }

    /// The largest and the 99th-percentile waiting time.
    pub fn wait(&self) -> (Duration, Duration) {
        percentiles(&self.waits_us)
    }

    /// The largest and the 99th-percentile wake-up latency.
    pub fn wakeup(&self) -> (Duration, Duration) {
        percentiles(&self.wakeups_us)
    }

    /// One line for the progress bar.
    pub fn brief(&self) -> String {
        format!(
            "ops {} started {} joined {} histories {} violations {} undecided {}",
            self.operations,
            self.started,
            self.joined,
            self.histories,
            self.violations,
            self.undecided
        )
    }

    /// The summary table.
    pub fn table(&self, title: &str) -> String {
        let (wait_max, wait_p99) = self.wait();
        let (wake_max, wake_p99) = self.wakeup();
        let rows: Vec<(&str, String)> = vec![
            ("operations", self.operations.to_string()),
            ("Started", self.started.to_string()),
            ("Joined", self.joined.to_string()),
            ("Absorbed", self.absorbed.to_string()),
            ("AlreadyInState", self.already_in_state.to_string()),
            ("Invalid", self.invalid.to_string()),
            (
                "Failed (joiner of a failed holder)",
                self.failed.to_string(),
            ),
            ("Abandoned", self.abandoned.to_string()),
            (
                "Abandoned, outcome unknown (aged out / data lost)",
                self.outcome_unknown.to_string(),
            ),
            ("Fenced", self.fenced.to_string()),
            ("holder finishes recorded", self.finished.to_string()),
            ("NotFound", self.not_found.to_string()),
            ("Timeout (bounded wait ran out)", self.timeouts.to_string()),
            (
                "transport errors (answer unknown)",
                self.unknown.to_string(),
            ),
            (
                "holders that died (recorded expiries)",
                self.expiries.to_string(),
            ),
            ("rounds", self.rounds.to_string()),
            ("histories checked", self.histories.to_string()),
            ("violations", self.violations.to_string()),
            (
                "undecided (check budget ran out)",
                self.undecided.to_string(),
            ),
            ("max wait (joined begin)", format!("{wait_max:.1?}")),
            ("p99 wait (joined begin)", format!("{wait_p99:.1?}")),
            ("max wake-up after the end", format!("{wake_max:.1?}")),
            ("p99 wake-up after the end", format!("{wake_p99:.1?}")),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
        let vwidth = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(10);
        let mut out = String::new();
        let _ = writeln!(out, "{title}");
        let _ = writeln!(out, "| {:<width$} | {:>vwidth$} |", "metric", "value");
        let _ = writeln!(
            out,
            "|{}|{}:|",
            "-".repeat(width + 2),
            "-".repeat(vwidth + 1)
        );
        for (k, v) in &rows {
            let _ = writeln!(out, "| {k:<width$} | {v:>vwidth$} |");
        }
        if !self.by_scenario.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "| scenario | rounds | histories |");
            let _ = writeln!(out, "|---|---:|---:|");
            for (s, r, h) in &self.by_scenario {
                let _ = writeln!(out, "| {s} | {r} | {h} |");
            }
        }
        out
    }
}

fn percentiles(samples_us: &[u64]) -> (Duration, Duration) {
    if samples_us.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mut v = samples_us.to_vec();
    v.sort_unstable();
    let max = *v.last().expect("non-empty");
    let idx = ((v.len() as f64) * 0.99).ceil() as usize;
    let p99 = v[idx.saturating_sub(1).min(v.len() - 1)];
    (Duration::from_micros(max), Duration::from_micros(p99))
}

/// The soak's progress bar: elapsed seconds of the planned duration, with
/// the running counters as its message.
pub fn progress_bar(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} s  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A soak's end: prints `table`, the first 20 problems and the first 3
/// violations, and writes the table and every problem and violation to
/// `target/<name>-summary.md`, `-problems.txt` and `-violations.txt`.
/// Returns how many violations are undecided histories (they prove
/// nothing either way: they fail a soak like a violation, counted apart).
pub fn publish_soak(
    name: &str,
    table: &str,
    problems: &[String],
    violations: &[Violation],
) -> usize {
    println!("{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join(format!("{name}-summary.md")), table);
    for p in problems.iter().take(20) {
        println!("problem: {p}");
    }
    for v in violations.iter().take(3) {
        println!("--- sandbox {}: {}\n{}", v.sandbox, v.why, v.excerpt());
    }
    let all: String = violations
        .iter()
        .map(|v| format!("--- sandbox {}: {}\n{}\n", v.sandbox, v.why, v.history))
        .collect();
    let _ = std::fs::write(target.join(format!("{name}-violations.txt")), all);
    let _ = std::fs::write(
        target.join(format!("{name}-problems.txt")),
        problems.join("\n"),
    );
    violations.iter().filter(|v| v.undecided).count()
}
