//! The ceiling: what Redis and this client can do at all. A trivial script
//! (`return 1`) sent with `EVALSHA` on the same kind of connection as the
//! other sides, at the same concurrency. One transition is two script calls
//! (`begin`, `succeed`), so half this rate is the ceiling for transitions.
//! (`return 1`, not a script doing a read and a write: the ceiling is what
//! the client, the network and Redis's command path allow, with no script
//! work; the minimal pair, `minimal.rs`, is the floor of the work itself.)
//!
//! Its sequential latency at concurrency 1 is the round-trip time the
//! latency target is stated against; `PING`'s is reported beside it.

use std::sync::Arc;
use std::time::Duration;

use crate::conns::{Conns, Strategy};
use crate::load::{self, Run};
use crate::result::Result;
use crate::server::Admin;

pub const TRIVIAL: &str = "return 1";

/// Connections and the loaded trivial script.
pub struct Limit {
    conns: Conns,
    sha: String,
}

impl Limit {
    pub async fn new(url: &str, strategy: Strategy, concurrency: usize) -> Result<Limit> {
        let conns = Conns::new(url, strategy, concurrency).await?;
        let sha = conns.load(TRIVIAL).await?;
        Ok(Limit { conns, sha })
    }

    /// One trivial `EVALSHA` round trip.
    pub async fn call(&self) -> Result<()> {
        match self
            .conns
            .query(redis::cmd("EVALSHA").arg(&self.sha).arg(0))
            .await?
        {
            redis::Value::Int(1) => Ok(()),
            other => Err(format!("trivial script replied {other:?}").into()),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        self.conns.query(&redis::cmd("PING")).await.map(|_| ())
    }

    /// Raw `EVALSHA` calls per second at `concurrency`.
    pub async fn throughput(
        self: &Arc<Self>,
        admin: &Admin,
        concurrency: usize,
        warmup: Duration,
        window: Duration,
    ) -> Result<Run> {
        let me = Arc::clone(self);
        load::closed_loop(admin, concurrency, warmup, window, move |_, _| {
            let me = Arc::clone(&me);
            async move { me.call().await }
        })
        .await
    }
}
