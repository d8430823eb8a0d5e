//! [`Coordinator`] and its [`Builder`]: the façade. Each method validates
//! its input, runs its script (through `ops`), and, where it must wait,
//! hands over to `wait`. Nothing below imports this module.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::bounds;
use crate::connection::{Connections, Link, LinkSettings, Target};
use crate::error::{Error, Result};
use crate::keeper::{Job, Keeper};
use crate::keys::{Namespace, SandboxKeys, TeamKeys, validate_id};
use crate::lifecycle::{Action, Lifecycle, Outcome};
use crate::notify::{Notifier, NotifySettings};
use crate::ops::begin::BeginArgs;
use crate::ops::finish::{Target as FinishTarget, finish_retrying};
use crate::ops::settle::Settled;
use crate::ops::{self, Ctx, Env};
use crate::protocol::step::{Answer, Call, Input, Loop, Mode, Next};
use crate::redact::redact_url;
use crate::reservation::Reservation;
use crate::runtime::{Runtime, Settings};
use crate::sandbox::{
    Abandonment, Done, DoneReason, EndTime, MAX_DATA_LEN, NewSandbox, Page, Registration,
    RepairReport, Sandbox, TeamCount,
};
use crate::scripts::{Script, ScriptSettings, Scripts};
use crate::transition::{Transition, cut_reason};

/// Options of [`Coordinator::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginOptions {
    /// Evictor mode: never wait (a live lease, a reservation or queued
    /// waiters give [`Error::EvictionInProgress`]), and refuse with
    /// [`Error::EvictionNotNeeded`] while the end time is in the future by
    /// Redis server time.
    pub eviction: bool,
    /// Pin to one incarnation; checked in the script and after every wait.
    pub expect_execution: Option<String>,
    /// Lease length (default 30 s; 10 ms to 2^50 ms).
    pub lease: Duration,
    /// Keep the lease alive while the [`Transition`] lives (default true).
    pub watchdog: bool,
    /// Bound on waiting for another transition (default: none; waits are
    /// still bounded by lease deadlines). `Duration::MAX` means none.
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

/// How an externally finished transition should end, for
/// [`Coordinator::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// It succeeded.
    Succeeded,
    /// It failed, for this reason.
    Failed(String),
}

