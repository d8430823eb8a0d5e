//! `transitions`: every transition in flight across teams, found through
//! the namespace's indexes, never by scanning keys: the slot registry
//! gives the slots that have teams, each slot's team set its teams, and
//! `Coordinator::list` each team's records (a lease is a field of the
//! record, so every row is one atomic read of record and lease).

use futures_util::{StreamExt, TryStreamExt};
use sandbox_coordinator::Sandbox;
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::Server;
use crate::table::{Table, millis, span};

/// Teams listed at once.
const TEAMS_IN_FLIGHT: usize = 8;

/// One transition in flight, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct TransitionReport {
    pub team: String,
    pub id: String,
    pub action: String,
    pub fence: u64,
    pub holder: String,
    pub state: String,
    /// Time since the transition started, by the server clock.
    pub age_ms: u64,
    /// Time left on its lease.
    pub ttl_ms: u64,
    /// Requests queued to re-decide once it ends.
    pub waiting: usize,
}

/// `sandboxctl transitions`.
pub async fn transitions(server: &Server, json: bool) -> anyhow::Result<Verdict> {
    let coord = server.coordinator().await?;
    let ns = server.namespace().prefix();
    let teams = server.teams().await?;
    let coord = &coord;
    let found: Vec<Vec<Sandbox>> = futures_util::stream::iter(teams)
        .map(|team| async move {
            match coord.list(&team).await {
                // A member of a team set that is no valid team id was not
                // written by the library; say so and go on.
                Err(sandbox_coordinator::Error::InvalidInput { why, .. }) => {
                    eprintln!("sandboxctl: skipping team {team:?} of a slot's team set: {why}");
                    Ok(Vec::new())
                }
                other => other,
            }
        })
        .buffer_unordered(TEAMS_IN_FLIGHT)
        .try_collect()
        .await?;
    let found: Vec<&Sandbox> = found
        .iter()
        .flatten()
        .filter(|sb| sb.lease.is_some())
        .collect();
    let mut rows: Vec<TransitionReport> = found
        .iter()
        .filter_map(|sb| {
            let lease = sb.lease.as_ref()?;
            Some(TransitionReport {
                team: sb.team.clone(),
                id: sb.id.clone(),
                action: lease.action.to_string(),
                fence: lease.fence,
                holder: lease.holder.clone(),
                state: sb.state.to_string(),
                age_ms: millis(lease.age),
                ttl_ms: millis(lease.ttl),
                waiting: sb.waiting,
            })
        })
        .collect();
    // Oldest first: the likeliest to be stuck.
    rows.sort_by(|a, b| {
        b.age_ms
            .cmp(&a.age_ms)
            .then_with(|| (&a.team, &a.id).cmp(&(&b.team, &b.id)))
    });

    if json {
        emit_json(&rows)?;
        return Ok(Verdict::Done);
    }
    if rows.is_empty() {
        emit(&format!("no transitions in flight (namespace {ns})\n"))?;
        return Ok(Verdict::Done);
    }
    let mut table = Table::new(&[
        "TEAM", "ID", "ACTION", "FENCE", "STATE", "HOLDER", "AGE", "TTL LEFT", "WAITING",
    ])
    .right_align(&[3, 6, 7, 8]);
    for r in &rows {
        table.row(vec![
            r.team.clone(),
            r.id.clone(),
            r.action.clone(),
            r.fence.to_string(),
            r.state.clone(),
            r.holder.clone(),
            span(std::time::Duration::from_millis(r.age_ms)),
            span(std::time::Duration::from_millis(r.ttl_ms)),
            r.waiting.to_string(),
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "{} transition{} in flight\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    emit(&text)?;
    Ok(Verdict::Done)
}
