//! [`Coordinator`], the façade: the library's API as a table of contents.
//! Each method is its documentation (what it does, what it refuses, its
//! cancel safety) and one line that hands the call to the module doing the
//! work:
//!
//! | methods | module |
//! |---|---|
//! | `builder`, `builder_cluster`, [`Builder::build`] | `builder` (settings, start-up) |
//! | `register` | `protocol::register` |
//! | `begin`, `wait_idle` | `protocol::begin` (driving `protocol::step`) |
//! | `set_end_time`, `remove`, `finish`, `abandon` | `protocol::end` |
//! | `get`, `list`, `count`, team limits, eviction reads | `protocol::fleet` |
//! | `reserve`, `reserve_resume`, `reserve_waiting` | `protocol::reserve` |
//! | `repair`, `migrate` | `protocol::admin` |
//! | `team_view` | `view` |
//!
//! Nothing below imports this module.

use std::sync::Arc;
use std::time::Duration;

use crate::builder::Builder;
use crate::error::Result;
use crate::keys::Namespace;
use crate::lifecycle::{Action, Lifecycle};
use crate::options::{BeginOptions, Begun, Finish};
use crate::protocol;
use crate::redact::redact_url;
use crate::reservation::Reservation;
use crate::runtime::Runtime;
use crate::sandbox::{
    Abandonment, EndTime, NewSandbox, Page, Registration, RepairReport, Sandbox, TeamCount,
};
use crate::scripts::Script;
use crate::view::{self, TeamView};

/// Coordinates sandbox lifecycle transitions through Redis. Cheap to clone;
/// clones share connections, the notification connection and the lease
/// keeper.
#[derive(Clone, Debug)]
pub struct Coordinator {
    rt: Arc<Runtime>,
    /// The team views, one per team (shared by clones).
    views: Arc<view::Registry>,
}

impl Builder {
    /// Connects: the command connections, the scripts (loaded on every
    /// primary), the notification connection (waited for, bounded) and the
    /// lease keeper.
    pub async fn build(self) -> Result<Coordinator> {
        Ok(Coordinator {
            rt: self.start().await?,
            views: Arc::default(),
        })
    }
}

impl Coordinator {
    /// Connects to one server with default settings.
    ///
    /// Cancel safety: safe to drop; nothing is written.
    pub async fn connect(url: &str) -> Result<Coordinator> {
        Coordinator::builder(url).build().await
    }

