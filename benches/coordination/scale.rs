//! Scale: does a transition cost the same with 1e3, 1e5 and 1e6 sandboxes
//! registered, and what does an idle sandbox cost in Redis memory?
//!
//! Sandboxes are seeded in bulk with pipelined `HSET` + `ZADD` writing
//! exactly what `lua/register.lua` writes for a new sandbox (schema 3:
//! record fields `v lc state exec end_ms fence`, the data in pieces of at
//! most 64 bytes `data data:2 …`, and the team's
//! `expiry` and `ids` index entries; [`seed_pipe`]);
//! registering a million through the script one by one would only make the
//! run longer. One seeded record is read back through `Coordinator::get` to
//! prove the layout is the library's. Teams are few (default 10), so each
//! team's expiry index grows with the fleet (1e5 entries per team at 1e6).
//!
//! At each size the coordinator's throughput at concurrency 64 is measured
//! on a random sample of the fleet (sampled without replacement, so still
//! uncontended), interleaved with the ceiling measured at the same moment;
//! the flatness check compares ours/ceiling and Redis CPU per transition.
//! Memory per sandbox is the growth of `used_memory` while a step's
//! sandboxes are seeded (the outcome keys earlier transitions left, kept for
//! the outcome retention, are not counted).

use std::time::Instant;

use sandbox_coordinator::keys::{Namespace, SCHEMA_VERSION};
use sandbox_coordinator::{Coordinator, State};

use crate::conns::{Conns, Strategy};
use crate::load::Run;
use crate::ours::{self, DATA, Fleet, execution_id, sandbox_id, team_id};
use crate::result::Result;
use crate::server::Admin;

/// The measurements at one fleet size.
#[derive(Debug, Clone)]
pub struct Step {
    pub sandboxes: usize,
    /// `INFO memory` used_memory with the fleet seeded (before any
    /// transition of this step).
    pub used_memory: u64,
    /// used_memory growth while this step's sandboxes were seeded, per
    /// sandbox seeded (so the outcome keys earlier transitions left, kept
    /// for the outcome retention, do not count).
    pub bytes_per_sandbox: f64,
    pub seed_secs: f64,
    pub ours: Vec<Run>,
    pub limit: Vec<Run>,
}

/// `MEMORY USAGE` of the keys of one sandbox.
#[derive(Debug, Clone, Default)]
pub struct KeySizes {
    /// A freshly registered record that never had a transition.
    pub record: u64,
    /// The same record after one transition (adds `action`, `last_*`…).
    pub record_after: u64,
    /// `OBJECT ENCODING` of the record (`listpack` or `hashtable`).
    pub encoding: String,
    pub lease: u64,
    pub outcomes: u64,
    /// The team's expiry index divided by its members.
    pub expiry_per_member: f64,
}

/// The writes of `lua/register.lua` for new sandboxes `numbers` (sandbox
/// `n` in team `n % teams`), as one pipeline: the record (`v lc state exec
/// end_ms fence` and the data's pieces, `lua/include/data.lua`) and its
/// entries in the team's `expiry` and `ids` indexes.
pub fn seed_pipe(ns: &Namespace, numbers: &[usize], teams: usize) -> Result<redis::Pipeline> {
    let end_ms = ours::end_time()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        .to_string();
    let digest = sandbox_coordinator::Lifecycle::sandbox().digest();
    let pieces: Vec<(String, &str)> = DATA
        .as_bytes()
        .chunks(64)
        .enumerate()
        .map(|(i, piece)| {
            let name = if i == 0 {
                "data".to_string()
            } else {
                format!("data:{}", i + 1)
            };
            (
                name,
                std::str::from_utf8(piece).expect("the bench's data is ASCII"),
            )
        })
        .collect();
    let mut pipe = redis::pipe();
    for &i in numbers {
        let (team, id) = (team_id(i % teams), sandbox_id(i));
        let keys = ns.sandbox(&team, &id)?;
        pipe.cmd("HSET")
            .arg(&keys.record)
            .arg(&[
                ("v", SCHEMA_VERSION),
                ("lc", &digest),
                ("state", "running"),
                ("exec", &execution_id(i)),
                ("end_ms", &end_ms),
                ("fence", "0"),
            ])
            .arg(&pieces)
            .ignore()
            .cmd("ZADD")
            .arg(keys.team.expiry())
            .arg(&end_ms)
            .arg(&id)
            .ignore()
            .cmd("ZADD")
            .arg(keys.team.ids())
            .arg(0)
            .arg(&id)
            .ignore();
    }
    Ok(pipe)
}

