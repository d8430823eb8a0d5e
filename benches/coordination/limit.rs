//! The limit: what Redis and this client can do at all. A trivial script
//! (`return 1`) sent with `EVALSHA` through the same kind of pool as the
//! library's, at the same concurrency. One transition is two script calls
//! (`begin`, `succeed`), so half this rate is the ceiling for transitions.
//!
//! Its sequential latency at concurrency 1 is the round-trip time the
//! latency target is stated against; `PING`'s is reported beside it.

use std::time::Duration;

use crate::Result;
use crate::load::{self, Pool, Run};
use crate::server::Admin;

const TRIVIAL: &str = "return 1";

/// A pool of `size` connections and the loaded trivial script.
pub struct Limit {
    pool: Pool,
    sha: String,
}

impl Limit {
    pub async fn new(url: &str, size: usize) -> Result<Limit> {
        let pool = Pool::new(url, size)?;
        let sha: String = redis::FromRedisValue::from_redis_value(
            pool.query(redis::cmd("SCRIPT").arg("LOAD").arg(TRIVIAL))
                .await?,
        )?;
        Ok(Limit { pool, sha })
    }

    /// One trivial `EVALSHA` round trip.
    pub async fn call(&self) -> Result<()> {
        match self
            .pool
            .query(redis::cmd("EVALSHA").arg(&self.sha).arg(0))
            .await?
        {
            redis::Value::Int(1) => Ok(()),
            other => Err(format!("trivial script replied {other:?}").into()),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        self.pool.query(&redis::cmd("PING")).await.map(|_| ())
    }

    /// Raw `EVALSHA` calls per second at `concurrency` (the pool must have
    /// at least that many connections).
    pub async fn throughput(
        self: &std::sync::Arc<Self>,
        admin: &Admin,
        concurrency: usize,
        warmup: Duration,
        window: Duration,
    ) -> Result<Run> {
        let me = std::sync::Arc::clone(self);
        load::closed_loop(admin, concurrency, warmup, window, move |_, _| {
            let me = std::sync::Arc::clone(&me);
            async move { me.call().await }
        })
        .await
    }
}
