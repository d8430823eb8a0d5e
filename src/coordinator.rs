//! [`Coordinator`]: the public entry point. Each method validates its input,
//! runs one script, and maps the script's status word to a typed answer;
//! `begin` and `wait_idle` add the waiting loop (notification, poll, lease
//! deadline) around their script.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::keys::{Namespace, SCHEMA_VERSION, SandboxKeys, validate_id};
use crate::lifecycle::{Action, Lifecycle, Outcome, State};
use crate::notify::{Notifier, Wake};
use crate::pool::{Pool, PoolSettings};
use crate::sandbox::{
    Abandonment, Done, DoneReason, MAX_DATA_LEN, NewSandbox, Registration, Sandbox, parse_record,
    system_time_ms,
};
use crate::scripts::{self, Reply, SCRIPTS, Script};
use crate::transition::Transition;

/// Longest failure reason kept, in bytes; longer ones are cut.
pub const MAX_REASON_LEN: usize = 1024;

/// Options of [`Coordinator::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginOptions {
    /// Evictor mode: never wait (a live lease gives
    /// [`Error::EvictionInProgress`]), and refuse with
    /// [`Error::EvictionNotNeeded`] while the end time is in the future by
    /// Redis server time.
    pub eviction: bool,
    /// Pin to one incarnation; checked in the script and after every wait.
    pub expect_execution: Option<String>,
    /// Lease length (default 30 s).
    pub lease: Duration,
    /// Keep the lease alive while the [`Transition`] lives (default true).
    pub watchdog: bool,
    /// Bound on waiting for another transition (default: none; waits are
    /// still bounded by lease deadlines).
    pub wait_timeout: Option<Duration>,
}

impl Default for BeginOptions {
    fn default() -> Self {
        BeginOptions {
            eviction: false,
            expect_execution: None,
            lease: Duration::from_secs(30),
            watchdog: true,
            wait_timeout: None,
        }
    }
}

impl BeginOptions {
    /// Evictor mode (see [`BeginOptions::eviction`]).
    pub fn eviction(mut self) -> Self {
        self.eviction = true;
        self
    }
    /// Pins the call to one execution.
    pub fn expect_execution(mut self, execution: impl Into<String>) -> Self {
        self.expect_execution = Some(execution.into());
        self
    }
    /// Sets the lease length.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Turns the lease watchdog on or off.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }
    /// Bounds the wait for another transition.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }
}

/// What [`Coordinator::begin`] returns.
// `Started` is much larger than `AlreadyDone`; the value is matched at
// once and never stored in bulk, so boxing would only add an allocation
// to every started transition.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Begun {
    /// This caller holds the transition: do the work, then `succeed` or `fail`.
    Started(Transition),
    /// Nothing to do: see [`Done::why`].
    AlreadyDone(Done),
}

/// How a transition ended, as a waiter learned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub action: Option<Action>,
    pub outcome: Outcome,
    pub reason: String,
}

/// How an externally finished transition should end, for
/// [`Coordinator::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// It succeeded.
    Succeeded,
    /// It failed, for this reason.
    Failed(String),
}

/// Settings shared by every call of one coordinator.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub notifications: bool,
    pub poll_interval: Duration,
    pub tombstone_retention: Duration,
    pub outcome_retention: Duration,
}

/// Builds a [`Coordinator`] with non-default settings.
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    namespace: String,
    lifecycle: Lifecycle,
    pool: PoolSettings,
    settings: Settings,
}

