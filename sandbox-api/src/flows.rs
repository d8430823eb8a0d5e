//! The slow flows that no transition covers: creation and resume. Both ask
//! the node for a VM *before* the record holds the new execution, so both
//! go reserve → node → register:
//!
//! 1. `reserve(team, id, ttl)` (create: the id must be free) or
//!    `reserve_resume(team, id, ttl)` (resume: the record must be paused)
//!    holds the id and one place of the team's limit. While a resume's
//!    reservation holds, a `begin` on the record (a DELETE's kill) waits
//!    and then re-decides: a delete racing a resume is ordered after the
//!    resume's registration and kills the new execution, so a deleted
//!    sandbox never comes back, on the node either.
//! 2. the node call (`create` / `resume`, no fence: there is no transition).
//! 3. [`Reservation::register`]: the new execution (over the paused record,
//!    for a resume); it consumes the reservation, whose place becomes the
//!    sandbox's. If the node failed, the reservation is given back first.

use std::time::Duration;

use metrics::counter;
use sandbox_coordinator::{EndTime, Error as CoordError, NewSandbox, Reservation, Sandbox};

use crate::app::App;
use crate::error::ApiError;
use crate::node::NodeAction;
use crate::telemetry::ORPHANED;

/// Creates sandbox `id` as execution `execution`: reserve, node create,
/// register.
///
/// Cancel safety: dropped while `reserve` runs, a reservation the script
/// made holds its place and the id until its ttl (nothing else is left).
/// Dropped before the node call, the reservation is given back in the
/// background. Dropped during the node call or before `register`
/// answered, the node may have created a VM that no record names (and the
/// reservation is given back): nothing in the library can undo a physical
/// operation that ran outside a transition; a node-side sweep of VMs
/// without a record is the remedy.
pub async fn create(
    app: &App,
    team: &str,
    id: &str,
    execution: &str,
    timeout: Duration,
) -> Result<Sandbox, ApiError> {
    let reservation = app
        .coord
        .reserve(team, id, app.settings.reservation_ttl)
        .await?;
    node_then_register(
        app,
        reservation,
        NodeAction::Create,
        new_sandbox(team, id, execution, timeout),
    )
    .await
}

/// Resumes paused sandbox `id` as a new execution: reserve the paused
/// record, node resume, register over it. Not paused is `NotPaused` (409),
/// no record `NotFound` (404) — decided by the reservation's script, not by
/// an earlier read.
///
/// Cancel safety: as [`create`]; the record stays `paused` unless
/// `register` ran, and a DELETE waiting for the reservation re-decides as
/// soon as it is given back (at the latest when its ttl ends).
pub async fn resume(
    app: &App,
    team: &str,
    id: &str,
    execution: &str,
    timeout: Duration,
) -> Result<Sandbox, ApiError> {
    let reservation = reserve_resume(app, team, id).await?;
    node_then_register(
        app,
        reservation,
        NodeAction::Resume,
        new_sandbox(team, id, execution, timeout),
    )
    .await
}

/// `reserve_resume`, waiting once for a transition in flight: a resume
/// that arrives while a pause (or a kill) runs is decided against the
/// state that transition leaves — paused: resumed; killed: not paused —
/// like every other conflicting request, instead of a 503. A second
/// `Busy` (another resume holds the reservation, or a new transition
/// started meanwhile) is answered as it is (503).
async fn reserve_resume(app: &App, team: &str, id: &str) -> Result<Reservation, ApiError> {
    let ttl = app.settings.reservation_ttl;
    let reserved = match app.coord.reserve_resume(team, id, ttl).await {
        Err(CoordError::Busy { .. }) => {
            tokio::select! {
                idle = app.coord.wait_idle(team, id, app.settings.wait_timeout) => { idle?; }
                () = app.shutdown.expired() => return Err(ApiError::ShuttingDown),
            }
            app.coord.reserve_resume(team, id, ttl).await
        }
        other => other,
    };
    reserved.map_err(|e| match e {
        CoordError::AlreadyExists {
            team, id, state, ..
        } => ApiError::NotPaused { team, id, state },
        other => other.into(),
    })
}

/// The record of a new execution that ends `timeout` (at most
/// [`crate::api::MAX_TIMEOUT`], checked by the handlers) after the Redis
/// server's now, so this server's clock does not move eviction deadlines.
fn new_sandbox(team: &str, id: &str, execution: &str, timeout: Duration) -> NewSandbox {
    NewSandbox {
        team: team.into(),
        id: id.into(),
        execution: execution.into(),
        end_time: EndTime::In(timeout),
        data: String::new(),
    }
}

/// Runs the node's `create` or `resume` under `reservation`, then registers
/// the execution it started. A node failure gives the reservation back at
/// once (awaited, so a DELETE waiting for it re-decides now).
async fn node_then_register(
    app: &App,
    reservation: Reservation,
    action: NodeAction,
    new: NewSandbox,
) -> Result<Sandbox, ApiError> {
    if let Err(e) = app.node.run(&new.team, &new.id, action, None).await {
        if let Err(release) = reservation.release().await {
            tracing::warn!(team = %new.team, sandbox = %new.id, error = %release,
                "could not give the reservation back; the library retries in the background");
        }
        return Err(e.into());
    }
    let (team, id) = (new.team.clone(), new.id.clone());
    match reservation.register(new).await {
        Ok((sandbox, _)) => Ok(sandbox),
        Err(e) => {
            // The reservation made these impossible while it held: if one
            // comes anyway, the reservation's ttl ran out during the node
            // call and the node holds a VM that no record names.
            if matches!(
                e,
                CoordError::AlreadyExists { .. }
                    | CoordError::Busy { .. }
                    | CoordError::TeamLimit { .. }
            ) {
                counter!(ORPHANED, "action" => action.as_str()).increment(1);
                tracing::warn!(%team, sandbox = %id, action = action.as_str(), error = %e,
                    "the node ran it but the registration was refused: its VM is orphaned");
            }
            Err(e.into())
        }
    }
}
