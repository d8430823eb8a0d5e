//! The demo's closing report: what happened per action, with latency
//! percentiles, the fleet's upkeep and final states, and the invariant
//! checks with PASS/FAIL — as a table for people or JSON for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use sandbox_coordinator::Action;
use serde::Serialize;

use super::invariants::Check;
use super::ledger::{Answer, LifecycleEvents, Request};
use crate::table::{Table, millis, span};

/// What the requests of one action (or of all) came to.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub action: String,
    pub requests: usize,
    /// Held the transition (whatever its work then did).
    pub started: usize,
    pub joined: usize,
    pub absorbed: usize,
    /// Already in the target state.
    pub same: usize,
    pub invalid: usize,
    /// The work failed (holders, and joiners of a failed transition).
    pub failed: usize,
    /// The holder crashed (holders, and joiners of an abandoned transition).
    pub abandoned: usize,
    /// The holder's finish was refused: it stalled or lost its lease.
    pub fenced: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Tally {
    fn of(action: &str, requests: &[&Request]) -> Tally {
        let mut t = Tally {
            action: action.to_string(),
            requests: requests.len(),
            ..Tally::default()
        };
        for r in requests {
            if r.answer.held().is_some() {
                t.started += 1;
            }
            if r.answer.joined().is_some() {
                t.joined += 1;
            }
            match &r.answer {
                Answer::Absorbed => t.absorbed += 1,
                Answer::AlreadyInState => t.same += 1,
                Answer::Invalid => t.invalid += 1,
                Answer::HolderFailed { .. } | Answer::JoinedFailed { .. } => t.failed += 1,
                Answer::Crashed { .. } | Answer::JoinedAbandoned { .. } => t.abandoned += 1,
                Answer::Fenced { .. } | Answer::LostLease { .. } => t.fenced += 1,
                Answer::Unexpected { .. }
                | Answer::HolderError { .. }
                | Answer::StaleAccepted { .. } => t.errors += 1,
                Answer::Succeeded { .. } | Answer::Joined { .. } => {}
            }
        }
        let mut latencies: Vec<Duration> = requests.iter().map(|r| r.latency).collect();
        latencies.sort();
        t.p50_ms = percentile_ms(&latencies, 50.0);
        t.p99_ms = percentile_ms(&latencies, 99.0);
        t
    }
}

/// Nearest-rank percentile of sorted latencies, in ms (0 when empty).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let d = sorted[rank.clamp(1, sorted.len()) - 1];
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub servers: usize,
    pub sandboxes: usize,
    pub teams: usize,
    pub requests: usize,
    pub seed: u64,
    pub redis: String,
    pub namespace: String,
    pub elapsed_ms: u64,
    pub actions: Vec<Tally>,
    pub resumes: usize,
    pub recycles: usize,
    pub final_states: BTreeMap<String, usize>,
    pub invariants: Vec<Check>,
    pub pass: bool,
}

pub struct Setup {
    pub servers: usize,
    pub sandboxes: usize,
    pub teams: usize,
    pub seed: u64,
    pub redis: String,
    pub namespace: String,
}

