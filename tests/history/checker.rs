//! Checks recorded histories for linearizability against [`SandboxSpec`],
//! one sandbox at a time (linearizability is local: a history is
//! linearizable iff each object's sub-history is, so per-sandbox checks are
//! both sound and complete).
//!
//! The model is a stateright `SequentialSpec`, and stateright's
//! `LinearizabilityTester` is the reference checker
//! ([`check_sandbox_stateright`]). It cannot do the recorded histories,
//! though: its search is a depth-first search without memoization that
//! re-explores every order of commuting calls (concurrent reads, `Invalid`
//! and `AlreadyInState` answers) after each dead end, and it recurses once
//! per call. On a 60-call history of the CI race it was still undecided
//! after 60 s. So the recorded histories go through [`linearize`], the
//! Wing–Gong search with Lowe's memoization of (linearized calls, model
//! state) — porcupine's and knossos' algorithm — over the same
//! `SequentialSpec`; the checker tests run both on every hand-made history
//! and require them to agree. A check that exceeds its budget counts as a
//! violation ("undecided") rather than hanging the suite.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sandbox_coordinator::Lifecycle;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use super::model::{Op, Ret, SandboxSpec};
use super::recorder::{Entry, ThreadId};

/// Default time budget of one sandbox's check.
pub const CHECK_BUDGET: Duration = Duration::from_secs(60);

/// A history that has no linearization (or none was found in the budget).
#[derive(Debug, Clone)]
pub struct Violation {
    pub sandbox: String,
    pub why: String,
    /// The history, one call per line, by invocation time.
    pub history: String,
}

/// The result of checking every sandbox of a run.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub histories: usize,
    pub entries: usize,
    /// Calls whose answer is unknown (left in flight).
    pub unknown: usize,
    pub longest: usize,
    pub violations: Vec<Violation>,
    pub took: Duration,
}

impl Verdict {
    /// Panics with the first violations' histories, if any.
    pub fn assert_linearizable(&self, what: &str) {
        if self.violations.is_empty() {
            return;
        }
        let mut msg = format!(
            "{what}: {} of {} sandbox histories are not linearizable\n",
            self.violations.len(),
            self.histories
        );
        for v in self.violations.iter().take(3) {
            let _ = writeln!(msg, "--- sandbox {}: {}\n{}", v.sandbox, v.why, v.history);
        }
        panic!("{msg}");
    }
}

/// Checks every sandbox's history of `entries` against `lifecycle`.
pub fn check(entries: &[Entry], lifecycle: &Lifecycle) -> Verdict {
    check_with_budget(entries, lifecycle, CHECK_BUDGET)
}

pub fn check_with_budget(entries: &[Entry], lifecycle: &Lifecycle, budget: Duration) -> Verdict {
    let began = Instant::now();
    let entries = with_expiries(entries);
    let mut by_sandbox: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        by_sandbox.entry(e.sandbox.clone()).or_default().push(e);
    }
    let mut verdict = Verdict::default();
    for (sandbox, history) in by_sandbox {
        verdict.histories += 1;
        verdict.entries += history.len();
        verdict.unknown += history.iter().filter(|e| e.ret.is_none()).count();
        verdict.longest = verdict.longest.max(history.len());
        if let Err(why) = check_sandbox(&history, lifecycle, budget) {
            verdict.violations.push(Violation {
                sandbox,
                why,
                history: render(&history),
            });
        }
    }
    verdict.took = began.elapsed();
    verdict
}

