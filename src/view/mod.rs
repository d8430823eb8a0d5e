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

mod model;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::lifecycle::StateClass;
use crate::notify::Tap;
use crate::runtime::Runtime;
use crate::sandbox::TeamCount;
use model::{Applied, Change, Model, Unassembled, parse_announcement};
pub use model::{ViewedLease, ViewedSandbox};

/// Rows per snapshot page: each page is one short script (a few ms for
/// 500 records), so a snapshot never blocks the shard for a whole team.
const PAGE: usize = 500;
/// Attempts of a first snapshot that keeps racing announcements.
const FIRST_ATTEMPTS: usize = 5;

pub(crate) const VIEWS: &str = "sandbox_coordinator_views";
pub(crate) const RESYNCS: &str = "sandbox_coordinator_view_resyncs_total";
pub(crate) const LAG: &str = "sandbox_coordinator_view_lag_seconds";
pub(crate) const STALE: &str = "sandbox_coordinator_view_stale_seconds";

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

/// One change a view applied, for [`ViewUpdates`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewUpdate {
    /// A sandbox as it now is.
    Sandbox(ViewedSandbox),
    /// A sandbox is gone.
    Removed(String),
    /// A reservation or the team's limit changed.
    Team,
    /// The view re-read the team (or this reader fell behind): re-read it
    /// with [`TeamView::list`].
    Resynced,
}

struct Shared {
    team: String,
    model: RwLock<Model>,
    classes: crate::lifecycle::Lifecycle,
    changed: watch::Sender<u64>,
    updates: broadcast::Sender<ViewUpdate>,
    stale_since: Mutex<Option<SystemTime>>,
    resyncs: Mutex<BTreeMap<&'static str, u64>>,
    last_lag: Mutex<Option<Duration>>,
    skip_next: AtomicBool,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_resync(&self, cause: &'static str) {
        metrics::counter!(RESYNCS, "cause" => cause).increment(1);
        *self
            .resyncs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(cause)
            .or_default() += 1;
    }

    fn mark_stale(&self) {
        let mut s = self
            .stale_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if s.is_none() {
            *s = Some(SystemTime::now());
        }
    }

