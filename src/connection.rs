//! Connections to Redis: a single server (its replicas do not matter here)
//! or a Redis Cluster; TLS (rustls, a private CA, mutual TLS); credentials
//! that never reach `Debug` or logs; the script call with its `NOSCRIPT`
//! reload and its optional `WAIT`; and the classes of errors.
//!
//! On a single server the commands ride `N` multiplexed connections, round
//! robin (one by default: redis-rs pipelines concurrent requests on it, one
//! write per batch), or a deadpool of them ([`Connections::Pooled`]). A
//! connection is retired — replaced on its next use — after a transport
//! failure or `READONLY`/`LOADING` (a failover behind a DNS name or VIP
//! leaves old TCP connections open to the demoted node) — all of them then,
//! since the cause is the server's — or after a response timeout on it
//! (that connection only: a late reply could otherwise be matched to the
//! next request; the others stay, so a slow Redis does not set off a
//! reconnect storm). On a Cluster the redis-rs
//! cluster connection routes by slot, follows `MOVED`/`ASK` and refreshes
//! its slot map itself.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind,
    TlsCertificates, Value,
};

use crate::error::Error;
use crate::redact::redact_url;
use crate::scripts::Script;

/// How commands reach a single server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// `n` multiplexed connections, used round robin (default: 1, which
    /// measured fastest; see docs/BENCHMARKS.md).
    Multiplexed(usize),
    /// A deadpool of up to `n` multiplexed connections, one checked out per
    /// call (no round trip per checkout).
    Pooled(usize),
}

/// Where Redis is and how to talk to it. Credentials are kept here and
/// never printed: `Debug` shows the addresses with the password redacted.
#[derive(Clone, Default)]
pub(crate) struct Target {
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub root_cert: Option<Vec<u8>>,
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("tls_root_certificate", &self.root_cert.is_some())
            .field("tls_client_certificate", &self.client_cert.is_some())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Timeouts and shape of the connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkSettings {
    pub connections: Connections,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// `WAIT n timeout` after every write script.
    pub wait: Option<(usize, Duration)>,
}

/// Whether `e` is transient: the same call may succeed later. Transport
/// failures, and the answers of a server in failover or resharding.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
    {
        return true;
    }
    if matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        )
    ) {
        return true;
    }
    matches!(
        e.code(),
        Some("BUSY" | "READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
    )
}

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

/// A short name for the kind of a Redis error, for metrics.
pub(crate) fn error_kind(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "refused"
    } else if e.is_io_error() || e.is_connection_dropped() {
        "io"
    } else {
        match e.code() {
            Some("READONLY") => "readonly",
            Some("LOADING") => "loading",
            Some("MASTERDOWN") => "masterdown",
            Some("TRYAGAIN") => "tryagain",
            Some("CLUSTERDOWN") => "clusterdown",
            Some("MOVED") | Some("ASK") => "moved",
            Some("BUSY") => "busy",
            Some("NOPERM") => "noperm",
            Some("NOSCRIPT") => "noscript",
            _ => "other",
        }
    }
}

/// Maps a Redis error to the crate's error: `NOPERM` gets its own variant
/// naming what was refused.
pub(crate) fn to_error(e: RedisError) -> Error {
    let text = e.to_string();
    // Inside a script, Redis 7.0 says "The user executing the script can't
    // run this command or subcommand" and Valkey "ACL failure in script",
    // both under ERR.
    if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoPerm))
        || e.code() == Some("NOPERM")
        || text.contains("The user executing the script can't run")
        || text.contains("ACL failure in script")
        || text.contains("No permissions to access")
    {
        return Error::NoPermission {
            detail: e.detail().map_or_else(|| e.to_string(), str::to_string),
        };
    }
    metrics::counter!(crate::metrics::REDIS_ERRORS, "kind" => error_kind(&e)).increment(1);
    Error::Redis(e)
}

/// How a write was replicated (with `wait_for_replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replication {
    /// Not asked for, or acknowledged by enough replicas.
    Enough,
    /// Acknowledged by fewer replicas than asked.
    Short { acked: usize, wanted: usize },
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
    settings: LinkSettings,
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

fn tls_certificates(target: &Target) -> TlsCertificates {
    TlsCertificates {
        client_tls: target
            .client_cert
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: target.root_cert.clone(),
    }
}

/// Installs rustls' ring provider as the process default unless the
/// application already chose one (redis-rs builds its TLS configs from it).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn connection_info(target: &Target, url: &str) -> Result<redis::ConnectionInfo, Error> {
    let info = url
        .into_connection_info()
        .map_err(|e| Error::InvalidInput {
            what: "redis url",
            value: redact_url(url),
            why: e.to_string(),
        })?;
    let mut redis = info.redis_settings().clone();
    if let Some(user) = &target.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &target.password {
        redis = redis.set_password(password);
    }
    Ok(info.set_redis_settings(redis))
}

/// A client for one server with the target's TLS and credentials.
pub(crate) fn single_client(target: &Target, url: &str) -> Result<redis::Client, Error> {
    let info = connection_info(target, url)?;
    let tls = url.starts_with("rediss://");
    if tls {
        ensure_crypto_provider();
    }
    if tls && (target.root_cert.is_some() || target.client_cert.is_some()) {
        redis::Client::build_with_tls(info, tls_certificates(target)).map_err(to_error)
    } else {
        redis::Client::open(info).map_err(to_error)
    }
}

