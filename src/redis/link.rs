//! The command connections of one coordinator and how a command rides
//! them ([`Link::query`]; scripts go through `eval`, `SCAN` through `scan`).
//!
//! On a single server the commands ride `N` multiplexed connections, round
//! robin (one by default: redis-rs pipelines concurrent requests on it, one
//! write per batch), or a deadpool of them ([`Connections::Pooled`]) with a
//! manager of our own: deadpool-redis's recycles a connection with a `PING`
//! round trip on every checkout, ours recycles without one (a failure
//! retires the connection instead). A connection is retired — replaced on
//! its next use — after a transport failure or `READONLY`/`LOADING` (a
//! failover behind a DNS name or VIP leaves old TCP connections open to the
//! demoted node) — all of them then, since the cause is the server's — or
//! after a response timeout on it (that connection only: a late reply could
//! otherwise be matched to the next request; the others stay, so a slow
//! Redis does not set off a reconnect storm). On a Cluster the redis-rs
//! cluster connection routes by slot, follows `MOVED`/`ASK` and refreshes
//! its slot map itself.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, RedisError, ServerErrorKind, Value};

use crate::error::{Error, to_error};
use crate::redis::target::{Connections, LinkSettings, Target, cluster_client, single_client};

/// Whether `e` means the connection must be replaced: it is broken, or it
/// talks to a node that is no longer (or not yet) a usable primary.
fn retires(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::BusyLoading)
        )
        || matches!(e.code(), Some("READONLY" | "LOADING"))
}

/// Whether a reply says the node is not (or not yet) a usable primary.
fn demoted(v: &Value) -> bool {
    match v {
        Value::ServerError(e) => {
            matches!(
                e.kind(),
                Some(ServerErrorKind::ReadOnly | ServerErrorKind::BusyLoading)
            ) || matches!(e.code(), "READONLY" | "LOADING")
        }
        _ => false,
    }
}

/// Which connection a call rides: any (the next, round robin; the
/// default), or one picked before (so that a follow-up — a cancelled
/// begin's undo — rides the same one and Redis runs it after the call).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route(Option<usize>);

/// One slot of the multiplexed strategy: the connection, if up.
struct Slot {
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
}

struct Multiplexed {
    client: redis::Client,
    config: AsyncConnectionConfig,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

/// The pooled strategy's manager: connections are created from our client
/// (so TLS and credentials apply) and recycled without a round trip; a
/// failure retires its own connection (and, for a broken transport, every
/// older one: the server restarted or the network broke).
struct PoolManager {
    client: redis::Client,
    config: AsyncConnectionConfig,
    generation: Arc<AtomicU64>,
}

struct PoolLink {
    conn: MultiplexedConnection,
    generation: u64,
    broken: bool,
}

impl Manager for PoolManager {
    type Type = PoolLink;
    type Error = RedisError;

    async fn create(&self) -> Result<PoolLink, RedisError> {
        let generation = self.generation.load(Ordering::Acquire);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(PoolLink {
            conn,
            generation,
            broken: false,
        })
    }

    async fn recycle(&self, link: &mut PoolLink, _: &Metrics) -> RecycleResult<RedisError> {
        if link.broken || link.generation < self.generation.load(Ordering::Acquire) {
            Err(RecycleError::message("retired"))
        } else {
            Ok(())
        }
    }
}

// One per coordinator, behind an Arc: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Conns {
    Multiplexed(Multiplexed),
    Pooled {
        pool: managed::Pool<PoolManager>,
        generation: Arc<AtomicU64>,
    },
    Cluster(ClusterConnection),
}

