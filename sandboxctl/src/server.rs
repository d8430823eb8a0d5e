//! The Redis deployment a command talks to: where it is ([`RedisTarget`]),
//! its namespace and rule table, a coordinator for reads and repairs, and a
//! plain connection for what the library does not cover (the script cache,
//! pub/sub, the slot registry's team sets, the demo's cleanup) — on one
//! server or a Redis Cluster.
//!
//! Teams are found through the namespace's own indexes (the slot registry,
//! then each slot's team set), never by scanning keys. SCAN is left to the
//! demo, which deletes a namespace it generated itself, and to `migrate`
//! (schema 1 has no index of its leases) — never `KEYS`, which blocks a
//! production server. On a cluster SCAN runs on every primary.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use sandbox_coordinator::keys::Namespace;
use sandbox_coordinator::{Builder, Coordinator, Lifecycle, RedisTarget};

use crate::redis_target::{self, Plain};

/// Bound on connecting and on each reply of the plain connection.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Keys asked for per SCAN step.
const SCAN_COUNT: usize = 1000;

/// Where sandboxctl's commands go.
pub struct Server {
    target: RedisTarget,
    namespace: Namespace,
    lifecycle: Lifecycle,
}

impl Server {
    /// Checks the namespace; connects lazily.
    pub fn new(
        target: RedisTarget,
        namespace: String,
        lifecycle: Lifecycle,
    ) -> anyhow::Result<Server> {
        let namespace = Namespace::new(&namespace)?;
        Ok(Server {
            target,
            namespace,
            lifecycle,
        })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The rule table of `--lifecycle`.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// A coordinator on the namespace, with the rule table of `--lifecycle`
    /// (reads do not depend on it; `migrate --adopt-lifecycle` stamps it),
    /// without a notification subscription: the commands that use it read
    /// or repair once and never wait.
    pub async fn coordinator(&self) -> anyhow::Result<Coordinator> {
        Builder::from(self.target.clone())
            .namespace(self.namespace.prefix())
            .lifecycle(self.lifecycle.clone())
            .notifications(false)
            .pool_size(4)
            .build()
            .await
            .with_context(|| format!("cannot connect to {}", self.target))
    }

    /// A coordinator like [`Self::coordinator`] but with its notification
    /// subscription, for a live team view (`watch --changes`).
    pub async fn following_coordinator(&self) -> anyhow::Result<Coordinator> {
        Builder::from(self.target.clone())
            .namespace(self.namespace.prefix())
            .lifecycle(self.lifecycle.clone())
            .build()
            .await
            .with_context(|| format!("cannot connect to {}", self.target))
    }

    /// A plain connection (on a cluster, routed by each command's key).
    pub async fn connection(&self) -> anyhow::Result<Plain> {
        redis_target::connection(&self.target, TIMEOUT).await
    }

    /// A client for pub/sub: one server only (on a cluster the library
    /// publishes with sharded pub/sub, which has no pattern subscription).
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        redis_target::client(&self.target)
    }

    /// Whether the deployment is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// A cluster connection that hands the pushes it receives (sharded
    /// pub/sub messages, subscription changes) to `pushes` (RESP3).
    pub async fn cluster_pushes(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> anyhow::Result<redis::cluster_async::ClusterConnection> {
        let client = self
            .target
            .cluster_client_builder()?
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?;
        Ok(client.get_async_connection().await?)
    }

    /// Every team of the namespace, sorted: the slots in the slot registry
    /// (`<ns>:slots`), then each slot's team set (`<ns>:{<slot tag>}:teams`),
    /// which a team joins with its first record. The same reads the
    /// library's fleet-wide eviction makes; no key is scanned.
    pub async fn teams(&self) -> anyhow::Result<BTreeSet<String>> {
        let mut conn = self.connection().await?;
        let registry = self.namespace.slots();
        let slots: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&registry)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("SMEMBERS {registry}"))?;
        let mut teams = BTreeSet::new();
        for slot in slots {
            // A member that is not a slot number is not ours to follow.
            let Ok(slot) = slot.parse::<u16>() else {
                continue;
            };
            let set = self.namespace.slot_teams(slot);
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&set)
                .query_async(&mut conn)
                .await
                .with_context(|| format!("SMEMBERS {set}"))?;
            teams.extend(members);
        }
        Ok(teams)
    }

    /// Every key matching `pattern` (a SCAN `MATCH` glob), deduplicated
    /// and sorted, from every primary of a cluster. SCAN may return a key
    /// twice; keys created or deleted while it runs may or may not appear.
    pub async fn scan(&self, pattern: &str) -> anyhow::Result<BTreeSet<String>> {
        let mut conn = self.connection().await?;
        let mut keys = BTreeSet::new();
        let nodes = match &mut conn {
            Plain::Single(_) => vec![None],
            Plain::Cluster(c) => primaries(c).await?.into_iter().map(Some).collect(),
        };
        for node in nodes {
            scan_node(&mut conn, node, pattern, &mut keys).await?;
        }
        Ok(keys)
    }
}

/// SCANs one node (`node`: a cluster primary's host and port; `None`: the
/// one server) into `keys`.
async fn scan_node(
    conn: &mut Plain,
    node: Option<(String, u16)>,
    pattern: &str,
    keys: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let on = node
        .as_ref()
        .map(|(host, port)| format!(" on {host}:{port}"))
        .unwrap_or_default();
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.cursor_arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let reply = match (&mut *conn, &node) {
            (Plain::Cluster(c), Some((host, port))) => {
                let to = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                c.route_command(cmd, RoutingInfo::SingleNode(to)).await
            }
            (conn, _) => cmd.query_async::<Value>(conn).await,
        };
        let reply = reply.with_context(|| format!("SCAN MATCH {pattern}{on}"))?;
        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)
            .with_context(|| format!("SCAN MATCH {pattern}{on}: unexpected reply"))?;
        keys.extend(batch);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The cluster's primaries (host, port), from `CLUSTER SLOTS`: each entry
/// is `[first slot, last slot, [host, port, id, ...], replicas...]`.
async fn primaries(
    conn: &mut redis::cluster_async::ClusterConnection,
) -> anyhow::Result<BTreeSet<(String, u16)>> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let reply = conn
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await
        .context("CLUSTER SLOTS")?;
    let entries: Vec<Vec<Value>> =
        redis::from_redis_value(reply).context("CLUSTER SLOTS: unexpected reply")?;
    let mut found = BTreeSet::new();
    for entry in entries {
        let Some(primary) = entry.into_iter().nth(2) else {
            continue;
        };
        let primary: Vec<Value> =
            redis::from_redis_value(primary).context("CLUSTER SLOTS: unexpected reply")?;
        if let [host, port, ..] = primary.as_slice() {
            let host: String = redis::from_redis_value_ref(host).context("CLUSTER SLOTS")?;
            let port: u16 = redis::from_redis_value_ref(port).context("CLUSTER SLOTS")?;
            found.insert((host, port));
        }
    }
    anyhow::ensure!(!found.is_empty(), "CLUSTER SLOTS names no primary");
    Ok(found)
}

/// Escapes the characters a SCAN `MATCH` glob treats specially, so an id
/// is matched literally.
pub fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("team-1"), "team-1");
        assert_eq!(glob_escape("a*b?c[d]e\\"), "a\\*b\\?c\\[d\\]e\\\\");
    }
}
