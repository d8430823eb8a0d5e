//! Where `serve`'s Redis is and how to reach it: the connection options
//! (a URL or a cluster's nodes, a private CA, a client certificate, an ACL
//! user and its password) and the coordinator [`Builder`] they make.
//!
//! Secrets stay secret: `--help` never prints the values of options fed
//! from the environment (`hide_env_values`), the password is read from a
//! file or `REDIS_PASSWORD` (never an option, which `ps` would show), and
//! messages show URLs through the library's
//! [`redact_url`](sandbox_coordinator::redact_url).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sandbox_coordinator::{Builder, Coordinator, redact_url};

/// The environment variable holding the password (when no
/// `--password-file` is given).
pub const PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// How `serve` reaches Redis: `--redis-url` or `--cluster`, exactly one.
#[derive(Clone, Default, clap::Args)]
pub struct RedisArgs {
    /// Redis URL (`redis://`, `rediss://` for TLS, `redis+unix://`).
    #[arg(
        long,
        env = "SANDBOX_API_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    redis_url: Option<String>,

    /// A Redis Cluster, by the URLs of some of its nodes (seeds): repeat
    /// the option or give a comma-separated list.
    #[arg(
        long,
        env = "SANDBOX_API_CLUSTER",
        hide_env_values = true,
        value_name = "NODE_URL",
        value_delimiter = ','
    )]
    cluster: Vec<String>,

    /// PEM file of the CA that signed the server's certificate (a private
    /// CA), for rediss:// URLs; without it the system's roots are trusted.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// PEM file of the client certificate to present (mutual TLS); needs
    /// --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key; needs --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// The ACL user to log in as (instead of one in the URL).
    #[arg(
        long,
        env = "REDIS_USERNAME",
        hide_env_values = true,
        value_name = "USER"
    )]
    username: Option<String>,

    /// File holding the password (its trailing newline is dropped). Without
    /// it, the password is taken from REDIS_PASSWORD if that is set.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
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

    /// Where Redis is, passwords redacted, for messages.
    pub fn shown(&self) -> String {
        match self.url() {
            Some(url) => redact_url(url),
            None => {
                let nodes: Vec<String> = self.nodes().iter().map(|n| redact_url(n)).collect();
                format!("the Redis Cluster at {}", nodes.join(","))
            }
        }
    }

    /// A coordinator builder with the nodes, TLS material and credentials
    /// (the files read now); an error names a file, never its content.
    pub fn builder(&self) -> anyhow::Result<Builder> {
        let mut builder = match (self.url(), self.nodes()) {
            (Some(_), nodes) if !nodes.is_empty() => bail!(
                "give --redis-url (SANDBOX_API_REDIS_URL) or --cluster (SANDBOX_API_CLUSTER), \
                 not both"
            ),
            (Some(url), _) => Coordinator::builder(url),
            (None, nodes) if !nodes.is_empty() => Coordinator::builder_cluster(nodes),
            (None, _) => bail!(
                "no Redis: give --redis-url (SANDBOX_API_REDIS_URL) or --cluster \
                 (SANDBOX_API_CLUSTER)"
            ),
        };
        if let Some(ca) = &self.tls_ca {
            builder = builder.tls_root_certificate(read("--tls-ca", ca)?);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                builder = builder
                    .tls_client_certificate(read("--tls-cert", cert)?, read("--tls-key", key)?);
            }
            (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's key)"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (its certificate)"),
            (None, None) => {}
        }
        if let Some(user) = self.username.as_deref().filter(|u| !u.is_empty()) {
            builder = builder.username(user);
        }
        if let Some(password) = password(self.password_file.as_deref())? {
            builder = builder.password(password);
        }
        Ok(builder)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_shown_have_no_secret() {
        let args = RedisArgs {
            redis_url: Some("redis+unix:///s.sock?user=u&pass=s3cret".into()),
            cluster: vec!["redis://u:s3cret@host:7000".into()],
            ..RedisArgs::default()
        };
        let cluster = RedisArgs {
            redis_url: None,
            ..args.clone()
        };
        for shown in [format!("{args:?}"), args.shown(), cluster.shown()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}
