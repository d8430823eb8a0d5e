//! The racing clients and the fault schedules, as functions of a
//! [`Profile`]: the CI profile runs each scenario for a round or two with
//! 4 coordinators × 16 tasks; the soak profile runs them for a time slice
//! each with more clients. Every scenario records every call, checks each
//! sandbox's history for linearizability, and collects "problems": calls
//! that overran their bound, fences used twice, waiters that never woke.
//!
//! Per-sandbox concurrency is what makes the checker's search expensive
//! (stateright's tester is exponential in overlapping calls), so the
//! profiles keep it moderate (about 4 tasks per sandbox) and every round
//! uses fresh sandbox ids, which bounds each history's length whatever the
//! duration.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, Error, Lifecycle, NewSandbox, State,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::checker::{self, Violation};
use super::model::{Op, Ret};
use super::recorder::{Entry, Lane, Recorder};
use super::report::Tally;
use crate::fixture::TEAM;
use crate::fixture::chaos::{Chaos, Faults};
use crate::support::TestRedis;

pub mod cluster;

/// How big and how long.
#[derive(Clone)]
pub struct Profile {
    pub name: &'static str,
    pub coordinators: usize,
    pub tasks_per_coordinator: usize,
    pub sandboxes: usize,
    pub ops_per_task: usize,
    /// Rounds per scenario run (at least one runs).
    pub rounds: usize,
    /// Or: keep starting rounds until this much time has passed.
    pub slice: Option<Duration>,
    pub seed: u64,
    /// Merged into after every round (the soak's progress bar reads it).
    pub progress: Option<Arc<Mutex<Tally>>>,
}

impl Profile {
    /// The bounded profile of `make test`.
    pub fn ci() -> Profile {
        Profile {
            name: "ci",
            coordinators: 4,
            tasks_per_coordinator: 16,
            sandboxes: 16,
            ops_per_task: 12,
            rounds: 1,
            slice: None,
            seed: seed(),
            progress: None,
        }
    }

    /// The soak profile: more clients, each scenario for `slice`.
    pub fn soak(slice: Duration, progress: Arc<Mutex<Tally>>) -> Profile {
        Profile {
            name: "soak",
            coordinators: 6,
            tasks_per_coordinator: 16,
            sandboxes: 24,
            ops_per_task: 16,
            rounds: usize::MAX,
            slice: Some(slice),
            seed: seed(),
            progress: Some(progress),
        }
    }

    fn more_rounds(&self, done: usize, since: Instant) -> bool {
        if done == 0 {
            return true;
        }
        if done >= self.rounds {
            return false;
        }
        self.slice.is_some_and(|s| since.elapsed() < s)
    }
}

