//! `inspect` and `list`: sandbox records with their lease, last outcome
//! and tombstone TTL, each read in one atomic step (`Coordinator::get`).

use std::time::SystemTime;

use anyhow::bail;
use futures_util::{StreamExt, TryStreamExt};
use sandbox_coordinator::{Coordinator, Sandbox, StateClass};
use serde::Serialize;

use crate::Verdict;
use crate::output::{emit, emit_json};
use crate::server::{Server, glob_escape};
use crate::table::{Table, millis, moment, span};

/// Records read at once by `list`.
const READS_IN_FLIGHT: usize = 16;

/// A sandbox as sandboxctl prints it in JSON.
#[derive(Debug, Serialize)]
pub struct SandboxReport {
    pub team: String,
    pub id: String,
    pub execution: String,
    pub state: String,
    /// The state is a transition's in-flight state.
    pub in_flight: bool,
    /// In flight without a live lease: its holder failed or died.
    pub stuck: bool,
    pub end_ms: u64,
    pub end_time: String,
    /// Fence of the latest transition started on the record (0: none).
    pub fence: u64,
    pub lease: Option<LeaseReport>,
    pub last: Option<LastReport>,
    /// Time left before the tombstone expires; null for records that do
    /// not expire.
    pub tombstone_ttl_ms: Option<u64>,
    pub data: String,
}

/// A live lease.
#[derive(Debug, Serialize)]
pub struct LeaseReport {
    pub fence: u64,
    pub action: String,
    pub holder: String,
    pub ttl_ms: u64,
    pub age_ms: u64,
}

/// The latest finished transition.
#[derive(Debug, Serialize)]
pub struct LastReport {
    pub fence: u64,
    pub action: String,
    pub outcome: String,
    pub reason: String,
}

impl SandboxReport {
    pub fn new(coord: &Coordinator, sb: &Sandbox) -> SandboxReport {
        let in_flight = matches!(coord.lifecycle().class(sb.state), StateClass::InFlight(_));
        SandboxReport {
            team: sb.team.clone(),
            id: sb.id.clone(),
            execution: sb.execution.clone(),
            state: sb.state.to_string(),
            in_flight,
            stuck: in_flight && sb.lease.is_none(),
            end_ms: sb.end_ms(),
            end_time: humantime::format_rfc3339_millis(sb.end_time).to_string(),
            fence: sb.fence,
            lease: sb.lease.as_ref().map(|l| LeaseReport {
                fence: l.fence,
                action: l.action.to_string(),
                holder: l.holder.clone(),
                ttl_ms: millis(l.ttl),
                age_ms: millis(l.age),
            }),
            last: sb.last.as_ref().map(|l| LastReport {
                fence: l.fence,
                action: l.action.to_string(),
                outcome: l.outcome.to_string(),
                reason: l.reason.clone(),
            }),
            tombstone_ttl_ms: sb.expires_in.map(millis),
            data: sb.data.clone(),
        }
    }
}

/// `sandboxctl inspect TEAM ID`.
pub async fn inspect(server: &Server, team: &str, id: &str, json: bool) -> anyhow::Result<Verdict> {
    let coord = server.coordinator().await?;
    let Some(sb) = coord.get(team, id).await? else {
        bail!(
            "sandbox {team}/{id} does not exist in namespace {}",
            server.namespace().prefix()
        );
    };
    let report = SandboxReport::new(&coord, &sb);
    if json {
        emit_json(&report)?;
    } else {
        emit(&inspect_text(&sb, &report))?;
    }
    Ok(Verdict::Done)
}

