//! Where Redis is and how to reach it: the URLs (a single server or a
//! Redis Cluster's seed nodes), TLS (rustls, a private CA, mutual TLS) and
//! credentials that never reach `Debug`, `Display` or logs (every URL shown
//! goes through [`redact_url`], the one redactor), and the redis-rs clients
//! built from them — for the command connections (`link`), for the
//! subscription connection (`notify`), and for programs that talk to the
//! same Redis on their own ([`RedisTarget::client`],
//! [`RedisTarget::cluster_client_builder`]).

use std::time::Duration;

use redis::{IntoConnectionInfo, TlsCertificates};

use crate::error::{Error, to_error};
use crate::redact::redact_url;

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

/// Where Redis is — one server's URL, or some nodes of a Redis Cluster —
/// with the TLS material and credentials to reach it: what a
/// [`Builder`](crate::Builder) connects to (`Builder::from(target)`), and
/// what a program that also talks to the same Redis itself builds its
/// clients from ([`RedisTarget::client`],
/// [`RedisTarget::cluster_client_builder`]).
///
/// `Debug` and `Display` never show a password: URLs go through
/// [`redact_url`], the credentials and keys are shown as present or not.
/// [`RedisOptions`](crate::RedisOptions) makes one from a program's
/// command-line options.
///
/// ```
/// use sandbox_coordinator::{Builder, RedisTarget};
///
/// let target = RedisTarget::new(Some("rediss://coord:s3cret@10.0.0.1:6380"), &[])?
///     .credentials(Some("coord".into()), Some("s3cret".into()));
/// assert_eq!(target.to_string(), "rediss://coord:<redacted>@10.0.0.1:6380");
/// assert!(!format!("{target:?}").contains("s3cret"));
/// let builder = Builder::from(target).namespace("sbx");
/// # drop(builder);
///
/// let nodes = ["redis://10.0.0.1:7000".to_string(), "redis://10.0.0.2:7000".to_string()];
/// let cluster = RedisTarget::new(None, &nodes)?;
/// assert_eq!(
///     cluster.to_string(),
///     "the Redis Cluster at redis://10.0.0.1:7000,redis://10.0.0.2:7000"
/// );
/// assert!(RedisTarget::new(Some("redis://h:6379"), &nodes).is_err());
/// assert!(RedisTarget::new(None, &[]).is_err());
/// # Ok::<(), sandbox_coordinator::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisTarget {
    pub(crate) nodes: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) root_cert: Option<Vec<u8>>,
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// The name the connection code knows it by.
pub(crate) type Target = RedisTarget;

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
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

/// The URL, or `the Redis Cluster at NODE,NODE`, passwords redacted: for
/// messages (`cannot connect to {target}`).
impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact_url(n)).collect();
        if self.cluster {
            write!(f, "the Redis Cluster at {}", nodes.join(","))
        } else {
            f.write_str(&nodes.join(","))
        }
    }
}

impl RedisTarget {
    /// `nodes` as given, without TLS material or credentials.
    pub(crate) fn bare(nodes: Vec<String>, cluster: bool) -> RedisTarget {
        RedisTarget {
            nodes,
            cluster,
            root_cert: None,
            client_cert: None,
            username: None,
            password: None,
        }
    }

    /// One server: `redis://HOST:PORT`, `rediss://HOST:PORT` (TLS) or
    /// `redis+unix:///path/to/sock`.
    pub fn url(url: impl Into<String>) -> RedisTarget {
        RedisTarget::bare(vec![url.into()], false)
    }

    /// A Redis Cluster, by the URLs of some of its nodes (seeds).
    pub fn cluster<I, S>(nodes: I) -> RedisTarget
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisTarget::bare(nodes.into_iter().map(Into::into).collect(), true)
    }

    /// Exactly one of a URL or a cluster's nodes, as a program's options
    /// give them (blank ones are none): [`Error::Config`] when both or
    /// neither are given.
    pub fn new(url: Option<&str>, cluster: &[String]) -> Result<RedisTarget, Error> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let nodes: Vec<String> = cluster
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        match (url, nodes.is_empty()) {
            (Some(url), true) => Ok(RedisTarget::url(url)),
            (None, false) => Ok(RedisTarget::cluster(nodes)),
            (Some(url), false) => Err(Error::config(format!(
                "give a Redis URL or a cluster's nodes, not both (URL {}, {})",
                redact_url(url),
                RedisTarget::cluster(nodes)
            ))),
            (None, true) => Err(Error::config(
                "no Redis: give a Redis URL or a cluster's nodes",
            )),
        }
    }

    /// Trusts this CA (PEM) for `rediss://` (a private CA); without it the
    /// system's roots are used.
    pub fn tls_root_certificate(mut self, pem: Vec<u8>) -> RedisTarget {
        self.root_cert = Some(pem);
        self
    }

    /// Presents this client certificate and key (PEM) for mutual TLS.
    pub fn tls_client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> RedisTarget {
        self.client_cert = Some((cert_pem, key_pem));
        self
    }

    /// The ACL user and its password (instead of those in the URL); an
    /// empty one is none. Never shown by `Debug` or `Display`.
    pub fn credentials(
        mut self,
        username: Option<String>,
        password: Option<String>,
    ) -> RedisTarget {
        self.username = username.filter(|u| !u.is_empty());
        self.password = password.filter(|p| !p.is_empty());
        self
    }

    /// The URL, or the cluster's seed nodes, as given (with any password
    /// in them: show them with [`redact_url`] or through `Display`).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Whether it is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The CA certificate (PEM), if one was given.
    pub fn root_certificate(&self) -> Option<&[u8]> {
        self.root_cert.as_deref()
    }

    /// The client certificate and its key (PEM), if given.
    pub fn client_certificate(&self) -> Option<(&[u8], &[u8])> {
        self.client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()))
    }

    /// The ACL user, if given apart from the URL.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if given apart from the URL.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A redis-rs client for the one server, with the TLS material and
    /// credentials. [`Error::Config`] on a cluster (use
    /// [`RedisTarget::cluster_client_builder`]); [`Error::InvalidInput`]
    /// for a URL that does not parse (shown redacted).
    pub fn client(&self) -> Result<redis::Client, Error> {
        match (self.cluster, self.nodes.first()) {
            (false, Some(url)) => single_client(self, url),
            (true, _) => Err(Error::config(format!(
                "{self} is a Redis Cluster, not one server"
            ))),
            (false, None) => Err(Error::config("no Redis URL")),
        }
    }

    /// A redis-rs cluster client builder for the nodes, with the TLS
    /// material and credentials (timeouts and retries are the caller's).
    pub fn cluster_client_builder(&self) -> Result<redis::cluster::ClusterClientBuilder, Error> {
        let mut infos = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            infos.push(connection_info(self, node)?);
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos);
        if self.nodes.iter().any(|n| n.starts_with("rediss://")) {
            ensure_crypto_provider();
            builder = builder.tls(redis::cluster::TlsMode::Secure);
            if self.root_cert.is_some() || self.client_cert.is_some() {
                builder = builder.certs(tls_certificates(self));
            }
        }
        Ok(builder)
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
    let mut builder = target
        .cluster_client_builder()?
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        .retries(8);
    if let Some(tx) = push {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx);
    }
    builder.build().map_err(to_error)
}