/// Builds a [`Coordinator`] with non-default settings. `Debug` never shows
/// a password (URL userinfo or [`Builder::password`]).
#[derive(Clone)]
pub struct Builder {
    target: Target,
    namespace: String,
    lifecycle: Lifecycle,
    connections: Connections,
    connect_timeout: Duration,
    response_timeout: Duration,
    poll_interval: Duration,
    notifications: bool,
    health_check_interval: Duration,
    tombstone_retention: Duration,
    outcome_retention: Duration,
    wait: Option<(usize, Duration)>,
    team_limit: Option<usize>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("target", &self.target)
            .field("namespace", &self.namespace)
            .field("lifecycle", &self.lifecycle.digest())
            .field("connections", &self.connections)
            .field("poll_interval", &self.poll_interval)
            .field("notifications", &self.notifications)
            .field("wait_for_replicas", &self.wait)
            .field("team_limit", &self.team_limit)
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn new(nodes: Vec<String>, cluster: bool) -> Builder {
        Builder {
            target: Target {
                nodes,
                cluster,
                ..Target::default()
            },
            namespace: "sbx".into(),
            lifecycle: Lifecycle::sandbox(),
            connections: Connections::Multiplexed(1),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            notifications: true,
            health_check_interval: Duration::from_secs(5),
            tombstone_retention: Duration::from_secs(24 * 3600),
            outcome_retention: Duration::from_secs(600),
            wait: None,
            team_limit: None,
        }
    }

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
    /// How commands reach a single server (default one multiplexed
    /// connection; ignored on Redis Cluster, whose client keeps one per node).
    pub fn connections(mut self, connections: Connections) -> Self {
        self.connections = connections;
        self
    }
    /// Command connections in a pool: shorthand for
    /// `connections(Connections::Pooled(size))`.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.connections = Connections::Pooled(size.max(1));
        self
    }
    /// Connection timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// Bound on one Redis reply (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// Fallback poll of waiters (default 1 s; 1 ms to 1 h, saturating).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self
    }
    /// Whether waiters are woken over pub/sub (default true). Off, they
    /// learn outcomes by polling and at lease deadlines only.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }
    /// How often the notification connection is checked with `PING`
    /// (default 5 s; 10 ms to 1 h, saturating).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval =
            interval.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        self
    }
    /// How long paused/killed tombstones are kept (default 24 h; zero keeps
    /// them forever).
    pub fn tombstone_retention(mut self, retention: Duration) -> Self {
        self.tombstone_retention = retention;
        self
    }
    /// How long each transition's outcome is kept for late joiners and for
    /// finishes retried after a lost reply (default 10 min).
    pub fn outcome_retention(mut self, retention: Duration) -> Self {
        self.outcome_retention = retention;
        self
    }
    /// Trusts this CA (PEM) for `rediss://` (a private CA); without it the
    /// system's roots are used.
    pub fn tls_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.target.root_cert = Some(pem);
        self
    }
    /// Presents this client certificate and key (PEM) for mutual TLS.
    pub fn tls_client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.target.client_cert = Some((cert_pem, key_pem));
        self
    }
    /// The ACL user (instead of one in the URL).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.target.username = Some(user.into());
        self
    }
    /// The password (instead of one in the URL); never shown by `Debug`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.target.password = Some(password.into());
        self
    }
    /// Follows every write script with `WAIT n timeout` in the same round
    /// trip; fewer acknowledgements than `n` is [`Error::NotReplicated`].
    pub fn wait_for_replicas(mut self, n: usize, timeout: Duration) -> Self {
        self.wait = (n > 0).then_some((n, timeout));
        self
    }
    /// The limit of places (sandboxes that are not tombstones, plus
    /// reservations) of teams without their own
    /// ([`Coordinator::set_team_limit`]). Default: none.
    pub fn team_limit(mut self, limit: usize) -> Self {
        self.team_limit = Some(limit);
        self
    }

    /// Connects: the command connections, the scripts (loaded on every
    /// primary), the notification connection (waited for, bounded) and the
    /// lease keeper.
    pub async fn build(self) -> Result<Coordinator> {
        let ns = Namespace::new(&self.namespace)?;
        self.lifecycle
            .validate()
            .map_err(|why| Error::InvalidInput {
                what: "lifecycle",
                value: self.lifecycle.digest(),
                why,
            })?;
        let outcome_ms = bounds::duration_ms(
            "outcome retention",
            self.outcome_retention,
            Duration::from_millis(1),
        )?;
        let tombstone_ms = bounds::duration_ms(
            "tombstone retention",
            self.tombstone_retention,
            Duration::ZERO,
        )?;
        if let Some((_, t)) = self.wait {
            bounds::duration_ms("wait_for_replicas timeout", t, Duration::ZERO)?;
        }
        if let Some(limit) = self.team_limit {
            team_limit_arg(limit)?;
        }
        let settings = LinkSettings {
            connections: self.connections,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            wait: self.wait,
        };
        let link = Link::connect(self.target.clone(), settings).await?;
        let scripts = Scripts::assemble(
            &self.lifecycle,
            &ScriptSettings {
                publish: if link.is_cluster() {
                    "SPUBLISH"
                } else {
                    "PUBLISH"
                },
                outcome_ms,
                tombstone_ms,
            },
        );
        link.load(&scripts.all()).await?;
        check_permissions(&link, &scripts, &ns).await?;
        crate::metrics::describe();
        let notifier = if self.notifications {
            Notifier::start(
                &link,
                NotifySettings {
                    health_interval: self.health_check_interval,
                    linger: Duration::from_secs(10),
                    connect_timeout: self.connect_timeout,
                    response_timeout: self.response_timeout,
                },
            )
        } else {
            Notifier::disabled()
        };
        if self.notifications && !notifier.ready(self.connect_timeout).await {
            tracing::warn!("notification connection not up yet; waiters poll meanwhile");
        }
        let env = Arc::new(Env {
            link,
            scripts,
            digest: self.lifecycle.digest(),
            lifecycle: self.lifecycle,
            ns,
            default_limit: self.team_limit,
        });
        let keeper = Keeper::start(Arc::clone(&env), self.response_timeout);
        let mut seed = RandomState::new().build_hasher();
        seed.write_u32(std::process::id());
        let holder_prefix = format!("{}-{:012x}", std::process::id(), seed.finish() >> 16);
        Ok(Coordinator {
            rt: Arc::new(Runtime::new(
                env,
                notifier,
                keeper,
                Settings {
                    poll_interval: self.poll_interval,
                    response_timeout: self.response_timeout,
                },
                holder_prefix,
            )),
        })
    }
}

/// Refuses a user whose ACL rules lack a command the library needs, naming
/// them (one script call at start; `sandboxctl acl` prints the rules).
async fn check_permissions(link: &Link, scripts: &Scripts, ns: &Namespace) -> Result<()> {
    let probe = ns.team_unchecked("~probe");
    let key = probe.key("probe");
    let channel = probe.channel();
    let mut args: Vec<&str> = vec![&channel];
    args.extend(crate::acl::CHECKED.iter().copied().filter(|c| {
        // One of the two publish commands is used, per deployment.
        let cluster = link.is_cluster();
        !(cluster && (c.starts_with("PUBLISH") || c.starts_with("SUBSCRIBE"))
            || !cluster && (c.starts_with("SPUBLISH") || c.starts_with("SSUBSCRIBE")))
    }));
    let (value, _) = link
        .run(
            &scripts.permissions,
            &[&key],
            &args,
            false,
            crate::connection::Route::default(),
        )
        .await?;
    let refused: Vec<String> = strings(value).into_iter().skip(1).collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::NoPermission {
        detail: format!(
            "the user may not run {} on the namespace's keys or channels",
            refused.join(", ")
        ),
    })
}

