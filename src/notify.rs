//! Wake-ups: one subscription connection per coordinator (outside the
//! command connections), subscribed on demand to the channels of the teams
//! its waiters wait on, and fanned out to those waiters by sandbox.
//!
//! The scripts publish on `<ns>:{<team>}:notify` in the same atomic step
//! as the change they announce (see `lua/include/notify.lua`), so a notice
//! is authoritative. On a single server that is `PUBLISH`/`SUBSCRIBE`; on
//! Redis Cluster it is sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): the
//! channel lives in the team's slot, a notice never crosses the cluster
//! bus, and a server receives the notices of the teams it waits on only —
//! its notification traffic grows with its own waiters, not with the
//! fleet's transitions. A team's channel is unsubscribed a while after its
//! last waiter left (so a busy team is not resubscribed on every wait).
//!
//! Pub/sub can drop messages (a connection that breaks, a slot that moves),
//! so waiters never rely on it alone: they register here *before* they
//! check Redis, they poll, and every event after which messages may have
//! been lost — a reconnect, a resubscription after a slot move, a failed
//! health check — bumps an epoch that makes every waiter re-check at once.
//! The connection is health-checked with `PING` every few seconds, so a
//! half-open connection is found and replaced instead of leaving waiters on
//! their poll.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lifecycle::Outcome;
use crate::redis::target::{cluster_client, single_client};
use crate::redis::{Link, value};

/// A published event for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Transition `fence` ended.
    Ended {
        fence: u64,
        action: String,
        outcome: Outcome,
        reason: String,
    },
    /// The record changed for its waiters (queue head, resume, removal,
    /// reservation).
    Changed,
}

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
const BACKLOG: usize = 16;

/// One sandbox's waiters. Every waiter gets every notice in order (a
/// broadcast queue, not a latest-value cell): a notice that follows an
/// outcome must not hide it.
struct SandboxSlot {
    tx: broadcast::Sender<Notice>,
    refs: usize,
}

struct TeamRoute {
    channel: String,
    sandboxes: HashMap<String, SandboxSlot>,
    /// Bumped on every notice of the team (team-level waiters: places).
    any: watch::Sender<u64>,
    team_refs: usize,
    /// Whether the channel's subscription is confirmed.
    subscribed: watch::Sender<bool>,
    /// When the last waiter left (unsubscribed after the linger).
    idle_since: Option<Instant>,
    /// Every message of the channel as published, in order (team views).
    raw: tokio::sync::broadcast::Sender<Arc<str>>,
}

impl TeamRoute {
    fn refs(&self) -> usize {
        self.team_refs + self.sandboxes.values().map(|s| s.refs).sum::<usize>()
    }
}

struct Shared {
    teams: Mutex<HashMap<String, TeamRoute>>,
    epoch: watch::Sender<u64>,
    received: std::sync::atomic::AtomicU64,
    control: Option<mpsc::UnboundedSender<String>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TeamRoute>> {
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

/// The subscription connection and its routing table.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("enabled", &self.task.is_some())
            .field("epoch", &*self.shared.epoch.borrow())
            .finish()
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Notifier {
    /// Starts the subscription task; it connects, reconnects and
    /// health-checks by itself.
    pub(crate) fn start(link: &Link, settings: NotifySettings) -> Notifier {
        let (control, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            teams: Mutex::new(HashMap::new()),
            epoch: watch::channel(0).0,
            received: std::sync::atomic::AtomicU64::new(0),
            control: Some(control),
        });
        let task = tokio::spawn(run(link.clone(), settings, Arc::clone(&shared), rx));
        Notifier {
            shared,
            task: Some(task),
        }
    }

    /// A notifier without a connection: waiters register and count, but
    /// only their poll and deadline timers wake them.
    pub(crate) fn disabled() -> Notifier {
        Notifier {
            shared: Arc::new(Shared {
                teams: Mutex::new(HashMap::new()),
                epoch: watch::channel(0).0,
                received: std::sync::atomic::AtomicU64::new(0),
                control: None,
            }),
            task: None,
        }
    }

    /// Waits until the connection is up, at most `timeout`.
    pub(crate) async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.epoch.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|e| *e > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many waiters are registered right now.
    pub(crate) fn waiting(&self) -> usize {
        self.shared.lock().values().map(TeamRoute::refs).sum()
    }

    /// How many times a subscription event happened after which messages
    /// may have been lost (connect, reconnect, resubscription).
    pub(crate) fn epoch(&self) -> u64 {
        *self.shared.epoch.borrow()
    }

    /// Notification messages received so far.
    pub(crate) fn received(&self) -> u64 {
        self.shared
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The channels subscribed (confirmed) right now.
    pub(crate) fn subscribed(&self) -> usize {
        self.shared
            .lock()
            .values()
            .filter(|t| *t.subscribed.borrow())
            .count()
    }

    fn team_route<'a>(
        &self,
        teams: &'a mut HashMap<String, TeamRoute>,
        team: &str,
        channel: &str,
    ) -> &'a mut TeamRoute {
        let route = teams.entry(team.to_string()).or_insert_with(|| {
            if let Some(control) = &self.shared.control {
                let _ = control.send(team.to_string());
            }
            TeamRoute {
                channel: channel.to_string(),
                sandboxes: HashMap::new(),
                any: watch::channel(0).0,
                team_refs: 0,
                subscribed: watch::channel(false).0,
                idle_since: None,
                raw: tokio::sync::broadcast::channel(RAW_BACKLOG).0,
            }
        });
        route.idle_since = None;
        route
    }

