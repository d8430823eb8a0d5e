//! A view's state, shared by its handles and its task: the model behind a
//! lock, the change signals, the staleness and re-read bookkeeping — and
//! the views' metric names, described once.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::lifecycle::Lifecycle;
use crate::view::model::{Model, ViewedSandbox};

/// Rows per snapshot page: each page is one short script (a few ms for
/// 500 records), so a snapshot never blocks the shard for a whole team.
pub(super) const PAGE: usize = 500;

pub(super) const VIEWS: &str = "sandbox_coordinator_views";
pub(super) const RESYNCS: &str = "sandbox_coordinator_view_resyncs_total";
pub(super) const LAG: &str = "sandbox_coordinator_view_lag_seconds";
pub(super) const STALE: &str = "sandbox_coordinator_view_stale_seconds";

/// Describes the views' metrics (idempotent).
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(VIEWS, "team views held by this process");
    describe_counter!(
        RESYNCS,
        "team view re-reads by cause (start, gap, reconnect, lagged, poll, announced, unreadable, retry)"
    );
    describe_histogram!(
        LAG,
        Unit::Seconds,
        "time from a change's script (Redis clock) to a team view applying it (local clock)"
    );
    describe_histogram!(
        STALE,
        Unit::Seconds,
        "how long a team view answered from an old state (Redis or the subscription unreachable) before it caught up"
    );
}

/// One change a view applied, for [`ViewUpdates`](crate::ViewUpdates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewUpdate {
    /// A sandbox as it now is.
    Sandbox(ViewedSandbox),
    /// A sandbox is gone.
    Removed(String),
    /// A reservation or the team's limit changed.
    Team,
    /// The view re-read the team (or this reader fell behind): re-read it
    /// with [`TeamView::list`](crate::TeamView::list).
    Resynced,
}

pub(super) struct Shared {
    pub(super) team: String,
    pub(super) model: RwLock<Model>,
    pub(super) classes: Lifecycle,
    pub(super) changed: watch::Sender<u64>,
    pub(super) updates: broadcast::Sender<ViewUpdate>,
    pub(super) stale_since: Mutex<Option<SystemTime>>,
    pub(super) resyncs: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) last_lag: Mutex<Option<Duration>>,
    pub(super) skip_next: AtomicBool,
}

impl Shared {
    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn count_resync(&self, cause: &'static str) {
        metrics::counter!(RESYNCS, "cause" => cause).increment(1);
        *self
            .resyncs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(cause)
            .or_default() += 1;
    }

    pub(super) fn mark_stale(&self) {
        let mut s = self
            .stale_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if s.is_none() {
            *s = Some(SystemTime::now());
        }
    }

    pub(super) fn clear_stale(&self) {
        let since = self
            .stale_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(since) = since {
            let d = since.elapsed().unwrap_or_default();
            metrics::histogram!(STALE).record(d.as_secs_f64());
        }
    }

    pub(super) fn install(&self, model: Model) {
        let seq = model.seq;
        *self.write() = model;
        let _ = self.updates.send(ViewUpdate::Resynced);
        self.changed.send_replace(seq);
    }
}