impl Report {
    pub fn new(
        setup: Setup,
        requests: &[Request],
        lifecycle: &LifecycleEvents,
        final_states: BTreeMap<String, usize>,
        invariants: Vec<Check>,
        elapsed: Duration,
    ) -> Report {
        let mut actions: Vec<Tally> = Action::ALL
            .iter()
            .map(|a| {
                let of: Vec<&Request> = requests.iter().filter(|r| r.action == *a).collect();
                Tally::of(a.as_str(), &of)
            })
            .collect();
        let all: Vec<&Request> = requests.iter().collect();
        actions.push(Tally::of("all", &all));
        Report {
            servers: setup.servers,
            sandboxes: setup.sandboxes,
            teams: setup.teams,
            requests: requests.len(),
            seed: setup.seed,
            redis: setup.redis,
            namespace: setup.namespace,
            elapsed_ms: millis(elapsed),
            actions,
            resumes: lifecycle.resumes,
            recycles: lifecycle.recycles,
            pass: invariants.iter().all(|c| c.pass),
            final_states,
            invariants,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\nwhat happened ({} requests from {} API servers to {} sandboxes)\n\n",
            self.requests, self.servers, self.sandboxes
        ));
        let mut table = Table::new(&[
            "ACTION",
            "REQUESTS",
            "STARTED",
            "JOINED",
            "ABSORBED",
            "SAME",
            "INVALID",
            "FAILED",
            "ABANDONED",
            "FENCED",
            "ERRORS",
            "P50",
            "P99",
        ])
        .right_align(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        for t in &self.actions {
            table.row(vec![
                t.action.clone(),
                t.requests.to_string(),
                t.started.to_string(),
                t.joined.to_string(),
                t.absorbed.to_string(),
                t.same.to_string(),
                t.invalid.to_string(),
                t.failed.to_string(),
                t.abandoned.to_string(),
                t.fenced.to_string(),
                t.errors.to_string(),
                span(Duration::from_secs_f64(t.p50_ms / 1e3)),
                span(Duration::from_secs_f64(t.p99_ms / 1e3)),
            ]);
        }
        out.push_str(&table.render());
        out.push_str(
            "\n  started   the request held the transition and did the (simulated) work\n\
             \x20 joined    the same transition was in flight: it shared that one's outcome\n\
             \x20 absorbed  the state already covered it (a kill of a paused sandbox)\n\
             \x20 same      the sandbox already was in the target state\n\
             \x20 invalid   the lifecycle forbids it from the state it met (e.g. snapshot while pausing)\n\
             \x20 failed    the work failed (its holder, and those who joined it)\n\
             \x20 abandoned the holder crashed; its lease expired and waiters were told\n\
             \x20 fenced    the holder stalled past its lease; its late finish was refused\n\
             \x20 p50/p99   request to answer, including waits and the simulated work\n",
        );
        out.push_str(&format!(
            "\nbetween bursts: {} resumes (new incarnation over a paused sandbox), \
             {} re-registrations (killed sandbox removed, registered again)\n",
            self.resumes, self.recycles
        ));
        let states: Vec<String> = self
            .final_states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        out.push_str(&format!("final states: {}\n", states.join(", ")));

        out.push_str("\ninvariant checks\n\n");
        let width = self
            .invariants
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for c in &self.invariants {
            out.push_str(&format!(
                "  {}  {:<width$}  {}\n",
                if c.pass { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        let failed = self.invariants.iter().filter(|c| !c.pass).count();
        let elapsed = span(Duration::from_millis(self.elapsed_ms));
        if failed == 0 {
            out.push_str(&format!(
                "\nall {} invariants held ({elapsed})\n",
                self.invariants.len()
            ));
        } else {
            out.push_str(&format!(
                "\n{failed} of {} invariants VIOLATED ({elapsed})\n",
                self.invariants.len()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
        assert_eq!(percentile_ms(&v[..1], 99.0), 1.0);
    }

    #[test]
    fn one_failed_check_fails_the_report() {
        let check = |pass| Check {
            name: "some invariant",
            pass,
            detail: "detail".into(),
        };
        let setup = || Setup {
            servers: 1,
            sandboxes: 1,
            teams: 1,
            seed: 1,
            redis: "r".into(),
            namespace: "n".into(),
        };
        let events = LifecycleEvents::default();
        let report = Report::new(
            setup(),
            &[],
            &events,
            BTreeMap::new(),
            vec![check(true), check(false)],
            Duration::ZERO,
        );
        assert!(!report.pass);
        let text = report.text();
        assert!(text.contains("  FAIL  some invariant"), "{text}");
        assert!(text.contains("1 of 2 invariants VIOLATED"), "{text}");
        let report = Report::new(
            setup(),
            &[],
            &events,
            BTreeMap::new(),
            vec![check(true)],
            Duration::ZERO,
        );
        assert!(report.pass);
    }
}