    fn clear_stale(&self) {
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

    fn install(&self, model: Model) {
        let seq = model.seq;
        *self.write() = model;
        let _ = self.updates.send(ViewUpdate::Resynced);
        self.changed.send_replace(seq);
    }
}

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
pub(crate) async fn open(rt: &Arc<Runtime>, team: &str, keys: TeamKeys) -> Result<TeamView, Error> {
    let slot = Arc::clone(
        rt.views
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
        match resync(rt, &keys, &mut tap).await {
            Ok(model) => break model,
            Err(Resync::Redis(e)) => return Err(e),
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
    let task = tokio::spawn(follow(Arc::clone(rt), Arc::clone(&shared), keys, tap));
    metrics::gauge!(VIEWS).increment(1.0);
    let held = Arc::new(Held { shared, task });
    *slot = Arc::downgrade(&held);
    Ok(TeamView { held })
}

/// Why a re-read did not produce a model.
#[derive(Debug)]
enum Resync {
    Redis(Error),
    Gap,
    Lagged,
    Reread,
    Unreadable(String),
    Short(u64),
}

/// Moves what the tap received into `out` without waiting.
fn drain(tap: &mut Tap, out: &mut Vec<model::Announcement>) -> Result<(), Resync> {
    use broadcast::error::TryRecvError;
    loop {
        match tap.messages.try_recv() {
            Ok(payload) => match parse_announcement(&payload, SystemTime::now()) {
                Some(Ok(a)) => out.push(a),
                Some(Err(e)) => return Err(Resync::Unreadable(e)),
                None => {}
            },
            Err(TryRecvError::Empty | TryRecvError::Closed) => return Ok(()),
            Err(TryRecvError::Lagged(_)) => return Err(Resync::Lagged),
        }
    }
}

/// Reads the team page by page and applies what was announced meanwhile.
async fn resync(rt: &Runtime, keys: &TeamKeys, tap: &mut Tap) -> Result<Model, Resync> {
    let bound = rt.settings.response_timeout;
    tap.epoch.borrow_and_update();
    tap.watch.ready(bound).await;
    // What came before the first page is in it.
    let mut received = Vec::new();
    let _ = drain(tap, &mut received);
    received.clear();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = snapshot::page(&rt.env, keys, after.as_deref(), PAGE)
            .await
            .map_err(Resync::Redis)?;
        drain(tap, &mut received)?;
        after = page.next.clone();
        pages.push(page);
        if after.is_none() {
            break;
        }
    }
    let deadline = Instant::now() + bound;
    loop {
        match model::assemble(pages.clone(), &received) {
            Ok(model) => return Ok(model),
            Err(Unassembled::Gap) => return Err(Resync::Gap),
            Err(Unassembled::Reread) => return Err(Resync::Reread),
            // The last announcements are still on their way.
            Err(Unassembled::Short(seq)) => {
                match tokio::time::timeout_at(deadline, tap.messages.recv()).await {
                    Ok(Ok(payload)) => match parse_announcement(&payload, SystemTime::now()) {
                        Some(Ok(a)) => received.push(a),
                        Some(Err(e)) => return Err(Resync::Unreadable(e)),
                        None => {}
                    },
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => return Err(Resync::Lagged),
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                        return Err(Resync::Short(seq));
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for Resync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resync::Redis(e) => write!(f, "{e}"),
            Resync::Gap => write!(f, "an announcement was missed"),
            Resync::Lagged => write!(f, "fell behind the announcements"),
            Resync::Reread => write!(f, "a repair asked for a re-read"),
            Resync::Unreadable(e) => write!(f, "{e}"),
            Resync::Short(seq) => write!(f, "announcements up to {seq} did not arrive"),
        }
    }
}

/// The cause label of a failed re-read.
fn cause(r: &Resync) -> &'static str {
    match r {
        Resync::Redis(_) | Resync::Short(_) => "retry",
        Resync::Gap => "gap",
        Resync::Lagged => "lagged",
        Resync::Reread => "announced",
        Resync::Unreadable(_) => "unreadable",
    }
}

/// Re-reads the team until it succeeds (answering from the old state
/// meanwhile).
async fn catch_up(
    rt: &Runtime,
    shared: &Shared,
    keys: &TeamKeys,
    tap: &mut Tap,
    first: &'static str,
) {
    shared.count_resync(first);
    let mut backoff = Duration::from_millis(20);
    loop {
        match resync(rt, keys, tap).await {
            Ok(model) => {
                shared.install(model);
                if !rt.notifier.enabled() || *tap.subscribed.borrow() {
                    shared.clear_stale();
                }
                return;
            }
            Err(why) => {
                tracing::debug!(team = %shared.team, %why, "team view re-read failed");
                if matches!(why, Resync::Redis(_)) {
                    shared.mark_stale();
                }
                shared.count_resync(cause(&why));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Applies one announcement: `Some(cause)` when the team must be re-read.
fn apply(shared: &Shared, payload: &str) -> Option<&'static str> {
    let now = SystemTime::now();
    let a = match parse_announcement(payload, now)? {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(team = %shared.team, error = %e, "unreadable announcement");
            return Some("unreadable");
        }
    };
    if shared.skip_next.swap(false, Ordering::SeqCst) {
        return None;
    }
    let at = UNIX_EPOCH + Duration::from_millis(a.at_ms);
    let update = match &a.change {
        Change::Record(sb) => ViewUpdate::Sandbox(sb.clone()),
        Change::Removed(id) => ViewUpdate::Removed(id.clone()),
        _ => ViewUpdate::Team,
    };
    let (applied, seq) = {
        let mut model = shared.write();
        let applied = model.apply(a);
        (applied, model.seq)
    };
    match applied {
        Applied::Next => {
            let lag = now.duration_since(at).unwrap_or_default();
            metrics::histogram!(LAG).record(lag.as_secs_f64());
            *shared
                .last_lag
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(lag);
            let _ = shared.updates.send(update);
            shared.changed.send_replace(seq);
            None
        }
        Applied::Old => None,
        Applied::Gap => Some("gap"),
        Applied::Reread => Some("announced"),
    }
}

/// A view's task: applies announcements, re-reads when one may be lost,
/// polls the team's sequence.
async fn follow(rt: Arc<Runtime>, shared: Arc<Shared>, keys: TeamKeys, mut tap: Tap) {
    let poll_every = rt.settings.poll_interval;
    // A poll that finds the sequence ahead waits this long for the
    // announcements in flight before it re-reads.
    let grace = (poll_every / 10).clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut poll = tokio::time::interval(poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.reset();
    let mut ahead: Option<(u64, Instant)> = None;
    loop {
        let reread: Option<&'static str> = tokio::select! {
            m = tap.messages.recv() => match m {
                Ok(payload) => apply(&shared, &payload),
                Err(broadcast::error::RecvError::Lagged(_)) => Some("lagged"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            r = tap.epoch.changed() => match r {
                Ok(()) => Some("reconnect"),
                Err(_) => return,
            },
            r = tap.subscribed.changed() => match r {
                Ok(()) => {
                    if !*tap.subscribed.borrow_and_update() {
                        shared.mark_stale();
                    }
                    None
                }
                Err(_) => return,
            },
            _ = async {
                match ahead {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let behind = ahead.take().is_some_and(|(seq, _)| shared.read().seq < seq);
                behind.then_some("poll")
            },
            _ = poll.tick() => match tokio::time::timeout(
                rt.settings.response_timeout,
                snapshot::seq(&rt.env, &keys),
            ).await.unwrap_or_else(|_| Err(Error::Pool("the poll timed out".into()))) {
                Ok(seq) => {
                    let mine = shared.read().seq;
                    if seq < mine {
                        // Redis lost writes (a restart, a failover).
                        Some("poll")
                    } else {
                        if seq > mine {
                            ahead = Some((seq, Instant::now() + grace));
                        } else if !rt.notifier.enabled() || *tap.subscribed.borrow() {
                            shared.clear_stale();
                        }
                        None
                    }
                }
                Err(e) => {
                    tracing::debug!(team = %shared.team, error = %e, "team view poll failed");
                    shared.mark_stale();
                    None
                }
            },
        };
        if let Some(cause) = reread {
            ahead = None;
            catch_up(&rt, &shared, &keys, &mut tap, cause).await;
            tap.subscribed.borrow_and_update();
        }
    }
}
