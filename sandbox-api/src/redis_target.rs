//! How `serve` reaches Redis: its command-line options (a URL or a
//! cluster's nodes, a private CA, a client certificate, an ACL user and
//! its password file), handed to the library's [`RedisOptions`], which
//! reads the files and makes the target the coordinator is built from.
//!
//! Secrets stay secret: `--help` never prints the values of options fed
//! from the environment (`hide_env_values`), the password is read from a
//! file or `REDIS_PASSWORD` (never an option, which `ps` would show), and
//! messages show URLs through the library's
//! [`redact_url`](sandbox_coordinator::redact_url).

use std::path::PathBuf;

use sandbox_coordinator::RedisOptions;

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
        self.options().fmt(f)
    }
}

impl RedisArgs {
    /// The options, for the library (which reads the files and names the
    /// options in its messages).
    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            url: self.redis_url.clone(),
            cluster: self.cluster.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            url_names: "SANDBOX_API_REDIS_URL",
            cluster_names: "SANDBOX_API_CLUSTER",
        }
    }
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
        let url = RedisArgs {
            cluster: Vec::new(),
            ..args.clone()
        };
        let shown = [
            format!("{args:?}"),
            format!(
                "{:#}",
                anyhow::Error::from(args.options().resolve().unwrap_err())
            ),
            cluster.options().resolve().expect("a cluster").to_string(),
            url.options().resolve().expect("a URL").to_string(),
        ];
        for shown in shown {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}
