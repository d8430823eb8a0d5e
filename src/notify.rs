//! Wake-ups: one dedicated pub/sub connection per coordinator (outside the
//! command pool), fanned out to in-process waiters by sandbox.
//!
//! The scripts publish `<team> <id> <fence> <action> <outcome> <reason>` on
//! the namespace's channel in the same atomic step that records an outcome,
//! so a notice is authoritative. Pub/sub can still drop messages (a
//! connection that breaks), so waiters never rely on it alone: they register
//! here *before* they check Redis (no wake-up falls between check and
//! wait), they poll, and every (re)subscription bumps an epoch that makes
//! every waiter re-check at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lifecycle::Outcome;

/// One published outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub fence: u64,
    pub action: String,
    pub outcome: Outcome,
    pub reason: String,
}

/// What woke a waiter.
#[derive(Debug)]
pub(crate) enum Wake {
    /// An outcome was published for the sandbox.
    Notice(Notice),
    /// The subscription was (re)established: messages may have been lost.
    Resubscribed,
}

struct Slot {
    tx: watch::Sender<Option<Notice>>,
    refs: usize,
}

struct Shared {
    slots: Mutex<HashMap<String, Slot>>,
    epoch: watch::Sender<u64>,
}

/// The notification connection and its routing table.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn route_key(team: &str, id: &str) -> String {
    format!("{team} {id}")
}

impl Notifier {
    /// Starts the subscription task. It reconnects by itself, with backoff.
    pub(crate) fn start(client: redis::Client, channel: String) -> Notifier {
        let (epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            slots: Mutex::new(HashMap::new()),
            epoch,
        });
        let task = tokio::spawn(run(client, channel, Arc::clone(&shared)));
        Notifier {
            shared,
            task: Some(task),
        }
    }

    /// A notifier without a connection: waiters register and count, but
    /// only their poll and lease-deadline timers wake them.
    pub(crate) fn disabled() -> Notifier {
        Notifier {
            shared: Arc::new(Shared {
                slots: Mutex::new(HashMap::new()),
                epoch: watch::channel(0).0,
            }),
            task: None,
        }
    }

    /// Waits until the first subscription is in place, at most `timeout`.
    pub(crate) async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.epoch.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|e| *e > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many waiters are registered right now.
    pub(crate) fn waiting(&self) -> usize {
        let slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.values().map(|s| s.refs).sum()
    }

    /// How many times the subscription has been established.
    pub(crate) fn epoch(&self) -> u64 {
        *self.shared.epoch.borrow()
    }

    /// Registers interest in one sandbox's outcomes. Register before
    /// checking Redis, then wait on the returned [`Watch`].
    pub(crate) fn watch(&self, team: &str, id: &str) -> Watch {
        let key = route_key(team, id);
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
            tx: watch::channel(None).0,
            refs: 0,
        });
        slot.refs += 1;
        let mut rx = slot.tx.subscribe();
        rx.mark_unchanged();
        let mut epoch = self.shared.epoch.subscribe();
        epoch.mark_unchanged();
        Watch {
            shared: Arc::clone(&self.shared),
            key,
            rx,
            epoch,
        }
    }
}

/// One waiter's registration; unregisters on drop.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    key: String,
    rx: watch::Receiver<Option<Notice>>,
    epoch: watch::Receiver<u64>,
}

impl Watch {
    /// Resolves on the next notice for this sandbox or the next
    /// resubscription. Never resolves if the notifier is gone (the caller
    /// always races it against a poll timer).
    pub(crate) async fn next(&mut self) -> Wake {
        tokio::select! {
            r = self.rx.changed() => match r {
                Ok(()) => match self.rx.borrow_and_update().clone() {
                    Some(n) => Wake::Notice(n),
                    None => Wake::Resubscribed,
                },
                Err(_) => std::future::pending().await,
            },
            r = self.epoch.changed() => match r {
                Ok(()) => Wake::Resubscribed,
                Err(_) => std::future::pending().await,
            },
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.refs -= 1;
            if slot.refs == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

fn parse(payload: &str) -> Option<(String, Notice)> {
    let mut parts = payload.splitn(6, ' ');
    let team = parts.next()?;
    let id = parts.next()?;
    let fence = parts.next()?.parse().ok()?;
    let action = parts.next()?.to_string();
    let outcome = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_string();
    Some((
        route_key(team, id),
        Notice {
            fence,
            action,
            outcome,
            reason,
        },
    ))
}

async fn run(client: redis::Client, channel: String, shared: Arc<Shared>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(20);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    shared.epoch.send_modify(|e| *e += 1);
                    tracing::debug!(%channel, "notification subscription up");
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let Some((key, notice)) = parse(&payload) else {
                            tracing::warn!(%payload, "unreadable notification");
                            continue;
                        };
                        let slots = shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(slot) = slots.get(&key) {
                            slot.tx.send_replace(Some(notice));
                        }
                    }
                    tracing::debug!(%channel, "notification subscription lost; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "subscribe failed"),
            },
            Err(e) => tracing::debug!(error = %e, "notification connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_with_spaces_in_the_reason() {
        let (key, n) = parse("t1 s1 42 pause failed disk full: no space").unwrap();
        assert_eq!(key, "t1 s1");
        assert_eq!(n.fence, 42);
        assert_eq!(n.action, "pause");
        assert_eq!(n.outcome, Outcome::Failed);
        assert_eq!(n.reason, "disk full: no space");
        let (_, n) = parse("t1 s1 7 kill succeeded ").unwrap();
        assert_eq!(n.reason, "");
        assert!(parse("t1 s1 x kill succeeded").is_none());
        assert!(parse("t1 s1 7 kill exploded").is_none());
    }
}