    /// A builder for one server (`redis://`, `rediss://`, `redis+unix://`).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder::new(vec![url.into()], false)
    }

    /// A builder for a Redis Cluster, from any of its nodes' URLs (seed
    /// nodes). Every operation works unchanged: each script touches its
    /// team's slot only, and notifications use sharded pub/sub.
    pub fn builder_cluster<I, S>(nodes: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Builder::new(nodes.into_iter().map(Into::into).collect(), true)
    }

    /// The rule table in force.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.rt.env.lifecycle
    }

    /// The key namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.rt.env.ns
    }

    /// This coordinator's holder id prefix (leases read `<prefix>/<call>`).
    pub fn holder_id(&self) -> &str {
        self.rt.holder_prefix()
    }

    /// Whether it talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.rt.env.link.is_cluster()
    }

    /// Registers a sandbox, or a new incarnation over a paused one (a
    /// resume), with its place under the team's limit. Refuses while a
    /// lease is live ([`Error::Busy`](crate::Error::Busy)), over a live
    /// record of another execution or a killed tombstone
    /// ([`Error::AlreadyExists`](crate::Error::AlreadyExists)), while another caller holds a reservation
    /// of the id ([`Error::Busy`](crate::Error::Busy); register through
    /// [`Reservation::register`], which consumes it), and when the team is
    /// full ([`Error::TeamLimit`](crate::Error::TeamLimit)); the same execution again is idempotent
    /// ([`Registration::Existing`]). Requests queued to re-decide on the
    /// record do not hold a register back (fair waiting orders transition
    /// starts): a kill queued behind a pause that a resume overtakes is
    /// decided against the resumed sandbox, as if it had come after it.
    ///
    /// Not retried internally: after a transport error the registration
    /// may or may not have happened; register the same execution again
    /// (idempotent) or read the record.
    ///
    /// Cancel safety: if dropped, the registration happened or it did not
    /// (as after a transport error); nothing else is left behind.
    pub async fn register(&self, new: NewSandbox) -> Result<(Sandbox, Registration)> {
        protocol::register::register(&self.rt, new, "").await
    }

    /// Reads a sandbox's record (with its lease, queue and reservation) in
    /// one atomic step.
    ///
    /// Cancel safety: safe to drop (read-only).
    pub async fn get(&self, team: &str, id: &str) -> Result<Option<Sandbox>> {
        protocol::fleet::get(&self.rt, team, id).await
    }

    /// Requests `action`. Decided by the lifecycle table against the state
    /// the record is in when the script runs; if a transition is in flight,
    /// joins it (same action) or waits for it and decides again. Waiting is
    /// fair: a request that waits to re-decide is decided before any request
    /// that arrived after it can start a transition on this sandbox.
    ///
    /// An uncontended begin is one script call; a joiner adds the shared
    /// subscription, the fallback poll and a final check.
    ///
    /// Cancel safety: the future may be dropped at any await point (an HTTP
    /// handler whose client went away). A transition the script started
    /// that this call did not return is failed in the background with
    /// reason `cancelled`; a caller queued to re-decide leaves the queue.
    /// No orphan lease is left, and no outcome contradicts one already
    /// returned.
    pub async fn begin(
        &self,
        team: &str,
        id: &str,
        action: Action,
        opts: BeginOptions,
    ) -> Result<Begun> {
        protocol::begin::begin(&self.rt, team, id, action, opts).await
    }

    /// Waits until no transition is in flight on the sandbox, at most
    /// `timeout` (`Duration::MAX`: no bound), and returns the record as it
    /// then is. A stuck transition (holder gone) is recorded as abandoned.
    ///
    /// Cancel safety: safe to drop; it only records outcomes that are true
    /// (`abandoned` for an expired lease).
    pub async fn wait_idle(&self, team: &str, id: &str, timeout: Duration) -> Result<Sandbox> {
        protocol::begin::wait_idle(&self.rt, team, id, timeout).await
    }

    /// Moves a live sandbox's end time (and its expiry entry); `end` is an
    /// instant or a duration from the Redis server's now.
    ///
    /// Cancel safety: if dropped, the end time moved or it did not.
    pub async fn set_end_time(
        &self,
        team: &str,
        id: &str,
        end: impl Into<EndTime>,
        expect_execution: Option<&str>,
    ) -> Result<()> {
        protocol::end::set_end_time(&self.rt, team, id, end.into(), expect_execution).await
    }

    /// The ids of the team's sandboxes whose end time has passed by Redis
    /// server time, oldest first, at most `limit` (1 to 100,000). Index
    /// entries whose record vanished behind the library's back are swept on
    /// the way, so they never starve real evictions.
    ///
    /// Cancel safety: safe to drop.
    pub async fn due_for_eviction(&self, team: &str, limit: usize) -> Result<Vec<String>> {
        protocol::fleet::due(&self.rt, team, limit).await
    }

    /// `(team, id)` pairs whose end time has passed by Redis server time,
    /// across every team of the namespace, oldest first, at most `limit`
    /// (1 to 100,000). Reads the namespace's slot registry, then one script
    /// per slot that has teams (each touching that slot only, so it works
    /// unchanged on Redis Cluster), concurrently. A team (or a slot's team
    /// set) with a key of another type is skipped — logged, counted in
    /// `sandbox_coordinator_damaged_skipped_total`, reported by
    /// [`repair`](Coordinator::repair) — and every other team is answered.
    ///
    /// Cancel safety: safe to drop.
    pub async fn due_for_eviction_all(&self, limit: usize) -> Result<Vec<(String, String)>> {
        protocol::fleet::due_all(&self.rt, limit).await
    }

    /// Deletes a sandbox's record and its index entries. Refused while a
    /// transition holds the lease or the id is reserved ([`Error::Busy`](crate::Error::Busy)).
    /// Requests queued to re-decide do not hold it back (a delete is final,
    /// and a queue that never empties must not block it): they are woken
    /// and get [`Error::NotFound`](crate::Error::NotFound). Returns false if there was no record.
    ///
    /// Not retried internally, and an [`Error::Redis`](crate::Error::Redis) that
    /// [`is_retryable`](crate::Error::is_retryable) is no invitation to retry
    /// blindly: a removal whose reply was lost may have happened, and a
    /// retry could then delete a newer incarnation registered meanwhile.
    /// Retry with [`remove_execution`](Coordinator::remove_execution), which
    /// only deletes the incarnation you meant.
    ///
    /// Cancel safety: if dropped, the removal happened or it did not.
    pub async fn remove(&self, team: &str, id: &str) -> Result<bool> {
        protocol::end::remove(&self.rt, team, id, None).await
    }

    /// Like [`remove`](Coordinator::remove), only if the record is
    /// `execution` ([`Error::ExecutionMismatch`](crate::Error::ExecutionMismatch) otherwise): a removal
    /// racing a resume cannot delete the new incarnation, and it is safe to
    /// retry.
    pub async fn remove_execution(&self, team: &str, id: &str, execution: &str) -> Result<bool> {
        protocol::end::remove(&self.rt, team, id, Some(execution)).await
    }

    /// Finishes transition `fence` held by `holder` (see
    /// [`Transition::holder`](crate::Transition::holder)), for a holder that lost its [`Transition`](crate::Transition)
    /// value (e.g. a restarted process that stored both). Retry-safe: the
    /// same outcome for the same fence again is Ok for the whole outcome
    /// retention; errors as for [`Transition::succeed`](crate::Transition::succeed).
    ///
    /// Cancel safety: if dropped, the outcome was recorded or it was not;
    /// calling again with the same outcome is safe.
    pub async fn finish(
        &self,
        team: &str,
        id: &str,
        action: Action,
        fence: u64,
        holder: &str,
        how: Finish,
    ) -> Result<()> {
        protocol::end::finish(&self.rt, team, id, action, fence, holder, how).await
    }

    /// Operator repair: records `abandoned` for transition `fence` if it is
    /// still the record's current one and has no outcome, ending its lease
    /// if live, and publishes it so waiters wake. Says whether this call
    /// abandoned it or it had already ended (then nothing was written).
    ///
    /// `Err(Fenced)` when no outcome of `fence` can be known (another
    /// transition started since and its outcome's retention ended, or the
    /// record is gone).
    ///
    /// Cancel safety: if dropped, it was abandoned or it was not; calling
    /// again is safe.
    pub async fn abandon(
        &self,
        team: &str,
        id: &str,
        fence: u64,
        reason: &str,
    ) -> Result<Abandonment> {
        protocol::end::abandon(&self.rt, team, id, fence, reason).await
    }

    /// Every sandbox of the team, by id, from the team's id index (never
    /// SCAN): [`list_page`](Coordinator::list_page) until the last page.
    ///
    /// Cancel safety: safe to drop.
    pub async fn list(&self, team: &str) -> Result<Vec<Sandbox>> {
        protocol::fleet::list(&self.rt, team).await
    }

    /// One page of the team's sandboxes, by id: the first `count` (1 to
    /// 10,000) after `after` (exclusive; `None` to start). Each page is one
    /// atomic read; pages are consistent with each other only in that an id
    /// is listed at most once per pass.
    ///
    /// Cancel safety: safe to drop.
    pub async fn list_page(&self, team: &str, after: Option<&str>, count: usize) -> Result<Page> {
        protocol::fleet::list_page(&self.rt, team, after, count).await
    }

    /// The team's sandboxes by state class (live, in flight, paused,
    /// killed), its live reservations and its own limit, from its index in
    /// one atomic step (O(team size)).
    ///
    /// Cancel safety: safe to drop.
    pub async fn count(&self, team: &str) -> Result<TeamCount> {
        protocol::fleet::count(&self.rt, team).await
    }

    /// A live local view of `team` ([`TeamView`](crate::TeamView)): read
    /// once (page by page), then kept by the team's announcements, so its
    /// reads cost no Redis time. A team already viewed by this coordinator
    /// shares that view. See [`TeamView`](crate::TeamView) for how stale a
    /// read can be.
    ///
    /// Cancel safety: if dropped before the first read completes, nothing
    /// stays subscribed for it.
    pub async fn team_view(&self, team: &str) -> Result<TeamView> {
        view::open(&self.rt, &self.views, team).await
    }

    /// Team views held now (by anyone) on this coordinator.
    pub fn team_views(&self) -> usize {
        self.views.held()
    }

    /// Sets (or, with `None`, clears) the team's limit of places: sandboxes
    /// that are not tombstones (running or in flight) plus reservations.
    /// Stored in Redis, so every server enforces the same number. Returns
    /// the previous one.
    ///
    /// Cancel safety: if dropped, the limit was set or it was not.
    pub async fn set_team_limit(&self, team: &str, limit: Option<usize>) -> Result<Option<usize>> {
        protocol::fleet::set_team_limit(&self.rt, team, limit).await
    }

    /// Holds one place of the team's limit, and a free id, for `ttl` (10 ms
    /// to 2^50 ms) before a slow create; `register` of the id (or
    /// [`Reservation::register`]) consumes it. Refused when the id has a
    /// record ([`Error::AlreadyExists`](crate::Error::AlreadyExists): a killed tombstone too, while it
    /// lasts), while it is already reserved ([`Error::Busy`](crate::Error::Busy)), and when the
    /// team is full ([`Error::TeamLimit`](crate::Error::TeamLimit)).
    ///
    /// Cancel safety: if dropped after the reservation was made, it holds
    /// until its ttl (its handle never reached the caller); nothing else is
    /// left behind.
    pub async fn reserve(&self, team: &str, id: &str, ttl: Duration) -> Result<Reservation> {
        let purpose = protocol::reserve::Purpose::Create;
        Reservation::made(
            &self.rt,
            protocol::reserve::reserve(&self.rt, team, id, ttl, purpose).await?,
        )
    }

    /// Holds one place of the team's limit, and the paused sandbox `id`, for
    /// `ttl` before a slow resume; `register` of a new execution consumes it.
    /// While it holds, a `begin` on the sandbox waits for it: a delete (kill)
    /// racing the resume is decided after the resume's register, never
    /// between the resume's check and its register. Refused unless the
    /// sandbox is a resumable tombstone ([`Error::NotFound`](crate::Error::NotFound),
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) naming its state), while a transition or
    /// another reservation holds it ([`Error::Busy`](crate::Error::Busy)), and when the team is
    /// full ([`Error::TeamLimit`](crate::Error::TeamLimit)).
    ///
    /// Cancel safety: as for [`reserve`](Coordinator::reserve).
    pub async fn reserve_resume(&self, team: &str, id: &str, ttl: Duration) -> Result<Reservation> {
        let purpose = protocol::reserve::Purpose::Resume;
        Reservation::made(
            &self.rt,
            protocol::reserve::reserve(&self.rt, team, id, ttl, purpose).await?,
        )
    }

    /// Like [`reserve`](Coordinator::reserve), but while the team is full it
    /// waits (woken by the team's notifications, with the poll as a
    /// fallback) for a place, at most `timeout`; then the last
    /// [`Error::TeamLimit`](crate::Error::TeamLimit).
    ///
    /// Cancel safety: as for `reserve`.
    pub async fn reserve_waiting(
        &self,
        team: &str,
        id: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Reservation> {
        let reserved = protocol::reserve::reserve_waiting(&self.rt, team, id, ttl, timeout).await?;
        Reservation::made(&self.rt, reserved)
    }

    /// Finds (and unless `dry_run`, fixes) drift between records and every
    /// index of the namespace: dangling entries, missing entries, wrong
    /// scores, orphan reservation tokens, teams missing from their slot's
    /// set, slots missing from the registry. Records are found with `SCAN`
    /// (the one operation that does; it needs `+scan`, see `sandboxctl acl
    /// --admin`), every check and fix is made inside one script per team on
    /// the state at that moment (with every key it touches declared, so
    /// under a slot migration it runs where the keys are or is refused with
    /// a retryable error), so a repair beside live traffic changes nothing
    /// that is right. A team or slot with a key of another type is reported
    /// (problem `type`) and left as it is; the other teams are repaired.
    ///
    /// Cancel safety: safe to drop; each team's repair is atomic.
    pub async fn repair(&self, dry_run: bool) -> Result<RepairReport> {
        protocol::admin::repair(&self.rt, dry_run).await
    }

    /// Converts a namespace written by schema 1 or 2 to this schema in
    /// place, record by record (each atomically): schema 2's records are
    /// written anew with their data in pieces of at most 64 bytes (so each
    /// is a `listpack`), a transition in flight staying in flight; schema
    /// 1's get their lease moved into the record. Refuses a record whose schema-1
    /// transition is still in flight ([`Error::Busy`](crate::Error::Busy): run it again when
    /// none is). With `adopt_lifecycle`, records of this schema created
    /// under another rule table are re-stamped with this coordinator's
    /// (see [`Error::LifecycleMismatch`](crate::Error::LifecycleMismatch)). Returns (converted, re-stamped).
    /// Uses `SCAN`.
    pub async fn migrate(&self, adopt_lifecycle: bool) -> Result<(usize, usize)> {
        protocol::admin::migrate(&self.rt, adopt_lifecycle).await
    }

    /// This coordinator's assembled scripts (SHA1 names the lifecycle and
    /// settings they were generated for), for listing, loading and
    /// `sandboxctl scripts --dump`.
    pub fn scripts(&self) -> Vec<&Script> {
        self.rt.env.scripts.all()
    }

    /// How many calls of this coordinator are waiting right now (joiners,
    /// queued re-deciders, `wait_idle`, place waiters).
    pub fn waiting(&self) -> usize {
        self.rt.notifier.waiting()
    }

    /// How many times an event happened after which notifications may have
    /// been lost (the first subscription, reconnects, resubscriptions after
    /// a slot moved); each makes every waiter re-check.
    pub fn subscription_epoch(&self) -> u64 {
        self.rt.notifier.epoch()
    }

    /// How many notification messages this coordinator's subscription has
    /// received (it subscribes only to the teams its waiters wait on).
    pub fn notifications_received(&self) -> u64 {
        self.rt.notifier.received()
    }

    /// How many team channels the notification connection is subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.rt.notifier.subscribed()
    }

    /// Waits (at most `timeout`) until the background work of calls that
    /// already returned is done: dropped transitions failed, dropped begins
    /// undone, dropped finishes completed, reservations given back. Call it
    /// on shutdown, after the last request, so that the process exits
    /// leaving no lease behind. `false` if the timeout ran out first.
    ///
    /// Cancel safety: safe to drop; the work goes on in the background.
    pub async fn close(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.rt.keeper.flush())
            .await
            .is_ok()
    }

    /// The URL(s) it talks to, passwords redacted.
    pub fn redis(&self) -> Vec<String> {
        self.rt
            .env
            .link
            .target()
            .nodes
            .iter()
            .map(|n| redact_url(n))
            .collect()
    }
}