fn inspect_text(sb: &Sandbox, r: &SandboxReport) -> String {
    let now = SystemTime::now();
    let settled = sb.last.as_ref().is_some_and(|l| l.fence == sb.fence);
    let state = if r.stuck && settled {
        format!(
            "{} (stuck: fence {} ended without reaching its target; the next request \
             decides by the stuck rules, e.g. a retry or a kill starts over)",
            r.state, sb.fence
        )
    } else if r.stuck {
        format!(
            "{} (stuck: fence {} lost its lease with no outcome recorded, its holder \
             vanished; the next request records it abandoned, or run `sandboxctl abandon \
             {} {} --fence {}`)",
            r.state, sb.fence, sb.team, sb.id, sb.fence
        )
    } else if r.in_flight {
        format!("{} (in flight)", r.state)
    } else {
        r.state.clone()
    };
    let lease = match &sb.lease {
        Some(l) => format!(
            "fence {} {}, held by {}, {} left, started {} ago",
            l.fence,
            l.action,
            l.holder,
            span(l.ttl),
            span(l.age)
        ),
        None => "none (no transition in flight)".into(),
    };
    let last = match &sb.last {
        Some(l) if l.reason.is_empty() => format!("fence {} {} {}", l.fence, l.action, l.outcome),
        Some(l) => format!("fence {} {} {}: {}", l.fence, l.action, l.outcome, l.reason),
        None => "none (no transition has finished)".into(),
    };
    let tombstone = match sb.expires_in {
        Some(ttl) => format!("expires in {}", span(ttl)),
        None => "none (the record does not expire)".into(),
    };
    let rows = [
        ("sandbox", format!("{}/{}", sb.team, sb.id)),
        ("execution", sb.execution.clone()),
        ("state", state),
        ("end time", moment(sb.end_time, now)),
        ("fence", sb.fence.to_string()),
        ("lease", lease),
        ("last", last),
        ("tombstone", tombstone),
        ("data", sb.data.clone()),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<10}  {v}\n"))
        .collect()
}

/// `sandboxctl list TEAM`.
pub async fn list(server: &Server, team: &str, json: bool) -> anyhow::Result<Verdict> {
    sandbox_coordinator::keys::validate_id("team id", team)?;
    let coord = server.coordinator().await?;
    let ns = server.namespace().prefix();
    let prefix = format!("{ns}:{{{team}}}:rec:");
    let pattern = format!("{}*", glob_escape(&prefix));
    let ids: Vec<String> = server
        .scan(&pattern)
        .await?
        .into_iter()
        .filter_map(|key| key.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let coord = &coord;
    let mut sandboxes: Vec<Sandbox> = futures_util::stream::iter(ids)
        .map(|id| async move { coord.get(team, &id).await })
        .buffer_unordered(READS_IN_FLIGHT)
        .try_filter_map(|sb| async move { Ok(sb) })
        .try_collect()
        .await?;
    sandboxes.sort_by(|a, b| a.id.cmp(&b.id));

    if json {
        let reports: Vec<SandboxReport> = sandboxes
            .iter()
            .map(|sb| SandboxReport::new(coord, sb))
            .collect();
        emit_json(&reports)?;
        return Ok(Verdict::Done);
    }
    if sandboxes.is_empty() {
        emit(&format!("no sandboxes in team {team} (namespace {ns})\n"))?;
        return Ok(Verdict::Done);
    }
    let now = SystemTime::now();
    let mut table = Table::new(&[
        "ID",
        "STATE",
        "EXECUTION",
        "FENCE",
        "LEASE",
        "LAST",
        "ENDS",
        "TOMBSTONE",
    ])
    .right_align(&[3]);
    for sb in &sandboxes {
        let report = SandboxReport::new(coord, sb);
        let state = if report.stuck {
            format!("{} (stuck)", sb.state)
        } else {
            sb.state.to_string()
        };
        let lease = sb.lease.as_ref().map_or("-".into(), |l| {
            format!("#{} {}, {} left", l.fence, l.action, span(l.ttl))
        });
        let last = sb.last.as_ref().map_or("-".into(), |l| {
            format!("#{} {} {}", l.fence, l.action, l.outcome)
        });
        let ends = match sb.end_time.duration_since(now) {
            Ok(d) => format!("in {}", span(d)),
            Err(e) => format!("{} ago", span(e.duration())),
        };
        let tombstone = sb
            .expires_in
            .map_or("-".into(), |d| format!("expires in {}", span(d)));
        table.row(vec![
            sb.id.clone(),
            state,
            sb.execution.clone(),
            sb.fence.to_string(),
            lease,
            last,
            ends,
            tombstone,
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "{} sandbox{} in team {team}\n",
        sandboxes.len(),
        if sandboxes.len() == 1 { "" } else { "es" }
    ));
    emit(&text)?;
    Ok(Verdict::Done)
}
