//! `GET /sandboxes` from the team's live view ([`TeamView`]): the first
//! request of a team opens the view (one paged read of the team); later
//! ones are answered from memory, without Redis. Each answer says which
//! state it is: `x-view-seq` (the team's sequence number it reflects) and
//! `x-view-stale-ms` (0 while the view is current; else how long it may
//! have missed changes — Redis or the subscription unreachable — so a
//! list keeps answering during an outage and says how old it is).
//!
//! A view not read for [`IDLE`] is let go (its subscription with it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sandbox_coordinator::{Coordinator, TeamView, ViewedSandbox};
use tokio::time::Instant;

use crate::error::ApiError;

/// A view nobody read for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

/// The views this server holds, by team.
#[derive(Default)]
pub struct TeamViews {
    views: Mutex<HashMap<String, (TeamView, Instant)>>,
}

/// A list answered from a view.
pub struct Listed {
    pub sandboxes: Vec<ViewedSandbox>,
    pub seq: u64,
    /// How long the view may have missed changes (zero: current).
    pub stale: Duration,
}

impl TeamViews {
    fn held(&self, team: &str) -> Option<TeamView> {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        views.retain(|t, (_, used)| t == team || now.duration_since(*used) < IDLE);
        let (view, used) = views.get_mut(team)?;
        *used = now;
        Some(view.clone())
    }

    /// The team's sandboxes from its view, opened on the team's first request.
    pub async fn list(&self, coord: &Coordinator, team: &str) -> Result<Listed, ApiError> {
        let view = match self.held(team) {
            Some(view) => view,
            None => {
                let view = coord.team_view(team).await?;
                self.views
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(team.to_string(), (view.clone(), Instant::now()));
                view
            }
        };
        let stale = view.stale_since().map_or(Duration::ZERO, |t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                .max(Duration::from_millis(1))
        });
        Ok(Listed {
            sandboxes: view.list(),
            seq: view.seq(),
            stale,
        })
    }
}
