//! MINIMAL PAIR — BENCH ONLY, NOT THIS LIBRARY, AND NOT A DESIGN.
//!
//! The floor of a transition with the library's guarantees: a begin and a
//! finish script doing only the essential Redis work (`lua/minimal_*.lua`,
//! whose headers say what each does and what it leaves out). The Redis time
//! and instructions of the library's scripts are judged against these: what
//! the library spends beyond them is the price of its validation, queueing,
//! indexes and refusals.
//!
//! begin  = `HMGET` of the decision fields + `TIME` + rule lookup + `INCR`
//!          of the team's fence + one `HSET` (state, fence, lease deadline,
//!          holder, start)
//! finish = `HMGET` + `TIME` + fence-and-deadline check + one `HSET` +
//!          `SET` of the outcome with a TTL + `PUBLISH`
//!
//! Records are seeded with the library's v2 layout (`scale::seed_pipe`), so
//! the hashes the scripts read and write have the production sizes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sandbox_coordinator::keys::Namespace;

use crate::conns::{Conns, Strategy, text};
use crate::load::{self, Run};
use crate::ours::Fleet;
use crate::result::Result;
use crate::server::Admin;

pub const BEGIN: &str = include_str!("lua/minimal_begin.lua");
pub const FINISH: &str = include_str!("lua/minimal_finish.lua");

/// Lease of a minimal begin, ms (the library's default lease).
const LEASE_MS: &str = "30000";
/// Outcome retention, ms (the library's default).
const OUTCOME_MS: &str = "600000";

/// The minimal pair on one set of connections.
pub struct Minimal {
    conns: Conns,
    ns: Namespace,
    begin_sha: String,
    finish_sha: String,
    holders: AtomicU64,
}

impl Minimal {
    pub async fn new(
        url: &str,
        strategy: Strategy,
        concurrency: usize,
        ns: &str,
    ) -> Result<Minimal> {
        let conns = Conns::new(url, strategy, concurrency).await?;
        Ok(Minimal {
            begin_sha: conns.load(BEGIN).await?,
            finish_sha: conns.load(FINISH).await?,
            conns,
            ns: Namespace::new(ns)?,
            holders: AtomicU64::new(0),
        })
    }

    /// Seeds the fleet's records (v2 layout, as `register.lua` writes them).
    pub async fn seed(&self, fleet: &Fleet) -> Result<()> {
        for chunk in fleet.numbers().chunks(1000) {
            let pipe = crate::scale::seed_pipe(&self.ns, chunk, fleet.teams())?;
            self.conns.query_pipe(&pipe).await?;
        }
        Ok(())
    }

    /// One uncontended transition: minimal begin, then minimal finish.
    pub async fn transition(&self, team: &str, id: &str) -> Result<()> {
        let keys = self.ns.sandbox(team, id)?;
        let holder = format!("bench/{}", self.holders.fetch_add(1, Ordering::Relaxed));
        let begun = self
            .conns
            .query(
                redis::cmd("EVALSHA")
                    .arg(&self.begin_sha)
                    .arg(2)
                    .arg(&keys.record)
                    .arg(keys.team.fence())
                    .arg(&holder)
                    .arg(LEASE_MS),
            )
            .await?;
        if text(&begun, 0).as_deref() != Some("started") {
            return Err(format!("minimal begin of {team}/{id}: {begun:?}").into());
        }
        let fence = text(&begun, 1).unwrap_or_default();
        let finished = self
            .conns
            .query(
                redis::cmd("EVALSHA")
                    .arg(&self.finish_sha)
                    .arg(2)
                    .arg(&keys.record)
                    .arg(format!("{}out:{id}:{fence}", keys.team.prefix))
                    .arg(&fence)
                    .arg(&holder)
                    .arg("succeeded")
                    .arg(keys.team.channel())
                    .arg(id)
                    .arg(OUTCOME_MS),
            )
            .await?;
        if text(&finished, 0).as_deref() != Some("finished") {
            return Err(format!("minimal finish of {team}/{id}: {finished:?}").into());
        }
        Ok(())
    }

    /// Transitions per second at `concurrency` over `fleet`.
    pub async fn throughput(
        self: &Arc<Self>,
        fleet: &Fleet,
        admin: &Admin,
        concurrency: usize,
        warmup: Duration,
        window: Duration,
    ) -> Result<Run> {
        let (me, fleet) = (Arc::clone(self), fleet.clone());
        load::closed_loop(admin, concurrency, warmup, window, move |w, i| {
            let (me, fleet) = (Arc::clone(&me), fleet.clone());
            async move {
                let (team, id) = fleet.pick(w, concurrency, i);
                me.transition(team, id).await
            }
        })
        .await
    }
}
