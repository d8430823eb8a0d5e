//! [`Builder`]: a coordinator's settings, checked, and the start-up that
//! turns them into a running coordinator — connect, assemble the scripts
//! for this lifecycle and load them on every primary, probe the ACL rules,
//! start the notification connection and the lease keeper. The façade's
//! `Builder::build` (in `coordinator`) wraps what [`Builder::start`]
//! returns.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::bounds;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::keys::Namespace;
use crate::lifecycle::Lifecycle;
use crate::notify::{Notifier, NotifySettings};
use crate::ops::Env;
use crate::redis::{Connections, Link, LinkSettings, RedisTarget};
use crate::runtime::{Runtime, Settings};
use crate::scripts::{ScriptSettings, Scripts};

/// Builds a [`Coordinator`](crate::Coordinator) with non-default settings. `Debug` never shows
/// a password (URL userinfo or [`Builder::password`]).
#[derive(Clone)]
pub struct Builder {
    target: RedisTarget,
    namespace: String,
    lifecycle: Lifecycle,
    connections: Connections,
    connect_timeout: Duration,
    response_timeout: Duration,
    poll_interval: Duration,
    notifications: bool,
    health_check_interval: Duration,
    tombstone_retention: Duration,
    outcome_retention: Duration,
    wait: Option<(usize, Duration)>,
    team_limit: Option<usize>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("target", &self.target)
            .field("namespace", &self.namespace)
            .field("lifecycle", &self.lifecycle.digest())
            .field("connections", &self.connections)
            .field("poll_interval", &self.poll_interval)
            .field("notifications", &self.notifications)
            .field("wait_for_replicas", &self.wait)
            .field("team_limit", &self.team_limit)
            .finish_non_exhaustive()
    }
}

/// A builder for `target` (its nodes, TLS material and credentials), every
/// other setting at its default.
impl From<RedisTarget> for Builder {
    fn from(target: RedisTarget) -> Builder {
        Builder::with_target(target)
    }
}

impl Builder {
    pub(crate) fn new(nodes: Vec<String>, cluster: bool) -> Builder {
        Builder::with_target(RedisTarget::bare(nodes, cluster))
    }

    fn with_target(target: RedisTarget) -> Builder {
        Builder {
            target,
            namespace: "sbx".into(),
            lifecycle: Lifecycle::sandbox(),
            connections: Connections::Multiplexed(1),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            notifications: true,
            health_check_interval: Duration::from_secs(5),
            tombstone_retention: Duration::from_secs(24 * 3600),
            outcome_retention: Duration::from_secs(600),
            wait: None,
            team_limit: None,
        }
    }

