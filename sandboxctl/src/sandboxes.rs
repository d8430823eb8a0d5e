//! `inspect`, `list` and `count`: sandbox records with their lease, fair
//! waiting queue, reservation, last outcome, lifecycle and tombstone TTL.
//! A record is read in one atomic step (`Coordinator::get`); a team from
//! its id index, a page per atomic step (`Coordinator::list`, never SCAN);
//! its counts from the same index in one step (`Coordinator::count`).

use std::time::SystemTime;

use anyhow::bail;
use sandbox_coordinator::{Coordinator, Sandbox, StateClass, TeamCount};
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::Server;
use crate::table::{Table, millis, moment, span};

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
    /// Requests queued to re-decide once the transition in flight ends
    /// (fair waiting), live waiters only.
    pub waiting: usize,
    /// Time left on a reservation of the record (a resume in progress);
    /// null when none holds it.
    pub reserved_ttl_ms: Option<u64>,
    pub last: Option<LastReport>,
    /// Digest of the rule table the record was created under.
    pub lifecycle: String,
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
            waiting: sb.waiting,
            reserved_ttl_ms: sb.reserved.map(millis),
            last: sb.last.as_ref().map(|l| LastReport {
                fence: l.fence,
                action: l.action.to_string(),
                outcome: l.outcome.to_string(),
                reason: l.reason.clone(),
            }),
            lifecycle: sb.lifecycle.clone(),
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
        emit(&inspect_text(&coord, &sb, &report))?;
    }
    Ok(Verdict::Done)
}

fn inspect_text(coord: &Coordinator, sb: &Sandbox, r: &SandboxReport) -> String {
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
    let waiting = match sb.waiting {
        0 => "none (no request queued)".to_string(),
        1 => "1 request queued to re-decide when the transition ends".to_string(),
        n => format!(
            "{n} requests queued to re-decide when the transition ends, first come first decided"
        ),
    };
    let reserved = match sb.reserved {
        Some(ttl) => format!(
            "held for a resume, {} left (a begin waits for it; register consumes it)",
            span(ttl)
        ),
        None => "none".to_string(),
    };
    let ours = coord.lifecycle().digest();
    let lifecycle = if sb.lifecycle == ours {
        format!("{} (the rule table of --lifecycle)", sb.lifecycle)
    } else {
        format!(
            "{} (not the rule table of --lifecycle, {ours}: servers deciding by {ours} refuse \
             the record; `sandboxctl migrate --adopt-lifecycle` re-stamps it)",
            sb.lifecycle
        )
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
        ("waiting", waiting),
        ("reserved", reserved),
        ("last", last),
        ("lifecycle", lifecycle),
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
    let coord = &coord;
    // From the team's id index, by id.
    let sandboxes = coord.list(team).await?;

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
        "WAITING",
        "RESERVED",
        "LAST",
        "ENDS",
        "TOMBSTONE",
    ])
    .right_align(&[3, 5]);
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
            sb.waiting.to_string(),
            sb.reserved
                .map_or("-".into(), |d| format!("{} left", span(d))),
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

/// A team's counts, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct CountReport {
    pub team: String,
    /// Running, no transition in flight.
    pub live: usize,
    /// In an in-flight state (stuck ones included).
    pub in_flight: usize,
    pub paused: usize,
    pub killed: usize,
    /// Live reservations.
    pub reserved: usize,
    /// Places taken under the team limit: live + in flight + reserved.
    pub taken: usize,
    /// The team's own limit, stored in Redis; null when none is set (a
    /// server's default limit may still apply).
    pub limit: Option<usize>,
}

impl CountReport {
    fn new(team: &str, c: &TeamCount) -> CountReport {
        CountReport {
            team: team.to_string(),
            live: c.live,
            in_flight: c.in_flight,
            paused: c.paused,
            killed: c.killed,
            reserved: c.reserved,
            taken: c.taken(),
            limit: c.limit,
        }
    }
}

/// `sandboxctl count TEAM`.
pub async fn count(server: &Server, team: &str, json: bool) -> anyhow::Result<Verdict> {
    sandbox_coordinator::keys::validate_id("team id", team)?;
    let coord = server.coordinator().await?;
    let report = CountReport::new(team, &coord.count(team).await?);
    if json {
        emit_json(&report)?;
        return Ok(Verdict::Done);
    }
    let places = match report.limit {
        Some(limit) => format!("{} of {limit} places (the team's limit)", report.taken),
        None => format!(
            "{} places (no team limit stored; a server's default limit may apply)",
            report.taken
        ),
    };
    let rows = [
        ("running", report.live.to_string()),
        ("in flight", report.in_flight.to_string()),
        ("paused", report.paused.to_string()),
        ("killed", report.killed.to_string()),
        ("reserved", report.reserved.to_string()),
        ("taken", places),
    ];
    let mut text = format!("team {team} (namespace {})\n", server.namespace().prefix());
    for (k, v) in rows {
        text.push_str(&format!("{k:<10}  {v}\n"));
    }
    emit(&text)?;
    Ok(Verdict::Done)
}