pub struct Scale {
    ns: Namespace,
    teams: usize,
    seeded: usize,
    /// used_memory before the last `grow`, and how many were seeded then.
    before_grow: (u64, usize),
    seeder: Conns,
}

impl Scale {
    pub async fn new(url: &str, ns: &str, teams: usize) -> Result<Scale> {
        Ok(Scale {
            ns: Namespace::new(ns)?,
            teams,
            seeded: 0,
            before_grow: (0, 0),
            seeder: Conns::new(url, Strategy::Pooled, 4).await?,
        })
    }

    /// Seeds sandboxes `seeded..target`, 4 pipelines of 2,000 at a time.
    pub async fn grow(&mut self, admin: &Admin, target: usize) -> Result<f64> {
        self.before_grow = (admin.info_u64("memory", "used_memory").await?, self.seeded);
        let started = Instant::now();
        const BATCH: usize = 2_000;
        let mut inflight = Vec::new();
        let mut n = self.seeded;
        while n < target {
            let upto = (n + BATCH).min(target);
            let numbers: Vec<usize> = (n..upto).collect();
            let pipe = seed_pipe(&self.ns, &numbers, self.teams)?;
            let seeder = self.seeder.clone();
            inflight.push(tokio::spawn(async move { seeder.query_pipe(&pipe).await }));
            if inflight.len() >= 4 {
                inflight.remove(0).await??;
            }
            n = upto;
        }
        for t in inflight {
            t.await??;
        }
        self.seeded = target;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Checks a seeded sandbox reads back through the library as `running`.
    pub async fn check_layout(&self, coord: &Coordinator) -> Result<()> {
        let (team, id) = (team_id(0), sandbox_id(0));
        match coord.get(&team, &id).await? {
            Some(s) if s.state == State::Running && s.data == DATA => Ok(()),
            other => Err(format!("seeded sandbox reads back as {other:?}").into()),
        }
    }

    /// `uniq` distinct random sandboxes of the fleet.
    pub fn sample(&self, uniq: usize) -> Fleet {
        let mut rng = rand::rng();
        let picked = rand::seq::index::sample(&mut rng, self.seeded, uniq.min(self.seeded));
        Fleet::from_indices(picked.into_iter(), self.teams)
    }

    /// used_memory now, and its growth per sandbox over the last `grow`.
    pub async fn memory(&self, admin: &Admin) -> Result<(u64, f64)> {
        let used = admin.info_u64("memory", "used_memory").await?;
        let (before, seeded) = self.before_grow;
        let per =
            used.saturating_sub(before) as f64 / self.seeded.saturating_sub(seeded).max(1) as f64;
        Ok((used, per))
    }

    /// Sizes of one sandbox's keys: record (registered through the
    /// library, idle), lease (while a transition runs), record and recent
    /// outcomes after it.
    pub async fn key_sizes(&self, admin: &Admin, coord: &Coordinator) -> Result<KeySizes> {
        let n = self.seeded + 1;
        let (team, id) = (team_id(n % self.teams), sandbox_id(n));
        coord
            .register(sandbox_coordinator::NewSandbox {
                team: team.clone(),
                id: id.clone(),
                execution: execution_id(n),
                end_time: ours::end_time().into(),
                data: DATA.into(),
            })
            .await?;
        let keys = self.ns.sandbox(&team, &id)?;
        let record = admin.memory_usage(&keys.record).await?;
        let encoding: String = admin
            .cmd(redis::cmd("OBJECT").arg("ENCODING").arg(&keys.record))
            .await?;
        let t = match coord
            .begin(
                &team,
                &id,
                sandbox_coordinator::Action::Snapshot,
                Default::default(),
            )
            .await?
        {
            sandbox_coordinator::Begun::Started(t) => t,
            other => return Err(format!("snapshot did not start: {other:?}").into()),
        };
        // The lease lives in the record: what it adds is the record's growth.
        let lease = admin
            .memory_usage(&keys.record)
            .await?
            .saturating_sub(record);
        let fence = t.fence();
        t.succeed().await?;
        let outcomes = admin
            .memory_usage(&format!("{}out:{id}:{fence}", keys.team.prefix))
            .await?;
        let record_after = admin.memory_usage(&keys.record).await?;
        let members: u64 = admin
            .cmd(redis::cmd("ZCARD").arg(keys.team.expiry()))
            .await?;
        let expiry = admin.memory_usage(&keys.team.expiry()).await?;
        Ok(KeySizes {
            record,
            record_after,
            encoding,
            lease,
            outcomes,
            expiry_per_member: expiry as f64 / members.max(1) as f64,
        })
    }
}