/// The command connections of one coordinator. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Link {
    conns: Arc<Conns>,
    pub(super) settings: LinkSettings,
    target: Arc<Target>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Link {
    /// Connects (eagerly, so that a wrong address, certificate or password
    /// is reported by `build()`).
    pub(crate) async fn connect(target: Target, settings: LinkSettings) -> Result<Link, Error> {
        if target.nodes.is_empty() {
            return Err(Error::InvalidInput {
                what: "redis url",
                value: String::new(),
                why: "no node given".into(),
            });
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        let conns = if target.cluster {
            let client = cluster_client(&target, &settings, None)?;
            let conn = bounded(
                settings
                    .connect_timeout
                    .saturating_add(settings.response_timeout),
                client.get_async_connection(),
            )
            .await?;
            Conns::Cluster(conn)
        } else {
            let client = single_client(&target, &target.nodes[0])?;
            match settings.connections {
                Connections::Multiplexed(n) => Conns::Multiplexed(Multiplexed {
                    client,
                    config,
                    slots: (0..n.max(1))
                        .map(|_| Slot {
                            conn: Mutex::new(None),
                            connecting: tokio::sync::Mutex::new(()),
                        })
                        .collect(),
                    next: AtomicUsize::new(0),
                }),
                Connections::Pooled(n) => {
                    let generation = Arc::new(AtomicU64::new(0));
                    let pool = managed::Pool::builder(PoolManager {
                        client,
                        config,
                        generation: Arc::clone(&generation),
                    })
                    .max_size(n.max(1))
                    .wait_timeout(Some(
                        settings
                            .connect_timeout
                            .saturating_add(settings.response_timeout),
                    ))
                    .create_timeout(Some(settings.connect_timeout))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| Error::Pool(e.to_string()))?;
                    Conns::Pooled { pool, generation }
                }
            }
        };
        let link = Link {
            conns: Arc::new(conns),
            settings,
            target: Arc::new(target),
        };
        link.query(&redis::cmd("PING"), Route::default()).await?;
        Ok(link)
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// The cluster connection, on a Redis Cluster.
    pub(super) fn cluster(&self) -> Option<&ClusterConnection> {
        match &*self.conns {
            Conns::Cluster(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(*self.conns, Conns::Cluster(_))
    }

    /// The connection the next call should use.
    pub(crate) fn pick(&self) -> Route {
        match &*self.conns {
            Conns::Multiplexed(m) => {
                Route(Some(m.next.fetch_add(1, Ordering::Relaxed) % m.slots.len()))
            }
            _ => Route(None),
        }
    }

    /// Sends one command (or a pipeline, `cmds.len() > 1`) and returns the
    /// replies, on the connection `route` names.
    pub(super) async fn send(
        &self,
        cmds: &redis::Pipeline,
        route: Route,
    ) -> Result<Vec<Value>, Error> {
        let count = cmds.len();
        match &*self.conns {
            Conns::Multiplexed(m) => {
                let at = route
                    .0
                    .unwrap_or_else(|| m.next.fetch_add(1, Ordering::Relaxed));
                let slot = &m.slots[at % m.slots.len()];
                // The connect path is boxed: awaited inline, its future
                // (several KB) would be moved with every call's.
                let mut conn = match cached(slot) {
                    Some(conn) => conn,
                    None => Box::pin(self.slot_conn(m, slot)).await?,
                };
                let result = conn.req_packed_commands(cmds, 0, count).await;
                match &result {
                    // A pipeline's server errors come back as values.
                    Ok(values) if values.iter().any(demoted) => {
                        m.slots.iter().for_each(retire_slot)
                    }
                    Ok(_) => {}
                    // A reply that did not come in time may still come: the
                    // connection's replies can no longer be matched to its
                    // requests. This connection only is replaced.
                    Err(e) if e.is_timeout() => retire_slot(slot),
                    // A broken transport or a demoted node concerns the
                    // server, not this connection: every connection to it is
                    // replaced on its next use (one error, not one per
                    // connection). A timeout concerns only this one.
                    Err(e) if retires(e) => m.slots.iter().for_each(retire_slot),
                    Err(_) => {}
                }
                result.map_err(to_error)
            }
            Conns::Pooled { pool, generation } => {
                // (Boxed for the same reason: the checkout's future is
                // 6.5 KB, and Multiplexed calls would carry it too.)
                let mut link = Box::pin(pool.get()).await.map_err(|e| match e {
                    managed::PoolError::Backend(e) => to_error(e),
                    other => Error::Pool(other.to_string()),
                })?;
                let result = link.conn.req_packed_commands(cmds, 0, count).await;
                if let Ok(values) = &result
                    && values.iter().any(demoted)
                {
                    generation.fetch_max(link.generation + 1, Ordering::AcqRel);
                    link.broken = true;
                }
                if let Err(e) = &result {
                    if e.is_io_error() || e.is_connection_dropped() {
                        generation.fetch_max(link.generation + 1, Ordering::AcqRel);
                    }
                    if retires(e) || e.is_timeout() {
                        link.broken = true;
                    }
                }
                result.map_err(to_error)
            }
            Conns::Cluster(c) => {
                let mut conn = c.clone();
                if count == 1 {
                    let cmd = cmds.cmd_iter().next().cloned().unwrap_or_else(Cmd::new);
                    conn.req_packed_command(&cmd)
                        .await
                        .map(|v| vec![v])
                        .map_err(to_error)
                } else {
                    conn.req_packed_commands(cmds, 0, count)
                        .await
                        .map_err(to_error)
                }
            }
        }
    }

    /// The slot's connection, connecting it first when it has none.
    async fn slot_conn(
        &self,
        m: &Multiplexed,
        slot: &Slot,
    ) -> Result<MultiplexedConnection, Error> {
        if let Some(conn) = cached(slot) {
            return Ok(conn);
        }
        // One connect per slot at a time: the others wait for it.
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = cached(slot) {
            return Ok(conn);
        }
        let conn = bounded(
            self.settings
                .connect_timeout
                .saturating_add(self.settings.response_timeout),
            m.client
                .get_multiplexed_async_connection_with_config(&m.config),
        )
        .await?;
        *slot.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Sends a pipeline; a command's server error is its reply (a
    /// `Value::ServerError`), for the caller to read.
    pub(crate) async fn pipeline(
        &self,
        cmds: &redis::Pipeline,
        route: Route,
    ) -> Result<Vec<Value>, Error> {
        self.send(cmds, route).await
    }

    /// Sends one command.
    pub(crate) async fn query(&self, cmd: &Cmd, route: Route) -> Result<Value, Error> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        let mut replies = self.send(&pipe, route).await?;
        match replies.pop().unwrap_or(Value::Nil) {
            Value::ServerError(e) => Err(to_error(e.into())),
            v => Ok(v),
        }
    }
}

fn retire_slot(slot: &Slot) {
    *slot.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// The slot's connection, if it has one.
fn cached(slot: &Slot) -> Option<MultiplexedConnection> {
    slot.conn
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Bounds a connect: plaintext to a TLS port, a blackholed address or a
/// stalled handshake fail instead of hanging.
async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(to_error),
        Err(_) => Err(to_error(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting took longer than {limit:?}"),
        )))),
    }
}
