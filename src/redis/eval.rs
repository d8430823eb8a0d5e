//! A script call: one `EVALSHA` (with `WAIT` in the same round trip for a
//! write when `wait_for_replicas` is set), the `NOSCRIPT` reload (one
//! `EVAL` of the source), and the `SCRIPT LOAD` of every script at start.
//! The only place a script is sent.

use redis::{ErrorKind, ServerErrorKind, Value};

use crate::error::{Error, to_error};
use crate::redis::link::{Link, Route};
use crate::redis::value;
use crate::scripts::Script;

/// How a write was replicated (with `wait_for_replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replication {
    /// Not asked for, or acknowledged by enough replicas.
    Enough,
    /// Acknowledged by fewer replicas than asked.
    Short { acked: usize, wanted: usize },
}

impl Link {
    /// Runs `script`: one `EVALSHA` (with `WAIT` in the same round trip for
    /// a write, if `wait_for_replicas` is set), plus one `EVAL` only if the
    /// server lost its script cache (restart, failover, `SCRIPT FLUSH`).
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        write: bool,
        route: Route,
    ) -> Result<(Value, Replication), Error> {
        match self
            .run_as("EVALSHA", script, keys, args, write, route)
            .await
        {
            Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!(script = script.name(), "NOSCRIPT: sending the source");
                metrics::counter!(crate::metrics::RELOADS).increment(1);
                self.run_as("EVAL", script, keys, args, write, route).await
            }
            other => other,
        }
    }

    async fn run_as(
        &self,
        how: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        write: bool,
        route: Route,
    ) -> Result<(Value, Replication), Error> {
        let mut pipe = redis::pipe();
        let body = if how == "EVAL" {
            script.source()
        } else {
            script.sha()
        };
        pipe.cmd(how).arg(body).arg(keys.len()).arg(keys).arg(args);
        let wait = self.settings.wait.filter(|_| write);
        if let Some((n, timeout)) = wait {
            pipe.cmd("WAIT").arg(n).arg(timeout.as_millis() as u64);
        }
        let mut replies = self.send(&pipe, route).await?.into_iter();
        let value = replies.next().unwrap_or(Value::Nil);
        if let Value::ServerError(e) = value {
            return Err(to_error(e.into()));
        }
        let replication = match (wait, replies.next()) {
            (Some((wanted, _)), Some(Value::Int(acked))) if (acked as usize) < wanted => {
                Replication::Short {
                    acked: acked.max(0) as usize,
                    wanted,
                }
            }
            _ => Replication::Enough,
        };
        Ok((value, replication))
    }

    /// Loads every script into the cache of every primary (`SCRIPT LOAD`)
    /// and checks that the server computed the same SHA1.
    pub(crate) async fn load(&self, scripts: &[&Script]) -> Result<(), Error> {
        for script in scripts {
            let value = self
                .query(
                    redis::cmd("SCRIPT").arg("LOAD").arg(script.source()),
                    Route::default(),
                )
                .await?;
            let sha = value::text(&value).unwrap_or_else(|| format!("{value:?}"));
            if sha != script.sha() {
                return Err(Error::Corrupt {
                    detail: format!(
                        "SCRIPT LOAD of {} returned {sha}, expected {}",
                        script.name(),
                        script.sha()
                    ),
                });
            }
        }
        Ok(())
    }
}
