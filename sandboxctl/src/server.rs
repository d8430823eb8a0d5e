//! The Redis deployment a command talks to: its URL, namespace and rule
//! table, a coordinator for reads and repairs, and a plain connection for
//! what the library does not cover (the script cache, pub/sub, the slot
//! registry's team sets, the demo's cleanup).
//!
//! Teams are found through the namespace's own indexes (the slot registry,
//! then each slot's team set), never by scanning keys. SCAN is left to the
//! demo, which deletes a namespace it generated itself — never `KEYS`,
//! which blocks a production server.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use sandbox_coordinator::keys::Namespace;
use sandbox_coordinator::{Coordinator, Lifecycle};

/// Bound on connecting and on each reply of the plain connection.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Keys asked for per SCAN step.
const SCAN_COUNT: usize = 1000;

/// Where sandboxctl's commands go.
pub struct Server {
    url: String,
    namespace: Namespace,
    lifecycle: Lifecycle,
}

impl Server {
    /// Checks the namespace; connects lazily.
    pub fn new(url: String, namespace: String, lifecycle: Lifecycle) -> anyhow::Result<Server> {
        let namespace = Namespace::new(&namespace)?;
        Ok(Server {
            url,
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
        Coordinator::builder(self.url.clone())
            .namespace(self.namespace.prefix())
            .lifecycle(self.lifecycle.clone())
            .notifications(false)
            .pool_size(4)
            .build()
            .await
            .with_context(|| format!("cannot connect to {}", shown_url(&self.url)))
    }

    /// A coordinator like [`Self::coordinator`] but with its notification
    /// subscription, for a live team view (`watch --changes`).
    pub async fn following_coordinator(&self) -> anyhow::Result<Coordinator> {
        Coordinator::builder(self.url.clone())
            .namespace(self.namespace.prefix())
            .lifecycle(self.lifecycle.clone())
            .build()
            .await
            .with_context(|| format!("cannot connect to {}", shown_url(&self.url)))
    }

    /// A plain multiplexed connection.
    pub async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let client = self.client()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("cannot connect to {}", shown_url(&self.url)))
    }

    pub fn client(&self) -> anyhow::Result<redis::Client> {
        redis::Client::open(self.url.as_str())
            .with_context(|| format!("bad Redis URL {}", shown_url(&self.url)))
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
    /// and sorted. SCAN may return a key twice; keys created or deleted
    /// while it runs may or may not appear.
    pub async fn scan(&self, pattern: &str) -> anyhow::Result<BTreeSet<String>> {
        let mut conn = self.connection().await?;
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .with_context(|| format!("SCAN MATCH {pattern}"))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// `url` with its password hidden, for messages: the userinfo's password
/// (everything between `://` and the last `@` is userinfo, so a password
/// with `/`, `?` or `#` is hidden too) and a unix socket URL's `pass=`
/// query parameter.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (userinfo, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, rest),
    };
    let host = match host.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k @ ("pass" | "password"), _)) => format!("{k}=<redacted>"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => host.to_string(),
    };
    match userinfo.map(|u| u.split_once(':')) {
        Some(Some((user, _))) => format!("{scheme}://{user}:<redacted>@{host}"),
        Some(None) => format!("{scheme}://<redacted>@{host}"),
        None => format!("{scheme}://{host}"),
    }
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
    fn passwords_are_hidden_in_shown_urls() {
        assert_eq!(
            shown_url("redis://coord:s3/c?r#t@127.0.0.1:6379"),
            "redis://coord:<redacted>@127.0.0.1:6379"
        );
        assert_eq!(
            shown_url("redis+unix:///tmp/s.sock?user=u&pass=s3cret&db=1"),
            "redis+unix:///tmp/s.sock?user=u&pass=<redacted>&db=1"
        );
        assert_eq!(
            shown_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("team-1"), "team-1");
        assert_eq!(glob_escape("a*b?c[d]e\\"), "a\\*b\\?c\\[d\\]e\\\\");
    }
}