fn team_limit_arg(limit: usize) -> Result<String> {
    if limit as u64 > crate::record::MAX_INT {
        return Err(Error::InvalidInput {
            what: "team limit",
            value: limit.to_string(),
            why: "is larger than 2^53 - 1".into(),
        });
    }
    Ok(limit.to_string())
}

/// Coordinates sandbox lifecycle transitions through Redis. Cheap to clone;
/// clones share connections, the notification connection and the lease
/// keeper.
#[derive(Clone, Debug)]
pub struct Coordinator {
    rt: Arc<Runtime>,
}

/// The dropped-begin guard: while armed, dropping it (the begin future was
/// dropped, or it returned while still queued) sends the keeper a cancel
/// by holder, which fails a transition the script started that nobody
/// received, or takes the caller out of the queue.
struct PendingBegin<'a> {
    rt: &'a Runtime,
    team: &'a str,
    id: &'a str,
    keys: &'a SandboxKeys,
    holder: &'a str,
    route: crate::connection::Route,
    armed: bool,
    reason: &'static str,
}

impl Drop for PendingBegin<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.rt.keeper.send(Job::Cancel {
                team: self.team.to_string(),
                id: self.id.to_string(),
                keys: self.keys.clone(),
                holder: self.holder.to_string(),
                reason: self.reason,
                route: self.route,
                again: true,
            });
        }
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

    fn ctx<'a>(&self, team: &'a str, id: &'a str, keys: &'a SandboxKeys) -> Ctx<'a> {
        Ctx { team, id, keys }
    }

    /// Adds the team's slot to the namespace's slot registry (for
    /// [`due_for_eviction_all`](Coordinator::due_for_eviction_all)). A
    /// register adds it *before* its script when this coordinator has not
    /// listed the slot yet, so that no record ever exists in a slot the
    /// registry does not list (a fleet-wide read or a repair between the
    /// two steps, or a register dropped between them, would otherwise find
    /// one). `mark` also sets the slot's `listed` marker, which a script
    /// reads to report a slot whose registry entry may be missing.
    /// A registry of another type (damaged) is logged and counted, not an
    /// error; `repair` reports it.
    async fn list_slot(&self, keys: &TeamKeys, mark: bool) -> Result<()> {
        let env = &self.rt.env;
        let added = env
            .link
            .query(
                redis::cmd("SADD").arg(env.ns.slots()).arg(keys.slot),
                crate::connection::Route::default(),
            )
            .await;
        if let Err(Error::Redis(e)) = &added
            && e.code() == Some("WRONGTYPE")
        {
            crate::metrics::damaged("slot");
            tracing::warn!(registry = %env.ns.slots(), "the slot registry is not a set: slot not listed");
            return Ok(());
        }
        added?;
        self.rt.listed.insert(keys.slot);
        if mark {
            self.mark_listed(keys).await?;
        }
        Ok(())
    }

    /// Sets the slot's `listed` marker (the slot is in the registry).
    async fn mark_listed(&self, keys: &TeamKeys) -> Result<()> {
        self.rt
            .env
            .link
            .query(
                redis::cmd("SET")
                    .arg(format!("{}listed", keys.slot_prefix))
                    .arg("1"),
                crate::connection::Route::default(),
            )
            .await?;
        Ok(())
    }

    /// Registers a sandbox, or a new incarnation over a paused one (a
    /// resume), with its place under the team's limit. Refuses while a
    /// lease is live ([`Error::Busy`]), over a live
    /// record of another execution or a killed tombstone
    /// ([`Error::AlreadyExists`]), while another caller holds a reservation
    /// of the id ([`Error::Busy`]; register through
    /// [`Reservation::register`], which consumes it), and when the team is
    /// full ([`Error::TeamLimit`]); the same execution again is idempotent
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
        self.register_with(new, "").await
    }

    /// Registers with the token of a reservation of the id (consumed).
    pub(crate) async fn register_with(
        &self,
        new: NewSandbox,
        token: &str,
    ) -> Result<(Sandbox, Registration)> {
        let keys = self.rt.env.ns.sandbox(&new.team, &new.id)?;
        validate_id("execution id", &new.execution)?;
        if new.data.len() > MAX_DATA_LEN {
            return Err(Error::InvalidInput {
                what: "data",
                value: format!("{} bytes", new.data.len()),
                why: format!("is over the {MAX_DATA_LEN}-byte limit"),
            });
        }
        let end = bounds::end_arg(new.end_time)?;
        let ctx = self.ctx(&new.team, &new.id, &keys);
        let span = tracing::info_span!("register", team = %new.team, sandbox = %new.id);
        let listed_first = !self.rt.listed.contains(keys.team.slot);
        if listed_first {
            self.list_slot(&keys.team, false).await?;
        }
        let registered =
            ops::register::register(&self.rt.env, &ctx, &new.execution, &end, &new.data, token)
                .instrument(span)
                .await?;
        if registered.slot_unlisted {
            if listed_first && self.rt.listed.contains(keys.team.slot) {
                self.mark_listed(&keys.team).await?;
            } else {
                self.list_slot(&keys.team, true).await?;
            }
        }
        ops::replicated("register", registered.replication)?;
        Ok((registered.sandbox, registered.how))
    }

    /// Reads a sandbox's record (with its lease, queue and reservation) in
    /// one atomic step.
    ///
    /// Cancel safety: safe to drop (read-only).
    pub async fn get(&self, team: &str, id: &str) -> Result<Option<Sandbox>> {
        let keys = self.rt.env.ns.sandbox(team, id)?;
        ops::inspect::inspect(&self.rt.env, &self.ctx(team, id, &keys)).await
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
        let keys = self.rt.env.ns.sandbox(team, id)?;
        if let Some(e) = &opts.expect_execution {
            validate_id("execution id", e)?;
        }
        bounds::duration_ms("lease", opts.lease, Duration::from_millis(10))?;
        let span = tracing::info_span!(
            "begin", team = %team, sandbox = %id, action = %action,
            fence = tracing::field::Empty, decision = tracing::field::Empty
        );
        let result = self
            .begin_inner(team, id, &keys, action, &opts, span.clone())
            .instrument(span.clone())
            .await;
        let decision = match &result {
            Ok(Begun::Started(t)) => {
                span.record("fence", t.fence());
                "start"
            }
            Ok(Begun::AlreadyDone(d)) => match d.why {
                DoneReason::Joined { fence } => {
                    span.record("fence", fence);
                    "join"
                }
                DoneReason::AlreadyInState => "same",
                DoneReason::Absorbed { .. } => "absorbed",
            },
            Err(Error::InvalidTransition { .. }) => "invalid",
            Err(_) => "error",
        };
        span.record("decision", decision);
        crate::metrics::begin(action, decision);
        result
    }

    async fn begin_inner(
        &self,
        team: &str,
        id: &str,
        keys: &SandboxKeys,
        action: Action,
        opts: &BeginOptions,
        span: tracing::Span,
    ) -> Result<Begun> {
        let rt = &self.rt;
        let ctx = self.ctx(team, id, keys);
        let started = Instant::now();
        let deadline = opts.wait_timeout.and_then(|t| bounds::deadline(started, t));
        let holder = rt.next_holder();
        let route = rt.env.link.pick();
        let args = BeginArgs {
            holder: &holder,
            lease: opts.lease,
            expect_execution: opts.expect_execution.as_deref(),
            eviction: opts.eviction,
            queue_place: rt.queue_place(opts.lease),
        };
        let mut guard = PendingBegin {
            rt,
            team,
            id,
            keys,
            holder: &holder,
            route,
            armed: false,
            reason: "cancelled",
        };
        let mut lp = Loop::new(
            team,
            id,
            &keys.record,
            &rt.env.lifecycle,
            rt.settings.poll_interval,
            Mode::Begin(action),
            started.into_std(),
            deadline.map(Instant::into_std),
        );
        let mut sent_at = started;
        let mut io = crate::wait::Io::new(rt, &ctx);
        let mut input = Input::Start;
        let result = loop {
            let next = lp.step(input, crate::wait::Io::now());
            // Armed while the request may hold something nobody received.
            guard.armed = lp.cancel().is_some();
            guard.reason = lp.cancel().unwrap_or("cancelled");
            input = match next {
                Next::Call(Call::Begin) => {
                    sent_at = Instant::now();
                    Input::Begun(ops::begin::begin(&rt.env, &ctx, action, &args, route).await)
                }
                Next::Answer(r) => break r,
                other => io.perform(other).await,
            };
        };
        if let Some(t) = lp.joined {
            crate::metrics::waited(action.as_str(), "join", t.elapsed());
        }
        match result? {
            Answer::Started {
                fence,
                lease,
                execution,
            } => {
                if let Some(w) = lp.waited {
                    crate::metrics::waited(action.as_str(), "wait", w.elapsed());
                }
                guard.armed = false;
                let target = FinishTarget {
                    team: team.to_string(),
                    id: id.to_string(),
                    keys: keys.clone(),
                    action,
                    fence,
                    holder: holder.clone(),
                };
                Ok(Begun::Started(Transition::start(
                    Arc::clone(rt),
                    target,
                    execution,
                    opts.lease,
                    lease,
                    opts.watchdog,
                    sent_at,
                    route,
                    span,
                )))
            }
            Answer::Done(done) => Ok(Begun::AlreadyDone(done)),
            Answer::Idle(_) => Err(Error::Corrupt {
                detail: "begin answered like wait_idle".into(),
            }),
        }
    }

    /// Waits until no transition is in flight on the sandbox, at most
    /// `timeout` (`Duration::MAX`: no bound), and returns the record as it
    /// then is. A stuck transition (holder gone) is recorded as abandoned.
    ///
    /// Cancel safety: safe to drop; it only records outcomes that are true
    /// (`abandoned` for an expired lease).
    pub async fn wait_idle(&self, team: &str, id: &str, timeout: Duration) -> Result<Sandbox> {
        let keys = self.rt.env.ns.sandbox(team, id)?;
        let ctx = self.ctx(team, id, &keys);
        let started = Instant::now();
        let deadline = bounds::deadline(started, timeout);
        let mut lp = Loop::new(
            team,
            id,
            &keys.record,
            &self.rt.env.lifecycle,
            self.rt.settings.poll_interval,
            Mode::Idle,
            started.into_std(),
            deadline.map(Instant::into_std),
        );
        let mut io = crate::wait::Io::new(&self.rt, &ctx);
        let mut input = Input::Start;
        let answer = loop {
            match lp.step(input, crate::wait::Io::now()) {
                Next::Answer(r) => break r?,
                next => input = io.perform(next).await,
            }
        };
        match answer {
            Answer::Idle(sandbox) => {
                crate::metrics::waited("any", "idle", started.elapsed());
                Ok(*sandbox)
            }
            _ => Err(Error::Corrupt {
                detail: "wait_idle answered like begin".into(),
            }),
        }
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
        let keys = self.rt.env.ns.sandbox(team, id)?;
        if let Some(e) = expect_execution {
            validate_id("execution id", e)?;
        }
        let end = bounds::end_arg(end.into())?;
        let replication = ops::end_time::set_end_time(
            &self.rt.env,
            &self.ctx(team, id, &keys),
            &end,
            expect_execution,
        )
        .await?;
        ops::replicated("set_end_time", replication)
    }

    /// The ids of the team's sandboxes whose end time has passed by Redis
    /// server time, oldest first, at most `limit` (1 to 100,000). Index
    /// entries whose record vanished behind the library's back are swept on
    /// the way, so they never starve real evictions.
    ///
    /// Cancel safety: safe to drop.
    pub async fn due_for_eviction(&self, team: &str, limit: usize) -> Result<Vec<String>> {
        let keys = self.rt.env.ns.team(team)?;
        let limit = bounds::count("limit", limit, 100_000)?;
        let found = ops::due::team(&self.rt.env, team, &keys, limit).await?;
        self.sweep(found.orphans).await?;
        Ok(found.due.into_iter().map(|(_, id, _)| id).collect())
    }

    /// Sweeps index entries whose record vanished (each by a script that
    /// declares the record key, so a slot migration cannot fool it).
    /// Housekeeping only: a sweep that fails (an id no key can name, a
    /// transient error) is logged and left for the next call or `repair`.
    async fn sweep(&self, orphans: Vec<(String, String)>) -> Result<()> {
        let calls = orphans
            .iter()
            .map(|(team, id)| ops::due::sweep(&self.rt.env, team, id));
        for (swept, (team, id)) in futures_util::future::join_all(calls)
            .await
            .iter()
            .zip(&orphans)
        {
            if let Err(e) = swept {
                tracing::warn!(team = %team, sandbox = %id, error = %e, "stale index entry not swept");
            }
        }
        Ok(())
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
        let limit = bounds::count("limit", limit, 100_000)?;
        let env = &self.rt.env;
        let slots = self.registered_slots().await?;
        let calls = slots.iter().map(|&slot| ops::due::slot(env, slot, limit));
        let mut all = Vec::new();
        let mut orphans = Vec::new();
        for (found, slot) in futures_util::future::join_all(calls)
            .await
            .into_iter()
            .zip(&slots)
        {
            let found = match found {
                Err(Error::Corrupt { detail }) => {
                    crate::metrics::damaged("slot");
                    tracing::warn!(slot, %detail, "damaged slot skipped by due_for_eviction_all");
                    continue;
                }
                other => other?,
            };
            for (team, detail) in &found.damaged {
                crate::metrics::damaged("team");
                tracing::warn!(team = %team, %detail, "damaged team skipped by due_for_eviction_all");
            }
            // An entry no key can name (a damaged index) is left to repair.
            all.extend(
                found
                    .due
                    .into_iter()
                    .filter(|(team, id, _)| env.ns.sandbox(team, id).is_ok()),
            );
            orphans.extend(found.orphans);
        }
        self.sweep(orphans).await?;
        all.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        all.truncate(limit);
        Ok(all.into_iter().map(|(team, id, _)| (team, id)).collect())
    }

    /// Deletes a sandbox's record and its index entries. Refused while a
    /// transition holds the lease or the id is reserved ([`Error::Busy`]).
    /// Requests queued to re-decide do not hold it back (a delete is final,
    /// and a queue that never empties must not block it): they are woken
    /// and get [`Error::NotFound`]. Returns false if there was no record.
    ///
    /// Not retried internally, and an [`Error::Redis`] that
    /// [`is_retryable`](Error::is_retryable) is no invitation to retry
    /// blindly: a removal whose reply was lost may have happened, and a
    /// retry could then delete a newer incarnation registered meanwhile.
    /// Retry with [`remove_execution`](Coordinator::remove_execution), which
    /// only deletes the incarnation you meant.
    ///
    /// Cancel safety: if dropped, the removal happened or it did not.
    pub async fn remove(&self, team: &str, id: &str) -> Result<bool> {
        self.remove_pinned(team, id, None).await
    }

    /// Like [`remove`](Coordinator::remove), only if the record is
    /// `execution` ([`Error::ExecutionMismatch`] otherwise): a removal
    /// racing a resume cannot delete the new incarnation, and it is safe to
    /// retry.
    pub async fn remove_execution(&self, team: &str, id: &str, execution: &str) -> Result<bool> {
        validate_id("execution id", execution)?;
        self.remove_pinned(team, id, Some(execution)).await
    }

    async fn remove_pinned(&self, team: &str, id: &str, execution: Option<&str>) -> Result<bool> {
        let keys = self.rt.env.ns.sandbox(team, id)?;
        let (removed, replication) =
            ops::remove::remove(&self.rt.env, &self.ctx(team, id, &keys), execution).await?;
        ops::replicated("remove", replication)?;
        Ok(removed)
    }

    /// Finishes transition `fence` held by `holder` (see
    /// [`Transition::holder`]), for a holder that lost its [`Transition`]
    /// value (e.g. a restarted process that stored both). Retry-safe: the
    /// same outcome for the same fence again is Ok for the whole outcome
    /// retention; errors as for [`Transition::succeed`].
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
        let keys = self.rt.env.ns.sandbox(team, id)?;
        validate_id("holder id", holder)?;
        let (outcome, reason) = match how {
            Finish::Succeeded => (Outcome::Succeeded, String::new()),
            Finish::Failed(r) => (Outcome::Failed, cut_reason(&r).to_string()),
        };
        let target = FinishTarget {
            team: team.into(),
            id: id.into(),
            keys,
            action,
            fence,
            holder: holder.into(),
        };
        finish_retrying(
            &self.rt.env,
            &target,
            outcome,
            &reason,
            None,
            false,
            crate::connection::Route::default(),
        )
        .await
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
        let keys = self.rt.env.ns.sandbox(team, id)?;
        let ctx = self.ctx(team, id, &keys);
        match ops::settle::settle(&self.rt.env, &ctx, fence, "", true, cut_reason(reason)).await? {
            Settled::Abandoned { action, reason } => {
                crate::metrics::abandoned(action);
                Ok(Abandonment::Abandoned { action, reason })
            }
            Settled::Ended {
                outcome, reason, ..
            } => Ok(Abandonment::AlreadyEnded { outcome, reason }),
            Settled::Live(_) | Settled::Unknown => Err(Error::Fenced {
                team: team.into(),
                id: id.into(),
                fence,
                current: None,
            }),
        }
    }

    /// Every sandbox of the team, by id, from the team's id index (never
    /// SCAN): [`list_page`](Coordinator::list_page) until the last page.
    ///
    /// Cancel safety: safe to drop.
    pub async fn list(&self, team: &str) -> Result<Vec<Sandbox>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(team, after.as_deref(), 1000).await?;
            all.extend(page.sandboxes);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of the team's sandboxes, by id: the first `count` (1 to
    /// 10,000) after `after` (exclusive; `None` to start). Each page is one
    /// atomic read; pages are consistent with each other only in that an id
    /// is listed at most once per pass.
    ///
    /// Cancel safety: safe to drop.
    pub async fn list_page(&self, team: &str, after: Option<&str>, count: usize) -> Result<Page> {
        let keys = self.rt.env.ns.team(team)?;
        if let Some(a) = after {
            validate_id("sandbox id", a)?;
        }
        let count = bounds::count("count", count, 10_000)?;
        ops::list::page(&self.rt.env, team, &keys, after, count).await
    }

    /// The team's sandboxes by state class (live, in flight, paused,
    /// killed), its live reservations and its own limit, from its index in
    /// one atomic step (O(team size)).
    ///
    /// Cancel safety: safe to drop.
    pub async fn count(&self, team: &str) -> Result<TeamCount> {
        let keys = self.rt.env.ns.team(team)?;
        ops::count::count(&self.rt.env, &keys).await
    }

    /// A live local view of `team` ([`TeamView`](crate::TeamView)): read
    /// once (page by page), then kept by the team's announcements, so its
    /// reads cost no Redis time. A team already viewed by this coordinator
    /// shares that view. See [`TeamView`](crate::TeamView) for how stale a
    /// read can be.
    ///
    /// Cancel safety: if dropped before the first read completes, nothing
    /// stays subscribed for it.
    pub async fn team_view(&self, team: &str) -> Result<crate::TeamView> {
        let keys = self.rt.env.ns.team(team)?;
        crate::view::open(&self.rt, team, keys).await
    }

    /// Team views held now (by anyone) on this coordinator.
    pub fn team_views(&self) -> usize {
        self.rt.views.held()
    }

    /// Sets (or, with `None`, clears) the team's limit of places: sandboxes
    /// that are not tombstones (running or in flight) plus reservations.
    /// Stored in Redis, so every server enforces the same number. Returns
    /// the previous one.
    ///
    /// Cancel safety: if dropped, the limit was set or it was not.
    pub async fn set_team_limit(&self, team: &str, limit: Option<usize>) -> Result<Option<usize>> {
        let keys = self.rt.env.ns.team(team)?;
        if let Some(l) = limit {
            team_limit_arg(l)?;
        }
        let (previous, replication) = ops::team_limit::set(&self.rt.env, &keys, limit).await?;
        ops::replicated("set_team_limit", replication)?;
        Ok(previous)
    }

    /// Holds one place of the team's limit, and a free id, for `ttl` (10 ms
    /// to 2^50 ms) before a slow create; `register` of the id (or
    /// [`Reservation::register`]) consumes it. Refused when the id has a
    /// record ([`Error::AlreadyExists`]: a killed tombstone too, while it
    /// lasts), while it is already reserved ([`Error::Busy`]), and when the
    /// team is full ([`Error::TeamLimit`]).
    ///
    /// Cancel safety: if dropped after the reservation was made, it holds
    /// until its ttl (its handle never reached the caller); nothing else is
    /// left behind.
    pub async fn reserve(&self, team: &str, id: &str, ttl: Duration) -> Result<Reservation> {
        self.reserve_for(team, id, ttl, false).await
    }

    /// Holds one place of the team's limit, and the paused sandbox `id`, for
    /// `ttl` before a slow resume; `register` of a new execution consumes it.
    /// While it holds, a `begin` on the sandbox waits for it: a delete (kill)
    /// racing the resume is decided after the resume's register, never
    /// between the resume's check and its register. Refused unless the
    /// sandbox is a resumable tombstone ([`Error::NotFound`],
    /// [`Error::AlreadyExists`] naming its state), while a transition or
    /// another reservation holds it ([`Error::Busy`]), and when the team is
    /// full ([`Error::TeamLimit`]).
    ///
    /// Cancel safety: as for [`reserve`](Coordinator::reserve).
    pub async fn reserve_resume(&self, team: &str, id: &str, ttl: Duration) -> Result<Reservation> {
        self.reserve_for(team, id, ttl, true).await
    }

    async fn reserve_for(
        &self,
        team: &str,
        id: &str,
        ttl: Duration,
        resume: bool,
    ) -> Result<Reservation> {
        let keys = self.rt.env.ns.sandbox(team, id)?;
        bounds::duration_ms("reservation ttl", ttl, Duration::from_millis(10))?;
        let token = self.rt.next_holder();
        let reserved = ops::reserve::reserve(
            &self.rt.env,
            &self.ctx(team, id, &keys),
            &token,
            ttl,
            resume,
        )
        .await?;
        let reservation = Reservation::new(
            self.clone(),
            Arc::clone(&self.rt),
            team,
            id,
            keys,
            token,
            reserved.ttl,
        );
        ops::replicated("reserve", reserved.replication)?;
        Ok(reservation)
    }

    /// Like [`reserve`](Coordinator::reserve), but while the team is full it
    /// waits (woken by the team's notifications, with the poll as a
    /// fallback) for a place, at most `timeout`; then the last
    /// [`Error::TeamLimit`].
    ///
    /// Cancel safety: as for `reserve`.
    pub async fn reserve_waiting(
        &self,
        team: &str,
        id: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Reservation> {
        let keys = self.rt.env.ns.sandbox(team, id)?;
        let deadline = bounds::deadline(Instant::now(), timeout);
        let mut watch = None;
        loop {
            match self.reserve(team, id, ttl).await {
                Err(e @ Error::TeamLimit { .. }) => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(e);
                    }
                    match &mut watch {
                        None => {
                            let mut w = self.rt.notifier.watch_team(team, &keys.team.channel());
                            w.ready(
                                self.rt
                                    .settings
                                    .response_timeout
                                    .min(Duration::from_secs(2)),
                            )
                            .await;
                            watch = Some(w);
                        }
                        Some(w) => {
                            let mut until = now + self.rt.settings.poll_interval;
                            if let Some(d) = deadline {
                                until = until.min(d);
                            }
                            tokio::select! {
                                _ = w.next() => {}
                                _ = tokio::time::sleep_until(until) => {}
                            }
                        }
                    }
                }
                other => return other,
            }
        }
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
        let env = &self.rt.env;
        let mut report = RepairReport {
            dry_run,
            ..RepairReport::default()
        };
        let mut teams: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in self.scan(&env.ns.record_pattern()).await? {
            if let Some((team, id)) = parse_record_key(env.ns.prefix(), &key) {
                teams.entry(team).or_default().push(id);
            }
        }
        // Teams known to the slot sets but without records (indexes only).
        let (registered, registry_sound) = match self.registered_slots().await {
            Err(Error::Corrupt { .. }) => {
                report.drift.push(type_drift("", "slots", env.ns.slots()));
                (Vec::new(), false)
            }
            other => (other?, true),
        };
        for &slot in &registered {
            match self.smembers(&env.ns.slot_teams(slot)).await {
                Err(Error::Corrupt { .. }) => {
                    report
                        .drift
                        .push(type_drift("", "teams", env.ns.slot_teams(slot)));
                }
                got => {
                    for team in got? {
                        teams.entry(team).or_default();
                    }
                }
            }
        }
        for key in self.scan(&format!("{}:{{*}}:ids", env.ns.prefix())).await? {
            if let Some(team) = key
                .strip_prefix(&format!("{}:{{", env.ns.prefix()))
                .and_then(|rest| rest.strip_suffix("}:ids"))
            {
                teams.entry(team.to_string()).or_default();
            }
        }
        for (team, ids) in &teams {
            let Ok(keys) = env.ns.team(team) else {
                continue;
            };
            report.teams += 1;
            report.records += ids.len();
            let mut drift = ops::repair::team(env, team, &keys, ids, dry_run).await?;
            let has_records = !ids.is_empty();
            if registry_sound && has_records && !registered.contains(&keys.slot) {
                drift.push(crate::sandbox::Drift {
                    team: team.clone(),
                    index: "slots".into(),
                    problem: "missing".into(),
                    id: keys.slot.to_string(),
                });
                if !dry_run {
                    self.list_slot(&keys, true).await?;
                }
            }
            report.drift.extend(drift);
        }
        Ok(report)
    }

    /// Converts a namespace written by schema 1 to this schema in place,
    /// record by record (each atomically). Refuses a record whose schema-1
    /// transition is still in flight ([`Error::Busy`]: run it again when
    /// none is). With `adopt_lifecycle`, records of this schema created
    /// under another rule table are re-stamped with this coordinator's
    /// (see [`Error::LifecycleMismatch`]). Returns (converted, re-stamped).
    /// Uses `SCAN`.
    pub async fn migrate(&self, adopt_lifecycle: bool) -> Result<(usize, usize)> {
        let env = &self.rt.env;
        let (mut converted, mut restamped) = (0, 0);
        for key in self.scan(&env.ns.record_pattern()).await? {
            let Some((team, id)) = parse_record_key(env.ns.prefix(), &key) else {
                continue;
            };
            let Ok(keys) = env.ns.sandbox(&team, &id) else {
                continue;
            };
            match ops::migrate::migrate(env, &self.ctx(&team, &id, &keys), adopt_lifecycle).await? {
                ops::migrate::Migrated::Converted { slot_unlisted } => {
                    converted += 1;
                    if slot_unlisted {
                        self.list_slot(&keys.team, true).await?;
                    }
                }
                ops::migrate::Migrated::Restamped { .. } => restamped += 1,
                _ => {}
            }
        }
        Ok((converted, restamped))
    }

    async fn registered_slots(&self) -> Result<Vec<u16>> {
        Ok(self
            .smembers(&self.rt.env.ns.slots())
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect())
    }

    /// The members of the set `key`; [`Error::Corrupt`] if it is a key of
    /// another type.
    async fn smembers(&self, key: &str) -> Result<Vec<String>> {
        let value = self
            .rt
            .env
            .link
            .query(
                redis::cmd("SMEMBERS").arg(key),
                crate::connection::Route::default(),
            )
            .await
            .map_err(|e| match e {
                Error::Redis(r) if r.code() == Some("WRONGTYPE") => Error::Corrupt {
                    detail: format!("{key} is not a set"),
                },
                e => e,
            })?;
        Ok(strings(value))
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        self.rt.env.link.scan(pattern).await
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

/// `(team, id)` of a record key `<ns>:{<team>}:rec:<id>`.
/// A key of another type found by `repair`, reported as drift.
fn type_drift(team: &str, index: &str, key: String) -> crate::sandbox::Drift {
    crate::sandbox::Drift {
        team: team.to_string(),
        index: index.to_string(),
        problem: "type".to_string(),
        id: key,
    }
}

fn parse_record_key(prefix: &str, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (team, rest) = rest.split_once("}:")?;
    let id = rest.strip_prefix("rec:")?;
    Some((team.to_string(), id.to_string()))
}

fn strings(value: redis::Value) -> Vec<String> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.into_iter().flat_map(strings).collect()
        }
        redis::Value::BulkString(b) => vec![String::from_utf8_lossy(&b).into_owned()],
        redis::Value::SimpleString(s) => vec![s],
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(_, v)| strings(v)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_name_team_and_id() {
        assert_eq!(
            parse_record_key("sbx", "sbx:{t1}:rec:s1"),
            Some(("t1".into(), "s1".into()))
        );
        assert_eq!(parse_record_key("sbx", "sbx:{t1}:ids"), None);
        assert_eq!(parse_record_key("sbx", "other:{t1}:rec:s1"), None);
    }

    #[test]
    fn builder_debug_never_shows_a_password() {
        let b = Coordinator::builder("redis://coord:s3cret@127.0.0.1:6379").password("hunter2");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
