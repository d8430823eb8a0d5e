//! The supervisor: the task that keeps the subscription connection —
//! connects (with backoff), subscribes every channel someone waits on,
//! delivers messages, follows slot moves, health-checks with `PING`, lets
//! idle channels go after the linger, and reconnects. Every event after
//! which messages may have been lost bumps the epoch (waiters re-check).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::notify::routes::{NotifySettings, Shared, deliver, mark};
use crate::notify::subscription::{Event, Sub};
use crate::redis::Link;

/// The supervisor task (spawned by `Notifier::start`).
pub(super) async fn run(
    link: Link,
    settings: NotifySettings,
    shared: Arc<Shared>,
    mut control: mpsc::UnboundedReceiver<String>,
) {
    // Not `crate::retry`: this paces the reconnects of a long-lived
    // subscription, forever; no caller waits on it with a deadline.
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