impl Builder {
    /// Key prefix (default `sbx`).
    pub fn namespace(mut self, prefix: impl Into<String>) -> Self {
        self.namespace = prefix.into();
        self
    }
    /// The rule table (default [`Lifecycle::sandbox`]).
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }
    /// Command connections in the pool (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool.size = size.max(1);
        self
    }
    /// Connection timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.pool.connect_timeout = timeout;
        self
    }
    /// Bound on one Redis reply (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.pool.response_timeout = timeout;
        self
    }
    /// Fallback poll of waiters (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval.max(Duration::from_millis(1));
        self
    }
    /// Whether waiters are woken over pub/sub (default true). Off, they
    /// learn outcomes by polling and at lease deadlines only — for
    /// measuring what pub/sub buys, or for deployments without pub/sub.
    pub fn notifications(mut self, on: bool) -> Self {
        self.settings.notifications = on;
        self
    }
    /// How long paused/killed tombstones are kept (default 24 h; zero keeps
    /// them forever).
    pub fn tombstone_retention(mut self, retention: Duration) -> Self {
        self.settings.tombstone_retention = retention;
        self
    }
    /// How long recent outcomes are kept for late joiners (default 10 min).
    pub fn outcome_retention(mut self, retention: Duration) -> Self {
        self.settings.outcome_retention = retention.max(Duration::from_millis(1));
        self
    }

    /// Connects: creates the pool, loads the scripts, starts the
    /// notification connection and waits (bounded) for its subscription.
    pub async fn build(self) -> Result<Coordinator> {
        let ns = Namespace::new(&self.namespace)?;
        self.lifecycle
            .validate()
            .map_err(|why| Error::InvalidInput {
                what: "lifecycle",
                value: String::new(),
                why,
            })?;
        let pool = Pool::new(&self.url, self.pool)?;
        scripts::load_all(&pool).await?;
        let notifier = if self.settings.notifications {
            Notifier::start(pool.client().clone(), ns.channel())
        } else {
            Notifier::disabled()
        };
        if self.settings.notifications && !notifier.ready(self.pool.connect_timeout).await {
            tracing::warn!("notification subscription not up yet; waiters poll meanwhile");
        }
        let mut seed = RandomState::new().build_hasher();
        seed.write_u32(std::process::id());
        let rules_args = Action::ALL.map(|a| self.lifecycle.rules_arg(a));
        Ok(Coordinator {
            inner: Arc::new(Inner {
                holder_prefix: format!("{}-{:012x}", std::process::id(), seed.finish() >> 16),
                calls: AtomicU64::new(0),
                classes_arg: self.lifecycle.classes_arg(),
                rules_args,
                channel: ns.channel(),
                pool,
                ns,
                lifecycle: self.lifecycle,
                notifier,
                settings: self.settings,
            }),
        })
    }
}

/// Coordinates sandbox lifecycle transitions through Redis. Cheap to clone;
/// clones share connections.
#[derive(Clone, Debug)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) ns: Namespace,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) settings: Settings,
    pub(crate) channel: String,
    notifier: Notifier,
    holder_prefix: String,
    calls: AtomicU64,
    classes_arg: String,
    rules_args: [String; 3],
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("namespace", &self.ns.prefix())
            .field("holder", &self.holder_prefix)
            .field("pool", &self.pool)
            .finish()
    }
}

/// Who a call is about, for error messages.
pub(crate) struct Ctx<'a> {
    pub team: &'a str,
    pub id: &'a str,
    pub keys: &'a SandboxKeys,
}

impl Coordinator {
    /// Connects with default settings.
    pub async fn connect(url: &str) -> Result<Coordinator> {
        Coordinator::builder(url).build().await
    }

