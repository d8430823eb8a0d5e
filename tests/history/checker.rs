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
//! `SequentialSpec`, with three reductions that keep the recorded
//! histories' overlapping calls from costing every subset of them: a
//! state-preserving answered call goes first; an unknown call is tried only
//! for an effect that changes the state (else it is dropped, once); and no
//! run of unknown calls' effects may loop back to a state it left. The
//! checker tests run it and stateright's tester on every hand-made history,
//! and it and an exhaustive search ([`super::brute`]) on random small ones,
//! and require them to agree. A check that exceeds its budget is
//! "undecided": kept with the violations (it fails the run) but counted
//! apart ([`Verdict::undecided`]), never passed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sandbox_coordinator::Lifecycle;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use super::model::{Op, Ret, SandboxSpec};
use super::recorder::{Entry, ThreadId};

/// How the reason of a check that ran out of budget begins.
pub const UNDECIDED: &str = "undecided:";

/// Default time budget of one sandbox's check.
pub const CHECK_BUDGET: Duration = Duration::from_secs(60);

/// A history that has no linearization (or none was found in the budget).
#[derive(Debug, Clone)]
pub struct Violation {
    pub sandbox: String,
    pub why: String,
    /// The search ran out of its budget: the history is neither shown
    /// linearizable nor shown not to be (reported apart from the
    /// violations proved, and never as passed).
    pub undecided: bool,
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
    /// Histories with no linearization, and those the search could not
    /// decide within its budget (`undecided` set; also counted in
    /// [`Verdict::undecided`]).
    pub violations: Vec<Violation>,
    /// How many of `violations` are undecided.
    pub undecided: usize,
    pub took: Duration,
}

impl Verdict {
    /// Panics with the first violations' histories, if any.
    pub fn assert_linearizable(&self, what: &str) {
        if self.violations.is_empty() {
            return;
        }
        let mut msg = format!(
            "{what}: {} of {} sandbox histories are not linearizable ({} of them undecided)\n",
            self.violations.len(),
            self.histories,
            self.undecided
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
            let undecided = why.starts_with(UNDECIDED);
            verdict.undecided += usize::from(undecided);
            verdict.violations.push(Violation {
                sandbox,
                why,
                undecided,
                history: render_all(&history),
            });
        }
    }
    verdict.took = began.elapsed();
    verdict
}

/// How much earlier than its begin's invocation + lease a lease may be
/// seen expired: the scripts' deadlines are whole milliseconds of the
/// server's clock (`clock.lua` truncates `TIME`), so a lease can run out up
/// to 1 ms early by this process's monotonic clock; the other millisecond
/// covers the drift between the server's wall clock and it over a lease.
/// Found by a 10-minute soak: reads saw 400 ms leases expired 0.155 ms and
/// 0.005 ms before (tests/histories/dying-holders-lease-expired-early-*).
pub const LEASE_CLOCK_SLACK: Duration = Duration::from_millis(2);

