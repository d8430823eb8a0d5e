//! What every handler shares ([`App`]: the coordinator, the node client,
//! the settings, the shutdown, the metrics, the team views) and the two
//! steps every transition handler takes with it: `begin` with this
//! server's options, and `perform` (the node call under the fence, then
//! `succeed`/`fail`). Used by the handlers (`api`) and the flows (`flows`),
//! which import it, never each other's module.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, Transition};

use crate::error::ApiError;
use crate::node::NodeAction;
use crate::node_client::NodeClient;
use crate::shutdown::Shutdown;
use crate::views::TeamViews;

/// Per-server settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lease: Duration,
    pub wait_timeout: Duration,
    pub default_timeout: Duration,
    /// How long a reservation holds an id and a place: a node call plus a
    /// register.
    pub reservation_ttl: Duration,
}

/// What every handler shares.
pub struct App {
    pub coord: Coordinator,
    pub node: NodeClient,
    pub settings: Settings,
    pub shutdown: Shutdown,
    pub metrics: PrometheusHandle,
    /// The teams' live views, for `GET /sandboxes`.
    pub views: TeamViews,
}

impl App {
    /// `begin` with this server's options. Gives up (503) when the grace
    /// period of a shutdown is over.
    ///
    /// Cancel safety: as the library's `begin` — dropped while waiting for
    /// another transition, nothing is left behind; a transition it had
    /// started is failed by the library.
    pub async fn begin(&self, team: &str, id: &str, action: Action) -> Result<Begun, ApiError> {
        let opts = BeginOptions::default()
            .lease(self.settings.lease)
            .wait_timeout(self.settings.wait_timeout);
        tokio::select! {
            begun = self.coord.begin(team, id, action, opts) => Ok(begun?),
            () = self.shutdown.expired() => Err(ApiError::ShuttingDown),
        }
    }

    /// Runs a started transition's physical operation on the node with its
    /// fence, and records how it ended. Returns the fence.
    ///
    /// The transition stays owned here for the whole call: if the request
    /// is cancelled (the client went away and axum drops this future), the
    /// `Transition` is dropped with it and the library fails it — no
    /// orphan lease. If its lease is lost, or the shutdown grace period
    /// ends, the node call is abandoned and the transition failed
    /// explicitly (awaited).
    pub async fn perform(&self, team: &str, id: &str, t: Transition) -> Result<u64, ApiError> {
        let fence = t.fence();
        let action = match t.action() {
            Action::Pause => NodeAction::Pause,
            Action::Kill => NodeAction::Kill,
            Action::Snapshot => NodeAction::Snapshot,
        };
        let outcome = tokio::select! {
            done = self.node.run(team, id, action, Some(fence)) => done.map_err(ApiError::from),
            () = t.lost() => Err(ApiError::LeaseLost {
                action: action.as_str(),
                team: team.into(),
                id: id.into(),
                fence,
            }),
            () = self.shutdown.expired() => Err(ApiError::ShuttingDown),
        };
        match outcome {
            Ok(()) => {
                t.succeed().await?;
                Ok(fence)
            }
            Err(e) => {
                if let Err(finish) = t.fail(e.to_string()).await {
                    tracing::warn!(%team, sandbox = %id, fence, error = %finish,
                        "could not record the failure");
                }
                Err(e)
            }
        }
    }
}
