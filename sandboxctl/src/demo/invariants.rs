//! The guarantees the demo checks after its run, each from what the fleet
//! itself observed (the ledger), not from the coordinator's word.

use std::collections::HashMap;

use serde::Serialize;

use super::fleet::SandboxName;
use super::ledger::{Answer, LifecycleEvents, Request, Track};

/// Examples quoted in a failing check's detail.
const EXAMPLES: usize = 3;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

fn check(name: &'static str, failures: Vec<String>, ok: String, total_failures: usize) -> Check {
    if failures.is_empty() {
        Check {
            name,
            pass: true,
            detail: ok,
        }
    } else {
        let more = total_failures.saturating_sub(failures.len());
        let mut detail = failures.join("; ");
        if more > 0 {
            detail.push_str(&format!("; and {more} more"));
        }
        Check {
            name,
            pass: false,
            detail,
        }
    }
}

fn label(names: &[SandboxName], sandbox: usize) -> String {
    names
        .get(sandbox)
        .map_or(format!("sandbox #{sandbox}"), |n| {
            format!("{}/{}", n.team, n.id)
        })
}

/// No holder was handed a sandbox while another holder still held it.
pub fn one_live_transition(names: &[SandboxName], tracks: &[Track]) -> Check {
    let mut failures = Vec::new();
    let mut transitions = 0;
    for (i, track) in tracks.iter().enumerate() {
        transitions += track.fences().len();
        for (held, started) in track.overlaps() {
            failures.push(format!(
                "{}: fence {started} started while fence {held} was still held",
                label(names, i)
            ));
        }
    }
    let total = failures.len();
    failures.truncate(EXAMPLES);
    check(
        "one live transition per sandbox",
        failures,
        format!("{transitions} transitions; never two holders of one sandbox at once"),
        total,
    )
}

/// Each sandbox's fences, in the order its transitions started, rise
/// strictly — also across removal and re-registration.
pub fn fences_increase(
    names: &[SandboxName],
    tracks: &[Track],
    lifecycle: &LifecycleEvents,
) -> Check {
    let mut failures = Vec::new();
    let mut fences = 0;
    for (i, track) in tracks.iter().enumerate() {
        let seq = track.fences();
        fences += seq.len();
        if let Some(w) = seq.windows(2).find(|w| w[1] <= w[0]) {
            failures.push(format!(
                "{}: fence {} came after fence {}",
                label(names, i),
                w[1],
                w[0]
            ));
        }
    }
    let total = failures.len();
    failures.truncate(EXAMPLES);
    check(
        "fences strictly increasing",
        failures,
        format!(
            "{fences} fences on {} sandboxes, across {} resumes and {} re-registrations",
            tracks.len(),
            lifecycle.resumes,
            lifecycle.recycles
        ),
        total,
    )
}

/// How a leader's transition ended, by the leader's own account.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeaderEnd {
    Succeeded,
    Failed(String),
    Abandoned,
    Unknown,
}

/// Every joiner got the outcome of the transition it joined: success for a
/// leader that succeeded, that leader's failure reason, or abandoned for a
/// leader that crashed or stalled past its lease.
pub fn joiners_saw_their_leader(names: &[SandboxName], requests: &[Request]) -> Check {
    let mut leaders: HashMap<(usize, u64), LeaderEnd> = HashMap::new();
    for r in requests {
        let end = match &r.answer {
            Answer::Succeeded { .. } | Answer::StaleAccepted { .. } => LeaderEnd::Succeeded,
            Answer::HolderFailed { reason, .. } => LeaderEnd::Failed(reason.clone()),
            Answer::Crashed { .. } | Answer::Fenced { .. } | Answer::LostLease { .. } => {
                LeaderEnd::Abandoned
            }
            Answer::HolderError { .. } => LeaderEnd::Unknown,
            _ => continue,
        };
        if let Some(fence) = r.answer.held() {
            leaders.insert((r.sandbox, fence), end);
        }
    }
    let mut failures = Vec::new();
    let (mut ok, mut failed, mut abandoned) = (0, 0, 0);
    for r in requests {
        let Some(fence) = r.answer.joined() else {
            continue;
        };
        let leader = leaders.get(&(r.sandbox, fence));
        let matched = match (&r.answer, leader) {
            (Answer::Joined { .. }, Some(LeaderEnd::Succeeded)) => {
                ok += 1;
                true
            }
            (Answer::JoinedFailed { reason, .. }, Some(LeaderEnd::Failed(why)))
                if reason == why =>
            {
                failed += 1;
                true
            }
            (Answer::JoinedAbandoned { .. }, Some(LeaderEnd::Abandoned)) => {
                abandoned += 1;
                true
            }
            _ => false,
        };
        if !matched {
            let leader = match leader {
                Some(end) => format!("its leader ended {end:?}"),
                None => "no request of the demo started it".to_string(),
            };
            failures.push(format!(
                "{} {} joined fence {fence} and got {:?}, but {leader}",
                label(names, r.sandbox),
                r.action,
                r.answer
            ));
        }
    }
    let total = failures.len();
    failures.truncate(EXAMPLES);
    check(
        "joiners saw their leader's outcome",
        failures,
        format!(
            "{} joiners: {ok} shared a success, {failed} a failure (same reason), {abandoned} an abandonment",
            ok + failed + abandoned
        ),
        total,
    )
}

