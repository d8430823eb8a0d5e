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
    /// The whole history, one call per line, by invocation time (the
    /// format [`super::replay::parse`] reads).
    pub history: String,
}

impl Violation {
    /// The history's first 400 lines, for messages.
    pub fn excerpt(&self) -> String {
        let mut out: String = self
            .history
            .lines()
            .take(400)
            .map(|l| format!("{l}\n"))
            .collect();
        let more = self.history.lines().count().saturating_sub(400);
        if more > 0 {
            let _ = writeln!(out, "  ... {more} more");
        }
        out
    }
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
            let _ = writeln!(msg, "--- sandbox {}: {}\n{}", v.sandbox, v.why, v.excerpt());
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
                history: render_all(&history),
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
        out.push(Entry::expiry(&e.sandbox, thread, *token, not_before));
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
    let mut state = init;
    let mut returns_left = return_of.iter().filter(|r| **r != NIL).count();
    let mut linearized = 0usize;
    // The calls that may go next: those before the first return event
    // left, earliest return first (a call that must be linearized soon is
    // tried first, which avoids most dead ends when many calls overlap;
    // the states explored are the same, only their order changes).
    let candidates = |next: &Vec<usize>| {
        let mut out = Vec::new();
        let mut at = next[0];
        while at != NIL && node(at).1 == 0 {
            out.push(at);
            at = next[at];
        }
        out.sort_by_key(|&at| (return_of[node(at).2], at));
        out
    };
    struct Frame {
        cands: Vec<usize>,
        pos: usize,
        // 0 = the call's effect, 1 = no effect (a settled unknown call)
        variant: u8,
        // The first candidate leaves the state as it is: the only choice
        // (see `new_frame`).
        forced: bool,
    }
    // A new frame. Partial-order reduction: an answered call whose step is
    // valid now and leaves the model state unchanged (a join, a refusal, a
    // read) can go first without losing any linearization. If one exists
    // that places it later, moving it to the front keeps every other step
    // valid (same state before each) and respects real time (it is a
    // candidate: every call that returned before it was invoked is already
    // linearized). So it becomes the frame's only choice; this is what
    // keeps dozens of overlapping joiners from costing 2^n subsets.
    let new_frame = |next: &Vec<usize>, state: &SandboxSpec| {
        let mut cands = candidates(next);
        let neutral = cands.iter().position(|&at| {
            let e = calls[node(at).2];
            e.ret.as_ref().is_some_and(|ret| {
                let mut after = state.clone();
                after.is_valid_step(&e.op, ret) && after == *state
            })
        });
        if let Some(i) = neutral {
            cands.swap(0, i);
        }
        Frame {
            cands,
            pos: 0,
            variant: 0,
            forced: neutral.is_some(),
        }
    };
    let advance = |f: &mut Frame, return_of: &Vec<usize>| {
        if f.forced {
            f.pos = f.cands.len();
            return;
        }
        let c = node(f.cands[f.pos]).2;
        if f.variant == 0 && calls[c].ret.is_none() && return_of[c] != NIL {
            f.variant = 1;
        } else {
            f.pos += 1;
            f.variant = 0;
        }
    };
    let mut frames = vec![new_frame(&next, &state)];
    let mut applied: Vec<(usize, SandboxSpec)> = Vec::new();
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
        let frame = frames.last_mut().expect("a frame");
        if frame.pos >= frame.cands.len() {
            // Every choice here failed: undo the one that led here.
            frames.pop();
            let Some((call_at, before)) = applied.pop() else {
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
            let parent = frames.last_mut().expect("the frame that chose it");
            advance(parent, &return_of);
            continue;
        }
        let at = frame.cands[frame.pos];
        let c = node(at).2;
        let e = calls[c];
        let mut after = state.clone();
        let valid = match (&e.ret, frame.variant) {
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
                applied.push((at, std::mem::replace(&mut state, after)));
                done = key;
                linearized += 1;
                unlink(&mut next, &mut prev, at);
                if return_of[c] != NIL {
                    unlink(&mut next, &mut prev, return_of[c]);
                    returns_left -= 1;
                }
                frames.push(new_frame(&next, &state));
                continue;
            }
        }
        advance(frame, &return_of);
    }
    Ok(linearized)
}

/// One call per line, by invocation time, times in ms from the first call
/// (the first 400 calls; [`render_all`] for every one). The format
/// [`super::replay::parse`] reads back.
pub fn render(history: &[Entry]) -> String {
    render_first(history, 400)
}

/// Every call of the history, one per line.
pub fn render_all(history: &[Entry]) -> String {
    render_first(history, usize::MAX)
}

fn render_first(history: &[Entry], limit: usize) -> String {
    let mut sorted: Vec<&Entry> = history.iter().collect();
    sorted.sort_by_key(|e| (e.invoked, e.returned));
    let Some(origin) = sorted.first().map(|e| e.invoked) else {
        return String::new();
    };
    let ms = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let mut out = String::new();
    for e in sorted.iter().take(limit) {
        let ret = match (&e.ret, &e.error) {
            (Some(r), _) => format!("{r:?}"),
            (None, err) => {
                let settled = if e.settled { " settled" } else { "" };
                let why = err.as_deref().unwrap_or("in flight").replace('\n', " ");
                format!("?{settled} ({why})")
            }
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
    if sorted.len() > limit {
        let _ = writeln!(out, "  ... {} more", sorted.len() - limit);
    }
    out
}
