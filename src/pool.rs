//! Command connections: a deadpool pool of multiplexed Redis connections.
//!
//! The stock deadpool-redis manager sends `UNWATCH` + `PING` on every
//! checkout; on our hot path (one `EVALSHA` per call) that would triple the
//! round trips. This manager creates connections with deadpool-redis and
//! recycles them for free: a connection is dropped from the pool only after
//! a call on it failed at the transport level. Everything that talks to
//! Redis goes through [`Pool::query`], so a cluster connection can later
//! slot in here without touching the coordinator's logic.

use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, RecycleError, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, RedisError, Value};

use crate::error::Error;

/// One pooled connection, marked broken after a transport error.
pub(crate) struct Link {
    conn: MultiplexedConnection,
    broken: bool,
}

struct LinkManager {
    create: deadpool_redis::Manager,
}

impl Manager for LinkManager {
    type Type = Link;
    type Error = RedisError;

    async fn create(&self) -> Result<Link, RedisError> {
        let conn = self.create.create().await?;
        Ok(Link {
            conn,
            broken: false,
        })
    }

    async fn recycle(&self, link: &mut Link, _: &Metrics) -> RecycleResult<RedisError> {
        // No round trip: a healthy multiplexed connection stays healthy
        // until a call on it fails, and such a call marks it.
        if link.broken {
            Err(RecycleError::message("connection failed earlier"))
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
        let pool = managed::Pool::builder(LinkManager { create })
            .max_size(settings.size)
            .wait_timeout(Some(settings.connect_timeout + settings.response_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        Ok(Pool { pool, client })
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
                    link.broken = true;
                }
                Err(Error::Redis(e))
            }
        }
    }
}
