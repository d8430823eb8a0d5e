//! Team views: a local, read-only model of one team's sandboxes, kept by
//! the team's announcements, so that listing a team costs no Redis time.
//!
//! Every script that changes what a reader of a team sees (register,
//! begin that starts, finish, settle, extend, set_end_time, remove,
//! reserve, unreserve, the team limit, sweep, repair) bumps the team's
//! sequence `<ns>:{<team>}:seq` and publishes the change with it on the
//! team's channel, in the same atomic step (`lua/include/notify.lua`). A
//! view starts from a snapshot carrying the sequence it was read at
//! (`lua/view.lua`, page by page), applies the announcements in sequence
//! order, and re-reads the team whenever it may have missed one: a gap in
//! the sequence, a reconnect or resubscription of the coordinator's
//! subscription (failover, slot move, failed health check), a backlog it
//! fell behind on, or a poll that finds the team's sequence elsewhere.
//!
//! The views of one coordinator share its one subscription per team (or
//! slot), and one model per team: [`Coordinator::team_view`] of a team that
//! is already viewed returns the same view. When the last handle of a view
//! is dropped its task ends, and the team's channel is let go after the
//! subscription's linger.
//!
//! [`Coordinator::team_view`]: crate::Coordinator::team_view

mod follow;
mod model;
mod shared;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::lifecycle::StateClass;
use crate::runtime::Runtime;
use crate::sandbox::TeamCount;
pub use model::{ViewedLease, ViewedSandbox};
pub use shared::ViewUpdate;
pub(crate) use shared::describe;
use shared::{Shared, VIEWS};

/// Attempts of a first snapshot that keeps racing announcements.
const FIRST_ATTEMPTS: usize = 5;

/// What keeps a view's task alive: dropped with the last [`TeamView`].
struct Held {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
        metrics::gauge!(VIEWS).decrement(1.0);
    }
}

/// The views of one coordinator, by team (one per team, shared).
#[derive(Default)]
pub(crate) struct Registry {
    views: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Weak<Held>>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Team views alive now.
    pub(crate) fn held(&self) -> usize {
        let slots: Vec<_> = self
            .views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter(|s| s.try_lock().map_or(true, |w| w.strong_count() > 0))
            .count()
    }
}

/// A live, read-only model of one team's sandboxes, kept by the team's
/// announcements: reading it costs no Redis time.
///
/// # How stale a read can be
///
/// - A read reflects every change announced up to [`seq`](Self::seq), and
///   nothing after it.
/// - While Redis and the subscription are reachable, a change is applied
///   as soon as its announcement arrives (the script publishes it in the
///   same step as the write, so it is on its way before the writer has its
///   reply): typically well under a millisecond on a LAN.
/// - If an announcement is lost, the view notices at the next
///   announcement of the team (a gap in the sequence) or at its next poll
///   (every `poll_interval` of the coordinator, default 1 s, it reads the
///   team's sequence — one short script), and then re-reads the team. So
///   once a team is quiet, a view equals [`Coordinator::list`] within one
///   poll interval plus the time to re-read the team.
/// - After a reconnect of the subscription (a failover, a Redis restart, a
///   failed health check, a slot move) the view re-reads the team.
/// - While Redis or the subscription is unreachable, the view keeps
///   answering from its last state and [`stale_since`](Self::stale_since)
///   says since when it may have missed changes; it is cleared when the
///   view has caught up again.
/// - Per sandbox, a reader never sees a fence go down while the record
///   lives (every state a view shows is one Redis held, in order) — unless
///   Redis itself lost acknowledged writes (a restart without persistence,
///   a failover to a lagging replica): then the view follows Redis.
///
/// Times the scripts wrote (end times, lease and reservation deadlines)
/// are by the Redis clock; a tombstone's expiry is turned into local time
/// when announced. `data`, queued waiters and the last outcome are not in
/// a view: [`Coordinator::get`] reads them.
///
/// [`Coordinator::list`]: crate::Coordinator::list
/// [`Coordinator::get`]: crate::Coordinator::get
#[derive(Clone)]
pub struct TeamView {
    held: Arc<Held>,
}

impl std::fmt::Debug for TeamView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamView")
            .field("team", &self.held.shared.team)
            .field("seq", &self.seq())
            .finish_non_exhaustive()
    }
}

impl TeamView {
    fn shared(&self) -> &Shared {
        &self.held.shared
    }

    /// The team viewed.
    pub fn team(&self) -> &str {
        &self.shared().team
    }

    /// One sandbox, as of [`seq`](Self::seq).
    pub fn get(&self, id: &str) -> Option<ViewedSandbox> {
        self.shared().read().sandboxes.get(id).cloned()
    }

    /// Every sandbox of the team by id (the order of
    /// [`Coordinator::list`](crate::Coordinator::list)), as of
    /// [`seq`](Self::seq). Tombstones whose retention ended are left out.
    pub fn list(&self) -> Vec<ViewedSandbox> {
        let now = SystemTime::now();
        self.shared()
            .read()
            .sandboxes
            .values()
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .cloned()
            .collect()
    }

