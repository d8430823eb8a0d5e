//! Stand-ins for library calls that have not landed yet (see
//! /work/plan/API.md): `Coordinator::reserve` and `Coordinator::list`, and
//! with them the team limit. Each is called from exactly one line marked
//! `TODO(lead-api)` in [`crate::flows`]; when the library has them, those
//! lines change and this module is deleted.
//!
//! They are *not* equivalent, and the HTTP tests measure the difference:
//! [`reserve`] only reads, so nothing holds the id while the node creates
//! or resumes — a DELETE or a second resume can reach the node meanwhile;
//! and the team limit is a count taken before the node call, so concurrent
//! creates can all pass it.

use sandbox_coordinator::{Error as CoordError, Sandbox, State};

use crate::api::App;
use crate::error::ApiError;

/// What [`reserve`] returns in place of the library's `Reservation`: it
/// holds nothing, but the flows keep it alive over the node call and the
/// registration exactly as they will keep the real one.
#[must_use]
pub struct Place;

/// Stands in for `coord.reserve(team, id, ttl)`: refuses what the plan says
/// it refuses (a live transition: `Busy`; a record that is neither absent
/// nor paused: `AlreadyExists`; a full team: `TeamFull`), but holds
/// nothing.
pub async fn reserve(app: &App, team: &str, id: &str) -> Result<Place, ApiError> {
    if let Some(current) = app.coord.get(team, id).await? {
        if let Some(lease) = &current.lease {
            return Err(CoordError::Busy {
                team: team.into(),
                id: id.into(),
                fence: lease.fence,
                action: lease.action.as_str().into(),
            }
            .into());
        }
        if current.state != State::Paused {
            return Err(CoordError::AlreadyExists {
                team: team.into(),
                id: id.into(),
                execution: current.execution,
                state: current.state.to_string(),
            }
            .into());
        }
    }
    if let Some(limit) = app.settings.team_limit {
        let lifecycle = app.coord.lifecycle();
        let live = list(app, team)
            .await?
            .iter()
            .filter(|s| !lifecycle.class(s.state).is_tombstone())
            .count();
        if live >= limit {
            return Err(ApiError::TeamFull {
                team: team.into(),
                live,
                limit,
            });
        }
    }
    Ok(Place)
}

/// Stands in for `coord.list(team)`: scans the team's record keys (one
/// node, O(keyspace) — fine for an example, not for production) and reads
/// each record through the library.
pub async fn list(app: &App, team: &str) -> Result<Vec<Sandbox>, ApiError> {
    let probe = app.coord.namespace().sandbox(team, "x")?.record;
    let prefix = &probe[..probe.len() - 1];
    let pattern = format!("{}*", escape_glob(prefix));
    let mut conn = app
        .redis
        .get_multiplexed_async_connection()
        .await
        .map_err(CoordError::from)?;
    let mut ids: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(CoordError::from)?;
        ids.extend(keys.iter().map(|k| k[prefix.len()..].to_owned()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    ids.sort();
    ids.dedup(); // SCAN may return a key twice
    let mut sandboxes = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(s) = app.coord.get(team, &id).await? {
            sandboxes.push(s);
        }
    }
    Ok(sandboxes)
}

/// Escapes Redis glob metacharacters (ids may contain them).
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
