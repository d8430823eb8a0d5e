//! The one retry policy and schedule of a script call that failed in
//! transport (a broken connection, a lost reply, a failover's `READONLY`):
//! pure, no tokio, so the step function (`protocol::step`) uses it as is
//! and its tests below run without Redis.
//!
//! Not retries, and not here: the notifier's reconnect backoff
//! (`notify::supervisor`, 20 ms doubling to 1 s, forever) paces the
//! reconnects of a long-lived subscription, not a call with a caller
//! waiting; the step function's re-check after a state that should have
//! changed (`step::Loop::again`) waits for a write to show, not for a
//! transport to recover.

use std::time::{Duration, Instant};

/// The pause before retry `n` (0-based): 20 ms, 80 ms, then 100 ms each.
pub(crate) fn pause(n: u32) -> Duration {
    match n {
        0 => Duration::from_millis(20),
        1 => Duration::from_millis(80),
        _ => Duration::from_millis(100),
    }
}

/// When a failed call is sent again, and after how long ([`pause`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Retry {
    /// Retries made whatever the time (within `deadline`).
    quick: u32,
    /// After those, retries go on while the time is before this (a
    /// finish: its lease's end, while nobody else may take over).
    more_until: Option<Instant>,
    /// The caller's deadline: no pause ends at or past it.
    deadline: Option<Instant>,
}

impl Retry {
    /// Sent once: its effect after a lost reply is unknown and a retry
    /// could differ (register, remove, reserve); the caller decides.
    pub(crate) const ONCE: Retry = Retry {
        quick: 0,
        more_until: None,
        deadline: None,
    };

    /// Retried twice: read-only, or idempotent for the same arguments
    /// (settle, extend, begin by its holder id, finish by its fence).
    pub(crate) const TWICE: Retry = Retry {
        quick: 2,
        more_until: None,
        deadline: None,
    };

    /// Past the quick retries, goes on retrying while before `t`.
    pub(crate) fn more_until(self, t: Option<Instant>) -> Retry {
        Retry {
            more_until: t,
            ..self
        }
    }

    /// Never waits until or past `deadline` (the caller's).
    pub(crate) fn within(self, deadline: Option<Instant>) -> Retry {
        Retry { deadline, ..self }
    }

    /// After `done` retries, the call failed again at `now`: the pause
    /// before the next one, or `None` to give up.
    pub(crate) fn next(&self, done: u32, now: Instant) -> Option<Duration> {
        if done >= self.quick && self.more_until.is_none_or(|u| now >= u) {
            return None;
        }
        let p = pause(done);
        if self.deadline.is_some_and(|d| now + p >= d) {
            return None;
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// The pauses `retry` makes if every call fails at once (calls take no
    /// time), and the instant it gives up.
    fn run(retry: Retry, t0: Instant) -> (Vec<Duration>, Instant) {
        let (mut pauses, mut now) = (Vec::new(), t0);
        while let Some(p) = retry.next(pauses.len() as u32, now) {
            pauses.push(p);
            now += p;
            assert!(pauses.len() < 1000, "endless: {retry:?}");
        }
        (pauses, now)
    }

    #[test]
    fn once_never_retries() {
        assert!(run(Retry::ONCE, Instant::now()).0.is_empty());
    }

    #[test]
    fn twice_pauses_20_then_80_ms() {
        assert_eq!(run(Retry::TWICE, Instant::now()).0, [MS(20), MS(80)]);
    }

    #[test]
    fn more_until_goes_on_every_100_ms_until_the_instant() {
        let t0 = Instant::now();
        let (pauses, end) = run(Retry::TWICE.more_until(Some(t0 + MS(450))), t0);
        // 20 + 80 + 100 × 4 = 500: the last pause starts at 400 < 450.
        assert_eq!(pauses, [MS(20), MS(80), MS(100), MS(100), MS(100), MS(100)]);
        assert_eq!(end, t0 + MS(500));
        // An instant already past: the quick retries only.
        let (pauses, _) = run(Retry::TWICE.more_until(Some(t0)), t0);
        assert_eq!(pauses, [MS(20), MS(80)]);
    }

    #[test]
    fn no_pause_ends_at_or_past_the_deadline() {
        let t0 = Instant::now();
        for d in [0, 1, 19, 20, 21, 99, 100, 101, 250, 1000] {
            let deadline = t0 + MS(d);
            let (pauses, end) = run(Retry::TWICE.within(Some(deadline)), t0);
            assert!(end < deadline || pauses.is_empty(), "{d} ms: {pauses:?}");
            assert!(pauses.len() <= 2, "{d} ms: {pauses:?}");
            let longer = Retry::TWICE
                .more_until(Some(t0 + MS(5000)))
                .within(Some(deadline));
            let (pauses, end) = run(longer, t0);
            assert!(end < deadline || pauses.is_empty(), "{d} ms: {pauses:?}");
            // And it used the time it had: one more pause would cross it.
            let next = pause(pauses.len() as u32);
            assert!(end + next >= deadline, "{d} ms: gave up early");
        }
    }

    #[test]
    fn the_deadline_cuts_the_quick_retries_too() {
        let t0 = Instant::now();
        let (pauses, _) = run(Retry::TWICE.within(Some(t0 + MS(50))), t0);
        assert_eq!(pauses, [MS(20)]);
    }
}
