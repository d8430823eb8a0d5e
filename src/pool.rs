//! Command connections: a deadpool pool of multiplexed Redis connections.
//!
//! The stock deadpool-redis manager sends `UNWATCH` + `PING` on every
//! checkout; on our hot path (one `EVALSHA` per call) that would triple the
//! round trips. This manager creates connections with deadpool-redis and
//! recycles them for free. Health is learned from real calls instead: a
//! transport failure on one connection usually means the server restarted
//! or the network broke, so it retires that connection *and every
//! connection created before it* (a generation counter), and the next
//! checkout connects afresh instead of trying each dead one in turn. Everything that talks to
//! Redis goes through [`Pool::query`], so a cluster connection can later
//! slot in here without touching the coordinator's logic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, RecycleError, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, RedisError, Value};

use crate::error::Error;

/// One pooled connection, marked broken after a transport error.
pub(crate) struct Link {
    conn: MultiplexedConnection,
    generation: u64,
}

struct LinkManager {
    create: deadpool_redis::Manager,
    /// Connections of an older generation than this are retired.
    generation: Arc<AtomicU64>,
}

impl Manager for LinkManager {
    type Type = Link;
    type Error = RedisError;

    async fn create(&self) -> Result<Link, RedisError> {
        let generation = self.generation.load(Ordering::Acquire);
        let conn = self.create.create().await?;
        Ok(Link { conn, generation })
    }

    async fn recycle(&self, link: &mut Link, _: &Metrics) -> RecycleResult<RedisError> {
        // No round trip: a connection is retired only when a real call on
        // it, or on a younger one, failed at the transport level.
        if link.generation < self.generation.load(Ordering::Acquire) {
            Err(RecycleError::message("retired after a transport failure"))
        } else {
            Ok(())
        }
    }
}

/// The command connections of one coordinator.
#[derive(Clone)]
pub(crate) struct Pool {
    pool: managed::Pool<LinkManager>,
    client: redis::Client,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// Timeouts and size of the command pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub size: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(url: &str, settings: PoolSettings) -> Result<Pool, Error> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        let create = deadpool_redis::Manager::new_with_config(url, config)?;
        let client = redis::Client::open(url)?;
        let generation = Arc::new(AtomicU64::new(0));
        let manager = LinkManager {
            create,
            generation: Arc::clone(&generation),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(settings.size)
            .wait_timeout(Some(settings.connect_timeout + settings.response_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        Ok(Pool {
            pool,
            client,
            generation,
        })
    }

    /// The client, for the dedicated notification connection.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Sends one command on a pooled connection.
    pub(crate) async fn query(&self, cmd: &Cmd) -> Result<Value, Error> {
        let mut link = self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => Error::Redis(e),
            other => Error::Pool(other.to_string()),
        })?;
        match cmd.query_async::<Value>(&mut link.conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    // Retire this connection and all older ones.
                    self.generation
                        .fetch_max(link.generation + 1, Ordering::AcqRel);
                }
                Err(Error::Redis(e))
            }
        }
    }
}