    /// Key prefix (default `sbx`).
    pub fn namespace(mut self, prefix: impl Into<String>) -> Self {
        self.namespace = prefix.into();
        self
    }
    /// The rule table (default [`Lifecycle::sandbox`]).
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }
    /// How commands reach a single server (default one multiplexed
    /// connection; ignored on Redis Cluster, whose client keeps one per node).
    pub fn connections(mut self, connections: Connections) -> Self {
        self.connections = connections;
        self
    }
    /// Command connections in a pool: shorthand for
    /// `connections(Connections::Pooled(size))`.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.connections = Connections::Pooled(size.max(1));
        self
    }
    /// Connection timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// Bound on one Redis reply (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// Fallback poll of waiters (default 1 s; 1 ms to 1 h, saturating).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self
    }
    /// Whether waiters are woken over pub/sub (default true). Off, they
    /// learn outcomes by polling and at lease deadlines only.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }
    /// How often the notification connection is checked with `PING`
    /// (default 5 s; 10 ms to 1 h, saturating).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval =
            interval.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        self
    }
    /// How long paused/killed tombstones are kept (default 24 h; zero keeps
    /// them forever).
    pub fn tombstone_retention(mut self, retention: Duration) -> Self {
        self.tombstone_retention = retention;
        self
    }
    /// How long each transition's outcome is kept for late joiners and for
    /// finishes retried after a lost reply (default 10 min).
    pub fn outcome_retention(mut self, retention: Duration) -> Self {
        self.outcome_retention = retention;
        self
    }
    /// Trusts this CA (PEM) for `rediss://` (a private CA); without it the
    /// system's roots are used.
    pub fn tls_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.target.root_cert = Some(pem);
        self
    }
    /// Presents this client certificate and key (PEM) for mutual TLS.
    pub fn tls_client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.target.client_cert = Some((cert_pem, key_pem));
        self
    }
    /// The ACL user (instead of one in the URL).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.target.username = Some(user.into());
        self
    }
    /// The password (instead of one in the URL); never shown by `Debug`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.target.password = Some(password.into());
        self
    }
    /// Follows every write script with `WAIT n timeout` in the same round
    /// trip; fewer acknowledgements than `n` is [`Error::NotReplicated`].
    pub fn wait_for_replicas(mut self, n: usize, timeout: Duration) -> Self {
        self.wait = (n > 0).then_some((n, timeout));
        self
    }
    /// The limit of places (sandboxes that are not tombstones, plus
    /// reservations) of teams without their own
    /// ([`Coordinator::set_team_limit`](crate::Coordinator::set_team_limit)). Default: none.
    pub fn team_limit(mut self, limit: usize) -> Self {
        self.team_limit = Some(limit);
        self
    }

    /// Connects and starts everything a coordinator's calls share; see
    /// [`Builder::build`](Builder::build).
    pub(crate) async fn start(self) -> Result<Arc<Runtime>> {
        let ns = Namespace::new(&self.namespace)?;
        self.lifecycle
            .validate()
            .map_err(|why| Error::InvalidInput {
                what: "lifecycle",
                value: self.lifecycle.digest(),
                why,
            })?;
        let outcome_ms = bounds::duration_ms(
            "outcome retention",
            self.outcome_retention,
            Duration::from_millis(1),
        )?;
        let tombstone_ms = bounds::duration_ms(
            "tombstone retention",
            self.tombstone_retention,
            Duration::ZERO,
        )?;
        if let Some((_, t)) = self.wait {
            bounds::duration_ms("wait_for_replicas timeout", t, Duration::ZERO)?;
        }
        if let Some(limit) = self.team_limit {
            bounds::team_limit(limit)?;
        }
        let settings = LinkSettings {
            connections: self.connections,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            wait: self.wait,
        };
        let link = Link::connect(self.target.clone(), settings).await?;
        let scripts = Scripts::assemble(
            &self.lifecycle,
            &ScriptSettings {
                publish: if link.is_cluster() {
                    "SPUBLISH"
                } else {
                    "PUBLISH"
                },
                outcome_ms,
                tombstone_ms,
            },
        );
        link.load(&scripts.all()).await?;
        crate::acl::probe(&link, &scripts, &ns).await?;
        crate::metrics::describe();
        crate::view::describe();
        let notifier = if self.notifications {
            Notifier::start(
                &link,
                NotifySettings {
                    health_interval: self.health_check_interval,
                    linger: Duration::from_secs(10),
                    connect_timeout: self.connect_timeout,
                    response_timeout: self.response_timeout,
                },
            )
        } else {
            Notifier::disabled()
        };
        if self.notifications && !notifier.ready(self.connect_timeout).await {
            tracing::warn!("notification connection not up yet; waiters poll meanwhile");
        }
        let env = Arc::new(Env {
            link,
            scripts,
            digest: self.lifecycle.digest(),
            lifecycle: self.lifecycle,
            ns,
            default_limit: self.team_limit,
        });
        let keeper = Keeper::start(Arc::clone(&env), self.response_timeout);
        let mut seed = RandomState::new().build_hasher();
        seed.write_u32(std::process::id());
        let holder_prefix = format!("{}-{:012x}", std::process::id(), seed.finish() >> 16);
        Ok(Arc::new(Runtime::new(
            env,
            notifier,
            keeper,
            Settings {
                poll_interval: self.poll_interval,
                response_timeout: self.response_timeout,
            },
            holder_prefix,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_never_shows_a_password() {
        let b = Builder::new(vec!["redis://coord:s3cret@127.0.0.1:6379".into()], false)
            .password("hunter2");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
