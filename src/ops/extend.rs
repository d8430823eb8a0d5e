//! `extend.lua`: extend a lease held by fence and holder.

use std::time::Duration;

use crate::error::Error;
use crate::ops::command::Command;
use crate::ops::finish::Target;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// One extend of `target`'s lease to `lease` from now. Its reply:
/// `Some(lease)` when extended, `None` when fenced (the lease is not ours).
#[derive(Debug, Clone)]
pub(crate) struct Extend<'a> {
    pub target: &'a Target,
    pub lease: Duration,
}

impl Command for Extend<'_> {
    type Reply = Option<Duration>;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.extend
    }

    fn keys(&self) -> Vec<String> {
        let sb = &self.target.sandbox;
        vec![sb.record().to_string(), sb.keys.team.seq()]
    }

    fn args(&self) -> Vec<String> {
        let mut args = self.target.args();
        args.push(self.lease.as_millis().to_string());
        args
    }

    /// Idempotent for the same arguments.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Option<Duration>, Error> {
        match reply.status() {
            "extended" => Ok(Some(Duration::from_millis(reply.u64(1)?))),
            "fenced" => Ok(None),
            _ => Err(reply.refusal(self.target.sandbox.record(), &env.digest)),
        }
    }
}
