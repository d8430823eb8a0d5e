//! `watch --team T --changes`: every change of one team's sandboxes, as the
//! team's live view ([`sandbox_coordinator::TeamView`]) applies it — from
//! the announcements the scripts publish with each change, in sequence
//! order; after a re-read (a missed announcement, a reconnect) it says so
//! and goes on from the team as re-read.

use std::time::SystemTime;

use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json_line};
use crate::server::Server;
use sandbox_coordinator::ViewUpdate;

/// One change, as printed in JSON.
#[derive(Debug, Serialize)]
struct ChangeReport {
    received: String,
    team: String,
    seq: u64,
    /// `sandbox`, `removed`, `team` (a reservation or the limit) or
    /// `resynced` (the view re-read the team).
    kind: &'static str,
    id: Option<String>,
    state: Option<String>,
    execution: Option<String>,
    fence: Option<u64>,
    holder: Option<String>,
}

pub async fn follow(
    server: &Server,
    team: &str,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<Verdict> {
    let coord = server.following_coordinator().await?;
    let view = coord.team_view(team).await?;
    let mut updates = view.updates();
    eprintln!(
        "sandboxctl: following team {team} ({} sandboxes at sequence {}; Ctrl-C to stop)",
        view.list().len(),
        view.seq()
    );
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let update = updates.next().await;
        let mut report = ChangeReport {
            received: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            team: team.to_string(),
            seq: view.seq(),
            kind: "team",
            id: None,
            state: None,
            execution: None,
            fence: None,
            holder: None,
        };
        let text = match update {
            ViewUpdate::Sandbox(s) => {
                report.kind = "sandbox";
                let line = format!(
                    "{team}/{}  {}  exec {}  fence {}{}",
                    s.id,
                    s.state,
                    s.execution,
                    s.fence,
                    s.lease
                        .as_ref()
                        .map(|l| format!("  held by {}", l.holder))
                        .unwrap_or_default()
                );
                report.holder = s.lease.map(|l| l.holder);
                report.id = Some(s.id);
                report.state = Some(s.state.to_string());
                report.execution = Some(s.execution);
                report.fence = Some(s.fence);
                line
            }
            ViewUpdate::Removed(id) => {
                report.kind = "removed";
                let line = format!("{team}/{id}  removed");
                report.id = Some(id);
                line
            }
            ViewUpdate::Team => format!("{team}  reservations or limit: {:?}", view.count()),
            ViewUpdate::Resynced => {
                report.kind = "resynced";
                format!(
                    "{team}  re-read: {} sandboxes at sequence {}",
                    view.list().len(),
                    view.seq()
                )
            }
        };
        if json {
            emit_json_line(&report)?;
        } else {
            emit(&format!("{}  #{}  {text}\n", report.received, report.seq))?;
        }
        seen += 1;
    }
    Ok(Verdict::Done)
}
