//! The slow flows that no transition covers: creation and resume. Both ask
//! the node for a VM *before* the record holds the new execution, so they
//! follow the order of the library's plan:
//!
//! 1. `reserve(team, id, ttl)` — hold the id and one place of the team's
//!    limit. While a reservation on a paused record lives, a `begin` on it
//!    (a DELETE's kill) waits and then re-decides, so a delete racing a
//!    resume is ordered after the resume's registration and kills the new
//!    execution: a deleted sandbox never comes back, on the node either.
//! 2. the node call (`create` / `resume`, no fence: there is no transition).
//! 3. `register` — the new execution (over the paused record, for a
//!    resume); it consumes the reservation.
//!
//! `reserve` and `list` have not landed in the library yet: until they do,
//! [`crate::interim`] stands in (with the races its docs name), one line
//! per flow marked `TODO(lead-api)`.

use std::time::{Duration, SystemTime};

use metrics::counter;
use sandbox_coordinator::{Error as CoordError, NewSandbox, Sandbox, State};

use crate::api::App;
use crate::error::ApiError;
use crate::interim;
use crate::node::NodeAction;
use crate::telemetry::ORPHANED;

/// Creates sandbox `id` as execution `execution`: reserve, node create,
/// register.
///
/// Cancel safety: dropped before the node call, nothing happened (the
/// reservation, once real, is freed in the background). Dropped during or
/// after it and before `register` answered, the node may have created a VM
/// that no record names — nothing in the library can undo a physical
/// operation that ran outside a transition; a node-side sweep of VMs
/// without a record is the remedy.
pub async fn create(
    app: &App,
    team: &str,
    id: &str,
    execution: &str,
    timeout: Duration,
) -> Result<Sandbox, ApiError> {
    // TODO(lead-api): `let _place = app.coord.reserve(team, id, app.settings.reservation_ttl).await?;`
    let _place = interim::reserve(app, team, id).await?;
    app.node.run(team, id, NodeAction::Create, None).await?;
    register(
        app,
        NodeAction::Create,
        new_sandbox(team, id, execution, timeout),
    )
    .await
}

/// Resumes paused sandbox `id` as a new execution: reserve, node resume,
/// register over the paused record.
///
/// Cancel safety: as [`create`]; the record stays `paused` unless
/// `register` ran.
pub async fn resume(
    app: &App,
    team: &str,
    id: &str,
    execution: &str,
    timeout: Duration,
) -> Result<Sandbox, ApiError> {
    let current = app
        .coord
        .get(team, id)
        .await?
        .ok_or_else(|| CoordError::NotFound {
            team: team.into(),
            id: id.into(),
        })?;
    if current.state != State::Paused {
        return Err(ApiError::NotPaused {
            team: team.into(),
            id: id.into(),
            state: current.state,
        });
    }
    // TODO(lead-api): `let _place = app.coord.reserve(team, id, app.settings.reservation_ttl).await?;`
    let _place = interim::reserve(app, team, id).await?;
    app.node.run(team, id, NodeAction::Resume, None).await?;
    register(
        app,
        NodeAction::Resume,
        new_sandbox(team, id, execution, timeout),
    )
    .await
}

/// The team's sandboxes.
pub async fn list(app: &App, team: &str) -> Result<Vec<Sandbox>, ApiError> {
    // TODO(lead-api): `Ok(app.coord.list(team).await?)`
    interim::list(app, team).await
}

/// The record of a new execution that ends `timeout` from now (at most
/// [`crate::api::MAX_TIMEOUT`], checked by the handlers).
fn new_sandbox(team: &str, id: &str, execution: &str, timeout: Duration) -> NewSandbox {
    NewSandbox {
        team: team.into(),
        id: id.into(),
        execution: execution.into(),
        // TODO(lead-api): `end_time: EndTime::In(timeout),` once NewSandbox
        // takes an EndTime, so the end is reckoned by Redis server time.
        end_time: (SystemTime::now() + timeout).into(),
        data: String::new(),
    }
}

/// Registers the execution the node just created or resumed. A refusal
/// now leaves a VM on the node that no record knows: counted and logged
/// (the reservation is what makes it impossible).
async fn register(app: &App, after: NodeAction, new: NewSandbox) -> Result<Sandbox, ApiError> {
    match app.coord.register(new).await {
        Ok((sandbox, _)) => Ok(sandbox),
        Err(e) => {
            if matches!(
                e,
                CoordError::AlreadyExists { .. } | CoordError::Busy { .. }
            ) {
                counter!(ORPHANED, "action" => after.as_str()).increment(1);
                tracing::warn!(action = after.as_str(), error = %e,
                    "the node ran it but the registration was refused: its VM is orphaned");
            }
            Err(e.into())
        }
    }
}