/// Adds, for every transition that may have outlived its lease, the
/// in-flight `Expire` of that lease, not before `lease` after its `begin`
/// was invoked (the script ran after the invocation, and the lease only
/// ever moves later). Skipped when its holder's finish came back
/// `Finished` before then, or when the recorder already added one (a
/// holder that died).
fn with_expiries(entries: &[Entry]) -> Vec<Entry> {
    let mut finished: HashMap<(&str, u64), Instant> = HashMap::new();
    let mut expiring: HashMap<u64, ()> = HashMap::new();
    for e in entries {
        match (&e.op, &e.ret) {
            (Op::Finish { fence, .. }, Some(Ret::Finished)) => {
                finished.insert((e.sandbox.as_str(), *fence), e.returned);
            }
            (Op::Expire { token }, _) => {
                expiring.insert(*token, ());
            }
            _ => {}
        }
    }
    let mut out = entries.to_vec();
    let mut thread = entries.iter().map(|e| e.thread).max().unwrap_or(0);
    for e in entries {
        let (Op::Begin { token, .. }, Some(lease)) = (&e.op, e.lease) else {
            continue;
        };
        if expiring.contains_key(token) {
            continue;
        }
        let not_before = e.invoked + lease;
        let holder_done = match &e.ret {
            Some(Ret::Started(f)) => finished
                .get(&(e.sandbox.as_str(), *f))
                .is_some_and(|t| *t < not_before),
            None => false,
            Some(_) => true, // no lease taken
        };
        if holder_done {
            continue;
        }
        thread += 1;
        out.push(Entry {
            sandbox: e.sandbox.clone(),
            thread,
            op: Op::Expire { token: *token },
            ret: None,
            invoked: not_before,
            returned: not_before,
            lease: None,
            error: None,
            coordinator: usize::MAX,
            settled: false,
        });
    }
    out
}

/// The calls of one history that can matter, and their invocation and
/// return events in real-time order (at equal times invocations first:
/// the calls then overlap, which constrains less). A call left in flight
/// that was invoked after every answered call returned is dropped: it
/// could only be linearized last, where nobody observes it.
fn events(history: &[Entry]) -> (Vec<&Entry>, Vec<(Instant, u8, usize)>) {
    let last = history
        .iter()
        .filter(|e| e.ret.is_some())
        .map(|e| e.returned)
        .max();
    let calls: Vec<&Entry> = history
        .iter()
        .filter(|e| e.ret.is_some() || e.settled || last.is_some_and(|l| e.invoked <= l))
        .collect();
    let mut events = Vec::new();
    for (i, e) in calls.iter().enumerate() {
        events.push((e.invoked, 0, i));
        if e.ret.is_some() || e.settled {
            events.push((e.returned, 1, i));
        }
    }
    events.sort();
    (calls, events)
}

/// Checks one sandbox's history with the memoizing search
/// ([`linearize`]); `Ok(n)` with the number of calls linearized.
pub fn check_sandbox(
    history: &[Entry],
    lifecycle: &Lifecycle,
    budget: Duration,
) -> Result<usize, String> {
    let (calls, events) = events(history);
    linearize(&calls, &events, SandboxSpec::new(lifecycle.clone()), budget)
}

/// The same question answered by stateright's `LinearizabilityTester`
/// (the reference: a plain depth-first search without memoization, so
/// only for short histories). `Ok(n)` with the linearization's length.
pub fn check_sandbox_stateright(history: &[Entry], lifecycle: &Lifecycle) -> Result<usize, String> {
    let history = with_expiries(history);
    let (calls, events) = events(&history);
    let mut tester: LinearizabilityTester<ThreadId, SandboxSpec> =
        LinearizabilityTester::new(SandboxSpec::new(lifecycle.clone()));
    for (_, kind, i) in events {
        let e = calls[i];
        if kind == 1 && e.ret.is_none() {
            continue; // stateright has no "settled unknown": leave it in flight
        }
        let fed = if kind == 0 {
            tester.on_invoke(e.thread, e.op.clone()).map(|_| ())
        } else {
            tester
                .on_return(e.thread, e.ret.clone().expect("returned"))
                .map(|_| ())
        };
        fed.map_err(|why| format!("recorder bug: {why}"))?;
    }
    tester
        .serialized_history()
        .map(|h| h.len())
        .ok_or_else(|| "no linearization exists".into())
}

