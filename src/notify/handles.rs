//! The handles: [`Notifier`] (one per coordinator: starts the supervisor,
//! answers the introspection counters) and the registrations it hands out
//! — a [`Watch`] per waiter (one sandbox, or a whole team) and a [`Tap`]
//! per team view — each unregistering on drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::notify::routes::{
    BACKLOG, NotifySettings, RAW_BACKLOG, SandboxSlot, Shared, TeamRoute, Wake,
};
use crate::notify::supervisor;
use crate::notify::wire::Notice;
use crate::redis::Link;

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
        let task = tokio::spawn(supervisor::run(
            link.clone(),
            settings,
            Arc::clone(&shared),
            rx,
        ));
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
        let rx = Rx::Sandbox(slot.tx.subscribe());
        let subscribed = route.subscribed.subscribe();
        drop(teams);
        self.handle(team, Some(id), rx, subscribed)
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
        self.handle(team, None, Rx::Team(rx), subscribed)
    }

    /// The handle of an interest registered (the lock released): it sees
    /// the epoch's changes from now on.
    fn handle(
        &self,
        team: &str,
        id: Option<&str>,
        rx: Rx,
        subscribed: watch::Receiver<bool>,
    ) -> Watch {
        let mut epoch = self.shared.epoch.subscribe();
        epoch.mark_unchanged();
        Watch {
            shared: Arc::clone(&self.shared),
            team: team.to_string(),
            id: id.map(str::to_string),
            rx,
            epoch,
            subscribed,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::routes::deliver;

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
}
