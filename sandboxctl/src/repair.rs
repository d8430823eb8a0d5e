//! `abandon`: the operator's repair of a stuck transition. The coordinator's
//! `abandon` records `abandoned` for fence N only if N is still the
//! record's current transition and has no outcome, deletes its lease if
//! live, and publishes the outcome so waiters wake — all in one script —
//! and says whether it did ([`Abandonment::Abandoned`]) or the transition
//! had already ended ([`Abandonment::AlreadyEnded`], nothing written).
//!
//! A stale fence is refused and nothing is written. sandboxctl reads the
//! record first only to word that refusal (which fence is current, how
//! the old one ended); the script's check stays the authority.

use anyhow::bail;
use sandbox_coordinator::{Abandonment, Error, Sandbox};
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::Server;

/// The result, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct AbandonReport {
    pub team: String,
    pub id: String,
    pub fence: u64,
    pub action: Option<String>,
    pub outcome: String,
    pub reason: String,
    /// Whether this call recorded the abandonment.
    pub abandoned: bool,
    pub state: Option<String>,
}

/// Why fence `fence` is not the live transition of `sb`, if it is not.
fn stale(sb: &Sandbox, fence: u64) -> Option<String> {
    if sb.fence != fence {
        return Some(if sb.fence == 0 {
            "no transition was ever started on it".to_string()
        } else {
            format!("its current fence is {}", sb.fence)
        });
    }
    match &sb.last {
        Some(last) if last.fence == fence => Some(format!(
            "{} (fence {fence}) already ended: {}{}",
            last.action,
            last.outcome,
            if last.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", last.reason)
            }
        )),
        _ => None,
    }
}

/// `sandboxctl abandon TEAM ID --fence N`.
pub async fn abandon(
    server: &Server,
    team: &str,
    id: &str,
    fence: u64,
    reason: &str,
    json: bool,
) -> anyhow::Result<Verdict> {
    let coord = server.coordinator().await?;
    let Some(before) = coord.get(team, id).await? else {
        bail!(
            "sandbox {team}/{id} does not exist in namespace {}",
            server.namespace().prefix()
        );
    };
    if let Some(why) = stale(&before, fence) {
        eprintln!(
            "sandboxctl: refused: fence {fence} is not the live transition of {team}/{id}: \
             {why}; nothing was written"
        );
        return Ok(Verdict::Failed);
    }
    let (abandoned, outcome, recorded_reason) = match coord.abandon(team, id, fence, reason).await {
        Ok(Abandonment::Abandoned { reason, .. }) => (true, "abandoned".to_string(), reason),
        Ok(Abandonment::AlreadyEnded { outcome, reason }) => (false, outcome.to_string(), reason),
        Err(e @ Error::Fenced { .. }) => {
            eprintln!("sandboxctl: refused: {e}");
            return Ok(Verdict::Failed);
        }
        Err(e) => return Err(e.into()),
    };
    let after = coord.get(team, id).await?;
    let report = AbandonReport {
        team: team.into(),
        id: id.into(),
        fence,
        action: after
            .as_ref()
            .and_then(|sb| sb.last.as_ref())
            .filter(|l| l.fence == fence)
            .map(|l| l.action.to_string()),
        outcome: outcome.clone(),
        reason: recorded_reason.clone(),
        abandoned,
        state: after.as_ref().map(|sb| sb.state.to_string()),
    };
    if json {
        emit_json(&report)?;
    } else if abandoned {
        let what = report.action.as_deref().unwrap_or("transition");
        let state = report.state.as_deref().unwrap_or("gone");
        emit(&format!(
            "abandoned {what} of {team}/{id} (fence {fence}): {recorded_reason}\n\
             waiters were notified; the record stays {state} until the next request \
             decides by the stuck rules (a retry or a kill starts over)\n"
        ))?;
    } else {
        // The transition ended on its own between the read and the repair.
        eprintln!(
            "sandboxctl: not abandoned: fence {fence} of {team}/{id} ended meanwhile: \
             {outcome}; nothing was written"
        );
    }
    Ok(if abandoned {
        Verdict::Done
    } else {
        Verdict::Failed
    })
}
