//! What every call of one coordinator shares: the script environment (the
//! connections, the assembled scripts, the lifecycle), the notifier, the
//! lease keeper, the settings, and the source of holder ids. The façade
//! ([`Coordinator`](crate::Coordinator)), the waits and the transitions
//! hold it; it depends on nothing above it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::keeper::Keeper;
use crate::notify::Notifier;
use crate::ops::Env;

/// Settings every call reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub poll_interval: Duration,
    pub response_timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct Runtime {
    pub env: Arc<Env>,
    pub notifier: Notifier,
    pub keeper: Keeper,
    pub settings: Settings,
    holder_prefix: String,
    calls: AtomicU64,
    /// The hash slots this coordinator has added to the slot registry.
    pub listed: SlotSet,
}

/// A set of hash slots (one bit each), shared without a lock.
#[derive(Debug)]
pub(crate) struct SlotSet([AtomicU64; crate::keys::SLOTS as usize / 64]);

impl Default for SlotSet {
    fn default() -> SlotSet {
        SlotSet(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl SlotSet {
    pub(crate) fn contains(&self, slot: u16) -> bool {
        let (word, bit) = (usize::from(slot / 64) % self.0.len(), slot % 64);
        self.0[word].load(Ordering::Relaxed) & (1 << bit) != 0
    }

    pub(crate) fn insert(&self, slot: u16) {
        let (word, bit) = (usize::from(slot / 64) % self.0.len(), slot % 64);
        self.0[word].fetch_or(1 << bit, Ordering::Relaxed);
    }
}

impl Runtime {
    pub(crate) fn new(
        env: Arc<Env>,
        notifier: Notifier,
        keeper: Keeper,
        settings: Settings,
        holder_prefix: String,
    ) -> Runtime {
        Runtime {
            env,
            notifier,
            keeper,
            settings,
            holder_prefix,
            calls: AtomicU64::new(0),
            listed: SlotSet::default(),
        }
    }

    /// This coordinator's holder id prefix.
    pub(crate) fn holder_prefix(&self) -> &str {
        &self.holder_prefix
    }

    /// A fresh holder id, unique per call: `<prefix>/<n>`.
    pub(crate) fn next_holder(&self) -> String {
        format!(
            "{}/{}",
            self.holder_prefix,
            self.calls.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh id for the keeper's bookkeeping.
    pub(crate) fn next_id(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed)
    }

    /// How long a queued waiter keeps its place without re-checking: a few
    /// polls, never longer than its lease (a waiter that died blocks nobody
    /// beyond that), and never under 2 s whatever its lease. The place is
    /// about the waiter's liveness: the script tells a queued waiter to
    /// re-check within half its place, so a place outlives the waiter's
    /// next re-check even when the lease is not longer than the poll
    /// interval (a place that ran out first sent a live waiter to the back).
    pub(crate) fn queue_place(&self, lease: Duration) -> Duration {
        self.settings
            .poll_interval
            .saturating_mul(4)
            .min(lease)
            .max(Duration::from_secs(2))
    }
}