    /// A builder for non-default settings.
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            namespace: "sbx".into(),
            lifecycle: Lifecycle::sandbox(),
            pool: PoolSettings {
                size: 16,
                connect_timeout: Duration::from_secs(2),
                response_timeout: Duration::from_secs(5),
            },
            settings: Settings {
                notifications: true,
                poll_interval: Duration::from_secs(1),
                tombstone_retention: Duration::from_secs(24 * 3600),
                outcome_retention: Duration::from_secs(600),
            },
        }
    }

    /// The rule table in force.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The key namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.ns
    }

    /// This coordinator's holder id prefix (leases read `<prefix>/<call>`).
    pub fn holder_id(&self) -> &str {
        &self.inner.holder_prefix
    }

    /// Registers a sandbox, or a new incarnation over a paused one (a
    /// resume). Refuses while a lease is live ([`Error::Busy`]), over a
    /// live record of another execution or a killed tombstone
    /// ([`Error::AlreadyExists`]); the same execution again is idempotent.
    ///
    /// Not retried internally: after a transport error ([`Error::Redis`])
    /// the registration may or may not have happened; read the record (or
    /// register the same execution again) to find out.
    pub async fn register(&self, new: NewSandbox) -> Result<(Sandbox, Registration)> {
        let keys = self.inner.ns.sandbox(&new.team, &new.id)?;
        validate_id("execution id", &new.execution)?;
        if new.data.len() > MAX_DATA_LEN {
            return Err(Error::InvalidInput {
                what: "data",
                value: format!("{} bytes", new.data.len()),
                why: format!("is over the {MAX_DATA_LEN}-byte limit"),
            });
        }
        let end_ms = system_time_ms(new.end_time)?.to_string();
        let ctx = Ctx {
            team: &new.team,
            id: &new.id,
            keys: &keys,
        };
        let reply = self
            .inner
            .run_once(
                &SCRIPTS.register,
                &[&keys.record, &keys.lease, &keys.expiry],
                &[
                    SCHEMA_VERSION,
                    &new.id,
                    &new.execution,
                    &end_ms,
                    &new.data,
                    self.inner.lifecycle.initial().as_str(),
                    &self.inner.classes_arg,
                ],
            )
            .await?;
        let how = match reply.status() {
            "created" => Registration::Created,
            "existing" => Registration::Existing,
            "resumed" => Registration::Resumed {
                previous_execution: reply.get(1).to_string(),
            },
            _ => return Err(self.inner.error("register", &ctx, &reply, None, None)),
        };
        let sandbox = parse_record("register", &new.team, &new.id, &reply, 3)?;
        Ok((sandbox, how))
    }

    /// Reads a sandbox's record and lease in one atomic step.
    pub async fn get(&self, team: &str, id: &str) -> Result<Option<Sandbox>> {
        let keys = self.inner.ns.sandbox(team, id)?;
        self.inner
            .inspect(&Ctx {
                team,
                id,
                keys: &keys,
            })
            .await
    }

    /// Requests `action`. Decided by the lifecycle table against the state
    /// the record is in when the script runs; if a transition is in flight,
    /// joins it (same action) or waits for it and decides again.
    pub async fn begin(
        &self,
        team: &str,
        id: &str,
        action: Action,
        opts: BeginOptions,
    ) -> Result<Begun> {
        let keys = self.inner.ns.sandbox(team, id)?;
        if let Some(e) = &opts.expect_execution {
            validate_id("execution id", e)?;
        }
        if opts.lease < Duration::from_millis(10) {
            return Err(Error::InvalidInput {
                what: "lease",
                value: format!("{:?}", opts.lease),
                why: "is shorter than 10 ms".into(),
            });
        }
        let ctx = Ctx {
            team,
            id,
            keys: &keys,
        };
        let started = Instant::now();
        let deadline = opts.wait_timeout.map(|t| started + t);
        let holder = format!(
            "{}/{}",
            self.inner.holder_prefix,
            self.inner.calls.fetch_add(1, Ordering::Relaxed)
        );
        let spec = self.inner.lifecycle.spec(action);
        let lease_ms = opts.lease.as_millis().to_string();
        let retention = self
            .inner
            .settings
            .outcome_retention
            .as_millis()
            .to_string();
        let expect = opts.expect_execution.as_deref().unwrap_or("");
        loop {
            let reply = self
                .inner
                .run(
                    &SCRIPTS.begin,
                    &[
                        &keys.record,
                        &keys.lease,
                        &keys.outcomes,
                        &keys.expiry,
                        &keys.fence,
                    ],
                    &[
                        SCHEMA_VERSION,
                        team,
                        id,
                        action.as_str(),
                        spec.in_flight.as_str(),
                        if spec.ends_sandbox { "1" } else { "0" },
                        &lease_ms,
                        &holder,
                        if opts.eviction { "1" } else { "0" },
                        expect,
                        &self.inner.channel,
                        &retention,
                        &self.inner.classes_arg,
                        &self.inner.rules_args[action as usize],
                    ],
                )
                .await?;
            match reply.status() {
                "started" => {
                    let fence = reply.u64("begin", 1)?;
                    let sandbox = parse_record("begin", team, id, &reply, 3)?;
                    return Ok(Begun::Started(Transition::start(
                        Arc::clone(&self.inner),
                        keys,
                        action,
                        fence,
                        sandbox,
                        opts.lease,
                        opts.watchdog,
                        started,
                    )));
                }
                "same" | "absorbed" => {
                    let sandbox = parse_record("begin", team, id, &reply, 3)?;
                    let why = if reply.status() == "same" {
                        DoneReason::AlreadyInState
                    } else {
                        DoneReason::Absorbed { by: sandbox.state }
                    };
                    return Ok(Begun::AlreadyDone(Done {
                        why,
                        state: sandbox.state,
                    }));
                }
                "join" => {
                    let fence = reply.u64("begin", 1)?;
                    let ended = self.inner.await_end(&ctx, fence, deadline, started).await?;
                    return match ended.outcome {
                        Outcome::Succeeded => Ok(Begun::AlreadyDone(Done {
                            why: DoneReason::Joined { fence },
                            state: self.inner.lifecycle.state_after(action, Outcome::Succeeded),
                        })),
                        Outcome::Failed => Err(Error::TransitionFailed {
                            team: team.into(),
                            id: id.into(),
                            action,
                            fence,
                            reason: ended.reason,
                        }),
                        Outcome::Abandoned => Err(Error::Abandoned {
                            team: team.into(),
                            id: id.into(),
                            action,
                            fence,
                            reason: ended.reason,
                        }),
                    };
                }
                "wait" => {
                    let fence = reply.u64("begin", 1)?;
                    self.inner.await_end(&ctx, fence, deadline, started).await?;
                }
                _ => {
                    return Err(self.inner.error(
                        "begin",
                        &ctx,
                        &reply,
                        opts.expect_execution.as_deref(),
                        Some(action),
                    ));
                }
            }
        }
    }

    /// Waits until no transition is in flight on the sandbox, at most
    /// `timeout`, and returns the record as it then is.
    pub async fn wait_idle(&self, team: &str, id: &str, timeout: Duration) -> Result<Sandbox> {
        let keys = self.inner.ns.sandbox(team, id)?;
        let ctx = Ctx {
            team,
            id,
            keys: &keys,
        };
        let started = Instant::now();
        loop {
            let sandbox = self
                .inner
                .inspect(&ctx)
                .await?
                .ok_or_else(|| Error::NotFound {
                    team: team.into(),
                    id: id.into(),
                })?;
            let stuck_unrecorded = matches!(
                self.inner.lifecycle.class(sandbox.state),
                crate::lifecycle::StateClass::InFlight(_)
            ) && sandbox.fence > 0
                && sandbox
                    .last
                    .as_ref()
                    .is_none_or(|l| l.fence != sandbox.fence);
            match &sandbox.lease {
                // The holder vanished and nobody has said so yet: record
                // `abandoned` (fenced, atomic, published), then read again.
                None if stuck_unrecorded => {
                    let reply = self
                        .inner
                        .settle(&ctx, sandbox.fence, "expired", "lease expired")
                        .await?;
                    if !matches!(reply.status(), "outcome" | "abandoned" | "live" | "unknown") {
                        return Err(self.inner.error("settle", &ctx, &reply, None, None));
                    }
                }
                None => return Ok(sandbox),
                Some(lease) => {
                    self.inner
                        .await_end(&ctx, lease.fence, Some(started + timeout), started)
                        .await?;
                }
            }
        }
    }

    /// Moves a live sandbox's end time (and its expiry entry).
    pub async fn set_end_time(
        &self,
        team: &str,
        id: &str,
        end_time: std::time::SystemTime,
        expect_execution: Option<&str>,
    ) -> Result<()> {
        let keys = self.inner.ns.sandbox(team, id)?;
        if let Some(e) = expect_execution {
            validate_id("execution id", e)?;
        }
        let end_ms = system_time_ms(end_time)?.to_string();
        let ctx = Ctx {
            team,
            id,
            keys: &keys,
        };
        let reply = self
            .inner
            .run(
                &SCRIPTS.set_end_time,
                &[&keys.record, &keys.expiry],
                &[
                    SCHEMA_VERSION,
                    id,
                    &end_ms,
                    expect_execution.unwrap_or(""),
                    &self.inner.classes_arg,
                ],
            )
            .await?;
        match reply.status() {
            "ok" => Ok(()),
            "settled" => Err(Error::NotLive {
                team: team.into(),
                id: id.into(),
                state: reply.get(1).into(),
            }),
            _ => Err(self
                .inner
                .error("set_end_time", &ctx, &reply, expect_execution, None)),
        }
    }

    /// The ids of the team's sandboxes whose end time has passed by Redis
    /// server time, oldest first, at most `limit`.
    pub async fn due_for_eviction(&self, team: &str, limit: usize) -> Result<Vec<String>> {
        validate_id("team id", team)?;
        let expiry = self.inner.ns.expiry(team);
        let reply = self
            .inner
            .run(&SCRIPTS.due, &[&expiry], &[&limit.to_string()])
            .await?;
        if reply.status() == "corrupt" {
            return Err(Error::Corrupt {
                detail: reply.get(1).into(),
            });
        }
        Ok(reply.0.into_iter().skip(1).collect())
    }

    /// Deletes a sandbox's record and expiry entry. Refused while a
    /// transition holds the lease. Returns false if there was no record.
    ///
    /// Not retried internally: a retry after a lost reply could delete the
    /// next incarnation's record. After a transport error the removal may
    /// or may not have happened.
    pub async fn remove(&self, team: &str, id: &str) -> Result<bool> {
        let keys = self.inner.ns.sandbox(team, id)?;
        let ctx = Ctx {
            team,
            id,
            keys: &keys,
        };
        let reply = self
            .inner
            .run_once(
                &SCRIPTS.remove,
                &[&keys.record, &keys.lease, &keys.expiry],
                &[SCHEMA_VERSION, id, "", &self.inner.classes_arg],
            )
            .await?;
        match reply.status() {
            "removed" => Ok(true),
            "not_found" => Ok(false),
            _ => Err(self.inner.error("remove", &ctx, &reply, None, None)),
        }
    }

    /// Finishes transition `fence` by its fence, for a holder that lost its
    /// [`Transition`] value (e.g. a restarted process that stored the
    /// fence). Retry-safe: the same outcome for the same fence again is Ok
    /// while that outcome is kept (the newest 8 per sandbox, for the outcome
    /// retention); errors as for [`Transition::succeed`].
    pub async fn finish(
        &self,
        team: &str,
        id: &str,
        action: Action,
        fence: u64,
        how: Finish,
    ) -> Result<()> {
        let keys = self.inner.ns.sandbox(team, id)?;
        let (outcome, reason) = match how {
            Finish::Succeeded => (Outcome::Succeeded, String::new()),
            Finish::Failed(r) => (Outcome::Failed, r),
        };
        self.inner
            .finish(&keys, team, id, action, fence, outcome, &reason, false)
            .await
    }

    /// Operator repair: records `abandoned` for transition `fence` if it is
    /// still the record's current one and has no outcome, deleting its lease
    /// if live, and publishes it so waiters wake. Says whether this call
    /// abandoned it or it had already ended (then nothing was written).
    ///
    /// `Err(Fenced)` when no outcome of `fence` can be known (another
    /// transition started since and its outcome aged out, or the record is
    /// gone). A retry after a lost reply can report a transition this call
    /// abandoned as [`Abandonment::AlreadyEnded`] with outcome `abandoned`.
    pub async fn abandon(
        &self,
        team: &str,
        id: &str,
        fence: u64,
        reason: &str,
    ) -> Result<Abandonment> {
        let keys = self.inner.ns.sandbox(team, id)?;
        let ctx = Ctx {
            team,
            id,
            keys: &keys,
        };
        let reply = self.inner.settle(&ctx, fence, "force", reason).await?;
        let corrupt = |e: String| Error::Corrupt {
            detail: format!("outcome of {team}/{id} fence {fence}: {e}"),
        };
        match reply.status() {
            "abandoned" => Ok(Abandonment::Abandoned {
                action: reply.get(1).parse().ok(),
                reason: reply.get(3).to_string(),
            }),
            "outcome" => Ok(Abandonment::AlreadyEnded {
                outcome: reply.get(2).parse().map_err(corrupt)?,
                reason: reply.get(3).to_string(),
            }),
            "unknown" => Err(Error::Fenced {
                team: team.into(),
                id: id.into(),
                fence,
                current: None,
            }),
            _ => Err(self.inner.error("settle", &ctx, &reply, None, None)),
        }
    }

    /// The compiled-in scripts with their SHA1s.
    pub fn scripts() -> Vec<&'static Script> {
        SCRIPTS.all()
    }

    /// How many calls of this coordinator are waiting for a transition to
    /// end right now (joiners, re-deciders, `wait_idle`).
    pub fn waiting(&self) -> usize {
        self.inner.notifier.waiting()
    }

    /// How many times the notification subscription has been established
    /// (1 after connecting; each reconnect adds one).
    pub fn subscription_epoch(&self) -> u64 {
        self.inner.notifier.epoch()
    }
}