fn seed() -> u64 {
    std::env::var("RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>)
}

/// How the clients behave in one scenario.
#[derive(Clone, Debug)]
pub struct Mix {
    /// Lease of ordinary holders (watchdog on).
    pub lease: Duration,
    /// How long ordinary holders work, in ms.
    pub hold_ms: (u64, u64),
    /// Share of ordinary holders that fail.
    pub fail: f64,
    /// Share of begins whose holder, if it starts, dies (no finish, no Drop).
    pub die: f64,
    /// Share of begins whose holder, if it starts, stalls past its lease
    /// and then tries to succeed.
    pub stall: f64,
    /// Lease of dying and stalling holders (no watchdog).
    pub short_lease: Duration,
    /// `BeginOptions::wait_timeout` of every begin.
    pub wait_timeout: Duration,
    /// Coordinator settings.
    pub poll: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            lease: Duration::from_secs(30),
            hold_ms: (0, 5),
            fail: 0.25,
            die: 0.0,
            stall: 0.0,
            short_lease: Duration::from_millis(400),
            wait_timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl Mix {
    /// No single call may take longer: the wait bound, plus the longest
    /// lease a finish may retry within, plus every script attempt (three
    /// per call, each a pool checkout and a reply) twice over, plus slack.
    pub fn call_bound(&self) -> Duration {
        self.wait_timeout
            + self
                .lease
                .max(self.short_lease)
                .min(Duration::from_secs(10))
            + (self.connect_timeout + self.response_timeout) * 12
            + Duration::from_secs(3)
    }
}

/// What one scenario run produced.
#[derive(Default)]
pub struct Outcome {
    pub scenario: &'static str,
    pub tally: Tally,
    pub violations: Vec<Violation>,
    pub problems: Vec<String>,
    pub rounds: usize,
    pub took: Duration,
    /// The longest single call recorded.
    pub longest_call: Duration,
    /// Why the scenario did not run (its backend cannot inject the fault);
    /// [`Outcome::assert_clean`] fails on it, so a skip is never a pass.
    pub skipped: Option<String>,
}

impl Outcome {
    fn new(scenario: &'static str) -> Outcome {
        Outcome {
            scenario,
            ..Outcome::default()
        }
    }

    /// Panics with the violations and problems, if any, and if the
    /// scenario did not run at all.
    pub fn assert_clean(&self) {
        if let Some(why) = &self.skipped {
            panic!("{}: did not run: {why}", self.scenario);
        }
        eprintln!(
            "{}: {} rounds in {:.1?}\n{}",
            self.scenario,
            self.rounds,
            self.took,
            self.tally.table(self.scenario)
        );
        let mut msg = String::new();
        for p in self.problems.iter().take(20) {
            msg.push_str(&format!("problem: {p}\n"));
        }
        for v in self.violations.iter().take(3) {
            let verdict = if v.undecided {
                "was not decided"
            } else {
                "is not linearizable"
            };
            msg.push_str(&format!(
                "--- sandbox {} {verdict}: {}\n{}",
                v.sandbox,
                v.why,
                v.excerpt()
            ));
        }
        let undecided = self.violations.iter().filter(|v| v.undecided).count();
        assert!(
            self.problems.is_empty() && self.violations.is_empty(),
            "{}: {} problems, {} non-linearizable histories, {undecided} undecided\n{msg}",
            self.scenario,
            self.problems.len(),
            self.violations.len() - undecided
        );
    }

    /// Checks a round's history and counts it.
    fn absorb(&mut self, profile: &Profile, round: Round, lifecycle: &Lifecycle) {
        let verdict = checker::check(&round.entries, lifecycle);
        let mut tally = Tally::default();
        tally.add_entries(&round.entries);
        tally.add_verdict(self.scenario, &verdict);
        if let Some(p) = &profile.progress {
            p.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .merge(&tally);
        }
        self.tally.merge(&tally);
        self.violations.extend(verdict.violations);
        self.problems.extend(round.problems);
        for e in &round.entries {
            if e.coordinator != usize::MAX {
                self.longest_call = self.longest_call.max(e.returned - e.invoked);
            }
        }
        self.rounds += 1;
    }
}

/// One round's record.
pub struct Round {
    pub entries: Vec<Entry>,
    pub problems: Vec<String>,
    pub ids: Vec<String>,
}

/// The coordinators of a scenario, as separate API servers would have
/// them, and what they talk to.
pub struct Env {
    pub redis: TestRedis,
    pub chaos: Option<Chaos>,
    pub coords: Vec<Coordinator>,
}

impl Env {
    /// A fresh server (with `args`), optionally behind a chaos proxy, and
    /// `profile.coordinators` coordinators tuned by `mix`.
    pub async fn start(profile: &Profile, mix: &Mix, args: &[&str], via_chaos: bool) -> Env {
        Env::start_with(profile, mix, args, via_chaos, Lifecycle::sandbox()).await
    }

    pub async fn start_with(
        profile: &Profile,
        mix: &Mix,
        args: &[&str],
        via_chaos: bool,
        lifecycle: Lifecycle,
    ) -> Env {
        let redis = TestRedis::start_with_args(args).await;
        let chaos = if via_chaos {
            Some(Chaos::start(&redis.url()).await)
        } else {
            None
        };
        let url = chaos.as_ref().map_or_else(|| redis.url(), Chaos::url);
        let mut coords = Vec::new();
        for _ in 0..profile.coordinators {
            let coord = Coordinator::builder(url.clone())
                .namespace(redis.namespace())
                .lifecycle(lifecycle.clone())
                .poll_interval(mix.poll)
                .connect_timeout(mix.connect_timeout)
                .response_timeout(mix.response_timeout)
                .build()
                .await
                .expect("coordinator connects");
            coords.push(coord);
        }
        Env {
            redis,
            chaos,
            coords,
        }
    }
}

/// The sandbox ids of one round (fresh per round: bounded histories).
fn round_ids(profile: &Profile, round: usize) -> Vec<String> {
    (0..profile.sandboxes)
        .map(|i| format!("r{round}-s{i}"))
        .collect()
}

fn new_sandbox(id: &str, execution: &str) -> NewSandbox {
    NewSandbox {
        team: TEAM.into(),
        id: id.into(),
        execution: execution.into(),
        end_time: (SystemTime::now() + Duration::from_secs(3600)).into(),
        data: "{}".into(),
    }
}

/// Runs `fut`, or records a problem if it takes longer than `bound`.
async fn bounded<T>(
    problems: &mut Vec<String>,
    bound: Duration,
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match tokio::time::timeout(bound, fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            problems.push(format!("{} did not return within {bound:?}", what()));
            None
        }
    }
}

/// A client that lost contact backs off a little before its next call, as
/// a real API server would, so a fault window is not raced through.
async fn back_off<T>(answer: Option<&Result<T, Error>>) {
    if let Some(Err(e)) = answer
        && e.is_retryable()
        && !matches!(e, Error::Timeout { .. } | Error::Busy { .. })
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One racing client: `ops` random calls on random sandboxes of `ids`.
#[allow(clippy::too_many_arguments)]
async fn client(
    coord: Coordinator,
    mut lane: Lane,
    ids: Arc<Vec<String>>,
    mix: Mix,
    ops: usize,
    seed: u64,
    who: String,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut problems = Vec::new();
    let bound = mix.call_bound();
    for op in 0..ops {
        let id = ids[rng.random_range(0..ids.len())].clone();
        let what = || format!("{who} op {op} on {id}");
        match rng.random_range(0..100) {
            0..64 => {
                let action = match rng.random_range(0..64) {
                    0..28 => Action::Pause,
                    28..42 => Action::Kill,
                    _ => Action::Snapshot,
                };
                let r = rng.random::<f64>();
                let (dies, stalls) = (r < mix.die, r >= mix.die && r < mix.die + mix.stall);
                let opts = if dies || stalls {
                    BeginOptions::default()
                        .lease(mix.short_lease)
                        .watchdog(false)
                } else {
                    BeginOptions::default().lease(mix.lease)
                }
                .wait_timeout(mix.wait_timeout);
                let Some((answer, call)) = bounded(
                    &mut problems,
                    bound,
                    what,
                    lane.begin(&coord, TEAM, &id, action, opts),
                )
                .await
                else {
                    continue;
                };
                back_off(Some(&answer)).await;
                let Ok(Begun::Started(t)) = answer else {
                    continue;
                };
                let fence = t.fence();
                if dies {
                    lane.die(t, call);
                    continue;
                }
                if stalls {
                    // Work past the lease (no watchdog), then try to succeed.
                    let _ = tokio::time::timeout(mix.short_lease * 4, t.lost()).await;
                    let extra = rng.random_range(0..=mix.short_lease.as_millis() as u64 / 2);
                    tokio::time::sleep(Duration::from_millis(extra)).await;
                    bounded(&mut problems, bound, what, lane.finish(t, None)).await;
                    continue;
                }
                let (lo, hi) = mix.hold_ms;
                tokio::time::sleep(Duration::from_millis(rng.random_range(lo..=hi))).await;
                let failure = rng.random_bool(mix.fail).then(|| format!("reason-{fence}"));
                bounded(&mut problems, bound, what, lane.finish(t, failure)).await;
            }
            64..90 => {
                // Bring it back: resume a paused sandbox, recycle a killed
                // one, re-create one that is gone.
                let got = bounded(&mut problems, bound, what, lane.get(&coord, TEAM, &id)).await;
                back_off(got.as_ref()).await;
                let Some(Ok(seen)) = got else {
                    continue;
                };
                let execution = format!("x-{who}-{op}").replace(' ', "-");
                match seen.map(|sb| sb.state) {
                    Some(State::Paused) | None => {
                        bounded(
                            &mut problems,
                            bound,
                            what,
                            lane.register(&coord, new_sandbox(&id, &execution)),
                        )
                        .await;
                    }
                    Some(State::Killed) => {
                        let removed =
                            bounded(&mut problems, bound, what, lane.remove(&coord, TEAM, &id))
                                .await;
                        if matches!(removed, Some(Ok(true))) {
                            bounded(
                                &mut problems,
                                bound,
                                what,
                                lane.register(&coord, new_sandbox(&id, &execution)),
                            )
                            .await;
                        }
                    }
                    _ => {}
                }
            }
            _ => {
                let got = bounded(&mut problems, bound, what, lane.get(&coord, TEAM, &id)).await;
                back_off(got.as_ref()).await;
            }
        }
    }
    problems
}

/// One round: register fresh sandboxes, race every client over them, and
/// hand back the record.
pub async fn race_round(
    coords: &[Coordinator],
    profile: &Profile,
    mix: &Mix,
    round: usize,
    recorder: &Recorder,
) -> Round {
    let ids = round_ids(profile, round);
    let mut problems = Vec::new();
    let mut setup = recorder.lane(0);
    for id in &ids {
        // Under faults this may fail (recorded as unknown; the clients
        // re-create missing sandboxes); without faults the scenario flags
        // any error.
        let _ = setup.register(&coords[0], new_sandbox(id, "x-setup")).await;
    }
    let ids = Arc::new(ids);
    let mut tasks = JoinSet::new();
    for (c, coord) in coords.iter().enumerate() {
        for t in 0..profile.tasks_per_coordinator {
            let who = format!("c{c}t{t}");
            let seed = profile
                .seed
                .wrapping_add((round as u64) << 32)
                .wrapping_add((c * 1000 + t) as u64 * 0x9E37_79B9);
            tasks.spawn(client(
                coord.clone(),
                recorder.lane(c),
                Arc::clone(&ids),
                mix.clone(),
                profile.ops_per_task,
                seed,
                who,
            ));
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(p) => problems.extend(p),
            Err(e) => problems.push(format!("a client task panicked: {e}")),
        }
    }
    Round {
        entries: recorder.entries(),
        problems,
        ids: Arc::try_unwrap(ids).unwrap_or_else(|a| (*a).clone()),
    }
}

/// Every transition got its own fence: no two `Started` answers share one
/// (fences come from the team's counter, across all sandboxes).
fn fences_unique(entries: &[Entry]) -> Vec<String> {
    let mut seen: HashMap<u64, &str> = HashMap::new();
    let mut problems = Vec::new();
    for e in entries {
        if let Some(Ret::Started(f)) = &e.ret
            && let Some(other) = seen.insert(*f, &e.sandbox)
        {
            problems.push(format!(
                "fence {f} was handed out twice (sandboxes {other} and {})",
                e.sandbox
            ));
        }
    }
    problems
}

/// After the faults: every sandbox goes idle within `bound` (no lease
/// outlives its holder for long), and calls work again.
async fn settles(coord: &Coordinator, ids: &[String], bound: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ids {
        match coord.wait_idle(TEAM, id, bound).await {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => problems.push(format!("{id} did not settle after the faults: {e}")),
        }
    }
    problems
}

/// Starts `driver` (a fault schedule) until the returned sender is told to stop.
fn spawn_faults<F, Fut>(driver: F) -> (watch::Sender<bool>, tokio::task::JoinHandle<Vec<String>>)
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Vec<String>> + Send + 'static,
{
    let (stop, rx) = watch::channel(false);
    (stop, tokio::spawn(driver(rx)))
}

/// Waits until `recorder` holds a quarter of the calls a round makes (so a
/// fault injected then overlaps the rest of the race); false if told to
/// stop first.
async fn race_under_way(
    rx: &mut watch::Receiver<bool>,
    recorder: &Recorder,
    profile: &Profile,
) -> bool {
    let calls = profile.coordinators * profile.tasks_per_coordinator * profile.ops_per_task;
    while recorder.len() < calls / 4 {
        if stopped(rx, Duration::from_millis(5)).await {
            return false;
        }
    }
    true
}

/// A fault window: when the fault began and (once over) ended.
type Window = Arc<Mutex<Option<(Instant, Option<Instant>)>>>;

/// Calls running while the window was open (or within `after` of its end)
/// may have been retried.
fn window_clock(window: &Window, after: Duration) -> super::recorder::FaultClock {
    let window = Arc::clone(window);
    Arc::new(move |invoked, returned| {
        match *window.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((start, end)) => start <= returned && end.is_none_or(|e| invoked <= e + after),
            None => false,
        }
    })
}

/// Sleeps `d`, or returns early (true) when told to stop.
async fn stopped(rx: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let early = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = rx.wait_for(|s| *s) => true,
    };
    early || *rx.borrow()
}