/// When `e` may take effect at the earliest: its invocation, or for an
/// `Expire` (whose time is its begin's invocation + lease)
/// `LEASE_CLOCK_SLACK` before.
pub fn earliest(e: &Entry) -> Instant {
    match e.op {
        Op::Expire { .. } => e
            .invoked
            .checked_sub(LEASE_CLOCK_SLACK)
            .unwrap_or(e.invoked),
        _ => e.invoked,
    }
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
        events.push((earliest(e), 0, i));
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
/// being linearized forces a backtrack. Each (set of calls dealt with,
/// model state) is explored once, which is what keeps histories with many
/// commuting reads tractable. Succeeds when every answered call is
/// linearized.
///
/// A call without an answer may have taken effect, with the effect the
/// model computes, or not at all. An effect that changes nothing is the
/// same as no effect, and "no effect" is one choice, not one per place in
/// the order: so such a call is only ever linearized to change the model
/// state. One in flight (no return event) is otherwise left out; a settled
/// one that has not taken effect when its return event comes first is
/// dropped there ([`Move::Drop`]; any earlier place for "nothing" would do
/// as well). Trying each unknown call's no-op at every position made 14
/// retried begins and their 14 lease expiries cost every subset of 28
/// calls (tests/histories/redis-paused-retried-undecided.txt: undecided
/// after 3.7 million states).
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
    // event node (1-based) -> (time, is return, call index); call ->
    // invocation and return nodes.
    let node = |i: usize| events[i - 1];
    let mut return_of = vec![NIL; calls.len()];
    let mut invocation_of = vec![NIL; calls.len()];
    for i in 1..=n {
        match node(i).1 {
            1 => return_of[node(i).2] = i,
            _ => invocation_of[node(i).2] = i,
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
    // A new frame: the moves possible after what is done so far. The
    // calls that may go next are those before the first return event
    // left, earliest return first (a call that must be linearized soon is
    // tried first, which avoids most dead ends when many calls overlap;
    // the states explored are the same, only their order changes). If
    // that first return event is a settled unknown call's, dropping it
    // (no effect) comes first.
    //
    // Partial-order reduction: an answered call whose step is valid now
    // and leaves the model state unchanged (a join, a refusal, a read)
    // can go first without losing any linearization. If one exists that
    // places it later, moving it to the front keeps every other step
    // valid (same state before each) and respects real time (it is a
    // candidate: every call that returned before it was invoked is already
    // dealt with). So it becomes the frame's only move; this is what
    // keeps dozens of overlapping joiners from costing 2^n subsets.
    let new_frame = |next: &Vec<usize>, state: &SandboxSpec| {
        let mut cands = Vec::new();
        let mut at = next[0];
        while at != NIL && node(at).1 == 0 {
            cands.push(at);
            at = next[at];
        }
        let neutral = cands.iter().copied().find(|&at| {
            let e = calls[node(at).2];
            e.ret.as_ref().is_some_and(|ret| {
                let mut after = state.clone();
                after.is_valid_step(&e.op, ret) && after == *state
            })
        });
        if let Some(at) = neutral {
            return Frame {
                moves: vec![Move::Apply(at)],
                pos: 0,
            };
        }
        cands.sort_by_key(|&at| (return_of[node(at).2], at));
        let mut moves = Vec::with_capacity(cands.len() + 1);
        if at != NIL && calls[node(at).2].ret.is_none() {
            moves.push(Move::Drop(invocation_of[node(at).2]));
        }
        moves.extend(cands.into_iter().map(Move::Apply));
        Frame { moves, pos: 0 }
    };
    let mut frames = vec![new_frame(&next, &state)];
    // Each move of the current path, the state before it, and whether it
    // is an unknown call's.
    let mut applied: Vec<(Move, SandboxSpec, bool)> = Vec::new();
    let started = Instant::now();
    let mut steps = 0u64;
    while returns_left > 0 {
        steps += 1;
        // Every 4096 steps, from the first (so a zero budget is undecided
        // at once, whatever the history).
        if steps % 4096 == 1 && started.elapsed() > budget {
            return Err(format!(
                "{UNDECIDED} no linearization found within {budget:?} ({} states explored)",
                cache.len()
            ));
        }
        let frame = frames.last_mut().expect("a frame");
        let Some(&mv) = frame.moves.get(frame.pos) else {
            // Every move here failed: undo the one that led here.
            frames.pop();
            let Some((mv, before, _)) = applied.pop() else {
                return Err("no linearization exists".into());
            };
            let at = mv.node();
            let c = node(at).2;
            state = before;
            done[c / 64] &= !(1 << (c % 64));
            linearized -= usize::from(matches!(mv, Move::Apply(_)));
            if return_of[c] != NIL {
                relink(&mut next, &mut prev, return_of[c]);
                returns_left += 1;
            }
            relink(&mut next, &mut prev, at);
            frames.last_mut().expect("the frame that chose it").pos += 1;
            continue;
        };
        let at = mv.node();
        let c = node(at).2;
        let e = calls[c];
        let mut after = state.clone();
        let valid = match (mv, &e.ret) {
            (Move::Drop(_), _) => true,
            (Move::Apply(_), Some(ret)) => after.is_valid_step(&e.op, ret),
            (Move::Apply(_), None) => {
                after.invoke(&e.op);
                after != state && !closes_a_loop(&applied, &after)
            }
        };
        if valid {
            let mut key = done.clone();
            key[c / 64] |= 1 << (c % 64);
            if cache.insert((key.clone(), after.clone())) {
                let before = std::mem::replace(&mut state, after);
                applied.push((mv, before, e.ret.is_none()));
                done = key;
                linearized += usize::from(matches!(mv, Move::Apply(_)));
                unlink(&mut next, &mut prev, at);
                if return_of[c] != NIL {
                    unlink(&mut next, &mut prev, return_of[c]);
                    returns_left -= 1;
                }
                frames.push(new_frame(&next, &state));
                continue;
            }
        }
        frame.pos += 1;
    }
    Ok(linearized)
}

/// Whether the state an unknown call's effect leads to is one the search
/// was in before, with only unknown calls taking effect (or none) since:
/// `applied` holds each move of the current path and the state before it.
/// Such a loop (say a retried begin's earlier attempt starting a
/// transition that its lease's `Expire` then ends, again and again with
/// each retry copy) only uses up unknown calls: whatever can follow it
/// could follow the state it loops back to, with those calls dropped
/// instead, and with fewer effects. So a search that never closes such a
/// loop still finds a linearization if there is one: take one with the
/// fewest effects of unknown calls; none of its steps closes a loop, and
/// at a state the memo skips the search was before, from where the same
/// steps (or fewer) remain.
fn closes_a_loop(applied: &[(Move, SandboxSpec, bool)], after: &SandboxSpec) -> bool {
    applied
        .iter()
        .rev()
        .take_while(|(_, _, unknown)| *unknown)
        .any(|(_, before, _)| before == after)
}

/// One step of [`linearize`]'s search, by the call's invocation node.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// The call takes effect here (an answered call: with its answer).
    Apply(usize),
    /// A settled call without an answer took no effect.
    Drop(usize),
}

impl Move {
    fn node(self) -> usize {
        match self {
            Move::Apply(at) | Move::Drop(at) => at,
        }
    }
}

/// A search frame: the moves possible there, and the one being tried.
struct Frame {
    moves: Vec<Move>,
    pos: usize,
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
