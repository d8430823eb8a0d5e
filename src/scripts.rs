//! The Lua scripts of `lua/`, compiled in, with their SHA1s, and the one
//! place that invokes them: `EVALSHA`, falling back to `EVAL` (which also
//! caches the script) when Redis answers `NOSCRIPT` after a restart or a
//! `SCRIPT FLUSH`. Replies are flat arrays of strings whose first element
//! is a status word; the coordinator maps those to types in one place.

use std::sync::LazyLock;

use redis::{ErrorKind, ServerErrorKind, Value};

use crate::error::Error;
use crate::pool::Pool;

/// One Lua script: its name, source and SHA1 (what `SCRIPT LOAD` returns).
#[derive(Debug)]
pub struct Script {
    /// The file name without `.lua`.
    pub name: &'static str,
    /// The Lua source.
    pub source: &'static str,
    /// Hex SHA1 of the source.
    pub sha: String,
}

impl Script {
    fn new(name: &'static str, source: &'static str) -> Script {
        Script {
            name,
            source,
            sha: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }
}

macro_rules! scripts {
    ($($field:ident),* $(,)?) => {
        /// Every script of the crate.
        #[derive(Debug)]
        pub struct Scripts { $(
            #[doc = concat!("`lua/", stringify!($field), ".lua`")]
            pub $field: Script,
        )* }

        impl Scripts {
            /// All scripts, for loading and listing.
            pub fn all(&self) -> Vec<&Script> {
                vec![$(&self.$field),*]
            }
        }

        /// The compiled-in scripts.
        pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts { $(
            $field: Script::new(
                stringify!($field),
                include_str!(concat!("../lua/", stringify!($field), ".lua")),
            ),
        )* });
    };
}

scripts!(
    register,
    begin,
    finish,
    extend,
    settle,
    set_end_time,
    remove,
    inspect,
    due
);

/// A script's reply: status word and the fields after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply(pub Vec<String>);

impl Reply {
    pub(crate) fn status(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("")
    }

    /// Field `i` (0 = status), or "" when the reply is shorter.
    pub(crate) fn get(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or("")
    }

    pub(crate) fn u64(&self, script: &str, i: usize) -> Result<u64, Error> {
        self.get(i).parse().map_err(|_| Error::Corrupt {
            detail: format!(
                "{script}.lua replied {:?}: field {i} is not a number",
                self.0
            ),
        })
    }
}

/// Runs `script` with `keys` and `args`: one `EVALSHA`, plus one `EVAL`
/// only if the server lost its script cache.
pub(crate) async fn invoke(
    pool: &Pool,
    script: &Script,
    keys: &[&str],
    args: &[&str],
) -> Result<Reply, Error> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&script.sha).arg(keys.len()).arg(keys).arg(args);
    let value = match pool.query(&cmd).await {
        Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            tracing::debug!(script = script.name, "NOSCRIPT: sending the source");
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script.source).arg(keys.len()).arg(keys).arg(args);
            pool.query(&cmd).await?
        }
        other => other?,
    };
    to_reply(script.name, value)
}

fn to_reply(script: &str, value: Value) -> Result<Reply, Error> {
    let bad = |v: &Value| Error::Corrupt {
        detail: format!("{script}.lua gave an unexpected reply: {v:?}"),
    };
    let Value::Array(items) = value else {
        return Err(bad(&value));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            Value::BulkString(b) => String::from_utf8(b).map_err(|e| Error::Corrupt {
                detail: format!("{script}.lua replied with non-UTF-8 bytes: {e}"),
            })?,
            Value::SimpleString(s) => s,
            Value::Int(i) => i.to_string(),
            other => return Err(bad(&other)),
        });
    }
    Ok(Reply(out))
}

/// Loads every script into the server's cache (`SCRIPT LOAD`) and checks
/// that the server computed the same SHA1.
pub(crate) async fn load_all(pool: &Pool) -> Result<(), Error> {
    for script in SCRIPTS.all() {
        let value = pool
            .query(redis::cmd("SCRIPT").arg("LOAD").arg(script.source))
            .await?;
        let sha = match value {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::SimpleString(s) => s,
            other => format!("{other:?}"),
        };
        if sha != script.sha {
            return Err(Error::Corrupt {
                detail: format!(
                    "SCRIPT LOAD of {}.lua returned {sha}, expected {}",
                    script.name, script.sha
                ),
            });
        }
    }
    Ok(())
}