    /// The team's sandboxes by state class, its live reservations and its
    /// own limit, as [`Coordinator::count`](crate::Coordinator::count)
    /// counts them.
    pub fn count(&self) -> TeamCount {
        let shared = self.shared();
        let now = SystemTime::now();
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let model = shared.read();
        let mut count = TeamCount {
            limit: model.limit,
            ..TeamCount::default()
        };
        for sb in model.sandboxes.values() {
            if sb.expires_at.is_some_and(|t| t <= now) {
                continue;
            }
            match shared.classes.class(sb.state) {
                StateClass::Live => count.live += 1,
                StateClass::InFlight(_) => count.in_flight += 1,
                StateClass::Resumable => count.paused += 1,
                StateClass::Final => count.killed += 1,
            }
        }
        count.reserved = model.reservations.values().filter(|d| **d > now_ms).count();
        count
    }

    /// The team's sequence number of the last change applied.
    pub fn seq(&self) -> u64 {
        self.shared().read().seq
    }

    /// Resolves when the view has applied a change (or re-read the team)
    /// after this call, with its new [`seq`](Self::seq). Several changes
    /// applied together resolve it once: use [`updates`](Self::updates) to
    /// see each one.
    ///
    /// Cancel safety: dropping it loses nothing.
    pub async fn changed(&self) {
        let mut rx = self.shared().changed.subscribe();
        rx.mark_unchanged();
        let _ = rx.changed().await;
    }

    /// Every change this view applies from now on, in order.
    pub fn updates(&self) -> ViewUpdates {
        ViewUpdates {
            rx: self.shared().updates.subscribe(),
            _held: Arc::clone(&self.held),
        }
    }

    /// Since when the view may have missed changes (Redis or the
    /// subscription unreachable, a re-read failing); `None` while it is
    /// current.
    pub fn stale_since(&self) -> Option<SystemTime> {
        *self
            .shared()
            .stale_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many times the view re-read its team, by cause: `start`, `gap`
    /// (a sequence number missed), `reconnect`, `lagged` (fell behind its
    /// backlog), `poll` (the team's sequence moved without an
    /// announcement), `announced` (a repair), `unreadable`, `retry` (a
    /// re-read failed and was tried again).
    pub fn resyncs(&self) -> BTreeMap<&'static str, u64> {
        self.shared()
            .resyncs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The time from the last applied change's script (Redis clock) to its
    /// application (local clock).
    pub fn last_lag(&self) -> Option<Duration> {
        *self
            .shared()
            .last_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Test hook: the next announcement received is dropped, as a lost
    /// message would be.
    #[doc(hidden)]
    pub fn skip_next_announcement(&self) {
        self.shared().skip_next.store(true, Ordering::SeqCst);
    }
}

/// The changes a view applies, in order ([`TeamView::updates`]).
pub struct ViewUpdates {
    rx: broadcast::Receiver<ViewUpdate>,
    _held: Arc<Held>,
}

impl std::fmt::Debug for ViewUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewUpdates").finish_non_exhaustive()
    }
}

impl ViewUpdates {
    /// The next change. A reader that fell more than 4096 changes behind
    /// gets [`ViewUpdate::Resynced`] (re-read the view) and goes on.
    ///
    /// Cancel safety: dropping it loses no change.
    pub async fn next(&mut self) -> ViewUpdate {
        match self.rx.recv().await {
            Ok(u) => u,
            Err(broadcast::error::RecvError::Lagged(_)) => ViewUpdate::Resynced,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Opens (or shares) the view of `team`.
pub(crate) async fn open(
    rt: &Arc<Runtime>,
    views: &Registry,
    team: &str,
) -> Result<TeamView, Error> {
    let keys = rt.env.ns.team(team)?;
    let slot = Arc::clone(
        views
            .views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(team.to_string())
            .or_default(),
    );
    let mut slot = slot.lock().await;
    if let Some(held) = slot.upgrade() {
        return Ok(TeamView { held });
    }
    let mut tap = rt.notifier.tap(team, &keys.channel());
    let mut attempt = 0;
    let model = loop {
        match follow::resync(rt, &keys, &mut tap).await {
            Ok(model) => break model,
            Err(follow::Resync::Redis(e)) => return Err(e),
            Err(_) if attempt + 1 < FIRST_ATTEMPTS => attempt += 1,
            Err(why) => {
                return Err(Error::ViewUnavailable {
                    team: team.to_string(),
                    why: why.to_string(),
                });
            }
        }
    };
    let shared = Arc::new(Shared {
        team: team.to_string(),
        changed: watch::channel(model.seq).0,
        model: RwLock::new(model),
        classes: rt.env.lifecycle.clone(),
        updates: broadcast::channel(4096).0,
        stale_since: Mutex::new(None),
        resyncs: Mutex::new(BTreeMap::new()),
        last_lag: Mutex::new(None),
        skip_next: AtomicBool::new(false),
    });
    shared.count_resync("start");
    if rt.notifier.enabled() && !*tap.subscribed.borrow() {
        shared.mark_stale();
    }
    let task = tokio::spawn(follow::follow(
        Arc::clone(rt),
        Arc::clone(&shared),
        keys,
        tap,
    ));
    metrics::gauge!(VIEWS).increment(1.0);
    let held = Arc::new(Held { shared, task });
    *slot = Arc::downgrade(&held);
    Ok(TeamView { held })
}