    /// Registers interest in one sandbox's notices. Register before
    /// checking Redis, then wait on the returned [`Watch`].
    pub(crate) fn watch(&self, team: &str, id: &str, channel: &str) -> Watch {
        let mut teams = self.shared.lock();
        let route = self.team_route(&mut teams, team, channel);
        let slot = route
            .sandboxes
            .entry(id.to_string())
            .or_insert_with(|| SandboxSlot {
                tx: broadcast::channel(BACKLOG).0,
                refs: 0,
            });
        slot.refs += 1;
        let rx = slot.tx.subscribe();
        let subscribed = route.subscribed.subscribe();
        drop(teams);
        let mut epoch = self.shared.epoch.subscribe();
        epoch.mark_unchanged();
        Watch {
            shared: Arc::clone(&self.shared),
            team: team.to_string(),
            id: Some(id.to_string()),
            rx: Rx::Sandbox(rx),
            epoch,
            subscribed,
        }
    }

    /// Registers interest in every notice of a team (a waiter for a free
    /// place).
    pub(crate) fn watch_team(&self, team: &str, channel: &str) -> Watch {
        let mut teams = self.shared.lock();
        let route = self.team_route(&mut teams, team, channel);
        route.team_refs += 1;
        let mut rx = route.any.subscribe();
        rx.mark_unchanged();
        let subscribed = route.subscribed.subscribe();
        drop(teams);
        let mut epoch = self.shared.epoch.subscribe();
        epoch.mark_unchanged();
        Watch {
            shared: Arc::clone(&self.shared),
            team: team.to_string(),
            id: None,
            rx: Rx::Team(rx),
            epoch,
            subscribed,
        }
    }
}

/// How many messages a team view may fall behind before it resyncs.
const RAW_BACKLOG: usize = 16_384;

/// A team view's hold on its team's channel: every message in order, the
/// subscription's state and epoch. Holds the channel like a waiter.
pub(crate) struct Tap {
    /// Keeps the team's channel subscribed while the tap lives.
    pub watch: Watch,
    /// Every message of the channel (a lag means some were dropped).
    pub messages: tokio::sync::broadcast::Receiver<Arc<str>>,
    /// Bumped whenever messages may have been lost.
    pub epoch: watch::Receiver<u64>,
    /// Whether the team's channel is subscribed right now.
    pub subscribed: watch::Receiver<bool>,
}

impl Notifier {
    /// Taps every message of a team's channel (a team view).
    pub(crate) fn tap(&self, team: &str, channel: &str) -> Tap {
        let mut teams = self.shared.lock();
        let route = self.team_route(&mut teams, team, channel);
        route.team_refs += 1;
        let mut rx = route.any.subscribe();
        rx.mark_unchanged();
        let messages = route.raw.subscribe();
        let subscribed = route.subscribed.subscribe();
        drop(teams);
        let watch = Watch {
            shared: Arc::clone(&self.shared),
            team: team.to_string(),
            id: None,
            rx: Rx::Team(rx),
            epoch: self.shared.epoch.subscribe(),
            subscribed: subscribed.clone(),
        };
        Tap {
            watch,
            messages,
            epoch: self.shared.epoch.subscribe(),
            subscribed,
        }
    }