/// Wing & Gong's search with Lowe's memoization (the algorithm of
/// porcupine and knossos' "linear" checker): walk the events in real-time
/// order; a call may be linearized while no return event precedes it in
/// what is left; an answered call whose return event is reached without
/// being linearized forces a backtrack. Each (set of linearized calls,
/// model state) is explored once, which is what keeps histories with many
/// commuting reads tractable. Calls without an answer (in flight) have no
/// return event: they may be linearized, with the effect the model
/// computes, or never. Succeeds when every answered call is linearized.
fn linearize(
    calls: &[&Entry],
    events: &[(Instant, u8, usize)],
    init: SandboxSpec,
    budget: Duration,
) -> Result<usize, String> {
    use stateright::semantics::SequentialSpec;
    use std::collections::HashSet;

    const NIL: usize = usize::MAX;
    // A doubly linked list over the events, node 0 the head sentinel, so a
    // linearized call's events can be unlinked and relinked in LIFO order.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n + 1).collect();
    next[n] = NIL;
    let mut prev: Vec<usize> = (0..=n).map(|i| i.wrapping_sub(1)).collect();
    prev[0] = NIL;
    // event node (1-based) -> (is call, call index); call -> return node.
    let node = |i: usize| events[i - 1];
    let mut return_of = vec![NIL; calls.len()];
    for i in 1..=n {
        if node(i).1 == 1 {
            return_of[node(i).2] = i;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != NIL {
            prev[nx] = i;
        }
    };

    let words = calls.len().div_ceil(64);
    let mut done = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, SandboxSpec)> = HashSet::new();
    // (event node of the call, state before it, variant: 0 = its effect,
    // 1 = no effect, for a settled call whose answer is unknown)
    let mut stack: Vec<(usize, SandboxSpec, u8)> = Vec::new();
    let mut state = init;
    let mut returns_left = return_of.iter().filter(|r| **r != NIL).count();
    let mut linearized = 0usize;
    let mut at = next[0];
    let mut variant = 0u8;
    let started = Instant::now();
    let mut steps = 0u64;
    while returns_left > 0 {
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > budget {
            return Err(format!(
                "undecided: no linearization found within {budget:?} ({} states explored)",
                cache.len()
            ));
        }
        let is_call = at != NIL && node(at).1 == 0;
        if is_call {
            let c = node(at).2;
            let e = calls[c];
            let mut after = state.clone();
            let valid = match (&e.ret, variant) {
                (Some(ret), _) => after.is_valid_step(&e.op, ret),
                (None, 0) => {
                    after.invoke(&e.op);
                    true
                }
                (None, _) => true, // settled without effect
            };
            if valid {
                let mut key = done.clone();
                key[c / 64] |= 1 << (c % 64);
                if cache.insert((key.clone(), after.clone())) {
                    stack.push((at, std::mem::replace(&mut state, after), variant));
                    done = key;
                    linearized += 1;
                    unlink(&mut next, &mut prev, at);
                    if return_of[c] != NIL {
                        unlink(&mut next, &mut prev, return_of[c]);
                        returns_left -= 1;
                    }
                    at = next[0];
                    variant = 0;
                    continue;
                }
            }
            // A settled unknown call may also take no effect here.
            if variant == 0 && e.ret.is_none() && return_of[c] != NIL {
                variant = 1;
                continue;
            }
            variant = 0;
            at = next[at];
        } else {
            // A return event (or the end) reached: the latest choice was wrong.
            let Some((call_at, before, tried)) = stack.pop() else {
                return Err("no linearization exists".into());
            };
            let c = node(call_at).2;
            state = before;
            done[c / 64] &= !(1 << (c % 64));
            linearized -= 1;
            if return_of[c] != NIL {
                relink(&mut next, &mut prev, return_of[c]);
                returns_left += 1;
            }
            relink(&mut next, &mut prev, call_at);
            if tried == 0 && calls[c].ret.is_none() && return_of[c] != NIL {
                at = call_at;
                variant = 1;
            } else {
                at = next[call_at];
                variant = 0;
            }
        }
    }
    Ok(linearized)
}

/// One call per line, by invocation time, times in ms from the first call.
pub fn render(history: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = history.iter().collect();
    sorted.sort_by_key(|e| (e.invoked, e.returned));
    let Some(origin) = sorted.first().map(|e| e.invoked) else {
        return String::new();
    };
    let ms = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let mut out = String::new();
    for e in sorted.iter().take(400) {
        let ret = match (&e.ret, &e.error) {
            (Some(r), _) => format!("{r:?}"),
            (None, Some(err)) => format!("? ({err})"),
            (None, None) => "? (in flight)".into(),
        };
        let coord = if e.coordinator == usize::MAX {
            "  -".to_string()
        } else {
            format!("c{:<2}", e.coordinator)
        };
        let _ = writeln!(
            out,
            "  [{:>10.3} .. {:>10.3} ms] t{:<5} {coord} {:?} -> {ret}",
            ms(e.invoked),
            ms(e.returned),
            e.thread,
            e.op
        );
    }
    if sorted.len() > 400 {
        let _ = writeln!(out, "  ... {} more", sorted.len() - 400);
    }
    out
}
