//! `repair`: drift between records and the namespace's indexes (team id
//! index, expiry and tombstone sets, reservations, the slot's team set, the
//! slot registry), found and fixed by the library's repair
//! (`Coordinator::repair`), one atomic script per team.
//!
//! After a repair that wrote, sandboxctl runs a dry run and reports what it
//! still finds: only that is left (a `corrupt` record, which no script may
//! touch, or drift made meanwhile behind the library's back). The verdict
//! follows: a dry run that found drift, or a repair that left some, fails.

use sandbox_coordinator::{Drift, RepairReport};
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::Server;
use crate::table::Table;

/// One problem, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct DriftReport {
    pub team: String,
    /// `ids`, `expiry`, `tombs`, `resv`, `team`, `teams`, `slots` or `record`.
    pub index: String,
    /// `dangling`, `missing`, `score`, `token`, `field` or `corrupt`.
    pub problem: String,
    /// Sandbox id (team id for `teams`, slot for `slots`).
    pub id: String,
}

impl From<&Drift> for DriftReport {
    fn from(d: &Drift) -> DriftReport {
        DriftReport {
            team: d.team.clone(),
            index: d.index.clone(),
            problem: d.problem.clone(),
            id: d.id.clone(),
        }
    }
}

/// The result, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct RepairSummary {
    pub dry_run: bool,
    pub teams: usize,
    pub records: usize,
    /// Every problem found (and, unless a dry run, fixed).
    pub found: Vec<DriftReport>,
    /// What a dry run after the repair still found (null for a dry run).
    pub left: Option<Vec<DriftReport>>,
}

fn drift_table(drift: &[Drift]) -> String {
    let mut table = Table::new(&["TEAM", "INDEX", "PROBLEM", "ID"]);
    for d in drift {
        table.row(vec![
            d.team.clone(),
            d.index.clone(),
            d.problem.clone(),
            d.id.clone(),
        ]);
    }
    table.render()
}

/// Drift no script may fix: a record that does not parse, or a key of
/// another type (both are left as they are for an operator).
fn needs_a_hand_fix(d: &Drift) -> bool {
    d.problem == "corrupt" || d.problem == "type"
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `sandboxctl repair [--dry-run]`.
pub async fn repair(server: &Server, dry_run: bool, json: bool) -> anyhow::Result<Verdict> {
    let coord = server.coordinator().await?;
    let report: RepairReport = coord.repair(dry_run).await?;
    let left = if dry_run {
        None
    } else {
        Some(coord.repair(true).await?.drift)
    };
    let verdict = match &left {
        None if report.drift.is_empty() => Verdict::Done,
        None => Verdict::Failed,
        Some(left) if left.is_empty() => Verdict::Done,
        Some(_) => Verdict::Failed,
    };
    if json {
        emit_json(&RepairSummary {
            dry_run,
            teams: report.teams,
            records: report.records,
            found: report.drift.iter().map(DriftReport::from).collect(),
            left: left
                .as_ref()
                .map(|l| l.iter().map(DriftReport::from).collect()),
        })?;
        return Ok(verdict);
    }
    let mut text = String::new();
    if !report.drift.is_empty() {
        text.push_str(&drift_table(&report.drift));
    }
    let examined = format!(
        "examined {} and {} in namespace {}",
        plural(report.teams, "team", "teams"),
        plural(report.records, "record", "records"),
        server.namespace().prefix()
    );
    let found = plural(report.drift.len(), "problem", "problems");
    text.push_str(&match (&left, report.drift.is_empty()) {
        (_, true) => format!("{examined}: no drift\n"),
        (None, false) => {
            let by_hand = report.drift.iter().filter(|d| needs_a_hand_fix(d)).count();
            let what = match by_hand {
                0 => "`sandboxctl repair` fixes them".to_string(),
                n if n == report.drift.len() => format!(
                    "`sandboxctl repair` leaves {n} for a hand fix: \
                     a corrupt record or a key of another type"
                ),
                n => format!(
                    "`sandboxctl repair` fixes {} and leaves {n} for a hand fix: \
                     a corrupt record or a key of another type",
                    report.drift.len() - n
                ),
            };
            format!("{examined}: {found} found; dry run, nothing was written ({what})\n")
        }
        (Some(left), false) if left.is_empty() => {
            format!("{examined}: {found} found and fixed; a dry run after it finds none\n")
        }
        (Some(left), false) => format!(
            "{examined}: {found} found and repaired; a dry run after it still finds {} \
             (below: a corrupt record is left as it is)\n{}",
            left.len(),
            drift_table(left)
        ),
    });
    emit(&text)?;
    Ok(verdict)
}
