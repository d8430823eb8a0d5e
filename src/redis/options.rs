//! A program's Redis options as its operator gives them — a URL or a
//! cluster's nodes, files holding a CA, a client certificate and its key
//! or a password, an ACL user — and the [`RedisTarget`] they make once the
//! files are read. `sandboxctl` and `sandbox-api serve` fill it from their
//! command lines (their clap arguments differ only in environment
//! variable names); messages name the options as both spell them.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::redact::redact_url;
use crate::redis::target::RedisTarget;

/// The environment variable holding the password when no password file is
/// given.
pub const PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// Where Redis is and how to reach it, as a command line names it:
/// `--redis-url URL` or `--cluster NODE_URL,...` (exactly one),
/// `--tls-ca FILE`, `--tls-cert FILE` with `--tls-key FILE`, `--username
/// USER`, `--password-file FILE` (else the password is [`PASSWORD_ENV`]'s,
/// if set). A password is never an option's value (`ps` would show it).
///
/// [`RedisOptions::resolve`] reads the files and the password and makes a
/// [`RedisTarget`]; its errors name the options and files, never a
/// password or a file's content. `Debug` shows URLs redacted.
///
/// ```
/// use sandbox_coordinator::{Builder, RedisOptions};
///
/// let options = RedisOptions {
///     url: Some("redis://127.0.0.1:6379".into()),
///     url_names: "REDIS_URL",
///     cluster_names: "MY_CLUSTER",
///     ..RedisOptions::default()
/// };
/// let target = options.resolve()?;
/// let builder = Builder::from(target).namespace("sbx");
/// # drop(builder);
///
/// let both = RedisOptions {
///     cluster: vec!["redis://127.0.0.1:7000".into()],
///     ..options
/// };
/// assert_eq!(
///     both.resolve().unwrap_err().to_string(),
///     "give --redis-url (REDIS_URL) or --cluster (MY_CLUSTER), not both"
/// );
/// # Ok::<(), sandbox_coordinator::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// `--redis-url`: one server (an empty one is none).
    pub url: Option<String>,
    /// `--cluster`: some nodes of a Redis Cluster (empty entries dropped).
    pub cluster: Vec<String>,
    /// `--tls-ca`: PEM file of the CA that signed the server's certificate.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-cert`: PEM file of the client certificate (needs `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`: PEM file of the client certificate's key (needs
    /// `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// `--username`: the ACL user (an empty one is none).
    pub username: Option<String>,
    /// `--password-file`: the file holding the password (its trailing
    /// newline is dropped).
    pub password_file: Option<PathBuf>,
    /// The URL option's other names, for messages (e.g. `--url,
    /// REDIS_URL`).
    pub url_names: &'static str,
    /// The cluster option's other names, for messages (e.g.
    /// `SANDBOXCTL_CLUSTER`).
    pub cluster_names: &'static str,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.url.as_deref().map(redact_url))
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

