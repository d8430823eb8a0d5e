//! A second opinion for [`super::checker`]'s search, on small histories:
//! [`linearizable`] tries every order of every subset of the unknown calls
//! (no memo, no reduction), and [`random_history`] makes small histories,
//! linearizable by construction, then perhaps with one answer changed. The
//! checker's reductions (state-preserving calls first, unknown calls only
//! for an effect, settled ones dropped at their return, no loops of
//! unknown calls) must give the same answer on every one.

use std::time::Instant;

use rand::Rng;
use rand::seq::IndexedRandom;
use sandbox_coordinator::{Action, Lifecycle, Outcome, State};
use stateright::semantics::SequentialSpec;

use super::Handmade;
use super::model::{Op, Ret, SandboxSpec};
use super::recorder::Entry;

/// Whether some order of the answered calls and of any subset of the
/// unknown ones respects real time (a call that returned before another
/// was invoked goes first; a settled unknown call takes effect by its
/// return, one in flight any time after its invocation) and the model.
pub fn linearizable(entries: &[Entry], lifecycle: &Lifecycle) -> bool {
    let left: Vec<usize> = (0..entries.len()).collect();
    search(entries, &left, SandboxSpec::new(lifecycle.clone()))
}

/// When the effect of `e` is over at the latest (`None`: never, in flight).
fn end(e: &Entry) -> Option<Instant> {
    (e.ret.is_some() || e.settled).then_some(e.returned)
}

fn search(entries: &[Entry], left: &[usize], state: SandboxSpec) -> bool {
    if left.iter().all(|&i| entries[i].ret.is_none()) {
        return true;
    }
    for &c in left {
        let e = &entries[c];
        // An answered call still left that returned before `c` was
        // invoked must go first; unknown ones that did are left out.
        let invoked = super::checker::earliest(e);
        let before = |d: usize| d != c && end(&entries[d]).is_some_and(|t| t < invoked);
        if left.iter().any(|&d| before(d) && entries[d].ret.is_some()) {
            continue;
        }
        let rest: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&d| d != c && !before(d))
            .collect();
        let mut after = state.clone();
        let valid = match &e.ret {
            Some(ret) => after.is_valid_step(&e.op, ret),
            None => {
                after.invoke(&e.op);
                true
            }
        };
        if valid && search(entries, &rest, after) {
            return true;
        }
        // An unknown call may also never take effect.
        if e.ret.is_none() {
            let without: Vec<usize> = left.iter().copied().filter(|&d| d != c).collect();
            if search(entries, &without, state.clone()) {
                return true;
            }
        }
    }
    false
}

/// A history of `calls` calls after a register at 0..1 ms, within 60 ms:
/// each call's answer is the model's for a random point within its
/// interval (so the history is linearizable), some answers unknown
/// (settled or in flight), and with probability `lie` one answer then
/// replaced by a random one.
pub fn random_history(rng: &mut impl Rng, calls: usize, lie: f64) -> Handmade {
    struct Call {
        from: u64,
        to: u64,
        at: u64,
        op: Op,
    }
    let mut planned: Vec<Call> = (0..calls)
        .map(|i| {
            let from = rng.random_range(2..50);
            let to = from + rng.random_range(0..12);
            let op = match rng.random_range(0..10) {
                0..=3 => Op::Begin {
                    action: *Action::ALL.choose(rng).expect("actions"),
                    token: i as u64,
                },
                4 | 5 => Op::Finish {
                    fence: rng.random_range(1..=3),
                    outcome: *[Outcome::Succeeded, Outcome::Failed]
                        .choose(rng)
                        .expect("outcomes"),
                    reason: String::new(),
                },
                6 | 7 => Op::Get,
                8 => Op::Expire {
                    token: rng.random_range(0..calls as u64),
                },
                _ if rng.random_bool(0.5) => Op::Remove,
                _ => Op::Register {
                    execution: "f".into(),
                },
            };
            Call {
                from,
                to,
                at: rng.random_range(from..=to),
                op,
            }
        })
        .collect();
    planned.sort_by_key(|c| c.at);
    let lifecycle = Lifecycle::sandbox();
    let mut model = SandboxSpec::new(lifecycle);
    let created = model.invoke(&Op::Register {
        execution: "e".into(),
    });
    let mut h = Handmade::default().call(
        0,
        0,
        1,
        Op::Register {
            execution: "e".into(),
        },
        Some(created),
    );
    let mut answered = Vec::new();
    for (i, c) in planned.iter().enumerate() {
        let thread = i as u32 + 1;
        let unknown = matches!(c.op, Op::Expire { .. }) || rng.random_bool(0.2);
        if unknown {
            if rng.random_bool(0.5) {
                model.invoke(&c.op);
            }
            h = h.call(thread, c.from, c.to, c.op.clone(), None);
            if !matches!(c.op, Op::Expire { .. }) && rng.random_bool(0.5) {
                h = h.settled();
            }
            continue;
        }
        let valid: Vec<Ret> = answers(&c.op)
            .into_iter()
            .filter(|r| model.clone().is_valid_step(&c.op, r))
            .collect();
        let Some(ret) = valid.choose(rng).cloned() else {
            continue; // no answer fits (e.g. a `get` after a start of unknown fence)
        };
        model.is_valid_step(&c.op, &ret);
        answered.push(h.entries().len());
        h = h.call(thread, c.from, c.to, c.op.clone(), Some(ret));
    }
    if rng.random_bool(lie)
        && let Some(&i) = answered.choose(rng)
    {
        let op = h.entries()[i].op.clone();
        if let Some(ret) = answers(&op).choose(rng) {
            h = h.answer(i, ret.clone());
        }
    }
    h
}

/// Every answer `op` could get on the histories [`random_history`] makes.
fn answers(op: &Op) -> Vec<Ret> {
    let fences = 1..=4u64;
    match op {
        Op::Begin { .. } => {
            let mut out = vec![Ret::Timeout, Ret::NotFound];
            for f in fences {
                out.extend([
                    Ret::Started(f),
                    Ret::Joined(f),
                    Ret::Abandoned(f),
                    Ret::OutcomeUnknown(f),
                    Ret::TransitionFailed {
                        fence: f,
                        reason: String::new(),
                    },
                ]);
            }
            for s in State::ALL {
                out.extend([Ret::Absorbed(s), Ret::AlreadyInState(s), Ret::Invalid(s)]);
            }
            out
        }
        Op::Finish { .. } => vec![Ret::Finished, Ret::Fenced, Ret::NotFound],
        Op::Get => {
            let mut out = vec![Ret::NotFound];
            for state in State::ALL {
                for execution in ["e", "f"] {
                    for fence in 0..=4u64 {
                        for lease in [None, Some(fence)] {
                            out.push(Ret::Record {
                                state,
                                execution: execution.into(),
                                fence,
                                lease,
                            });
                        }
                    }
                }
            }
            out
        }
        Op::Register { .. } => vec![
            Ret::Created,
            Ret::Existing,
            Ret::Resumed {
                previous: "e".into(),
            },
            Ret::Busy,
            Ret::Exists,
        ],
        Op::Remove => vec![Ret::Removed, Ret::Busy, Ret::NotFound],
        Op::Expire { .. } | Op::Cancel { .. } | Op::Lose => vec![Ret::Done],
    }
}
