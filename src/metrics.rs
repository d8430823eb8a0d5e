//! Every metric the library records, named once, through the `metrics`
//! facade (no exporter here: the application installs one, e.g.
//! metrics-exporter-prometheus). Names carry the `sandbox_coordinator_`
//! prefix and their unit; labels take few values (action, decision,
//! outcome, kind), never ids. docs/production.md lists them.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::lifecycle::{Action, Outcome};

pub(crate) const BEGINS: &str = "sandbox_coordinator_begins_total";
pub(crate) const WAIT: &str = "sandbox_coordinator_wait_seconds";
pub(crate) const TRANSITION: &str = "sandbox_coordinator_transition_seconds";
pub(crate) const LEASES_LOST: &str = "sandbox_coordinator_leases_lost_total";
pub(crate) const ABANDONED: &str = "sandbox_coordinator_abandoned_total";
pub(crate) const CANCELLED: &str = "sandbox_coordinator_cancelled_total";
pub(crate) const RELOADS: &str = "sandbox_coordinator_script_reloads_total";
pub(crate) const REDIS_ERRORS: &str = "sandbox_coordinator_redis_errors_total";
pub(crate) const NOTIFICATIONS: &str = "sandbox_coordinator_notifications_total";
pub(crate) const DAMAGED: &str = "sandbox_coordinator_damaged_skipped_total";

/// Describes every metric but the team views' (`view::describe`);
/// idempotent, called when a coordinator is built.
pub(crate) fn describe() {
    describe_counter!(
        BEGINS,
        "begin calls by action and decision (start, join, same, absorbed, invalid, error)"
    );
    describe_histogram!(
        WAIT,
        Unit::Seconds,
        "time begin or wait_idle spent waiting for another transition, by action and kind (join, wait, idle)"
    );
    describe_histogram!(
        TRANSITION,
        Unit::Seconds,
        "time from a transition's start to its finish, by action and outcome"
    );
    describe_counter!(
        LEASES_LOST,
        "transitions whose holder lost its lease (an extend refused, or none before the deadline), by action"
    );
    describe_counter!(
        ABANDONED,
        "transitions this coordinator recorded as abandoned (lease ended without an outcome), by action"
    );
    describe_counter!(
        CANCELLED,
        "calls dropped before they completed whose effect was undone in the background, by what (begin, finish, transition)"
    );
    describe_counter!(
        RELOADS,
        "scripts sent again after NOSCRIPT (restart, failover, SCRIPT FLUSH)"
    );
    describe_counter!(
        REDIS_ERRORS,
        "errors from Redis by kind (io, timeout, readonly, moved, ...)"
    );
    describe_counter!(
        NOTIFICATIONS,
        "wake-up notifications received on this coordinator's subscription"
    );
    describe_counter!(
        DAMAGED,
        "teams or slots a fleet-wide read skipped because a key of theirs is damaged (another type), by what (team, slot)"
    );
}

/// A fleet-wide read skipped a damaged team or slot (logged with its name).
pub(crate) fn damaged(what: &'static str) {
    counter!(DAMAGED, "what" => what).increment(1);
}

pub(crate) fn begin(action: Action, decision: &'static str) {
    counter!(BEGINS, "action" => action.as_str(), "decision" => decision).increment(1);
}

pub(crate) fn waited(action: &'static str, kind: &'static str, d: Duration) {
    histogram!(WAIT, "action" => action, "kind" => kind).record(d.as_secs_f64());
}

pub(crate) fn transition(action: Action, outcome: Outcome, d: Duration) {
    histogram!(TRANSITION, "action" => action.as_str(), "outcome" => outcome.as_str())
        .record(d.as_secs_f64());
}

pub(crate) fn lease_lost(action: Action) {
    counter!(LEASES_LOST, "action" => action.as_str()).increment(1);
}

pub(crate) fn abandoned(action: Option<Action>) {
    counter!(ABANDONED, "action" => action.map_or("unknown", Action::as_str)).increment(1);
}

pub(crate) fn cancelled(what: &'static str) {
    counter!(CANCELLED, "what" => what).increment(1);
}