impl RedisOptions {
    /// Whether a URL is given (a blank one is none).
    fn has_url(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Whether a cluster's nodes are given (blank entries are none).
    fn has_cluster(&self) -> bool {
        self.cluster.iter().any(|n| !n.trim().is_empty())
    }

    /// Whether a URL or a cluster's nodes are given.
    pub fn is_given(&self) -> bool {
        self.has_url() || self.has_cluster()
    }

    /// A mistake in how the options are combined, found without reading
    /// anything: a URL and a cluster at once, or half a client
    /// certificate.
    pub fn usage_error(&self) -> Option<Error> {
        if self.has_url() && self.has_cluster() {
            return Some(Error::config(format!(
                "give {} or {}, not both",
                named("--redis-url", self.url_names),
                named("--cluster", self.cluster_names)
            )));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Some(Error::config(
                "--tls-cert needs --tls-key (the certificate's key)",
            )),
            (None, Some(_)) => Some(Error::config(
                "--tls-key needs --tls-cert (its certificate)",
            )),
            _ => None,
        }
    }

    /// The target: the URL or the cluster, the files read now, the
    /// password from `password_file` or [`PASSWORD_ENV`]. Refuses both a
    /// URL and a cluster, neither, half a client certificate, and a file
    /// that cannot be read.
    pub fn resolve(&self) -> Result<RedisTarget, Error> {
        if let Some(problem) = self.usage_error() {
            return Err(problem);
        }
        if !self.is_given() {
            return Err(Error::config(format!(
                "no Redis: give {} or {}",
                named("--redis-url", self.url_names),
                named("--cluster", self.cluster_names)
            )));
        }
        let mut target = RedisTarget::new(self.url.as_deref(), &self.cluster)?;
        if let Some(ca) = &self.tls_ca {
            target = target.tls_root_certificate(read("--tls-ca", ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            target =
                target.tls_client_certificate(read("--tls-cert", cert)?, read("--tls-key", key)?);
        }
        Ok(target.credentials(
            self.username.clone(),
            password(self.password_file.as_deref())?,
        ))
    }
}

/// `--option (other names)`, or the option alone.
fn named(option: &str, names: &str) -> String {
    match names {
        "" => option.to_string(),
        names => format!("{option} ({names})"),
    }
}

/// A file named by `option`; the error names the file, never its content.
fn read(option: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config {
        problem: format!("cannot read {option} {}", path.display()),
        source: Some(e),
    })
}

/// The password: the file's content without its trailing newline, or
/// [`PASSWORD_ENV`]'s; none when neither is given (or the variable is
/// empty).
fn password(file: Option<&Path>) -> Result<Option<String>, Error> {
    let password = match file {
        Some(path) => {
            let bytes = read("--password-file", path)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::config(format!("the password in {} is not UTF-8", path.display()))
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err(Error::config(format!(
                    "--password-file {} is empty",
                    path.display()
                )));
            }
            text.to_string()
        }
        None => match std::env::var(PASSWORD_ENV) {
            Ok(p) => p,
            Err(std::env::VarError::NotPresent) => String::new(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::config(format!("{PASSWORD_ENV} is not UTF-8")));
            }
        },
    };
    Ok(Some(password).filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret";

    fn options(url: Option<&str>, cluster: &[&str]) -> RedisOptions {
        RedisOptions {
            url: url.map(String::from),
            cluster: cluster.iter().map(|n| n.to_string()).collect(),
            url_names: "REDIS_URL",
            cluster_names: "X_CLUSTER",
            ..RedisOptions::default()
        }
    }

    #[test]
    fn a_url_with_a_password_is_redacted_in_debug_and_display() {
        let url = format!("redis://coord:{SECRET}@10.0.0.1:6379/0");
        let unix = format!("redis+unix:///run/r.sock?user=coord&pass={SECRET}");
        let one = RedisTarget::new(Some(&url), &[])
            .expect("a URL")
            .credentials(Some("coord".into()), Some(SECRET.into()));
        assert_eq!(one.to_string(), "redis://coord:<redacted>@10.0.0.1:6379/0");
        let cluster = RedisTarget::new(None, &[url.clone(), unix.clone()]).expect("nodes");
        assert_eq!(
            cluster.to_string(),
            "the Redis Cluster at redis://coord:<redacted>@10.0.0.1:6379/0,\
             redis+unix:///run/r.sock?user=coord&pass=<redacted>"
        );
        let both = options(Some(&url), &[&unix]);
        for shown in [
            one.to_string(),
            format!("{one:?}"),
            cluster.to_string(),
            format!("{cluster:?}"),
            format!("{both:?}"),
            both.resolve().unwrap_err().to_string(),
            RedisTarget::new(Some(&url), std::slice::from_ref(&unix))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(
                shown.contains("<redacted>") || shown.contains("not both"),
                "{shown}"
            );
        }
    }

    #[test]
    fn both_a_url_and_a_cluster_or_neither_are_refused_with_a_clear_error() {
        let both = RedisTarget::new(Some("redis://a:1"), &["redis://b:2".into()]).unwrap_err();
        assert!(matches!(both, Error::Config { .. }), "{both:?}");
        assert_eq!(
            both.to_string(),
            "give a Redis URL or a cluster's nodes, not both \
             (URL redis://a:1, the Redis Cluster at redis://b:2)"
        );
        // Blank entries are none.
        let neither = RedisTarget::new(Some("  "), &[String::new(), " ".into()]).unwrap_err();
        assert_eq!(
            neither.to_string(),
            "no Redis: give a Redis URL or a cluster's nodes"
        );

        assert_eq!(
            options(Some("redis://a:1"), &["redis://b:2"])
                .resolve()
                .unwrap_err()
                .to_string(),
            "give --redis-url (REDIS_URL) or --cluster (X_CLUSTER), not both"
        );
        assert_eq!(
            options(None, &[""]).resolve().unwrap_err().to_string(),
            "no Redis: give --redis-url (REDIS_URL) or --cluster (X_CLUSTER)"
        );
        assert!(options(Some("redis://a:1"), &[]).usage_error().is_none());
        assert!(
            options(None, &["redis://b:2", "redis://c:3"])
                .resolve()
                .is_ok()
        );
    }

    #[test]
    fn half_a_client_certificate_or_an_unreadable_file_is_refused_by_name() {
        let mut half = options(Some("redis://a:1"), &[]);
        half.tls_cert = Some("/nonexistent/cert.pem".into());
        assert_eq!(
            half.usage_error().map(|e| e.to_string()).as_deref(),
            Some("--tls-cert needs --tls-key (the certificate's key)")
        );
        let mut missing = options(Some("redis://a:1"), &[]);
        missing.tls_ca = Some("/nonexistent/ca.pem".into());
        let e = missing.resolve().unwrap_err();
        assert_eq!(e.to_string(), "cannot read --tls-ca /nonexistent/ca.pem");
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    }
}