// ----- scenarios ----------------------------------------------------------

/// Plain race: 4+ coordinators, many tasks, holders that succeed or fail.
/// No faults, so every answer must be one the model describes.
pub async fn race(profile: &Profile) -> Outcome {
    let mix = Mix::default();
    let env = Env::start(profile, &mix, &[], false).await;
    race_on(&env.coords, profile, "race").await
}

/// The race on coordinators made elsewhere (a Redis Cluster, a TLS or ACL
/// connection): same rounds, same checks.
pub async fn race_on(coords: &[Coordinator], profile: &Profile, scenario: &'static str) -> Outcome {
    let mix = Mix::default();
    let mut out = Outcome::new(scenario);
    let began = Instant::now();
    let mut round = 0;
    while profile.more_rounds(round, began) {
        let r = race_round(coords, profile, &mix, round, &Recorder::new()).await;
        let mut problems = fences_unique(&r.entries);
        problems.extend(
            r.entries
                .iter()
                .filter(|e| e.ret.is_none())
                .map(|e| format!("error without faults: {:?} -> {:?}", e.op, e.error)),
        );
        let mut r = r;
        r.problems.extend(problems);
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    out.took = began.elapsed();
    out
}

/// The race with a coordinator whose rule table is broken (a kill starts
/// over a live pause lease), checked against the contract's table: the
/// checker must find violations.
pub async fn race_with_broken_rule(profile: &Profile) -> Outcome {
    // The table cannot break the one-holder guarantee any more
    // (`Lifecycle::validate` and the scripts refuse a start over a live
    // lease), so the broken coordinator decides by a valid table that is
    // not the contract's: a kill of a paused sandbox starts.
    let broken = Lifecycle::sandbox().kill_deletes_paused();
    let mix = Mix {
        hold_ms: (10, 40),
        ..Mix::default()
    };
    let env = Env::start_with(profile, &mix, &[], false, broken).await;
    let mut out = Outcome::new("race-broken-rule");
    let began = Instant::now();
    // One interleaving made explicit: a kill requested after a pause
    // succeeded. (A coordinator of the contract absorbs it.)
    let recorder = Recorder::new();
    let (mut a, mut b) = (recorder.lane(0), recorder.lane(1));
    let id = "forced";
    a.register(&env.coords[0], new_sandbox(id, "x-forced"))
        .await
        .expect("register");
    let (pause, _) = a
        .begin(
            &env.coords[0],
            TEAM,
            id,
            Action::Pause,
            BeginOptions::default(),
        )
        .await;
    if let Ok(Begun::Started(t)) = pause {
        let _ = a.finish(t, None).await;
    }
    let (kill, _) = b
        .begin(
            &env.coords[1],
            TEAM,
            id,
            Action::Kill,
            BeginOptions::default().wait_timeout(Duration::from_secs(2)),
        )
        .await;
    if let Ok(Begun::Started(t)) = kill {
        let _ = b.finish(t, None).await;
    }
    let mut r = race_round(&env.coords, profile, &mix, 0, &Recorder::new()).await;
    r.entries.extend(recorder.entries());
    out.absorb(profile, r, &Lifecycle::sandbox());
    out.took = began.elapsed();
    out
}

/// Holders that die (no finish, no Drop) or stall past their short lease
/// and then try to finish, mixed into the race.
pub async fn dying_and_stalling_holders(profile: &Profile) -> Outcome {
    let mix = Mix {
        die: 0.06,
        stall: 0.06,
        short_lease: Duration::from_millis(400),
        poll: Duration::from_millis(200),
        ..Mix::default()
    };
    let env = Env::start(profile, &mix, &[], false).await;
    let mut out = Outcome::new("dying-and-stalling-holders");
    let began = Instant::now();
    let mut round = 0;
    while profile.more_rounds(round, began) {
        let mut r = race_round(&env.coords, profile, &mix, round, &Recorder::new()).await;
        r.problems.extend(fences_unique(&r.entries));
        r.problems
            .extend(settles(&env.coords[0], &r.ids, Duration::from_secs(10)).await);
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    if out.tally.abandoned + out.tally.fenced == 0 {
        out.problems.push(
            "no joiner saw Abandoned and no stale holder was Fenced: the scenario did not bite"
                .into(),
        );
    }
    out.took = began.elapsed();
    out
}

/// The race while every notification connection is killed again and
/// again (`CLIENT KILL TYPE pubsub`): no waiter hangs, and a waiter
/// answers within the poll interval (plus scheduling slack) of the end of
/// the transition it waited on.
///
/// The first kill comes as soon as a quarter of a round's calls are
/// recorded, then one every 50–300 ms. A kill counts only if it closed a
/// connection and some call of the race returned after it; a round that
/// got none (it ended first) is followed by another, up to 5 more, so the
/// scenario never passes without the fault it is about.
pub async fn pubsub_kills(profile: &Profile) -> Outcome {
    let mix = Mix {
        poll: Duration::from_millis(500),
        hold_ms: (0, 20),
        ..Mix::default()
    };
    let env = Env::start(profile, &mix, &[], false).await;
    let mut out = Outcome::new("pubsub-kills");
    let began = Instant::now();
    let mut round = 0;
    let epochs: Vec<u64> = env
        .coords
        .iter()
        .map(Coordinator::subscription_epoch)
        .collect();
    const MAX_EXTRA_ROUNDS: usize = 5;
    let kills = Arc::new(Mutex::new(0u64));
    // Kills that closed a connection while the race still ran.
    let mut kills_in_race = 0usize;
    let mut extra_rounds = 0;
    loop {
        if !profile.more_rounds(round, began) {
            if kills_in_race > 0 || extra_rounds == MAX_EXTRA_ROUNDS {
                break;
            }
            extra_rounds += 1;
        }
        let mut conn = env.redis.client().await;
        let counter = Arc::clone(&kills);
        let recorder = Recorder::new();
        let (rec2, p2) = (recorder.clone(), profile.clone());
        // When each kill that closed a connection had been answered.
        let landed: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let landed2 = Arc::clone(&landed);
        let (stop, killer) = spawn_faults(move |mut rx| async move {
            let mut problems = Vec::new();
            let mut rng = StdRng::from_os_rng();
            if !race_under_way(&mut rx, &rec2, &p2).await {
                return problems; // the round ended first: counted below
            }
            loop {
                let killed: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await;
                match killed {
                    Ok(n) => {
                        *counter.lock().unwrap_or_else(PoisonError::into_inner) += n as u64;
                        if n > 0 {
                            landed2
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Instant::now());
                        }
                    }
                    Err(e) => problems.push(format!("CLIENT KILL failed: {e}")),
                }
                if stopped(&mut rx, Duration::from_millis(rng.random_range(50..300))).await {
                    return problems;
                }
            }
        });
        let mut r = race_round(&env.coords, profile, &mix, round, &recorder).await;
        let _ = stop.send(true);
        r.problems.extend(killer.await.unwrap_or_default());
        let last_return = r.entries.iter().map(|e| e.returned).max();
        kills_in_race += landed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|&&at| last_return.is_some_and(|last| last > at))
            .count();
        r.problems.extend(fences_unique(&r.entries));
        r.problems.extend(
            r.entries
                .iter()
                .filter(|e| e.ret.is_none())
                .map(|e| format!("error under pubsub kills: {:?} -> {:?}", e.op, e.error)),
        );
        let mut tally = Tally::default();
        tally.add_entries(&r.entries);
        let (wake_max, _) = tally.wakeup();
        let limit = mix.poll + Duration::from_millis(1500);
        if wake_max > limit {
            r.problems.push(format!(
                "a waiter answered {wake_max:?} after its transition ended (poll {:?}, limit {limit:?})",
                mix.poll
            ));
        }
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    let kills = *kills.lock().unwrap_or_else(PoisonError::into_inner);
    if kills_in_race == 0 {
        out.problems.push(format!(
            "no notification connection was killed while a race ran ({round} rounds, {kills} \
             connections killed in all)"
        ));
    }
    for (i, (c, before)) in env.coords.iter().zip(epochs).enumerate() {
        if c.subscription_epoch() <= before {
            out.problems.push(format!(
                "coordinator {i} never resubscribed ({kills} kills)"
            ));
        }
    }
    out.took = began.elapsed();
    out
}

/// The race through a proxy that adds latency and jitter, drops
/// connections and blackholes them at random. Calls may fail (their effect
/// is then unknown to the checker) but never overrun their bound; after
/// the faults, everything settles and works.
pub async fn chaos_proxy(profile: &Profile) -> Outcome {
    let mix = Mix {
        lease: Duration::from_secs(3),
        wait_timeout: Duration::from_secs(5),
        poll: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        ..Mix::default()
    };
    let env = Env::start(profile, &mix, &[], true).await;
    let chaos = env.chaos.as_ref().expect("behind the proxy");
    let mut out = Outcome::new("chaos-proxy");
    let began = Instant::now();
    let mut round = 0;
    // Faults are random per chunk: a short round can pass without one, so
    // rounds go on (up to 20) until the proxy has cut a connection.
    let unfaulted = || {
        let s = chaos.stats();
        s.dropped + s.blackholed == 0
    };
    while profile.more_rounds(round, began) || (unfaulted() && round < 20) {
        chaos.set_faults(Faults {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(4),
            drop: 0.002,
            blackhole: 0.001,
            blackhole_for: Duration::from_millis(1500),
            mute_replies: false,
        });
        let recorder = Recorder::new();
        // Dropped and blackholed requests never reach Redis; delayed ones
        // by a few ms.
        recorder.settle_unknown_within(Duration::from_secs(3));
        let log = chaos.fault_log();
        let margin = Duration::from_millis(50);
        recorder.faults_from(Arc::new(move |invoked: Instant, returned: Instant| {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|(t, _)| *t + margin >= invoked && *t <= returned + margin)
        }));
        let mut r = race_round(&env.coords, profile, &mix, round, &recorder).await;
        chaos.calm();
        r.problems.extend(fences_unique(&r.entries));
        r.problems
            .extend(settles(&env.coords[0], &r.ids, Duration::from_secs(15)).await);
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    let stats = chaos.stats();
    eprintln!("chaos proxy: {stats:?}");
    if stats.dropped + stats.blackholed == 0 {
        out.problems
            .push("the proxy never dropped or blackholed a connection".into());
    }
    out.took = began.elapsed();
    out
}

/// The race while Redis is frozen (`docker pause`) for longer than the
/// lease, with transitions in flight and waiters waiting: every call
/// returns within its bound, with an error or an answer the history can
/// explain; afterwards every sandbox settles, and no fence was used twice.
pub async fn redis_paused(profile: &Profile) -> Outcome {
    let mix = Mix {
        lease: Duration::from_secs(1),
        hold_ms: (0, 50),
        wait_timeout: Duration::from_secs(4),
        poll: Duration::from_millis(250),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        ..Mix::default()
    };
    let mut out = Outcome::new("redis-paused");
    let env = Env::start(profile, &mix, &[], false).await;
    if !env.redis.supports_faults() {
        let why = format!("backend {} cannot pause", env.redis.backend());
        eprintln!("redis-paused: skipped, {why}");
        out.skipped = Some(why);
        return out;
    }
    let redis = Arc::new(env.redis);
    let began = Instant::now();
    let mut round = 0;
    let freeze = mix.lease * 5 / 2;
    while profile.more_rounds(round, began) {
        let r2 = Arc::clone(&redis);
        let recorder = Recorder::new();
        // Attempts queued in the frozen server run when it thaws.
        recorder.settle_unknown_within(freeze + Duration::from_secs(1));
        let window: Window = Arc::default();
        recorder.faults_from(window_clock(&window, Duration::from_secs(1)));
        let (rec2, p2, w2) = (recorder.clone(), profile.clone(), Arc::clone(&window));
        let (stop, pauser) = spawn_faults(move |mut rx| async move {
            if !race_under_way(&mut rx, &rec2, &p2).await {
                return vec!["the round ended before Redis was paused".into()];
            }
            *w2.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), None));
            r2.pause().await;
            tokio::time::sleep(freeze).await;
            r2.unpause().await;
            if let Some((_, end)) = &mut *w2.lock().unwrap_or_else(PoisonError::into_inner) {
                *end = Some(Instant::now());
            }
            Vec::new()
        });
        let mut r = race_round(&env.coords, profile, &mix, round, &recorder).await;
        let _ = stop.send(true);
        r.problems.extend(pauser.await.unwrap_or_default());
        r.problems.extend(fences_unique(&r.entries));
        r.problems
            .extend(settles(&env.coords[0], &r.ids, Duration::from_secs(10)).await);
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    if out.longest_call < freeze / 2 {
        out.problems.push(format!(
            "no call took longer than {:?}: the pause did not overlap the race",
            freeze / 2
        ));
    }
    out.took = began.elapsed();
    out
}

