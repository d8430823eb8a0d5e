//! `transitions`: every transition in flight across teams. Leases are found
//! by SCAN (`<ns>:{*}:lease:*`); each sandbox is then read atomically with
//! its lease, so a row never mixes a record and a lease of different moments.

use futures_util::{StreamExt, TryStreamExt};
use sandbox_coordinator::Sandbox;
use serde::Serialize;

use crate::Verdict;
use crate::output::{emit, emit_json};
use crate::server::{Server, glob_escape};
use crate::table::{Table, millis, span};

/// Records read at once.
const READS_IN_FLIGHT: usize = 16;

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
}

/// Splits `<ns>:{<team>}:lease:<id>` into (team, id). Team ids cannot
/// contain `}` or `:` and sandbox ids cannot contain `:`, so the split is
/// unambiguous.
fn lease_key_parts<'k>(ns: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(ns)?.strip_prefix(":{")?;
    let (team, id) = rest.split_once("}:lease:")?;
    Some((team, id))
}

/// `sandboxctl transitions`.
pub async fn transitions(server: &Server, json: bool) -> anyhow::Result<Verdict> {
    let coord = server.coordinator().await?;
    let ns = server.namespace().prefix();
    let pattern = format!("{}:{{*}}:lease:*", glob_escape(ns));
    let keys = server.scan(&pattern).await?;
    let targets: Vec<(String, String)> = keys
        .iter()
        .filter_map(|k| lease_key_parts(ns, k))
        .map(|(t, i)| (t.to_string(), i.to_string()))
        .collect();
    let coord = &coord;
    // A lease that ended between the scan and the read is simply gone; a
    // key that is not a valid sandbox's lease is not ours to list.
    let found: Vec<Sandbox> = futures_util::stream::iter(targets)
        .map(|(team, id)| async move {
            match coord.get(&team, &id).await {
                Err(sandbox_coordinator::Error::InvalidInput { .. }) => Ok(None),
                other => other,
            }
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .try_filter_map(|sb| async move { Ok(sb.filter(|s| s.lease.is_some())) })
        .try_collect()
        .await?;
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
        "TEAM", "ID", "ACTION", "FENCE", "STATE", "HOLDER", "AGE", "TTL LEFT",
    ])
    .right_align(&[3, 6, 7]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_split_into_team_and_id() {
        assert_eq!(
            lease_key_parts("sbx", "sbx:{team-1}:lease:s1"),
            Some(("team-1", "s1"))
        );
        assert_eq!(lease_key_parts("sbx", "sbx:{t}:rec:s1"), None);
        assert_eq!(lease_key_parts("sbx", "other:{t}:lease:s1"), None);
    }
}
