//! Where the deployment's Redis is and how to reach it: the connection
//! options ([`RedisArgs`]: a URL or a cluster's nodes, a private CA, a
//! client certificate, an ACL user and its password) and what they make
//! ([`RedisTarget`]): a coordinator [`Builder`] and sandboxctl's own plain
//! connection ([`Plain`]), with the same TLS and credentials.
//!
//! Secrets stay secret: `--help` never prints the values of options fed
//! from the environment (`hide_env_values`), the password is read from a
//! file or `REDIS_PASSWORD` (never an option, which `ps` would show), and
//! every message shows URLs through the library's
//! [`redact_url`](sandbox_coordinator::redact_url).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value};
use sandbox_coordinator::{Builder, Coordinator, redact_url};

/// The environment variable holding the password (when no
/// `--password-file` is given).
pub const PASSWORD_ENV: &str = "REDIS_PASSWORD";

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
        f.debug_struct("RedisArgs")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field(
                "cluster",
                &self
                    .cluster
                    .iter()
                    .map(|n| redact_url(n))
                    .collect::<Vec<_>>(),
            )
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl RedisArgs {
    /// The URL, if one is given (an empty one is none).
    fn url(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// The cluster's node URLs, empty entries dropped.
    fn nodes(&self) -> Vec<String> {
        self.cluster
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// A usage error in the options, for clap to report: a URL and a
    /// cluster at once, or half a client certificate.
    pub fn usage_error(&self) -> Option<String> {
        if self.url().is_some() && !self.nodes().is_empty() {
            return Some(
                "give --redis-url (--url, REDIS_URL) or --cluster (SANDBOXCTL_CLUSTER), \
                 not both"
                    .to_string(),
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Some("--tls-cert needs --tls-key (the certificate's key)".into()),
            (None, Some(_)) => Some("--tls-key needs --tls-cert (its certificate)".into()),
            _ => None,
        }
    }

    /// Reads the files and the password: the target, without nodes when
    /// neither a URL nor a cluster is given (see [`RedisTarget::is_given`]).
    pub fn resolve(&self) -> anyhow::Result<RedisTarget> {
        let (nodes, cluster) = match self.url() {
            Some(url) => (vec![url.to_string()], false),
            None => (self.nodes(), true),
        };
        let client_cert = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((read("--tls-cert", cert)?, read("--tls-key", key)?)),
            _ => None,
        };
        Ok(RedisTarget {
            cluster: cluster && !nodes.is_empty(),
            nodes,
            root_cert: self
                .tls_ca
                .as_deref()
                .map(|ca| read("--tls-ca", ca))
                .transpose()?,
            client_cert,
            username: self.username.clone().filter(|u| !u.is_empty()),
            password: password(self.password_file.as_deref())?,
        })
    }
}

/// A file named by `option`; the error names the file, never its content.
fn read(option: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {option} {}", path.display()))
}

/// The password: the file's content without its trailing newline, or
/// `REDIS_PASSWORD`; none when neither is given (or either is empty).
fn password(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let password = match file {
        Some(path) => {
            let bytes = read("--password-file", path)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("the password in {} is not UTF-8", path.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                bail!("--password-file {} is empty", path.display());
            }
            text.to_string()
        }
        None => match std::env::var(PASSWORD_ENV) {
            Ok(p) => p,
            Err(std::env::VarError::NotPresent) => String::new(),
            Err(std::env::VarError::NotUnicode(_)) => bail!("{PASSWORD_ENV} is not UTF-8"),
        },
    };
    Ok(Some(password).filter(|p| !p.is_empty()))
}

/// Where Redis is, with the TLS material and credentials read. `Debug`
/// shows no secret.
#[derive(Clone, Default)]
pub struct RedisTarget {
    nodes: Vec<String>,
    cluster: bool,
    root_cert: Option<Vec<u8>>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("redis", &self.shown())
            .field("cluster", &self.cluster)
            .field("tls_ca", &self.root_cert.is_some())
            .field("tls_client_certificate", &self.client_cert.is_some())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RedisTarget {
    /// Whether a URL or a cluster was given (else sandboxctl embeds one).
    pub fn is_given(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// The embedded server at `url`: no TLS, no credentials (those given,
    /// say a `REDIS_PASSWORD` left in the environment, are for a server
    /// named by a URL or a cluster, and the embedded one has no users).
    pub fn embedded(url: String) -> RedisTarget {
        RedisTarget {
            nodes: vec![url],
            ..RedisTarget::default()
        }
    }

    /// Whether it is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The URL(s), passwords redacted, for messages.
    pub fn shown(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact_url(n)).collect();
        if self.cluster {
            format!("the Redis Cluster at {}", nodes.join(","))
        } else {
            nodes.join(",")
        }
    }

    /// A coordinator builder with the target's nodes, TLS and credentials.
    pub fn builder(&self) -> Builder {
        let mut builder = if self.cluster {
            Coordinator::builder_cluster(self.nodes.clone())
        } else {
            Coordinator::builder(self.nodes.first().cloned().unwrap_or_default())
        };
        if let Some(ca) = &self.root_cert {
            builder = builder.tls_root_certificate(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            builder = builder.tls_client_certificate(cert.clone(), key.clone());
        }
        if let Some(user) = &self.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password);
        }
        builder
    }

    /// `url`'s connection settings with the target's credentials.
    fn connection_info(&self, url: &str) -> anyhow::Result<redis::ConnectionInfo> {
        let info = url
            .into_connection_info()
            .with_context(|| format!("bad Redis URL {}", redact_url(url)))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }

    fn tls(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_cert.clone(),
        }
    }

    fn has_tls_material(&self) -> bool {
        self.root_cert.is_some() || self.client_cert.is_some()
    }

    /// A client for the one server (not a cluster: pub/sub).
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        if self.cluster {
            bail!("not available on a Redis Cluster (give one server with --redis-url)");
        }
        let url = self.nodes.first().map(String::as_str).unwrap_or_default();
        let info = self.connection_info(url)?;
        let tls = url.starts_with("rediss://");
        if tls {
            install_crypto_provider();
        }
        let client = if tls && self.has_tls_material() {
            redis::Client::build_with_tls(info, self.tls())
        } else {
            redis::Client::open(info)
        };
        client.with_context(|| format!("bad Redis URL {}", redact_url(url)))
    }

    /// A plain connection: multiplexed to the one server, or a cluster
    /// connection that routes each command by its key's slot.
    pub async fn connection(&self, timeout: Duration) -> anyhow::Result<Plain> {
        let shown = || format!("cannot connect to {}", self.shown());
        if !self.cluster {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let conn = self
                .client()?
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .with_context(shown)?;
            return Ok(Plain::Single(conn));
        }
        let mut infos = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            infos.push(self.connection_info(node)?);
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(timeout)
            .response_timeout(timeout);
        if self.nodes.iter().any(|n| n.starts_with("rediss://")) {
            install_crypto_provider();
            builder = builder.tls(redis::cluster::TlsMode::Secure);
            if self.has_tls_material() {
                builder = builder.certs(self.tls());
            }
        }
        let client = builder.build().with_context(shown)?;
        let conn = client.get_async_connection().await.with_context(shown)?;
        Ok(Plain::Cluster(conn))
    }
}

/// rustls' ring provider as the process default, unless one is installed
/// (the library installs the same one when it connects first).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
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
        let target = RedisTarget {
            nodes: args.cluster.clone(),
            cluster: true,
            password: Some("s3cret".into()),
            ..RedisTarget::default()
        };
        for shown in [format!("{args:?}"), format!("{target:?}"), target.shown()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}
