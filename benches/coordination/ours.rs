//! This library's workload: uncontended `begin(Snapshot)` + `succeed()` on
//! many sandboxes, through the public API with default `BeginOptions` and
//! default builder settings but for the connection strategy under test. Snapshot is used because it returns the sandbox to
//! `running`, so the same sandboxes can be transitioned again and again
//! with exactly the production code path (no re-registration in between).
//!
//! Also the names every section uses: ids shaped like production ones
//! (UUID teams and executions, 20-byte sandbox ids, a ~160-byte data blob),
//! because key and value lengths drive Redis memory and copy costs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, NewSandbox};

use crate::conns::Strategy;
use crate::load::{self, Run};
use crate::result::Result;
use crate::server::Admin;

/// The opaque `data` every sandbox carries (what an API server would keep:
/// template, sizes, metadata), 162 bytes.
pub const DATA: &str = r#"{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench","purpose":"load"}}"#;

/// Team `t` as a UUID-shaped id.
pub fn team_id(t: usize) -> String {
    format!("00000000-0000-4000-8000-{t:012}")
}

/// Sandbox `n` as a 20-byte id.
pub fn sandbox_id(n: usize) -> String {
    format!("i{n:019}")
}

/// The execution of sandbox `n`, UUID-shaped.
pub fn execution_id(n: usize) -> String {
    format!("e0000000-0000-4000-8000-{n:012}")
}

/// End time far in the future (nothing is due for eviction).
pub fn end_time() -> SystemTime {
    SystemTime::now() + Duration::from_secs(30 * 24 * 3600)
}

/// A set of registered sandboxes spread over `teams` teams (sandbox `n`
/// belongs to team `n % teams`).
#[derive(Clone)]
pub struct Fleet {
    pub ids: Arc<Vec<(String, String)>>,
    numbers: Arc<Vec<usize>>,
    teams: usize,
}

impl Fleet {
    /// Sandboxes `first..first + count`.
    pub fn new(first: usize, count: usize, teams: usize) -> Fleet {
        Fleet::from_indices(first..first + count, teams)
    }

    /// The sandboxes with these numbers.
    pub fn from_indices(numbers: impl Iterator<Item = usize>, teams: usize) -> Fleet {
        let numbers: Vec<usize> = numbers.collect();
        Fleet {
            ids: Arc::new(
                numbers
                    .iter()
                    .map(|&n| (team_id(n % teams), sandbox_id(n)))
                    .collect(),
            ),
            numbers: Arc::new(numbers),
            teams,
        }
    }

    /// The sandboxes' numbers (for seeding by number).
    pub fn numbers(&self) -> &[usize] {
        &self.numbers
    }

    /// How many teams the fleet is spread over.
    pub fn teams(&self) -> usize {
        self.teams
    }

    /// Registers every sandbox through the library, `concurrency` at a time.
    pub async fn register(&self, coord: &Coordinator, concurrency: usize) -> Result<()> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (coord, ids, next) = (coord.clone(), Arc::clone(&self.ids), Arc::clone(&next));
            let numbers = Arc::clone(&self.numbers);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((team, id)) = ids.get(i) else {
                        return Ok::<_, crate::result::BoxError>(());
                    };
                    coord
                        .register(NewSandbox {
                            team: team.clone(),
                            id: id.clone(),
                            execution: execution_id(numbers[i]),
                            end_time: end_time().into(),
                            data: DATA.into(),
                        })
                        .await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    /// The sandbox worker `w` of `workers` uses on its iteration `i`: each
    /// worker cycles over its own share, so no two workers ever touch the
    /// same sandbox (uncontended by construction).
    pub fn pick(&self, w: usize, workers: usize, i: u64) -> &(String, String) {
        let share = (self.ids.len() / workers).max(1);
        &self.ids[(w + workers * (i as usize % share)) % self.ids.len()]
    }
}

/// A coordinator with the library's defaults but for the namespace and
/// the connection strategy (for `concurrency` tasks).
pub async fn coordinator(
    url: &str,
    ns: &str,
    strategy: Strategy,
    concurrency: usize,
) -> Result<Coordinator> {
    Ok(Coordinator::builder(url)
        .namespace(ns)
        .connections(strategy.connections(concurrency))
        .build()
        .await?)
}

/// One uncontended transition: `begin(Snapshot)` then `succeed()`.
pub async fn transition(coord: &Coordinator, team: &str, id: &str) -> Result<()> {
    match coord
        .begin(team, id, Action::Snapshot, BeginOptions::default())
        .await?
    {
        Begun::Started(t) => Ok(t.succeed().await?),
        Begun::AlreadyDone(done) => {
            Err(format!("uncontended snapshot of {team}/{id} did not start: {done:?}").into())
        }
    }
}

/// Transitions per second at `concurrency` over `fleet`.
pub async fn throughput(
    coord: &Coordinator,
    fleet: &Fleet,
    admin: &Admin,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Run> {
    let (coord, fleet) = (coord.clone(), fleet.clone());
    load::closed_loop(admin, concurrency, warmup, window, move |w, i| {
        let (coord, fleet) = (coord.clone(), fleet.clone());
        async move {
            let (team, id) = fleet.pick(w, concurrency, i);
            transition(&coord, team, id).await
        }
    })
    .await
}
