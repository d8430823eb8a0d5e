//! `remove.lua`: delete a record and its index entries.

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// One removal of `sandbox`'s record (only `expect_execution`'s, if
/// given). Its reply: `true` if a record was removed, `false` if there was
/// none.
#[derive(Debug, Clone)]
pub(crate) struct Remove<'a> {
    pub sandbox: &'a SandboxRef,
    pub expect_execution: Option<&'a str>,
}

impl Command for Remove<'_> {
    type Reply = bool;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.remove
    }

    fn keys(&self) -> Vec<String> {
        self.sandbox.removal_keys()
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.expect_execution.unwrap_or("").to_string(),
            self.sandbox.team.clone(),
        ]
    }

    /// Sent once: a retry after a lost reply could delete a newer
    /// incarnation registered meanwhile.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<bool, Error> {
        let sb = self.sandbox;
        match reply.status() {
            "removed" => Ok(true),
            "not_found" => Ok(false),
            "busy" => Err(sb.busy(&reply, 1)),
            "exec_mismatch" => Err(sb.exec_mismatch(&reply, self.expect_execution.unwrap_or(""))),
            _ => Err(reply.refusal(sb.record(), &env.digest)),
        }
    }
}
