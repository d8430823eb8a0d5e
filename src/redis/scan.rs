//! `SCAN` over every primary (a single server, or each primary of a
//! Cluster found with `CLUSTER SLOTS`): for the operator tools, repair and
//! migrate, never on a request path.

use redis::Value;
use redis::aio::ConnectionLike;

use crate::error::{Error, to_error};
use crate::redis::link::{Link, Route};
use crate::redis::value;

impl Link {
    /// Every key matching `pattern`, with `SCAN` on every primary (for the
    /// operator tools: repair and migrate; never on a request path).
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        match self.cluster() {
            Some(c) => {
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
                            let host = node.first().map(value::text_or_empty).unwrap_or_default();
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
                        let reply = conn
                            .route_command(
                                scan_from(cursor, pattern),
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
            None => {
                let mut cursor = 0u64;
                loop {
                    let reply = self
                        .query(&scan_from(cursor, pattern), Route::default())
                        .await?;
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

/// One page of the keys matching `pattern`, from `cursor`.
fn scan_from(cursor: u64, pattern: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    cmd
}

/// Adds a SCAN reply's keys to `keys`; returns the next cursor.
fn scan_page(reply: Value, keys: &mut Vec<String>) -> u64 {
    let Value::Array(parts) = reply else {
        return 0;
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(|v| value::text(&v))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if let Some(Value::Array(batch)) = parts.next() {
        keys.extend(batch.iter().map(value::text_or_empty));
    }
    cursor
}
