//! A team view's task: applies the team's announcements in order, and
//! re-reads the team (page by page, with the announcements received
//! meanwhile) whenever one may have been missed; polls the team's sequence.

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::notify::Tap;
use crate::runtime::Runtime;
use crate::view::model::{self, Applied, Change, Model, Unassembled, parse_announcement};
use crate::view::shared::{LAG, PAGE, Shared, ViewUpdate};
use crate::view::snapshot;

/// Why a re-read did not produce a model.
#[derive(Debug)]
pub(super) enum Resync {
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
pub(super) async fn resync(rt: &Runtime, keys: &TeamKeys, tap: &mut Tap) -> Result<Model, Resync> {
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
pub(super) async fn follow(rt: Arc<Runtime>, shared: Arc<Shared>, keys: TeamKeys, mut tap: Tap) {
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