/// A holder that stalled past its lease had its late `succeed` refused.
pub fn stale_holders_fenced(names: &[SandboxName], requests: &[Request]) -> Check {
    let mut failures = Vec::new();
    let mut stalled = 0;
    let mut lost = 0;
    for r in requests {
        match &r.answer {
            Answer::Fenced { .. } => stalled += 1,
            Answer::LostLease { .. } => lost += 1,
            Answer::StaleAccepted { fence } => failures.push(format!(
                "{}: fence {fence} succeeded after its lease had expired",
                label(names, r.sandbox)
            )),
            _ => {}
        }
    }
    let total = failures.len();
    failures.truncate(EXAMPLES);
    let mut ok =
        format!("{stalled} holders stalled past their lease; every late finish was refused");
    if lost > 0 {
        ok.push_str(&format!(" (and {lost} that lost their lease under load)"));
    }
    check("stale holders fenced", failures, ok, total)
}

/// Every request got an answer from the lifecycle: no Redis errors, no
/// timeouts, no corrupt replies; and the fleet's own upkeep (resume,
/// re-register) never failed.
pub fn definite_answers(
    names: &[SandboxName],
    requests: &[Request],
    lifecycle: &LifecycleEvents,
) -> Check {
    let mut failures = Vec::new();
    for r in requests {
        match &r.answer {
            Answer::Unexpected { error } | Answer::HolderError { error, .. } => {
                failures.push(format!("{} {}: {error}", label(names, r.sandbox), r.action))
            }
            _ => {}
        }
    }
    failures.extend(lifecycle.errors.iter().cloned());
    let total = failures.len();
    failures.truncate(EXAMPLES);
    check(
        "every request got a definite answer",
        failures,
        format!("{} requests, no errors or timeouts", requests.len()),
        total,
    )
}

/// After the run (and the crashed holders' leases), no lease is left.
pub fn nothing_left_in_flight(sandboxes: usize, leftovers: Vec<String>) -> Check {
    let total = leftovers.len();
    let mut failures = leftovers;
    failures.truncate(EXAMPLES);
    check(
        "nothing left in flight",
        failures,
        format!("all {sandboxes} sandboxes idle after the run"),
        total,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sandbox_coordinator::Action;

    use super::*;

    fn names() -> Vec<SandboxName> {
        vec![SandboxName {
            team: "t".into(),
            id: "s".into(),
        }]
    }

    fn request(answer: Answer) -> Request {
        Request {
            sandbox: 0,
            action: Action::Pause,
            answer,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn a_second_holder_before_the_first_released_is_caught() {
        let track = Track::default();
        track.claim(1);
        track.release(1);
        track.claim(2);
        assert!(one_live_transition(&names(), std::slice::from_ref(&track)).pass);
        track.claim(3);
        let check = one_live_transition(&names(), &[track]);
        assert!(!check.pass);
        assert!(
            check.detail.contains("fence 3 started while fence 2"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_fence_that_does_not_rise_is_caught() {
        let track = Track::default();
        for f in [3, 7, 7] {
            track.claim(f);
            track.release(f);
        }
        let check = fences_increase(&names(), &[track], &LifecycleEvents::default());
        assert!(!check.pass);
        assert!(
            check.detail.contains("fence 7 came after fence 7"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn joiners_must_match_their_leader() {
        let ok = [
            request(Answer::Succeeded { fence: 1 }),
            request(Answer::Joined { fence: 1 }),
            request(Answer::HolderFailed {
                fence: 2,
                reason: "boom".into(),
            }),
            request(Answer::JoinedFailed {
                fence: 2,
                reason: "boom".into(),
            }),
            request(Answer::Crashed { fence: 3 }),
            request(Answer::JoinedAbandoned { fence: 3 }),
            request(Answer::Fenced { fence: 4 }),
            request(Answer::JoinedAbandoned { fence: 4 }),
        ];
        let check = joiners_saw_their_leader(&names(), &ok);
        assert!(check.pass, "{}", check.detail);

        for wrong in [
            request(Answer::Joined { fence: 3 }),
            request(Answer::JoinedFailed {
                fence: 2,
                reason: "other".into(),
            }),
            request(Answer::JoinedAbandoned { fence: 1 }),
            request(Answer::Joined { fence: 99 }),
        ] {
            let mut all = ok.to_vec();
            all.push(wrong.clone());
            assert!(!joiners_saw_their_leader(&names(), &all).pass, "{wrong:?}");
        }
    }

    #[test]
    fn an_accepted_stale_finish_and_errors_are_caught() {
        let stale = [request(Answer::StaleAccepted { fence: 5 })];
        assert!(!stale_holders_fenced(&names(), &stale).pass);
        let errors = [request(Answer::Unexpected {
            error: "redis: broken pipe".into(),
        })];
        let check = definite_answers(&names(), &errors, &LifecycleEvents::default());
        assert!(!check.pass);
        assert!(check.detail.contains("broken pipe"));
        assert!(!nothing_left_in_flight(1, vec!["t/s still in flight".into()]).pass);
    }
}