pub(crate) fn cut_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl Inner {
    /// Runs a script, retrying transport failures twice. Only for scripts
    /// that are idempotent for the same arguments: begin (through its
    /// holder id), finish (the recorded outcome), extend, settle and the
    /// reads. `register` and `remove` are not — a retry after a lost reply
    /// could report `Busy` for a register that happened, or delete the next
    /// incarnation — so they go through [`Inner::run_once`].
    pub(crate) async fn run(&self, script: &Script, keys: &[&str], args: &[&str]) -> Result<Reply> {
        self.run_with_retries(script, keys, args, 2).await.0
    }

    /// Runs a script once; a transport error means its effect is unknown
    /// and is returned as it is (retryable by the caller, who can re-read).
    pub(crate) async fn run_once(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply> {
        self.run_with_retries(script, keys, args, 0).await.0
    }

    /// Runs a script, retrying transport failures `retries` times; also
    /// says whether an attempt before the last failed in transport (and so
    /// may have run: its reply, not its request, may be what was lost).
    async fn run_with_retries(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        retries: u32,
    ) -> (Result<Reply>, bool) {
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            match scripts::invoke(&self.pool, script, keys, args).await {
                Err(e) if attempt < retries && transport(&e) => {
                    tracing::debug!(script = script.name, error = %e, "retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                }
                other => return (other, attempt > 0),
            }
        }
    }

    pub(crate) async fn inspect(&self, ctx: &Ctx<'_>) -> Result<Option<Sandbox>> {
        let reply = self
            .run(
                &SCRIPTS.inspect,
                &[&ctx.keys.record, &ctx.keys.lease],
                &[SCHEMA_VERSION],
            )
            .await?;
        match reply.status() {
            "record" => Ok(Some(parse_record("inspect", ctx.team, ctx.id, &reply, 3)?)),
            "not_found" => Ok(None),
            _ => Err(self.error("inspect", ctx, &reply, None, None)),
        }
    }

    pub(crate) async fn settle(
        &self,
        ctx: &Ctx<'_>,
        fence: u64,
        mode: &str,
        reason: &str,
    ) -> Result<Reply> {
        self.run(
            &SCRIPTS.settle,
            &[&ctx.keys.record, &ctx.keys.lease, &ctx.keys.outcomes],
            &[
                SCHEMA_VERSION,
                ctx.team,
                ctx.id,
                &fence.to_string(),
                mode,
                cut_reason(reason),
                &self.channel,
                &self.settings.outcome_retention.as_millis().to_string(),
                &self.classes_arg,
            ],
        )
        .await
    }

    /// Waits until transition `fence` has ended and returns how. Woken by
    /// its notification, by a resubscription, by the poll interval, and at
    /// the lease deadline (when `settle` records `abandoned`). Never
    /// reports an outcome it did not read from Redis or a notification.
    pub(crate) async fn await_end(
        &self,
        ctx: &Ctx<'_>,
        fence: u64,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Result<Ended> {
        let mut watch = self.notifier.watch(ctx.team, ctx.id);
        loop {
            let reply = self.settle(ctx, fence, "expired", "lease expired").await?;
            let lease_left = match reply.status() {
                "outcome" | "abandoned" => {
                    return Ok(Ended {
                        action: reply.get(1).parse().ok(),
                        outcome: reply.get(2).parse().map_err(|e: String| Error::Corrupt {
                            detail: format!(
                                "outcome of {}/{} fence {fence}: {e}",
                                ctx.team, ctx.id
                            ),
                        })?,
                        reason: reply.get(3).to_string(),
                    });
                }
                "unknown" => {
                    return Ok(Ended {
                        action: None,
                        outcome: Outcome::Abandoned,
                        reason: "outcome unknown: the record was removed or replaced".into(),
                    });
                }
                "live" => Duration::from_millis(reply.u64("settle", 1).unwrap_or(0)),
                _ => return Err(self.error("settle", ctx, &reply, None, None)),
            };
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout {
                    team: ctx.team.into(),
                    id: ctx.id.into(),
                    waited: now - started,
                });
            }
            // Wake at the poll interval, or just after the lease deadline
            // (the server expires the key; settle then records abandoned).
            let mut wake = (now + self.settings.poll_interval)
                .min(now + lease_left + Duration::from_millis(2));
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            loop {
                tokio::select! {
                    w = watch.next() => match w {
                        Wake::Notice(n) if n.fence == fence => {
                            return Ok(Ended {
                                action: n.action.parse().ok(),
                                outcome: n.outcome,
                                reason: n.reason,
                            });
                        }
                        // An older transition's news: ours is still running.
                        Wake::Notice(n) if n.fence < fence => continue,
                        _ => break,
                    },
                    _ = tokio::time::sleep_until(wake) => break,
                }
            }
        }
    }

    /// Finishes transition `fence`, retrying transport failures (finishing
    /// is retry-safe while the outcome can be read back). `unsure`: an
    /// earlier call for the same finish failed in transport and may have
    /// recorded it.
    ///
    /// A retry that finds the outcome recorded answers Ok. One that finds
    /// the fence stale or the record gone cannot tell "an earlier attempt
    /// recorded it, and the record moved on" from "it was stale all along",
    /// so after a lost reply that answer is [`Error::FinishUnknown`], never
    /// `Fenced` ("nothing written") or `NotFound`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish(
        &self,
        keys: &SandboxKeys,
        team: &str,
        id: &str,
        action: Action,
        fence: u64,
        outcome: Outcome,
        reason: &str,
        unsure: bool,
    ) -> Result<()> {
        let next = match outcome {
            Outcome::Succeeded => Some(self.lifecycle.spec(action).on_success),
            _ => self.lifecycle.spec(action).on_failure,
        };
        let tombstone = next.is_some_and(|s| self.lifecycle.class(s).is_tombstone());
        let (reply, retried) = self
            .run_with_retries(
                &SCRIPTS.finish,
                &[&keys.record, &keys.lease, &keys.outcomes, &keys.expiry],
                &[
                    SCHEMA_VERSION,
                    team,
                    id,
                    &fence.to_string(),
                    action.as_str(),
                    outcome.as_str(),
                    next.map(State::as_str).unwrap_or(""),
                    if tombstone { "1" } else { "0" },
                    &self.settings.tombstone_retention.as_millis().to_string(),
                    cut_reason(reason),
                    &self.channel,
                    &self.settings.outcome_retention.as_millis().to_string(),
                    &self.classes_arg,
                ],
                2,
            )
            .await;
        let reply = reply?;
        let ctx = Ctx { team, id, keys };
        if (unsure || retried) && matches!(reply.status(), "fenced" | "not_found") {
            return Err(Error::FinishUnknown {
                team: team.into(),
                id: id.into(),
                fence,
                action: action.as_str().into(),
            });
        }
        match reply.status() {
            "finished" => Ok(()),
            "recorded" if reply.get(1) == outcome.as_str() => Ok(()),
            "recorded" => Err(Error::Fenced {
                team: team.into(),
                id: id.into(),
                fence,
                current: None,
            }),
            "fenced" => Err(Error::Fenced {
                team: team.into(),
                id: id.into(),
                fence,
                current: reply.get(1).parse().ok(),
            }),
            _ => Err(self.error("finish", &ctx, &reply, None, Some(action))),
        }
    }

    pub(crate) async fn extend(
        &self,
        keys: &SandboxKeys,
        fence: u64,
        lease: Duration,
    ) -> Result<Option<Duration>> {
        let reply = self
            .run(
                &SCRIPTS.extend,
                &[&keys.lease],
                &[&fence.to_string(), &lease.as_millis().to_string()],
            )
            .await?;
        match reply.status() {
            "extended" => Ok(Some(Duration::from_millis(reply.u64("extend", 1)?))),
            "fenced" => Ok(None),
            _ => Err(Error::Corrupt {
                detail: format!("extend.lua: {:?}", reply.0),
            }),
        }
    }

    /// Maps the status words every script shares to errors.
    pub(crate) fn error(
        &self,
        script: &str,
        ctx: &Ctx<'_>,
        reply: &Reply,
        expected_exec: Option<&str>,
        action: Option<Action>,
    ) -> Error {
        let (team, id) = (ctx.team.to_string(), ctx.id.to_string());
        let number = |i: usize| reply.get(i).parse::<u64>().unwrap_or(0);
        match reply.status() {
            "not_found" => Error::NotFound { team, id },
            "exec_mismatch" => Error::ExecutionMismatch {
                team,
                id,
                expected: expected_exec.unwrap_or("").into(),
                actual: reply.get(1).into(),
            },
            "invalid" => match (reply.get(1).parse::<State>(), action) {
                (Ok(from), Some(action)) => Error::InvalidTransition {
                    team,
                    id,
                    from,
                    action,
                },
                _ => Error::Corrupt {
                    detail: format!("{script}.lua: {:?}", reply.0),
                },
            },
            "busy" => Error::Busy {
                team,
                id,
                fence: number(1),
                action: reply.get(2).into(),
            },
            "exists" => Error::AlreadyExists {
                team,
                id,
                execution: reply.get(1).into(),
                state: reply.get(2).into(),
            },
            "eviction_in_progress" => Error::EvictionInProgress {
                team,
                id,
                fence: number(1),
                action: reply.get(2).into(),
            },
            "eviction_not_needed" => Error::EvictionNotNeeded {
                team,
                id,
                end_ms: number(1),
                now_ms: number(2),
            },
            "schema" => Error::SchemaMismatch {
                key: ctx.keys.record.clone(),
                found: reply.get(1).into(),
                expected: SCHEMA_VERSION,
            },
            "corrupt" => Error::Corrupt {
                detail: reply.get(1).into(),
            },
            _ => Error::Corrupt {
                detail: format!("{script}.lua gave an unexpected reply {:?}", reply.0),
            },
        }
    }
}

/// Whether an error is a transport failure worth one more attempt.
pub(crate) fn transport(e: &Error) -> bool {
    match e {
        Error::Redis(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
        }
        Error::Pool(_) => true,
        _ => false,
    }
}
