//! The rule table's tests: docs/concepts.md's table cell by cell, and
//! the validation of custom tables.

use super::Action::*;
use super::Decision::*;
use super::LeaseView::{Live, None as Stuck};
use super::State::*;
use super::*;

/// docs/concepts.md's table, cell by cell: (state, lease, [pause, kill, snapshot]).
const TABLE: [(State, LeaseView, [Decision; 3]); 9] = [
    (Running, Stuck, [Start, Start, Start]),
    (Pausing, Live, [Join, WaitThenRedecide, Invalid]),
    (Pausing, Stuck, [Start, Start, Invalid]),
    (Paused, Stuck, [AlreadyInState, Absorbed, Invalid]),
    (Killing, Live, [Invalid, Join, Invalid]),
    (Killing, Stuck, [Invalid, Start, Invalid]),
    (Killed, Stuck, [Invalid, AlreadyInState, Invalid]),
    (
        Snapshotting,
        Live,
        [WaitThenRedecide, WaitThenRedecide, Join],
    ),
    (Snapshotting, Stuck, [Start, Start, Start]),
];

#[test]
fn every_cell_of_the_design_table() {
    let lc = Lifecycle::sandbox();
    for (state, lease, row) in TABLE {
        for (action, want) in Action::ALL.into_iter().zip(row) {
            assert_eq!(
                lc.decide(state, lease, action),
                want,
                "{action} on {state} with lease {lease:?}"
            );
        }
    }
}

#[test]
fn settled_states_ignore_the_lease_half() {
    let lc = Lifecycle::sandbox();
    for state in [Running, Paused, Killed] {
        for action in Action::ALL {
            assert_eq!(
                lc.decide(state, Live, action),
                lc.decide(state, Stuck, action)
            );
        }
    }
}

#[test]
fn outcomes_follow_the_action_table() {
    let lc = Lifecycle::sandbox();
    assert_eq!(lc.state_after(Pause, Outcome::Succeeded), Paused);
    assert_eq!(lc.state_after(Pause, Outcome::Failed), Pausing);
    assert_eq!(lc.state_after(Kill, Outcome::Succeeded), Killed);
    assert_eq!(lc.state_after(Kill, Outcome::Failed), Killing);
    assert_eq!(lc.state_after(Snapshot, Outcome::Succeeded), Running);
    assert_eq!(lc.state_after(Snapshot, Outcome::Failed), Running);
    assert_eq!(lc.state_after(Snapshot, Outcome::Abandoned), Snapshotting);
}

#[test]
fn the_default_table_is_valid() {
    assert_eq!(Lifecycle::sandbox().validate(), Ok(()));
}

#[test]
fn a_join_across_actions_is_rejected() {
    let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, Join);
    assert!(lc.validate().is_err());
}

#[test]
fn a_wait_on_a_stuck_record_is_rejected() {
    let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Stuck, WaitThenRedecide);
    assert!(lc.validate().is_err());
}

#[test]
fn a_start_over_a_live_lease_is_rejected_naming_the_cell() {
    let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, Start);
    let err = lc.validate().unwrap_err();
    assert!(err.contains("kill on pausing"), "{err}");
}

#[test]
fn done_answers_on_a_live_in_flight_cell_are_rejected() {
    for d in [AlreadyInState, Absorbed] {
        let lc = Lifecycle::sandbox().with_rule(Kill, Pausing, Live, d);
        let err = lc.validate().unwrap_err();
        assert!(err.contains("kill on pausing with a live lease"), "{err}");
    }
}

#[test]
fn outcomes_into_in_flight_states_are_rejected() {
    let spec = ActionSpec {
        in_flight: Snapshotting,
        on_success: Pausing,
        on_failure: Some(Running),
        ends_sandbox: false,
    };
    let err = Lifecycle::sandbox()
        .with_action(Snapshot, spec)
        .validate()
        .unwrap_err();
    assert!(err.contains("on_success pausing"), "{err}");
    let spec = ActionSpec {
        on_success: Running,
        on_failure: Some(Killing),
        ..spec
    };
    let err = Lifecycle::sandbox()
        .with_action(Snapshot, spec)
        .validate()
        .unwrap_err();
    assert!(err.contains("on_failure killing"), "{err}");
}

#[test]
fn the_digest_names_the_table() {
    let a = Lifecycle::sandbox();
    let b = Lifecycle::sandbox().with_rule(Kill, Paused, Stuck, Start);
    assert_eq!(a.digest(), Lifecycle::sandbox().digest());
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 12);
}

#[test]
fn a_rule_can_be_changed_as_data() {
    let lc = Lifecycle::sandbox().with_rule(Kill, Paused, Stuck, Start);
    assert_eq!(lc.decide(Paused, Stuck, Kill), Start);
    assert_eq!(lc.validate(), Ok(()));
    assert!(lc.rules_arg(Kill).contains("paused=start/start"));
}

#[test]
fn script_arguments_name_every_state() {
    let lc = Lifecycle::sandbox();
    assert_eq!(
        lc.classes_arg(),
        "running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight"
    );
    assert_eq!(
        lc.rules_arg(Pause),
        "running=start/start,pausing=join/start,paused=same/same,killing=invalid/invalid,killed=invalid/invalid,snapshotting=wait/start"
    );
}

#[test]
fn names_round_trip() {
    for s in State::ALL {
        assert_eq!(s.as_str().parse::<State>(), Ok(s));
    }
    for a in Action::ALL {
        assert_eq!(a.as_str().parse::<Action>(), Ok(a));
    }
    assert!("sleeping".parse::<State>().is_err());
}
