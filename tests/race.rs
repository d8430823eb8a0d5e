//! Races between requests for the same sandboxes, from several coordinators
//! (separate connections and subscriptions, like separate API servers),
//! against a real Redis. Orderings are forced with barriers, channels and
//! the coordinators' count of parked waiters — never with sleeps — and every
//! wait is bounded, so a lost wake-up fails the test instead of hanging it.
//!
//! The big race prints its seed; `RACE_SEED=<seed>` replays the same
//! sequence of requests (not the same interleaving), and
//! `RACE_OPS_PER_TASK=<n>` makes a longer soak.

mod fixture;
mod support;

use fixture::started;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use fixture::{TEAM, coordinators, sandbox, total_waiting, until_waiting};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Decision, Done, DoneReason, Error, LastTransition,
    LeaseView, Lifecycle, Outcome, Registration, State, Transition,
};
use support::TestRedis;
use tokio::sync::{Barrier, Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Bound on every single wait of these tests.
const BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// 1, 2: identical requests
// ---------------------------------------------------------------------------

const CROWD: usize = 12;
const CROWD_COORDS: usize = 4;

/// What the crowd of identical pause requests produced.
struct Crowd {
    coords: Vec<Coordinator>,
    leader_fence: u64,
    /// (request index, answer) of every request but the leader.
    others: Vec<(usize, Result<Begun, Error>)>,
    _redis: TestRedis,
}

/// Sends `CROWD` identical pauses of one sandbox from `CROWD_COORDS`
/// coordinators, released together by a barrier. The one that starts
/// holds the transition until every other request is parked in its wait,
/// then finishes it with `leader_fails` (None: success).
async fn identical_pauses(leader_fails: Option<&str>) -> Crowd {
    let redis = TestRedis::start().await;
    let coords = coordinators(&redis, CROWD_COORDS).await;
    coords[0].register(sandbox("s1", "e1")).await.unwrap();

    let barrier = Arc::new(Barrier::new(CROWD));
    let (leader_tx, mut leader_rx) = mpsc::unbounded_channel::<(usize, Transition)>();
    let mut requests: Vec<JoinHandle<Option<Result<Begun, Error>>>> = Vec::new();
    for i in 0..CROWD {
        let coord = coords[i % CROWD_COORDS].clone();
        let barrier = Arc::clone(&barrier);
        let leader_tx = leader_tx.clone();
        requests.push(tokio::spawn(async move {
            barrier.wait().await;
            let opts = BeginOptions::default().wait_timeout(BOUND);
            match coord.begin(TEAM, "s1", Action::Pause, opts).await {
                Ok(Begun::Started(t)) => {
                    leader_tx
                        .send((i, t))
                        .expect("the test receives the leader");
                    None
                }
                other => Some(other),
            }
        }));
    }
    drop(leader_tx);

    let (leader_index, leader) = tokio::time::timeout(BOUND, leader_rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no request started within {BOUND:?}"))
        .expect("every request was answered and none started");
    let leader_fence = leader.fence();

    // The leader holds the transition until all others are parked: none of
    // them can arrive after it finished (and be answered AlreadyInState).
    // Fails at once, with the evidence, if another request started or was
    // answered while the leader still holds the transition.
    let deadline = tokio::time::Instant::now() + BOUND;
    while total_waiting(&coords) != CROWD - 1 {
        if let Ok((i, t)) = leader_rx.try_recv() {
            panic!(
                "request {i} started a second transition (fence {}) while request \
                 {leader_index} holds fence {leader_fence}",
                t.fence()
            );
        }
        if let Some(i) = (0..CROWD).find(|&i| i != leader_index && requests[i].is_finished()) {
            let answer = (&mut requests[i]).await.expect("request task panicked");
            panic!(
                "request {i} was answered while request {leader_index} still holds fence \
                 {leader_fence}: {answer:?}"
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} requests parked behind the leader (request {leader_index}, fence \
             {leader_fence}) within {BOUND:?}",
            total_waiting(&coords),
            CROWD - 1
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match leader_fails {
        None => leader.succeed().await.unwrap(),
        Some(reason) => leader.fail(reason).await.unwrap(),
    }

    let mut others = Vec::new();
    for (i, handle) in requests.into_iter().enumerate() {
        let answer = tokio::time::timeout(BOUND, handle)
            .await
            .unwrap_or_else(|_| panic!("request {i} not answered within {BOUND:?}"))
            .expect("request task panicked");
        match answer {
            None => assert_eq!(i, leader_index, "request {i} started too"),
            Some(answer) => others.push((i, answer)),
        }
    }
    if let Ok((i, t)) = leader_rx.try_recv() {
        panic!(
            "request {i} started a second transition (fence {}) besides request \
             {leader_index} (fence {leader_fence})",
            t.fence()
        );
    }
    assert_eq!(others.len(), CROWD - 1, "exactly one request started");
    assert_eq!(
        total_waiting(&coords),
        0,
        "every waiter unregistered once answered"
    );
    Crowd {
        coords,
        leader_fence,
        others,
        _redis: redis,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_start_once_and_joiners_share_success() {
    let crowd = identical_pauses(None).await;
    let fence = crowd.leader_fence;
    for (i, answer) in crowd.others {
        match answer {
            Ok(Begun::AlreadyDone(Done {
                why: DoneReason::Joined { fence: f },
                state,
            })) => {
                assert_eq!(
                    f, fence,
                    "request {i} joined another fence than the leader's"
                );
                assert_eq!(state, State::Paused, "request {i}");
            }
            Ok(Begun::AlreadyDone(Done {
                why: DoneReason::AlreadyInState,
                ..
            })) => panic!(
                "request {i} was answered AlreadyInState: it arrived after the leader \
                 finished, although it was counted as parked"
            ),
            other => panic!("request {i}: expected Joined {{ fence: {fence} }}, got {other:?}"),
        }
    }
    let sb = crowd.coords[1].get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.state, State::Paused);
    assert_eq!(sb.fence, fence);
    assert!(sb.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_share_the_leaders_failure() {
    let crowd = identical_pauses(Some("reason X")).await;
    let fence = crowd.leader_fence;
    for (i, answer) in crowd.others {
        match answer {
            Err(Error::TransitionFailed {
                action,
                fence: f,
                reason,
                ..
            }) => {
                assert_eq!(action, Action::Pause, "request {i}");
                assert_eq!(
                    f, fence,
                    "request {i} reports another fence than the leader's"
                );
                assert_eq!(reason, "reason X", "request {i}");
            }
            other => panic!(
                "request {i}: expected TransitionFailed {{ fence: {fence}, reason: \"reason X\" }}, \
                 got {other:?}"
            ),
        }
    }
    let sb = crowd.coords[2].get(TEAM, "s1").await.unwrap().unwrap();
    assert_eq!(sb.state, State::Pausing, "a failed pause stays pausing");
    assert!(sb.lease.is_none());
    assert_eq!(
        sb.last,
        Some(LastTransition {
            fence,
            action: Action::Pause,
            outcome: Outcome::Failed,
            reason: "reason X".into(),
        })
    );
}

// ---------------------------------------------------------------------------
// 3: the big race
// ---------------------------------------------------------------------------

const RACE_COORDS: usize = 4;
const TASKS_PER_COORD: usize = 64;
const SANDBOXES: usize = 16;
/// Ops per task; `RACE_OPS_PER_TASK` overrides it for a longer soak (the
/// run's bound grows with it).
const OPS_PER_TASK: usize = 12;

fn ops_per_task() -> usize {
    std::env::var("RACE_OPS_PER_TASK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(OPS_PER_TASK)
}

/// Bound on the whole run (all tasks joined) with `OPS_PER_TASK` ops.
const RACE_BOUND: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Begin(Action),
    /// The sandbox was paused: register a new execution over it.
    Resume,
    /// The sandbox was killed: remove it and register a new execution.
    Recycle,
    /// A resume or recycle that found the sandbox neither paused nor killed.
    Revive,
}

/// What one call answered.
#[derive(Debug, Clone)]
enum Res {
    /// This task held transition `fence` and finished it.
    Started {
        fence: u64,
        action: Action,
        /// The execution the record had when the transition started.
        execution: String,
        /// `Some(reason)` if the holder called `fail`.
        failed: Option<String>,
        finish_called: Instant,
        finish_returned: Instant,
    },
    Joined {
        fence: u64,
        state: State,
    },
    Absorbed {
        by: State,
        state: State,
    },
    AlreadyInState {
        state: State,
    },
    Invalid {
        from: State,
    },
    JoinFailed {
        fence: u64,
        action: Action,
        reason: String,
    },
    Abandoned(String),
    Timeout,
    NotFound,
    /// A registration (resume, recycle) that wrote a record.
    Registered {
        execution: String,
        how: Registration,
        /// The record's fence right after.
        fence: u64,
    },
    Busy,
    Exists,
    /// Resume/recycle found the sandbox in another state (or gone).
    Skipped,
    /// Recycle removed a killed record: its execution and fence as read
    /// just before (under the recycle lock, so nothing changed between).
    Removed {
        execution: String,
        fence: u64,
    },
    Unexpected(String),
}

#[derive(Debug, Clone)]
struct Event {
    sandbox: usize,
    coord: usize,
    task: usize,
    op: Op,
    res: Res,
    called: Instant,
    returned: Instant,
}

impl Event {
    fn who(&self) -> String {
        format!(
            "s{} coord {} task {} {:?} -> {:?}",
            self.sandbox, self.coord, self.task, self.op, self.res
        )
    }
}

fn sandbox_id(s: usize) -> String {
    format!("s{s}")
}

/// Shared by all tasks of the race.
struct RaceShared {
    seed: u64,
    /// Per sandbox: how many tasks hold a started transition right now.
    holders: Vec<AtomicI32>,
    /// Per sandbox: recyclers take turns, so a removal always removes the
    /// killed record it just read (`remove` cannot be pinned to an
    /// execution). Transitions and resumes do not take it.
    recycle: Vec<Mutex<()>>,
}

/// splitmix64: distinct, well-mixed seeds per task from one base seed.
fn task_seed(base: u64, task: usize) -> u64 {
    let mut z = base.wrapping_add((task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn race_task(
    coord: Coordinator,
    coord_index: usize,
    task: usize,
    shared: Arc<RaceShared>,
) -> Vec<Event> {
    let seed = shared.seed;
    let mut rng = StdRng::seed_from_u64(task_seed(seed, task));
    let ops = ops_per_task();
    let mut events = Vec::with_capacity(ops + 4);
    for op_index in 0..ops {
        let s = rng.random_range(0..SANDBOXES);
        let id = sandbox_id(s);
        let op = match rng.random_range(0..100) {
            0..30 => Op::Begin(Action::Pause),
            30..45 => Op::Begin(Action::Kill),
            45..70 => Op::Begin(Action::Snapshot),
            // Resume if paused, recycle if killed: keeps sandboxes coming
            // back, so they do not all end killed early in the run.
            _ => Op::Revive,
        };
        let ctx =
            format!("seed {seed}, coord {coord_index}, task {task}, op {op_index} {op:?} on {id}");
        let mut log = |op: Op, res: Res, called: Instant, returned: Instant| {
            events.push(Event {
                sandbox: s,
                coord: coord_index,
                task,
                op,
                res,
                called,
                returned,
            })
        };
        match op {
            Op::Begin(action) => {
                let called = Instant::now();
                let opts = BeginOptions::default().wait_timeout(BOUND);
                let answer = coord.begin(TEAM, &id, action, opts).await;
                let returned = Instant::now();
                let res = match answer {
                    Ok(Begun::Started(t)) => {
                        let before = shared.holders[s].fetch_add(1, Ordering::SeqCst);
                        assert_eq!(
                            before,
                            0,
                            "{ctx}: started fence {} while {before} other transition(s) held {id}",
                            t.fence()
                        );
                        let fence = t.fence();
                        let execution = t.execution().to_string();
                        assert_eq!(t.action(), action, "{ctx}");
                        for _ in 0..rng.random_range(0..8) {
                            tokio::task::yield_now().await;
                        }
                        let fail = rng.random_bool(0.25);
                        let held = shared.holders[s].fetch_sub(1, Ordering::SeqCst);
                        assert_eq!(
                            held, 1,
                            "{ctx}: holders of {id} while finishing fence {fence}"
                        );
                        let finish_called = Instant::now();
                        let finished = if fail {
                            t.fail(format!("reason-{fence}")).await
                        } else {
                            t.succeed().await
                        };
                        let finish_returned = Instant::now();
                        if let Err(e) = finished {
                            panic!("{ctx}: finishing fence {fence} failed: {e}");
                        }
                        Res::Started {
                            fence,
                            action,
                            execution,
                            failed: fail.then(|| format!("reason-{fence}")),
                            finish_called,
                            finish_returned,
                        }
                    }
                    Ok(Begun::AlreadyDone(Done { why, state })) => match why {
                        DoneReason::Joined { fence } => Res::Joined { fence, state },
                        DoneReason::Absorbed { by } => Res::Absorbed { by, state },
                        DoneReason::AlreadyInState => Res::AlreadyInState { state },
                    },
                    Err(Error::InvalidTransition { from, .. }) => Res::Invalid { from },
                    Err(Error::TransitionFailed {
                        fence,
                        action,
                        reason,
                        ..
                    }) => Res::JoinFailed {
                        fence,
                        action,
                        reason,
                    },
                    Err(e @ Error::Abandoned { .. }) => Res::Abandoned(e.to_string()),
                    Err(Error::Timeout { .. }) => Res::Timeout,
                    Err(Error::NotFound { .. }) => Res::NotFound,
                    Err(e) => Res::Unexpected(e.to_string()),
                };
                log(op, res, called, returned);
            }
            Op::Revive | Op::Resume | Op::Recycle => {
                let called = Instant::now();
                let state = match coord.get(TEAM, &id).await {
                    Ok(sb) => sb.map(|sb| sb.state),
                    Err(e) => panic!("{ctx}: get failed: {e}"),
                };
                let execution = format!("x-c{coord_index}-t{task}-o{op_index}");
                match state {
                    Some(State::Paused) => {
                        // Resumes race each other and everything else.
                        let res = register(&coord, &id, &execution).await;
                        log(Op::Resume, res, called, Instant::now());
                    }
                    Some(State::Killed) => {
                        let _turn = shared.recycle[s].lock().await;
                        let sb = match coord.get(TEAM, &id).await {
                            Ok(sb) => sb,
                            Err(e) => panic!("{ctx}: get failed: {e}"),
                        };
                        let Some(sb) = sb.filter(|sb| sb.state == State::Killed) else {
                            log(Op::Recycle, Res::Skipped, called, Instant::now());
                            continue;
                        };
                        // Killed is final: no transition can start on it
                        // and no registration can replace it, and other
                        // recyclers wait for our turn, so this removes
                        // exactly the record just read.
                        match coord.remove(TEAM, &id).await {
                            Ok(true) => {}
                            other => panic!("{ctx}: removing killed record {sb:?} gave {other:?}"),
                        }
                        log(
                            Op::Recycle,
                            Res::Removed {
                                execution: sb.execution.clone(),
                                fence: sb.fence,
                            },
                            called,
                            Instant::now(),
                        );
                        let called = Instant::now();
                        let res = register(&coord, &id, &execution).await;
                        log(Op::Recycle, res, called, Instant::now());
                    }
                    _ => log(Op::Revive, Res::Skipped, called, Instant::now()),
                }
            }
        }
    }
    events
}

async fn register(coord: &Coordinator, id: &str, execution: &str) -> Res {
    match coord.register(sandbox(id, execution)).await {
        Ok((sb, how)) => Res::Registered {
            execution: execution.to_string(),
            how,
            fence: sb.fence,
        },
        Err(Error::Busy { .. }) => Res::Busy,
        Err(Error::AlreadyExists { .. }) => Res::Exists,
        Err(e) => Res::Unexpected(e.to_string()),
    }
}

/// One started transition, as the log has it.
#[derive(Debug, Clone)]
struct Held {
    sandbox: usize,
    fence: u64,
    action: Action,
    execution: String,
    outcome: Outcome,
    reason: String,
    start_called: Instant,
    start_returned: Instant,
    finish_called: Instant,
    finish_returned: Instant,
}

#[derive(Debug, Default)]
struct Summary {
    ops: usize,
    started: usize,
    failed: usize,
    joined: usize,
    join_failed: usize,
    absorbed: usize,
    already_in_state: usize,
    invalid: usize,
    timeouts: usize,
    not_found: usize,
    resumed: usize,
    created: usize,
    removed: usize,
    busy: usize,
    exists: usize,
    skipped: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_coordinator_race_keeps_every_invariant() {
    let seed = std::env::var("RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("race seed {seed} (rerun with RACE_SEED={seed})");
    let lc = Lifecycle::sandbox();

    let redis = TestRedis::start().await;
    let coords = coordinators(&redis, RACE_COORDS).await;
    let setup_at = Instant::now();
    let mut events: Vec<Event> = Vec::new();
    for s in 0..SANDBOXES {
        let execution = format!("init-{s}");
        let res = register(&coords[0], &sandbox_id(s), &execution).await;
        assert!(
            matches!(
                res,
                Res::Registered {
                    how: Registration::Created,
                    ..
                }
            ),
            "{res:?}"
        );
        // `task: usize::MAX` marks the setup: part of the history, not an op.
        events.push(Event {
            sandbox: s,
            coord: 0,
            task: usize::MAX,
            op: Op::Recycle,
            res,
            called: setup_at,
            returned: Instant::now(),
        });
    }

    let shared = Arc::new(RaceShared {
        seed,
        holders: (0..SANDBOXES).map(|_| AtomicI32::new(0)).collect(),
        recycle: (0..SANDBOXES).map(|_| Mutex::new(())).collect(),
    });
    let run_started = Instant::now();
    let mut set = JoinSet::new();
    for task in 0..RACE_COORDS * TASKS_PER_COORD {
        let c = task % RACE_COORDS;
        set.spawn(race_task(coords[c].clone(), c, task, Arc::clone(&shared)));
    }
    let ops = ops_per_task();
    let bound = RACE_BOUND * u32::try_from(ops.div_ceil(OPS_PER_TASK)).unwrap_or(u32::MAX);
    let joined = tokio::time::timeout(bound, async {
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(ev) => all.extend(ev),
                Err(e) if e.is_panic() => {
                    eprintln!("a race task panicked (seed {seed})");
                    std::panic::resume_unwind(e.into_panic());
                }
                Err(e) => panic!("a race task failed: {e} (seed {seed})"),
            }
        }
        all
    })
    .await;
    let elapsed = run_started.elapsed();
    let Ok(task_events) = joined else {
        panic!(
            "{} of {} tasks still running after {bound:?}; waiting per coordinator: {:?} \
             (seed {seed})",
            set.len(),
            RACE_COORDS * TASKS_PER_COORD,
            coords.iter().map(Coordinator::waiting).collect::<Vec<_>>()
        );
    };
    events.extend(task_events);

    // --- no task left waiting ------------------------------------------
    for (i, c) in coords.iter().enumerate() {
        assert_eq!(
            c.waiting(),
            0,
            "coordinator {i} still counts waiters after every task returned (seed {seed})"
        );
    }

    // --- summary ---------------------------------------------------------
    let mut sum = Summary::default();
    for e in events.iter().filter(|e| e.task != usize::MAX) {
        match &e.res {
            Res::Removed { .. } => {
                sum.removed += 1;
                continue; // half of a recycle op; its registration counts the op
            }
            Res::Started { failed, .. } => {
                sum.started += 1;
                sum.failed += usize::from(failed.is_some());
            }
            Res::Joined { .. } => sum.joined += 1,
            Res::JoinFailed { .. } => sum.join_failed += 1,
            Res::Absorbed { .. } => sum.absorbed += 1,
            Res::AlreadyInState { .. } => sum.already_in_state += 1,
            Res::Invalid { .. } => sum.invalid += 1,
            Res::Timeout => sum.timeouts += 1,
            Res::NotFound => sum.not_found += 1,
            Res::Registered { how, .. } => match how {
                Registration::Resumed { .. } => sum.resumed += 1,
                Registration::Created => sum.created += 1,
                Registration::Existing => {}
            },
            Res::Busy => sum.busy += 1,
            Res::Exists => sum.exists += 1,
            Res::Skipped => sum.skipped += 1,
            Res::Abandoned(_) | Res::Unexpected(_) => {}
        }
        sum.ops += 1;
    }
    eprintln!(
        "race: {RACE_COORDS} coordinators x {TASKS_PER_COORD} tasks x {ops} ops on \
         {SANDBOXES} sandboxes in {elapsed:?} (seed {seed})\n  {sum:?}"
    );
    assert_eq!(
        sum.ops,
        RACE_COORDS * TASKS_PER_COORD * ops,
        "every op logged once"
    );

    // --- no unexpected answers -------------------------------------------
    for e in &events {
        match &e.res {
            Res::Unexpected(err) => panic!("unexpected error: {} ({err}) (seed {seed})", e.who()),
            Res::Abandoned(err) => panic!(
                "a joiner saw Abandoned although every holder finished: {} ({err}) (seed {seed})",
                e.who()
            ),
            _ => {}
        }
    }

    // --- started transitions: unique fences, no overlap -------------------
    let mut held: Vec<Held> = Vec::new();
    for e in &events {
        if let Res::Started {
            fence,
            action,
            execution,
            failed,
            finish_called,
            finish_returned,
        } = &e.res
        {
            assert_eq!(e.op, Op::Begin(*action), "{}", e.who());
            held.push(Held {
                sandbox: e.sandbox,
                fence: *fence,
                action: *action,
                execution: execution.clone(),
                outcome: if failed.is_some() {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                },
                reason: failed.clone().unwrap_or_default(),
                start_called: e.called,
                start_returned: e.returned,
                finish_called: *finish_called,
                finish_returned: *finish_returned,
            });
        }
    }
    held.sort_by_key(|h| h.fence);
    let mut by_fence: HashMap<u64, &Held> = HashMap::new();
    for h in &held {
        if let Some(other) = by_fence.insert(h.fence, h) {
            panic!(
                "fence {} started twice: {other:?} and {h:?} (seed {seed})",
                h.fence
            );
        }
    }
    for s in 0..SANDBOXES {
        let mine: Vec<&Held> = held.iter().filter(|h| h.sandbox == s).collect();
        for pair in mine.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            assert!(
                next.start_returned >= prev.finish_called,
                "s{s}: fence {} was started (returned {:?} after the run began) before fence {} \
                 was finished (called {:?}): two live transitions (seed {seed})",
                next.fence,
                next.start_returned - run_started,
                prev.fence,
                prev.finish_called - run_started,
            );
            assert!(
                next.start_called < next.start_returned
                    && prev.start_returned < next.start_returned,
                "s{s}: fences do not increase with time: {prev:?} then {next:?} (seed {seed})"
            );
        }
    }

    // --- a timeout is an honest answer ---------------------------------------
    //
    // Waiters are not served in FIFO order (a re-decide competes with fresh
    // requests), so on an overloaded machine a request on a hot sandbox may
    // wait out its bound; DESIGN.md promises a bounded wait, not fairness.
    // A Timeout must still be true: the call waited its whole bound, and a
    // transition of that sandbox was in flight during the wait.
    for e in events.iter().filter(|e| matches!(e.res, Res::Timeout)) {
        // (fence, action, outcome, ms from the call to its start and to its end)
        let meanwhile: Vec<(u64, Action, Outcome, i128, i128)> = held
            .iter()
            .filter(|h| {
                h.sandbox == e.sandbox
                    && h.start_called <= e.returned
                    && h.finish_returned >= e.called
            })
            .map(|h| {
                let ms = |t: Instant| {
                    if t >= e.called {
                        (t - e.called).as_millis() as i128
                    } else {
                        -((e.called - t).as_millis() as i128)
                    }
                };
                (
                    h.fence,
                    h.action,
                    h.outcome,
                    ms(h.start_returned),
                    ms(h.finish_returned),
                )
            })
            .collect();
        eprintln!(
            "timeout: {} after {:?}; transitions of s{} meanwhile: {meanwhile:?}",
            e.who(),
            e.returned - e.called,
            e.sandbox
        );
        assert!(
            e.returned - e.called >= BOUND,
            "{} after only {:?} (seed {seed})",
            e.who(),
            e.returned - e.called
        );
        assert!(
            held.iter().any(|h| h.sandbox == e.sandbox
                && h.start_called <= e.returned
                && h.finish_returned >= e.called),
            "{} although no transition of s{} was in flight meanwhile (seed {seed})",
            e.who(),
            e.sandbox
        );
    }

    // --- every joiner shares its leader's outcome ---------------------------
    for e in &events {
        let Op::Begin(op_action) = e.op else { continue };
        match &e.res {
            Res::Joined { fence, state } => {
                let leader = by_fence.get(fence).unwrap_or_else(|| {
                    panic!(
                        "{} joined fence {fence}, which nobody started (seed {seed})",
                        e.who()
                    )
                });
                assert_eq!(
                    leader.sandbox,
                    e.sandbox,
                    "{} joined another sandbox's fence",
                    e.who()
                );
                assert_eq!(
                    leader.action,
                    op_action,
                    "{} joined another action: {leader:?}",
                    e.who()
                );
                assert_eq!(
                    leader.outcome,
                    Outcome::Succeeded,
                    "{} reports success of fence {fence}, whose holder failed: {leader:?} \
                     (seed {seed})",
                    e.who()
                );
                assert_eq!(
                    *state,
                    lc.state_after(op_action, Outcome::Succeeded),
                    "{}",
                    e.who()
                );
                assert_joiner_timing(e, leader, seed);
            }
            Res::JoinFailed {
                fence,
                action,
                reason,
            } => {
                let leader = by_fence.get(fence).unwrap_or_else(|| {
                    panic!(
                        "{} got the failure of fence {fence}, which nobody started (seed {seed})",
                        e.who()
                    )
                });
                assert_eq!(
                    leader.sandbox,
                    e.sandbox,
                    "{} joined another sandbox's fence",
                    e.who()
                );
                assert_eq!(*action, op_action, "{}", e.who());
                assert_eq!(
                    leader.action,
                    op_action,
                    "{} joined another action: {leader:?}",
                    e.who()
                );
                assert_eq!(
                    (leader.outcome, leader.reason.as_str()),
                    (Outcome::Failed, reason.as_str()),
                    "{} reports a failure its leader did not report: {leader:?} (seed {seed})",
                    e.who()
                );
                assert_joiner_timing(e, leader, seed);
            }
            Res::Absorbed { by, state } => {
                assert_eq!(op_action, Action::Kill, "{}", e.who());
                assert_eq!((*by, *state), (State::Paused, State::Paused), "{}", e.who());
            }
            Res::AlreadyInState { state } => {
                assert_eq!(
                    *state,
                    lc.state_after(op_action, Outcome::Succeeded),
                    "{}",
                    e.who()
                );
            }
            Res::Invalid { from } => assert!(
                lc.decide(*from, LeaseView::Live, op_action) == Decision::Invalid
                    || lc.decide(*from, LeaseView::None, op_action) == Decision::Invalid,
                "{}: the table does not make {op_action} invalid from {from}",
                e.who()
            ),
            _ => {}
        }
    }

    // --- every final state is explained ---------------------------------------
    //
    // Registrations are ordered against transitions through incarnations
    // rather than through client timings: every transition reports the
    // execution id its record had when it started (`Transition::execution`),
    // every registration here writes a fresh execution id, and a record only
    // changes execution by a registration (a resume over `paused`, or a
    // create after a recycle removed a `killed` record). So each
    // incarnation's history is its registration (state running) followed by
    // its transitions in fence order, and the incarnations of one sandbox
    // form a chain: each one ends exactly once, by a resume naming it as the
    // previous execution (it must replay to `paused`) or by a removal (it
    // must replay to `killed`), except the last, which is the final record.
    let mut registered: BTreeMap<String, (usize, Registration, u64)> = BTreeMap::new();
    let mut ended: BTreeMap<String, (usize, State, u64, String)> = BTreeMap::new();
    for e in &events {
        match &e.res {
            Res::Registered {
                execution,
                how,
                fence,
            } => {
                let prior = registered.insert(execution.clone(), (e.sandbox, how.clone(), *fence));
                assert!(prior.is_none(), "{execution} registered twice: {}", e.who());
                if let Registration::Resumed { previous_execution } = how {
                    let prior = ended.insert(
                        previous_execution.clone(),
                        (e.sandbox, State::Paused, *fence, e.who()),
                    );
                    assert!(
                        prior.is_none(),
                        "incarnation {previous_execution} ended twice: {prior:?} and {}",
                        e.who()
                    );
                }
            }
            Res::Removed { execution, fence } => {
                let prior = ended.insert(
                    execution.clone(),
                    (e.sandbox, State::Killed, *fence, e.who()),
                );
                assert!(
                    prior.is_none(),
                    "incarnation {execution} ended twice: {prior:?} and {}",
                    e.who()
                );
            }
            _ => {}
        }
    }
    let mut incarnations: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in &held {
        let (s, _, _) = registered.get(&h.execution).unwrap_or_else(|| {
            panic!(
                "{h:?} ran on execution {}, which nobody registered (seed {seed})",
                h.execution
            )
        });
        assert_eq!(*s, h.sandbox, "{h:?} ran on another sandbox's execution");
        incarnations.entry(&h.execution).or_default().push(h);
    }
    // Replays one incarnation from its registration; checks each start was
    // allowed by the table from the state the previous transition left.
    let replay = |execution: &str| -> (State, Option<&Held>) {
        let mut state = lc.initial();
        let mut last = None;
        for h in incarnations.get(execution).into_iter().flatten() {
            assert_eq!(
                lc.decide(state, LeaseView::None, h.action),
                Decision::Start,
                "{h:?} started from {state}, where the table does not start {} (seed {seed})",
                h.action
            );
            state = lc.state_after(h.action, h.outcome);
            last = Some(*h);
        }
        (state, last)
    };
    for (execution, (s, how, fence)) in &registered {
        if let Registration::Resumed { previous_execution } = how {
            let (_, last) = replay(previous_execution);
            let last = last.unwrap_or_else(|| {
                panic!("{execution} resumed {previous_execution}, which never ran a transition")
            });
            assert_eq!(
                last.fence, *fence,
                "s{s}: {execution} resumed over fence {fence}, but {previous_execution}'s last \
                 transition was {last:?}"
            );
            if let Some(first) = incarnations.get(execution.as_str()).and_then(|v| v.first()) {
                assert!(
                    first.fence > *fence,
                    "{first:?} ran before its resume over {fence}"
                );
            }
        }
    }
    for (execution, (s, want, fence, who)) in &ended {
        let (state, last) = replay(execution);
        assert_eq!(
            state, *want,
            "s{s}: incarnation {execution} replays to {state}, but it was ended as {want} by {who} \
             (seed {seed})"
        );
        assert_eq!(
            last.map(|h| h.fence),
            Some(*fence),
            "s{s}: {who} ended {execution} at fence {fence}"
        );
    }
    let mut finals = HashSet::new();
    for s in 0..SANDBOXES {
        let id = sandbox_id(s);
        let sb = coords[s % RACE_COORDS]
            .get(TEAM, &id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} has no record at the end (seed {seed})"));
        assert!(sb.lease.is_none(), "{id} still has a lease: {sb:?}");
        assert!(
            !ended.contains_key(&sb.execution),
            "{id}'s final execution {} was ended earlier: {:?}",
            sb.execution,
            ended.get(&sb.execution)
        );
        let (state, last) = replay(&sb.execution);
        assert_eq!(
            sb.state,
            state,
            "{id}: final state {} but replaying incarnation {} ({:?}) gives {state} (seed {seed})",
            sb.state,
            sb.execution,
            incarnations.get(sb.execution.as_str())
        );
        match last {
            Some(h) => {
                assert_eq!(
                    sb.fence, h.fence,
                    "{id}: record fence vs last started fence"
                );
                assert_eq!(
                    sb.last,
                    Some(LastTransition {
                        fence: h.fence,
                        action: h.action,
                        outcome: h.outcome,
                        reason: h.reason.clone(),
                    }),
                    "{id}: recorded last transition"
                );
            }
            None => {
                let (_, _, fence) = &registered[&sb.execution];
                assert_eq!(
                    sb.fence, *fence,
                    "{id}: fence of a record no transition touched"
                );
            }
        }
        finals.insert(sb.execution);
    }
    // The chains: every registered incarnation ended exactly once, or is final.
    for (execution, (s, _, _)) in &registered {
        assert!(
            ended.contains_key(execution) ^ finals.contains(execution),
            "s{s}: incarnation {execution} neither ended nor is final (or both) (seed {seed})"
        );
    }
    assert_eq!(ended.len() + finals.len(), registered.len());
}

/// A joiner called while its leader's lease was live and cannot have
/// learned the outcome before the leader reported it.
fn assert_joiner_timing(e: &Event, leader: &Held, seed: u64) {
    assert!(
        e.called < leader.finish_returned,
        "{} was called after fence {} had finished, yet joined it (seed {seed})",
        e.who(),
        leader.fence
    );
    assert!(
        e.returned >= leader.finish_called,
        "{} returned the outcome of fence {} before its holder reported one (seed {seed})",
        e.who(),
        leader.fence
    );
    assert!(e.returned >= leader.start_called, "{}", e.who());
}

// ---------------------------------------------------------------------------
// 4: kill racing a pause (weak point 1 of DESIGN.md)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillTiming {
    /// Kill released by the barrier, then the pause is finished after a few
    /// yields: the two race through Redis in either order.
    RacingTheFinish,
    /// Kill parked in its wait (observed via `waiting()`), then the pause
    /// finishes.
    ParkedFirst,
    /// The pause's finish has returned, then the kill is released.
    AfterTheFinish,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_racing_pause_is_decided_by_the_pause_outcome() {
    const ROUNDS: usize = 40;
    let redis = TestRedis::start().await;
    let coords = coordinators(&redis, 2).await;
    let timings = [
        KillTiming::RacingTheFinish,
        KillTiming::ParkedFirst,
        KillTiming::AfterTheFinish,
    ];
    for round in 0..ROUNDS {
        let pause_succeeds = round % 2 == 0;
        let timing = timings[(round / 2) % timings.len()];
        let kill_yields = (round * 7) % 5;
        let finish_yields = (round * 3) % 4;
        // Alternate which coordinator pauses and which kills.
        let (pauser, killer) = if round % 4 < 2 {
            (&coords[0], &coords[1])
        } else {
            (&coords[1], &coords[0])
        };
        let ctx = format!(
            "round {round}: pause {}, {timing:?}, kill yields {kill_yields}, finish yields \
             {finish_yields}",
            if pause_succeeds { "succeeds" } else { "fails" }
        );
        let id = format!("k{round}");
        pauser
            .register(sandbox(&id, &format!("e{round}")))
            .await
            .unwrap();
        let pause = started(
            pauser
                .begin(TEAM, &id, Action::Pause, BeginOptions::default())
                .await
                .unwrap(),
        );
        let pause_fence = pause.fence();

        let barrier = Arc::new(Barrier::new(2));
        let kill = {
            let (killer, barrier, id) = (killer.clone(), Arc::clone(&barrier), id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..kill_yields {
                    tokio::task::yield_now().await;
                }
                let opts = BeginOptions::default().wait_timeout(BOUND);
                killer.begin(TEAM, &id, Action::Kill, opts).await
            })
        };
        let finish = async {
            if pause_succeeds {
                pause.succeed().await
            } else {
                pause.fail("hypervisor refused").await
            }
        };
        match timing {
            KillTiming::RacingTheFinish => {
                barrier.wait().await;
                for _ in 0..finish_yields {
                    tokio::task::yield_now().await;
                }
                finish.await.unwrap();
            }
            KillTiming::ParkedFirst => {
                barrier.wait().await;
                if let Err(seen) = until_waiting(std::slice::from_ref(killer), 1, BOUND).await {
                    panic!(
                        "{ctx}: the kill never parked behind the pause ({seen} waiting; kill \
                         answered: {})",
                        kill.is_finished()
                    );
                }
                finish.await.unwrap();
            }
            KillTiming::AfterTheFinish => {
                finish.await.unwrap();
                barrier.wait().await;
            }
        }
        let answer = tokio::time::timeout(BOUND, kill)
            .await
            .unwrap_or_else(|_| panic!("{ctx}: kill not answered within {BOUND:?}"))
            .expect("kill task panicked");

        let sb = if pause_succeeds {
            match answer {
                Ok(Begun::AlreadyDone(Done {
                    why: DoneReason::Absorbed { by: State::Paused },
                    state: State::Paused,
                })) => {}
                other => panic!("{ctx}: expected Absorbed {{ by: Paused }}, got {other:?}"),
            }
            let sb = pauser.get(TEAM, &id).await.unwrap().unwrap();
            assert_eq!(sb.state, State::Paused, "{ctx}");
            assert_eq!(
                sb.fence, pause_fence,
                "{ctx}: the absorbed kill wrote nothing"
            );
            sb
        } else {
            let cleanup = match answer {
                Ok(Begun::Started(t)) => t,
                other => panic!("{ctx}: expected the kill to start (cleanup), got {other:?}"),
            };
            assert!(cleanup.fence() > pause_fence, "{ctx}");
            let during = pauser.get(TEAM, &id).await.unwrap().unwrap();
            assert_eq!(during.state, State::Killing, "{ctx}");
            let last = during.last.clone();
            assert_eq!(
                last.map(|l| (l.fence, l.outcome)),
                Some((pause_fence, Outcome::Failed)),
                "{ctx}: the cleanup starts from the failed pause"
            );
            cleanup.succeed().await.unwrap();
            let sb = pauser.get(TEAM, &id).await.unwrap().unwrap();
            assert_eq!(sb.state, State::Killed, "{ctx}");
            sb
        };
        assert!(sb.lease.is_none(), "{ctx}: {sb:?}");
        assert_eq!(total_waiting(&coords), 0, "{ctx}: waiters left behind");
    }
}