    /// Whether this notifier has a connection at all.
    pub(crate) fn enabled(&self) -> bool {
        self.shared.control.is_some()
    }
}

enum Rx {
    Sandbox(broadcast::Receiver<Notice>),
    Team(watch::Receiver<u64>),
}

/// One waiter's registration; unregisters on drop.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    team: String,
    id: Option<String>,
    rx: Rx,
    epoch: watch::Receiver<u64>,
    subscribed: watch::Receiver<bool>,
}

impl Watch {
    /// Waits (at most `timeout`) until the team's channel is subscribed, so
    /// that a check made after it cannot miss a notice. Without
    /// notifications, or when the subscription does not come up in time,
    /// returns at once/at the timeout: the caller's poll covers it.
    pub(crate) async fn ready(&mut self, timeout: Duration) {
        if self.shared.control.is_none() {
            return;
        }
        let _ = tokio::time::timeout(timeout, self.subscribed.wait_for(|s| *s)).await;
    }

    /// Resolves on the next notice (or resubscription). Never resolves if
    /// the notifier is gone: the caller always races it against a timer.
    pub(crate) async fn next(&mut self) -> Wake {
        let notice = async {
            match &mut self.rx {
                Rx::Sandbox(rx) => match rx.recv().await {
                    Ok(n) => Wake::Notice(n),
                    // Notices were lost to this waiter: re-check.
                    Err(broadcast::error::RecvError::Lagged(_)) => Wake::Resubscribed,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                },
                Rx::Team(rx) => match rx.changed().await {
                    Ok(()) => Wake::Notice(Notice::Changed),
                    Err(_) => std::future::pending().await,
                },
            }
        };
        tokio::select! {
            w = notice => w,
            r = self.epoch.changed() => match r {
                Ok(()) => Wake::Resubscribed,
                Err(_) => std::future::pending().await,
            },
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut teams = self.shared.lock();
        let Some(route) = teams.get_mut(&self.team) else {
            return;
        };
        match &self.id {
            Some(id) => {
                if let Some(slot) = route.sandboxes.get_mut(id) {
                    slot.refs -= 1;
                    if slot.refs == 0 {
                        route.sandboxes.remove(id);
                    }
                }
            }
            None => route.team_refs = route.team_refs.saturating_sub(1),
        }
        if route.refs() == 0 {
            route.idle_since = Some(Instant::now());
            if self.shared.control.is_none() {
                teams.remove(&self.team);
            }
        }
    }
}

/// Parses `"o <id> <fence> <action> <outcome> <reason>"`, `"c <id>"`, `"c"`
/// (after a team view's announcement `"=<seq> ...\n"`, if any).
fn parse(payload: &str) -> Option<(Option<String>, Notice)> {
    let payload = match payload.strip_prefix('=') {
        Some(view) => view.split_once('\n')?.1,
        None => payload,
    };
    let mut parts = payload.splitn(6, ' ');
    match parts.next()? {
        "o" => {
            let id = parts.next()?.to_string();
            let fence = parts.next()?.parse().ok()?;
            let action = parts.next()?.to_string();
            let outcome = parts.next()?.parse().ok()?;
            let reason = parts.next().unwrap_or("").to_string();
            Some((
                Some(id),
                Notice::Ended {
                    fence,
                    action,
                    outcome,
                    reason,
                },
            ))
        }
        "c" => Some((parts.next().map(str::to_string), Notice::Changed)),
        _ => None,
    }
}

/// The team of a channel `<ns>:{<team>}:notify`.
fn channel_team(channel: &str) -> Option<&str> {
    let open = channel.find('{')?;
    let close = channel[open..].find('}')? + open;
    Some(&channel[open + 1..close])
}

fn deliver(shared: &Shared, channel: &str, payload: &str) {
    metrics::counter!(crate::metrics::NOTIFICATIONS).increment(1);
    shared
        .received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(team) = channel_team(channel) else {
        return;
    };
    let teams = shared.lock();
    let Some(route) = teams.get(team) else {
        return;
    };
    if route.raw.receiver_count() > 0 {
        let _ = route.raw.send(Arc::from(payload));
    }
    let Some((id, notice)) = parse(payload) else {
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

/// The subscription connection: plain pub/sub on one server, sharded
/// pub/sub through the cluster connection on Redis Cluster.
enum Sub {
    Plain {
        sink: redis::aio::PubSubSink,
        stream: redis::aio::PubSubStream,
    },
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

/// Something the connection delivered.
enum Event {
    Message(String, String),
    /// The server dropped a subscription (a slot moved): resubscribe.
    Dropped(String),
    /// A node's connection dropped (messages may be lost until it is back).
    Lost,
    /// A subscription was re-established: messages may have been lost.
    Resubscribed,
    Closed,
}

impl Sub {
    async fn connect(link: &Link, settings: &NotifySettings) -> Result<Sub, String> {
        let limit = settings
            .connect_timeout
            .saturating_add(settings.response_timeout);
        let target = link.target();
        if link.is_cluster() {
            let (tx, pushes) = mpsc::unbounded_channel();
            let client =
                cluster_client(target, link.settings(), Some(tx)).map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(limit, client.get_async_connection())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Sub::Cluster { conn, pushes })
        } else {
            let client = single_client(target, &target.nodes[0]).map_err(|e| e.to_string())?;
            let pubsub = tokio::time::timeout(limit, client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let (sink, stream) = pubsub.split();
            Ok(Sub::Plain { sink, stream })
        }
    }

    async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.subscribe(channel).await,
            Sub::Cluster { conn, .. } => conn.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.unsubscribe(channel).await,
            Sub::Cluster { conn, .. } => conn.sunsubscribe(channel).await,
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.ping::<redis::Value>().await.map(|_| ()),
            Sub::Cluster { conn, .. } => {
                use redis::cluster_routing::{
                    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo,
                };
                conn.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    )),
                )
                .await
                .map(|_| ())
            }
        }
    }

    async fn next(&mut self, wanted: &HashSet<String>) -> Event {
        match self {
            Sub::Plain { stream, .. } => match stream.next().await {
                Some(msg) => Event::Message(
                    msg.get_channel_name().to_string(),
                    msg.get_payload::<String>().unwrap_or_default(),
                ),
                None => Event::Closed,
            },
            Sub::Cluster { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Event::Closed;
                };
                match push.kind {
                    redis::PushKind::SMessage | redis::PushKind::Message
                        if push.data.len() >= 2 =>
                    {
                        return Event::Message(
                            value::text_or_empty(&push.data[0]),
                            value::text_or_empty(&push.data[1]),
                        );
                    }
                    redis::PushKind::SUnsubscribe => {
                        let channel = push
                            .data
                            .first()
                            .map(value::text_or_empty)
                            .unwrap_or_default();
                        if wanted.contains(&channel) {
                            return Event::Dropped(channel);
                        }
                    }
                    redis::PushKind::Disconnection => return Event::Lost,
                    // A confirmation of a subscription redis-rs re-issued
                    // after a reconnect or a slot map change.
                    redis::PushKind::SSubscribe => return Event::Resubscribed,
                    _ => {}
                }
            },
        }
    }
}

