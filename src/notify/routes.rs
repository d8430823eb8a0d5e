//! The routing table: which teams this coordinator's waiters wait on,
//! by sandbox, and the delivery of one message to them. Shared by the
//! handles (which register waiters) and the supervisor (which delivers
//! what the subscription connection receives).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::notify::wire::{self, Notice};

/// What woke a waiter.
#[derive(Debug)]
pub(crate) enum Wake {
    /// A notice for the sandbox (or, for a team watch, for the team).
    Notice(Notice),
    /// Messages may have been lost: re-check.
    Resubscribed,
}

/// How many notices of one sandbox a waiter may fall behind before it is
/// told to re-check instead (a lagging receiver loses the oldest).
pub(super) const BACKLOG: usize = 16;

/// One sandbox's waiters. Every waiter gets every notice in order (a
/// broadcast queue, not a latest-value cell): a notice that follows an
/// outcome must not hide it.
pub(super) struct SandboxSlot {
    pub(super) tx: broadcast::Sender<Notice>,
    pub(super) refs: usize,
}

pub(super) struct TeamRoute {
    pub(super) channel: String,
    pub(super) sandboxes: HashMap<String, SandboxSlot>,
    /// Bumped on every notice of the team (team-level waiters: places).
    pub(super) any: watch::Sender<u64>,
    pub(super) team_refs: usize,
    /// Whether the channel's subscription is confirmed.
    pub(super) subscribed: watch::Sender<bool>,
    /// When the last waiter left (unsubscribed after the linger).
    pub(super) idle_since: Option<Instant>,
    /// Every message of the channel as published, in order (team views).
    pub(super) raw: tokio::sync::broadcast::Sender<Arc<str>>,
}

impl TeamRoute {
    pub(super) fn refs(&self) -> usize {
        self.team_refs + self.sandboxes.values().map(|s| s.refs).sum::<usize>()
    }
}

pub(super) struct Shared {
    pub(super) teams: Mutex<HashMap<String, TeamRoute>>,
    pub(super) epoch: watch::Sender<u64>,
    pub(super) received: std::sync::atomic::AtomicU64,
    pub(super) control: Option<mpsc::UnboundedSender<String>>,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TeamRoute>> {
        self.teams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Health check period and linger of an idle team's subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotifySettings {
    pub health_interval: Duration,
    pub linger: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// How many messages a team view may fall behind before it resyncs.
pub(super) const RAW_BACKLOG: usize = 16_384;

/// Delivers one message of `channel` to its team's waiters and taps.
pub(super) fn deliver(shared: &Shared, channel: &str, payload: &str) {
    metrics::counter!(crate::metrics::NOTIFICATIONS).increment(1);
    shared
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(team) = wire::channel_team(channel) else {
        return;
    };
    let teams = shared.lock();
    let Some(route) = teams.get(team) else {
        return;
    };
    if route.raw.receiver_count() > 0 {
        let _ = route.raw.send(Arc::from(payload));
    }
    let Some((id, notice)) = wire::parse(payload) else {
        // A view's announcement alone wakes no waiter.
        if !payload.starts_with('=') {
            tracing::warn!(%payload, "unreadable notification");
        }
        return;
    };
    route.any.send_modify(|n| *n += 1);
    if let Some(id) = id
        && let Some(slot) = route.sandboxes.get(&id)
    {
        // No receiver is not an error: the waiters left meanwhile.
        let _ = slot.tx.send(notice);
    }
}

/// Records whether `team`'s channel is subscribed.
pub(super) fn mark(shared: &Shared, team: &str, on: bool) {
    if let Some(route) = shared.lock().get(team) {
        route.subscribed.send_replace(on);
    }
}
