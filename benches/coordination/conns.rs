//! How commands reach Redis, for every side alike: the strategies the
//! library offers (`Connections::Multiplexed(n)`, `Connections::Pooled(n)`)
//! and the same strategies re-built here for the sides that are not the
//! library (ceiling, minimal pair, reference protocol), so a comparison
//! "on the same connection" really is one.
//!
//! - `Multiplexed(1)`: one shared multiplexed connection; redis-rs
//!   pipelines the concurrent requests on it (one write per batch). The
//!   library's default.
//! - `Multiplexed(n)`: `n` such connections, used round robin.
//! - `Pooled(n)`: a deadpool of up to `n` multiplexed connections, one
//!   checked out per command and recycled without a round trip (the
//!   library's pool does the same; deadpool-redis's stock manager would add
//!   `UNWATCH` + `PING` per checkout).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};
use sandbox_coordinator::Connections;

use crate::result::Result;

/// A connection strategy, as the library names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `n` multiplexed connections, round robin.
    Multiplexed(usize),
    /// A deadpool of as many multiplexed connections as there are
    /// concurrent tasks.
    Pooled,
}

impl Strategy {
    /// The library's setting for `concurrency` tasks.
    pub fn connections(self, concurrency: usize) -> Connections {
        match self {
            Strategy::Multiplexed(n) => Connections::Multiplexed(n),
            Strategy::Pooled => Connections::Pooled(concurrency.max(1)),
        }
    }

    /// "Multiplexed(1)", "Pooled(64)".
    pub fn label(self, concurrency: usize) -> String {
        match self {
            Strategy::Multiplexed(n) => format!("Multiplexed({n})"),
            Strategy::Pooled => format!("Pooled({})", concurrency.max(1)),
        }
    }

    /// The library's default.
    pub const DEFAULT: Strategy = Strategy::Multiplexed(1);
}

/// Creates multiplexed connections; recycles them without a round trip.
struct LinkManager {
    client: redis::Client,
    config: AsyncConnectionConfig,
}

impl Manager for LinkManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> std::result::Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    async fn recycle(
        &self,
        _: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

enum Inner {
    Multiplexed {
        conns: Vec<MultiplexedConnection>,
        next: AtomicUsize,
    },
    Pooled(managed::Pool<LinkManager>),
}

/// The bench's own client, with one [`Strategy`]. Cheap to clone.
#[derive(Clone)]
pub struct Conns {
    inner: Arc<Inner>,
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}

impl Conns {
    /// Connects (multiplexed: eagerly, every connection) for `concurrency`
    /// tasks.
    pub async fn new(url: &str, strategy: Strategy, concurrency: usize) -> Result<Conns> {
        let client = redis::Client::open(url)?;
        let inner = match strategy {
            Strategy::Multiplexed(n) => {
                let mut conns = Vec::with_capacity(n.max(1));
                for _ in 0..n.max(1) {
                    conns.push(
                        client
                            .get_multiplexed_async_connection_with_config(&config())
                            .await?,
                    );
                }
                Inner::Multiplexed {
                    conns,
                    next: AtomicUsize::new(0),
                }
            }
            Strategy::Pooled => Inner::Pooled(
                managed::Pool::builder(LinkManager {
                    client,
                    config: config(),
                })
                .max_size(concurrency.max(1))
                .wait_timeout(Some(Duration::from_secs(12)))
                .runtime(deadpool::Runtime::Tokio1)
                .build()?,
            ),
        };
        Ok(Conns {
            inner: Arc::new(inner),
        })
    }

    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value> {
        match &*self.inner {
            Inner::Multiplexed { conns, next } => {
                let mut conn = conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone();
                Ok(cmd.query_async::<Value>(&mut conn).await?)
            }
            Inner::Pooled(pool) => {
                let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
                Ok(cmd.query_async::<Value>(&mut *conn).await?)
            }
        }
    }

    /// Sends a pipeline whose replies are all ignored.
    pub async fn query_pipe(&self, pipe: &redis::Pipeline) -> Result<()> {
        match &*self.inner {
            Inner::Multiplexed { conns, next } => {
                let mut conn = conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone();
                pipe.query_async::<()>(&mut conn).await?;
            }
            Inner::Pooled(pool) => {
                let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
                pipe.query_async::<()>(&mut *conn).await?;
            }
        }
        Ok(())
    }

    /// `SCRIPT LOAD`, returning the SHA.
    pub async fn load(&self, source: &str) -> Result<String> {
        let v = self
            .query(redis::cmd("SCRIPT").arg("LOAD").arg(source))
            .await?;
        Ok(redis::FromRedisValue::from_redis_value(v)?)
    }
}

/// A script reply's field `i` as text (redis-rs's `FromRedisValue`).
pub fn text(v: &Value, i: usize) -> Option<String> {
    let Value::Array(items) = v else { return None };
    redis::from_redis_value_ref(items.get(i)?).ok()
}
