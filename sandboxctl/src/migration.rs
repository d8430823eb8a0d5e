//! `migrate`: converts a namespace written by schema 1 or 2 to the
//! library's schema in place (`Coordinator::migrate`, one atomic script per
//! record).
//!
//! Schema 1 kept a transition's lease in its own key
//! (`<ns>:{<team>}:lease:<id>`, with a PX TTL). sandboxctl looks for live
//! ones first and refuses before converting anything while one exists, so
//! a namespace is never left half converted because of a transition it
//! could have named up front; the script's own check (`Busy`) stays the
//! authority for a transition that starts meanwhile. After converting, it
//! prints each team's counts as the new indexes serve them.

use futures_util::{StreamExt, TryStreamExt};
use sandbox_coordinator::Error;
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::{Server, glob_escape};
use crate::table::{Table, span};

/// Teams counted at once after the conversion.
const COUNTS_IN_FLIGHT: usize = 8;

/// A schema-1 transition in flight: (team, id, lease value, ms left).
struct V1Lease {
    team: String,
    id: String,
    /// `<fence> <action> <holder>`.
    value: String,
    ttl_ms: i64,
}

/// A team after the conversion, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct TeamAfter {
    pub team: String,
    pub live: usize,
    pub in_flight: usize,
    pub paused: usize,
    pub killed: usize,
}

/// The result, as printed in JSON.
#[derive(Debug, Serialize)]
pub struct MigrateReport {
    pub namespace: String,
    /// Records converted from schema 1 or 2.
    pub converted: usize,
    /// Records of this schema re-stamped with the rule table (--adopt-lifecycle).
    pub restamped: usize,
    /// Every team of the namespace, counted from its new indexes.
    pub teams: Vec<TeamAfter>,
}

/// Live schema-1 leases of the namespace (found with SCAN: schema 1 has
/// no index of them).
async fn v1_leases(server: &Server) -> anyhow::Result<Vec<V1Lease>> {
    let ns = server.namespace().prefix();
    let keys = server
        .scan(&format!("{}:{{*}}:lease:*", glob_escape(ns)))
        .await?;
    let mut conn = server.connection().await?;
    let mut found = Vec::new();
    for key in keys {
        let Some((team, id)) = key
            .strip_prefix(ns)
            .and_then(|k| k.strip_prefix(":{"))
            .and_then(|k| k.split_once("}:lease:"))
        else {
            continue;
        };
        let (value, ttl_ms): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut conn)
            .await?;
        // Expired between the scan and the read: not in flight.
        if let Some(value) = value {
            found.push(V1Lease {
                team: team.to_string(),
                id: id.to_string(),
                value,
                ttl_ms,
            });
        }
    }
    Ok(found)
}

fn refuse_in_flight(server: &Server, leases: &[V1Lease]) {
    let mut table = Table::new(&["TEAM", "ID", "FENCE", "ACTION", "HOLDER", "TTL LEFT"]);
    for l in leases {
        let mut parts = l.value.splitn(3, ' ');
        let (fence, action, holder) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let ttl = u64::try_from(l.ttl_ms).map_or("no TTL".to_string(), |ms| {
            span(std::time::Duration::from_millis(ms))
        });
        table.row(vec![
            l.team.clone(),
            l.id.clone(),
            fence.into(),
            action.into(),
            holder.into(),
            ttl,
        ]);
    }
    eprint!("{}", table.render());
    eprintln!(
        "sandboxctl: refused: {} schema-1 transition(s) in flight in namespace {}; nothing was \
         converted. Stop the schema-1 servers, let the transitions end (or their leases expire), \
         then run `sandboxctl migrate` again",
        leases.len(),
        server.namespace().prefix()
    );
}

/// `sandboxctl migrate [--adopt-lifecycle]`.
pub async fn migrate(
    server: &Server,
    adopt_lifecycle: bool,
    json: bool,
) -> anyhow::Result<Verdict> {
    let leases = v1_leases(server).await?;
    if !leases.is_empty() {
        refuse_in_flight(server, &leases);
        return Ok(Verdict::Failed);
    }
    let coord = server.coordinator().await?;
    let (converted, restamped) = match coord.migrate(adopt_lifecycle).await {
        Ok(counts) => counts,
        Err(e @ Error::Busy { .. }) => {
            eprintln!(
                "sandboxctl: refused: {e}; a schema-1 transition started meanwhile. Records \
                 before it may be converted already; run `sandboxctl migrate` again once it ended"
            );
            return Ok(Verdict::Failed);
        }
        Err(e) => return Err(e.into()),
    };
    let coord = &coord;
    let mut teams: Vec<TeamAfter> = futures_util::stream::iter(server.teams().await?)
        .map(|team| async move {
            let c = coord.count(&team).await?;
            Ok::<_, Error>(TeamAfter {
                team,
                live: c.live,
                in_flight: c.in_flight,
                paused: c.paused,
                killed: c.killed,
            })
        })
        .buffer_unordered(COUNTS_IN_FLIGHT)
        .try_collect()
        .await?;
    teams.sort_by(|a, b| a.team.cmp(&b.team));
    let report = MigrateReport {
        namespace: server.namespace().prefix().to_string(),
        converted,
        restamped,
        teams,
    };
    if json {
        emit_json(&report)?;
        return Ok(Verdict::Done);
    }
    let mut text = String::new();
    if !report.teams.is_empty() {
        let mut table = Table::new(&["TEAM", "RUNNING", "IN FLIGHT", "PAUSED", "KILLED"])
            .right_align(&[1, 2, 3, 4]);
        for t in &report.teams {
            table.row(vec![
                t.team.clone(),
                t.live.to_string(),
                t.in_flight.to_string(),
                t.paused.to_string(),
                t.killed.to_string(),
            ]);
        }
        text.push_str(&table.render());
    }
    text.push_str(&format!(
        "converted {converted} record(s) of namespace {} to schema {}",
        report.namespace,
        sandbox_coordinator::keys::SCHEMA_VERSION
    ));
    if adopt_lifecycle {
        text.push_str(&format!(
            "; re-stamped {restamped} with lifecycle {}",
            coord.lifecycle().digest()
        ));
    }
    text.push_str(&format!(
        "\n{} team(s) in the namespace's indexes\n",
        report.teams.len()
    ));
    emit(&text)?;
    Ok(Verdict::Done)
}