async fn run(
    link: Link,
    settings: NotifySettings,
    shared: Arc<Shared>,
    mut control: mpsc::UnboundedReceiver<String>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(20);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let mut backoff = MIN_BACKOFF;
    let bound = settings.response_timeout;
    loop {
        let mut sub = match Sub::connect(&link, &settings).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::debug!(error = %e, "notification connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Every channel someone waits on, subscribed again.
        let mut subscribed: HashSet<String> = HashSet::new();
        let wanted: Vec<(String, String)> = shared
            .lock()
            .iter()
            .map(|(team, r)| (team.clone(), r.channel.clone()))
            .collect();
        let mut healthy = true;
        for (team, channel) in wanted {
            match tokio::time::timeout(bound, sub.subscribe(&channel)).await {
                Ok(Ok(())) => {
                    subscribed.insert(channel);
                    mark(&shared, &team, true);
                }
                _ => {
                    healthy = false;
                    break;
                }
            }
        }
        if healthy {
            backoff = MIN_BACKOFF;
            shared.epoch.send_modify(|e| *e += 1);
            tracing::debug!(channels = subscribed.len(), "notification connection up");
            let mut health = tokio::time::interval(settings.health_interval);
            health.reset();
            loop {
                tokio::select! {
                    event = sub.next(&subscribed) => match event {
                        Event::Message(channel, payload) => deliver(&shared, &channel, &payload),
                        Event::Dropped(channel) => {
                            // The slot moved: subscribe where it lives now.
                            let ok = tokio::time::timeout(bound, sub.subscribe(&channel)).await;
                            shared.epoch.send_modify(|e| *e += 1);
                            if !matches!(ok, Ok(Ok(()))) {
                                break;
                            }
                        }
                        // Disconnected: the cluster client reconnects and
                        // resubscribes (a `Resubscribed` event follows).
                        Event::Lost => {}
                        Event::Resubscribed => {
                            shared.epoch.send_modify(|e| *e += 1);
                        }
                        Event::Closed => break,
                    },
                    team = control.recv() => {
                        let Some(team) = team else { return };
                        let channel = shared.lock().get(&team).map(|r| r.channel.clone());
                        let Some(channel) = channel else { continue };
                        if subscribed.contains(&channel) {
                            mark(&shared, &team, true);
                            continue;
                        }
                        match tokio::time::timeout(bound, sub.subscribe(&channel)).await {
                            Ok(Ok(())) => {
                                subscribed.insert(channel);
                                mark(&shared, &team, true);
                            }
                            _ => break,
                        }
                    }
                    _ = health.tick() => {
                        if !matches!(tokio::time::timeout(bound, sub.ping()).await, Ok(Ok(()))) {
                            tracing::debug!("notification connection failed its health check");
                            break;
                        }
                        // Channels idle longer than the linger are let go.
                        let idle: Vec<(String, String)> = {
                            let mut teams = shared.lock();
                            let gone: Vec<String> = teams
                                .iter()
                                .filter(|(_, r)| r.refs() == 0
                                    && r.idle_since.is_some_and(|t| t.elapsed() >= settings.linger))
                                .map(|(t, _)| t.clone())
                                .collect();
                            gone.into_iter()
                                .filter_map(|t| teams.remove(&t).map(|r| (t, r.channel)))
                                .collect()
                        };
                        for (_, channel) in idle {
                            if subscribed.remove(&channel)
                                && !matches!(tokio::time::timeout(bound, sub.unsubscribe(&channel)).await, Ok(Ok(())))
                            {
                                break;
                            }
                        }
                    }
                }
            }
        }
        tracing::debug!("notification connection lost; reconnecting");
        for route in shared.lock().values() {
            route.subscribed.send_replace(false);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn mark(shared: &Shared, team: &str, on: bool) {
    if let Some(route) = shared.lock().get(team) {
        route.subscribed.send_replace(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_with_spaces_in_the_reason() {
        let (id, n) = parse("o s1 42 pause failed disk full: no space").unwrap();
        assert_eq!(id.as_deref(), Some("s1"));
        assert_eq!(
            n,
            Notice::Ended {
                fence: 42,
                action: "pause".into(),
                outcome: Outcome::Failed,
                reason: "disk full: no space".into()
            }
        );
        let (_, n) = parse("o s1 7 kill succeeded ").unwrap();
        assert!(matches!(n, Notice::Ended { reason, .. } if reason.is_empty()));
        assert_eq!(parse("c s1"), Some((Some("s1".into()), Notice::Changed)));
        assert_eq!(parse("c"), Some((None, Notice::Changed)));
        assert!(parse("o s1 x kill succeeded").is_none());
        assert!(parse("o s1 7 kill exploded").is_none());
        assert!(parse("z s1").is_none());
        assert_eq!(
            parse("=7 x s1\nc s1"),
            Some((Some("s1".into()), Notice::Changed))
        );
        assert!(parse("=7 s s1 running e1 0 5 - - - - -").is_none());
    }

    /// Two notices delivered before the waiter looks: it gets both, in
    /// order (a latest-value cell kept only the second, and a joiner
    /// missed its outcome until the next poll).
    #[tokio::test]
    async fn a_notice_after_an_outcome_does_not_hide_it() {
        let notifier = Notifier::disabled();
        let mut w = notifier.watch("t", "s1", "sbx:{t}:notify");
        deliver(
            &notifier.shared,
            "sbx:{t}:notify",
            "o s1 7 pause succeeded ",
        );
        deliver(&notifier.shared, "sbx:{t}:notify", "c s1");
        assert!(matches!(
            w.next().await,
            Wake::Notice(Notice::Ended { fence: 7, .. })
        ));
        assert!(matches!(w.next().await, Wake::Notice(Notice::Changed)));
    }

    #[test]
    fn channels_name_their_team() {
        assert_eq!(channel_team("sbx:{team-1}:notify"), Some("team-1"));
        assert_eq!(channel_team("sbx:notify"), None);
    }
}