/// The race while Redis restarts. Clients reach it through a proxy that
/// follows the container's new port. Without persistence (`persistent:
/// false`) the data and scripts are gone: the history gets a `Lose` within
/// the restart, and everything after must be explained by an empty server
/// (`NotFound`, fences counting again from 1); scripts are reloaded
/// (`NOSCRIPT` → `EVAL`). With AOF (`appendfsync always`) nothing
/// acknowledged may be lost: the history must be linearizable without any
/// `Lose`. Either way every coordinator's notification connection
/// reconnects by itself and no call hangs.
pub async fn redis_restart(profile: &Profile, persistent: bool) -> Outcome {
    let mix = Mix {
        // Short leases (the watchdog keeps live holders'): a begin that ran
        // but whose answer was lost in the restart leaves a lease nobody
        // holds, and waiters on it wait until it runs out.
        lease: Duration::from_secs(3),
        hold_ms: (0, 20),
        wait_timeout: Duration::from_secs(6),
        poll: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        ..Mix::default()
    };
    let args: &[&str] = if persistent {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--save", "", "--appendonly", "no"]
    };
    let scenario = if persistent {
        "redis-restart-aof"
    } else {
        "redis-restart-volatile"
    };
    let mut out = Outcome::new(scenario);
    let env = Env::start(profile, &mix, args, true).await;
    if !env.redis.supports_restart() {
        let why = format!("backend {} cannot restart", env.redis.backend());
        eprintln!("{scenario}: skipped, {why}");
        out.skipped = Some(why);
        return out;
    }
    let redis = Arc::new(env.redis);
    let chaos = Arc::new(env.chaos.expect("behind the proxy"));
    let began = Instant::now();
    let mut round = 0;
    while profile.more_rounds(round, began) {
        let epochs: Vec<u64> = env
            .coords
            .iter()
            .map(Coordinator::subscription_epoch)
            .collect();
        let (r2, c2) = (Arc::clone(&redis), Arc::clone(&chaos));
        let window: Arc<Mutex<Option<(Instant, Instant)>>> = Arc::default();
        let w2 = Arc::clone(&window);
        let recorder = Recorder::new();
        // A request the old server did not run before it stopped is gone.
        recorder.settle_unknown_within(Duration::from_secs(3));
        let fault: Window = Arc::default();
        recorder.faults_from(window_clock(&fault, Duration::from_secs(1)));
        let (rec2, p2, f2) = (recorder.clone(), profile.clone(), Arc::clone(&fault));
        let (stop, restarter) = spawn_faults(move |mut rx| async move {
            if !race_under_way(&mut rx, &rec2, &p2).await {
                return vec!["the round ended before Redis restarted".into()];
            }
            let from = Instant::now();
            *f2.lock().unwrap_or_else(PoisonError::into_inner) = Some((from, None));
            r2.restart().await;
            c2.retarget(&r2.url());
            // Connections still open to the old server are dead: cut them.
            c2.sever();
            if from.elapsed() > Duration::from_secs(10) {
                eprintln!("redis restart took {:?}", from.elapsed());
            }
            *w2.lock().unwrap_or_else(PoisonError::into_inner) = Some((from, Instant::now()));
            if let Some((_, end)) = &mut *f2.lock().unwrap_or_else(PoisonError::into_inner) {
                *end = Some(Instant::now());
            }
            Vec::new()
        });
        let mut r = race_round(&env.coords, profile, &mix, round, &recorder).await;
        let _ = stop.send(true);
        r.problems.extend(restarter.await.unwrap_or_default());
        let window = *window.lock().unwrap_or_else(PoisonError::into_inner);
        match (window, persistent) {
            (Some((from, to)), false) => {
                // Fences count again from 1 after the counter was lost.
                let recorder = Recorder::new();
                recorder.lose(&r.ids, from, to);
                r.entries.extend(recorder.entries());
            }
            (Some(_), true) => r.problems.extend(fences_unique(&r.entries)),
            (None, _) => {}
        }
        r.problems
            .extend(settles(&env.coords[0], &r.ids, Duration::from_secs(15)).await);
        // The subscription came back by itself on every coordinator.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, (c, before)) in env.coords.iter().zip(&epochs).enumerate() {
            while c.subscription_epoch() <= *before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if c.subscription_epoch() <= *before {
                r.problems.push(format!(
                    "coordinator {i} did not resubscribe after the restart"
                ));
            }
        }
        // A full transition with a woken joiner works after the restart.
        r.problems
            .extend(joiner_after_restart(&env.coords, round).await);
        out.absorb(profile, r, &Lifecycle::sandbox());
        round += 1;
    }
    out.took = began.elapsed();
    out
}

