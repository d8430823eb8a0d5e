//! Where Redis is and how to reach it: the URLs (a single server or a
//! Redis Cluster's seed nodes), TLS (rustls, a private CA, mutual TLS) and
//! credentials that never reach `Debug` or logs (every URL shown goes
//! through [`redact_url`], the one redactor), and the redis-rs clients
//! built from them — for the command connections (`link`) and for the
//! subscription connection (`notify`).

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
