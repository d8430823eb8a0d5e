//! The refusals several scripts share, read from replies built by hand:
//! what a reply names is parsed into the crate's types here, at the edge,
//! and a word this build does not know is damage, never carried as text.

use redis::Value;

use crate::error::{BusyWith, Error};
use crate::keys::{Namespace, SandboxRef};
use crate::lifecycle::{Action, Lifecycle, State};
use crate::ops::{RESERVED, Reply};
use crate::scripts::{ScriptSettings, Scripts};

fn sandbox() -> SandboxRef {
    Namespace::new("sbx")
        .unwrap()
        .sandbox_ref("t", "s1")
        .unwrap()
}

fn reply(items: &[&str]) -> Reply {
    let items = items
        .iter()
        .map(|s| Value::BulkString(s.as_bytes().to_vec()))
        .collect();
    Reply::from_items("test", items)
}

#[test]
fn a_busy_reply_naming_an_unknown_action_is_corrupt() {
    let err = sandbox().busy(&reply(&["busy", "3", "frobnicate"]), 1);
    assert!(
        matches!(&err, Error::Corrupt { detail } if detail.contains("frobnicate")),
        "{err:?}"
    );
}

#[test]
fn an_exists_reply_naming_an_unknown_state_is_corrupt() {
    let err = sandbox().exists(&reply(&["exists", "e1", "hibernating"]));
    assert!(
        matches!(&err, Error::Corrupt { detail } if detail.contains("hibernating")),
        "{err:?}"
    );
}

#[test]
fn a_busy_reply_names_the_transition_or_the_reservation_that_holds_the_id() {
    let sb = sandbox();
    let err = sb.busy(&reply(&["busy", "7", "pause"]), 1);
    assert!(
        matches!(
            err,
            Error::Busy {
                with: BusyWith::Transition {
                    action: Action::Pause,
                    fence: 7
                },
                ..
            }
        ),
        "{err:?}"
    );
    for fence in ["0", "7"] {
        let err = sb.busy(&reply(&["busy", fence, RESERVED]), 1);
        assert!(
            matches!(
                err,
                Error::Busy {
                    with: BusyWith::Reservation,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // A schema-1 lease migrate could not read: damage, not a transition.
    let err = sb.busy(&reply(&["busy", "", ""]), 1);
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn exists_and_settled_replies_carry_the_state() {
    let sb = sandbox();
    let err = sb.exists(&reply(&["exists", "e1", "killed"]));
    assert!(
        matches!(&err, Error::AlreadyExists { execution, state: State::Killed, .. } if execution == "e1"),
        "{err:?}"
    );
    let err = sb.not_live(&reply(&["settled", "paused"]));
    assert!(
        matches!(
            err,
            Error::NotLive {
                state: State::Paused,
                ..
            }
        ),
        "{err:?}"
    );
    let err = sb.not_live(&reply(&["settled", "asleep"]));
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

/// Every `busy` a script answers names its action from the record (or a
/// schema-1 lease), or the word [`RESERVED`] for a reservation: a script
/// that started to answer another literal would be read as damage.
#[test]
fn every_busy_a_script_answers_names_an_action_or_the_reservation() {
    let scripts = Scripts::assemble(
        &Lifecycle::sandbox(),
        &ScriptSettings {
            publish: "PUBLISH",
            outcome_ms: 1,
            tombstone_ms: 1,
        },
    );
    let mut literals = 0;
    for s in scripts.all() {
        for (at, _) in s.source().match_indices("{'busy',") {
            let rest = &s.source()[at..];
            let answer = &rest[..rest.find('}').unwrap_or(rest.len())];
            let action = answer.rsplit(',').next().unwrap_or("").trim();
            if let Some(word) = action.strip_prefix('\'') {
                assert_eq!(
                    word.trim_end_matches('\''),
                    RESERVED,
                    "{}: {answer}",
                    s.name()
                );
                literals += 1;
            } else {
                assert!(
                    ["r.action", "la or ''"].contains(&action),
                    "{}: {answer}",
                    s.name()
                );
            }
        }
    }
    assert!(
        literals >= 3,
        "register, reserve and remove answer reservations"
    );
}