/// After a restart: register, start a pause on one coordinator, join it
/// from another, succeed: the joiner is answered `Joined` promptly.
async fn joiner_after_restart(coords: &[Coordinator], round: usize) -> Vec<String> {
    let id = format!("after-restart-{round}");
    let mut problems = Vec::new();
    if let Err(e) = coords[0].register(new_sandbox(&id, "x-after")).await {
        return vec![format!("register after the restart: {e}")];
    }
    let leader = match coords[0]
        .begin(TEAM, &id, Action::Pause, BeginOptions::default())
        .await
    {
        Ok(Begun::Started(t)) => t,
        other => return vec![format!("begin after the restart: {other:?}")],
    };
    let fence = leader.fence();
    let joiner_coord = coords[coords.len() - 1].clone();
    let id2 = id.clone();
    let joiner = tokio::spawn(async move {
        joiner_coord
            .begin(
                TEAM,
                &id2,
                Action::Pause,
                BeginOptions::default().wait_timeout(Duration::from_secs(10)),
            )
            .await
    });
    let last = &coords[coords.len() - 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    while last.waiting() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Err(e) = leader.succeed().await {
        problems.push(format!("succeed after the restart: {e}"));
    }
    match tokio::time::timeout(Duration::from_secs(12), joiner).await {
        Ok(Ok(Ok(Begun::AlreadyDone(d))))
            if d.why == sandbox_coordinator::DoneReason::Joined { fence } => {}
        other => problems.push(format!("joiner after the restart: {other:?}")),
    }
    problems
}

// ----- holders in child processes -----------------------------------------

/// Env of a child holder: URL, namespace, sandbox id, action, lease ms.
const CHILD_ENV: [&str; 5] = [
    "SBX_HOLDER_URL",
    "SBX_HOLDER_NS",
    "SBX_HOLDER_ID",
    "SBX_HOLDER_ACTION",
    "SBX_HOLDER_LEASE_MS",
];

/// The child's side (a test function so the test binary can run it as a
/// child): begins, prints its answer, and if it started, holds the
/// transition (watchdog on) until its stdin closes — then exits at once,
/// mid-transition: no finish, no destructors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_holder() {
    let Ok(vars) = CHILD_ENV
        .iter()
        .map(std::env::var)
        .collect::<Result<Vec<_>, _>>()
    else {
        return; // not a child run
    };
    let coord = Coordinator::builder(vars[0].clone())
        .namespace(vars[1].clone())
        .build()
        .await
        .expect("child connects");
    let action: Action = vars[3].parse().expect("action");
    let lease = Duration::from_millis(vars[4].parse().expect("lease ms"));
    let answer = coord
        .begin(TEAM, &vars[2], action, BeginOptions::default().lease(lease))
        .await;
    let (ret, error) = super::recorder::begin_ret(&answer);
    println!("RET {}", encode(ret.as_ref(), error.as_deref()));
    std::io::stdout().flush().expect("flush");
    if matches!(answer, Ok(Begun::Started(_))) {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        std::process::exit(0);
    }
}

