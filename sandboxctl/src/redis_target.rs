//! How sandboxctl reaches Redis: its command-line options ([`RedisArgs`]:
//! a URL or a cluster's nodes, a private CA, a client certificate, an ACL
//! user and its password file), handed to the library's
//! [`RedisOptions`], which reads the files and makes the
//! [`RedisTarget`] the coordinators are built from; and sandboxctl's own
//! plain connection ([`Plain`]) to the same target, with the same TLS and
//! credentials.
//!
//! Secrets stay secret: `--help` never prints the values of options fed
//! from the environment (`hide_env_values`), the password is read from a
//! file or `REDIS_PASSWORD` (never an option, which `ps` would show), and
//! every message shows URLs through the library's
//! [`redact_url`](sandbox_coordinator::redact_url).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use sandbox_coordinator::{RedisOptions, RedisTarget};

/// How to reach Redis (`sandboxctl [OPTIONS]`, valid before or after the
/// subcommand).
#[derive(Clone, Default, clap::Args)]
pub struct RedisArgs {
    /// Redis to use: redis://HOST:PORT, rediss://HOST:PORT (TLS) or
    /// redis+unix:///path/to/sock. Without it and without --cluster, a
    /// private embedded redis-server is used.
    #[arg(
        long = "redis-url",
        visible_alias = "url",
        env = "REDIS_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,

    /// A Redis Cluster, by the URLs of some of its nodes (seeds): repeat
    /// the option or give a comma-separated list.
    #[arg(
        long,
        env = "SANDBOXCTL_CLUSTER",
        hide_env_values = true,
        global = true,
        value_name = "NODE_URL",
        value_delimiter = ','
    )]
    pub cluster: Vec<String>,

    /// PEM file of the CA that signed the server's certificate (a private
    /// CA), for rediss:// URLs; without it the system's roots are trusted.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// PEM file of the client certificate to present (mutual TLS); needs
    /// --tls-key.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key; needs --tls-cert.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// The ACL user to log in as (instead of one in the URL).
    #[arg(
        long,
        env = "REDIS_USERNAME",
        hide_env_values = true,
        global = true,
        value_name = "USER"
    )]
    pub username: Option<String>,

    /// File holding the password (its trailing newline is dropped). Without
    /// it, the password is taken from REDIS_PASSWORD if that is set.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options().fmt(f)
    }
}

impl RedisArgs {
    /// The options, for the library (which names them in its messages).
    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            url: self.redis_url.clone(),
            cluster: self.cluster.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            url_names: "--url, REDIS_URL",
            cluster_names: "SANDBOXCTL_CLUSTER",
        }
    }
}

/// A client for the one server (not a cluster: pub/sub).
pub fn client(target: &RedisTarget) -> anyhow::Result<redis::Client> {
    if target.is_cluster() {
        anyhow::bail!("not available on a Redis Cluster (give one server with --redis-url)");
    }
    Ok(target.client()?)
}

/// A plain connection: multiplexed to the one server, or a cluster
/// connection that routes each command by its key's slot.
pub async fn connection(target: &RedisTarget, timeout: Duration) -> anyhow::Result<Plain> {
    let shown = || format!("cannot connect to {target}");
    if !target.is_cluster() {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = client(target)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(shown)?;
        return Ok(Plain::Single(conn));
    }
    let client = target
        .cluster_client_builder()?
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .with_context(shown)?;
    let conn = client.get_async_connection().await.with_context(shown)?;
    Ok(Plain::Cluster(conn))
}

/// sandboxctl's own connection, for what the library does not cover.
#[derive(Clone)]
pub enum Plain {
    /// One server.
    Single(MultiplexedConnection),
    /// A Redis Cluster: commands with keys go to their slot's primary.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Plain {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Plain::Single(c) => c.req_packed_command(cmd),
            Plain::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Plain::Single(c) => c.req_packed_commands(cmd, offset, count),
            Plain::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Plain::Single(c) => c.get_db(),
            Plain::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let args = RedisArgs {
            redis_url: Some("redis://coord:s3cret@host:6379".into()),
            cluster: vec!["redis+unix:///s.sock?pass=s3cret".into()],
            ..RedisArgs::default()
        };
        let target =
            RedisTarget::cluster(args.cluster.clone()).credentials(None, Some("s3cret".into()));
        for shown in [
            format!("{args:?}"),
            format!("{target:?}"),
            target.to_string(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}