/// A cluster client with the target's TLS and credentials.
pub(crate) fn cluster_client(
    target: &Target,
    settings: &LinkSettings,
    push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
) -> Result<redis::cluster::ClusterClient, Error> {
    let mut infos = Vec::with_capacity(target.nodes.len());
    for node in &target.nodes {
        infos.push(connection_info(target, node)?);
    }
    let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        .retries(8);
    if target.nodes.iter().any(|n| n.starts_with("rediss://")) {
        ensure_crypto_provider();
        builder = builder.tls(redis::cluster::TlsMode::Secure);
        if target.root_cert.is_some() || target.client_cert.is_some() {
            builder = builder.certs(tls_certificates(target));
        }
    }
    if let Some(tx) = push {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx);
    }
    builder.build().map_err(to_error)
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
    async fn send(&self, cmds: &redis::Pipeline, route: Route) -> Result<Vec<Value>, Error> {
        let count = cmds.len();
        match &*self.conns {
            Conns::Multiplexed(m) => {
                let at = route
                    .0
                    .unwrap_or_else(|| m.next.fetch_add(1, Ordering::Relaxed));
                let slot = &m.slots[at % m.slots.len()];
                let mut conn = self.slot_conn(m, slot).await?;
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
                let mut link = pool.get().await.map_err(|e| match e {
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

    async fn slot_conn(
        &self,
        m: &Multiplexed,
        slot: &Slot,
    ) -> Result<MultiplexedConnection, Error> {
        if let Some(conn) = slot
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(conn);
        }
        // One connect per slot at a time: the others wait for it.
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = slot
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
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

    /// Runs `script`: one `EVALSHA` (with `WAIT` in the same round trip for
    /// a write, if `wait_for_replicas` is set), plus one `EVAL` only if the
    /// server lost its script cache (restart, failover, `SCRIPT FLUSH`).
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        write: bool,
        route: Route,
    ) -> Result<(Value, Replication), Error> {
        match self
            .run_as("EVALSHA", script, keys, args, write, route)
            .await
        {
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!(script = script.name(), "NOSCRIPT: sending the source");
                metrics::counter!(crate::metrics::RELOADS).increment(1);
                self.run_as("EVAL", script, keys, args, write, route).await
            }
            other => other,
        }
    }

    async fn run_as(
        &self,
        how: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        write: bool,
        route: Route,
    ) -> Result<(Value, Replication), Error> {
        let mut pipe = redis::pipe();
        let body = if how == "EVAL" {
            script.source()
        } else {
            script.sha()
        };
        pipe.cmd(how).arg(body).arg(keys.len()).arg(keys).arg(args);
        let wait = self.settings.wait.filter(|_| write);
        if let Some((n, timeout)) = wait {
            pipe.cmd("WAIT").arg(n).arg(timeout.as_millis() as u64);
        }
        let mut replies = self.send(&pipe, route).await?.into_iter();
        let value = replies.next().unwrap_or(Value::Nil);
        if let Value::ServerError(e) = value {
            return Err(to_error(e.into()));
        }
        let replication = match (wait, replies.next()) {
            (Some((wanted, _)), Some(Value::Int(acked))) if (acked as usize) < wanted => {
                Replication::Short {
                    acked: acked.max(0) as usize,
                    wanted,
                }
            }
            _ => Replication::Enough,
        };
        Ok((value, replication))
    }

    /// Loads every script into the cache of every primary (`SCRIPT LOAD`)
    /// and checks that the server computed the same SHA1.
    pub(crate) async fn load(&self, scripts: &[&Script]) -> Result<(), Error> {
        for script in scripts {
            let value = self
                .query(
                    redis::cmd("SCRIPT").arg("LOAD").arg(script.source()),
                    Route::default(),
                )
                .await?;
            let sha = match value {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::SimpleString(s) => s,
                other => format!("{other:?}"),
            };
            if sha != script.sha() {
                return Err(Error::Corrupt {
                    detail: format!(
                        "SCRIPT LOAD of {} returned {sha}, expected {}",
                        script.name(),
                        script.sha()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Link {
    /// Every key matching `pattern`, with `SCAN` on every primary (for the
    /// operator tools: repair and migrate; never on a request path).
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        match &*self.conns {
            Conns::Cluster(c) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let mut conn = c.clone();
                let slots = conn
                    .req_packed_command(&redis::cmd("CLUSTER").arg("SLOTS").clone())
                    .await
                    .map_err(to_error)?;
                let mut primaries: Vec<(String, u16)> = Vec::new();
                if let Value::Array(ranges) = slots {
                    for range in ranges {
                        if let Value::Array(parts) = range
                            && let Some(Value::Array(node)) = parts.get(2)
                        {
                            let host = node.first().map(value_text).unwrap_or_default();
                            let port = match node.get(1) {
                                Some(Value::Int(p)) => *p as u16,
                                _ => continue,
                            };
                            if !primaries.contains(&(host.clone(), port)) {
                                primaries.push((host, port));
                            }
                        }
                    }
                }
                for (host, port) in primaries {
                    let mut cursor = 0u64;
                    loop {
                        let mut cmd = redis::cmd("SCAN");
                        cmd.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000);
                        let reply = conn
                            .route_command(
                                cmd,
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host: host.clone(),
                                    port,
                                }),
                            )
                            .await
                            .map_err(to_error)?;
                        cursor = scan_page(reply, &mut keys);
                        if cursor == 0 {
                            break;
                        }
                    }
                }
            }
            _ => {
                let mut cursor = 0u64;
                loop {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000);
                    let reply = self.query(&cmd, Route::default()).await?;
                    cursor = scan_page(reply, &mut keys);
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Adds a SCAN reply's keys to `keys`; returns the next cursor.
fn scan_page(reply: Value, keys: &mut Vec<String>) -> u64 {
    let Value::Array(parts) = reply else {
        return 0;
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .map(|v| value_text(&v))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if let Some(Value::Array(batch)) = parts.next() {
        keys.extend(batch.iter().map(value_text));
    }
    cursor
}

fn retire_slot(slot: &Slot) {
    *slot.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
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