fn encode(ret: Option<&Ret>, error: Option<&str>) -> String {
    match ret {
        Some(Ret::Started(f)) => format!("started {f}"),
        Some(Ret::Joined(f)) => format!("joined {f}"),
        Some(Ret::Abandoned(f)) => format!("abandoned {f}"),
        Some(Ret::OutcomeUnknown(f)) => format!("unknown {f}"),
        Some(Ret::Absorbed(s)) => format!("absorbed {s}"),
        Some(Ret::AlreadyInState(s)) => format!("same {s}"),
        Some(Ret::Invalid(s)) => format!("invalid {s}"),
        Some(Ret::TransitionFailed { fence, reason }) => format!("failed {fence} {reason}"),
        Some(Ret::NotFound) => "notfound".into(),
        Some(Ret::Timeout) => "timeout".into(),
        Some(other) => format!("error unexpected {other:?}"),
        None => format!("error {}", error.unwrap_or("")),
    }
}

fn decode(line: &str) -> Option<Ret> {
    let mut parts = line.splitn(3, ' ');
    let (kind, a, b) = (parts.next()?, parts.next(), parts.next());
    let fence = || a.and_then(|f| f.parse::<u64>().ok());
    let state = || a.and_then(|s| s.parse::<State>().ok());
    Some(match kind {
        "started" => Ret::Started(fence()?),
        "joined" => Ret::Joined(fence()?),
        "abandoned" => Ret::Abandoned(fence()?),
        "unknown" => Ret::OutcomeUnknown(fence()?),
        "absorbed" => Ret::Absorbed(state()?),
        "same" => Ret::AlreadyInState(state()?),
        "invalid" => Ret::Invalid(state()?),
        "failed" => Ret::TransitionFailed {
            fence: fence()?,
            reason: b.unwrap_or("").to_string(),
        },
        "notfound" => Ret::NotFound,
        "timeout" => Ret::Timeout,
        _ => return None,
    })
}

/// Holders in child processes that exit mid-transition, each with a joiner
/// parked on its transition: every joiner is answered `Abandoned` with the
/// child's fence once the lease runs out, and the next begin starts
/// cleanly with a larger fence. Recorded and checked like the races.
pub async fn child_holders(profile: &Profile, children: usize) -> Outcome {
    let mix = Mix {
        poll: Duration::from_secs(30), // only the lease deadline may wake them
        ..Mix::default()
    };
    let lease = Duration::from_millis(1500);
    let env = Env::start(
        &Profile {
            coordinators: 2,
            ..profile.clone()
        },
        &mix,
        &[],
        false,
    )
    .await;
    let mut out = Outcome::new("child-holders");
    let began = Instant::now();
    let mut round = 0;
    let exe = std::env::current_exe().expect("test binary");
    while profile.more_rounds(round, began) {
        let recorder = Recorder::new();
        let mut problems = Vec::new();
        let ids: Vec<String> = (0..children)
            .map(|i| format!("r{round}-child{i}"))
            .collect();
        let mut setup = recorder.lane(0);
        for id in &ids {
            setup
                .register(&env.coords[0], new_sandbox(id, "x-child"))
                .await
                .expect("register");
        }
        // Spawn the children; each begins a kill and reports its fence.
        let mut held = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let action = [Action::Pause, Action::Kill, Action::Snapshot][i % 3];
            let mut lane = recorder.lane(usize::MAX - 1);
            let token = recorder.token();
            let invoked = Instant::now();
            let mut child = Command::new(&exe)
                .args([
                    "history::workload::child_holder",
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_ENV[0], env.redis.url())
                .env(CHILD_ENV[1], env.redis.namespace())
                .env(CHILD_ENV[2], id)
                .env(CHILD_ENV[3], action.as_str())
                .env(CHILD_ENV[4], lease.as_millis().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn the child holder");
            let stdout = child.stdout.take().expect("piped");
            let line = tokio::task::spawn_blocking(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    // libtest may print "test <name> ... " first on the line.
                    .find_map(|l| l.split("RET ").nth(1).map(str::to_string))
            });
            let line = tokio::time::timeout(Duration::from_secs(30), line)
                .await
                .expect("the child answered within 30 s")
                .expect("reader")
                .expect("the child printed its answer");
            let returned = Instant::now();
            let ret = decode(&line);
            lane.record(
                id,
                Op::Begin { action, token },
                ret.clone(),
                invoked,
                returned,
                Some(lease),
                ret.is_none().then(|| line.clone()),
            );
            match ret {
                Some(Ret::Started(f)) => held.push((id.clone(), action, f, token, invoked, child)),
                other => {
                    problems.push(format!("child on {id} did not start: {other:?} ({line})"));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        // A joiner parks on each child's transition (from the other coordinator).
        let joiner_coord = env.coords[1].clone();
        let mut joiners = Vec::new();
        for (id, action, _, _, _, _) in &held {
            let (c, id, action) = (joiner_coord.clone(), id.clone(), *action);
            let mut lane = recorder.lane(1);
            joiners.push(tokio::spawn(async move {
                let (answer, _) = lane
                    .begin(
                        &c,
                        TEAM,
                        &id,
                        action,
                        BeginOptions::default().wait_timeout(Duration::from_secs(20)),
                    )
                    .await;
                (lane, answer)
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while joiner_coord.waiting() < held.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if joiner_coord.waiting() < held.len() {
            problems.push(format!(
                "only {} of {} joiners parked",
                joiner_coord.waiting(),
                held.len()
            ));
        }
        // The children exit mid-transition.
        let mut fences = HashMap::new();
        for (id, action, fence, token, invoked, mut child) in held {
            drop(child.stdin.take()); // EOF: the child exits at once
            let killed = Instant::now();
            let status = tokio::task::spawn_blocking(move || child.wait())
                .await
                .expect("waiter");
            if !matches!(status, Ok(s) if s.success()) {
                problems.push(format!("child on {id} exited badly: {status:?}"));
            }
            // Its watchdog kept the lease alive until it died.
            recorder.expire(&id, token, (invoked + lease).max(killed));
            fences.insert(id, (action, fence));
        }
        // Each joiner learns Abandoned; then the next begin starts cleanly.
        for j in joiners {
            let answered = tokio::time::timeout(lease + Duration::from_secs(10), j).await;
            let Ok(Ok((mut lane, answer))) = answered else {
                problems.push("a joiner of a dead child was not answered in time".into());
                continue;
            };
            let (ret, _) = super::recorder::begin_ret(&answer);
            let Some(Ret::Abandoned(f)) = ret else {
                problems.push(format!(
                    "joiner of a dead child: expected Abandoned, got {ret:?}"
                ));
                continue;
            };
            let Some((id, (action, _))) = fences.iter().find(|(_, (_, g))| *g == f) else {
                problems.push(format!("joiner abandoned on unknown fence {f}"));
                continue;
            };
            let (next, _) = lane
                .begin(&joiner_coord, TEAM, id, *action, BeginOptions::default())
                .await;
            match next {
                Ok(Begun::Started(t)) if t.fence() > f => {
                    let _ = lane.finish(t, None).await;
                }
                other => problems.push(format!(
                    "next {action} on {id} after the dead child (fence {f}): {:?}",
                    super::recorder::begin_ret(&other)
                )),
            }
        }
        out.absorb(
            profile,
            Round {
                entries: recorder.entries(),
                problems,
                ids,
            },
            &Lifecycle::sandbox(),
        );
        round += 1;
    }
    out.took = began.elapsed();
    out
}
