//! `set_end_time.lua`: move a sandbox's end time and its expiry entry.

use crate::bounds::EndArg;
use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// One move of `sandbox`'s end time (refused unless the record is
/// `expect_execution`'s, if given).
#[derive(Clone)]
pub(crate) struct SetEndTime<'a> {
    pub sandbox: &'a SandboxRef,
    pub end: &'a EndArg,
    pub expect_execution: Option<&'a str>,
}

impl Command for SetEndTime<'_> {
    type Reply = ();
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.set_end_time
    }

    fn keys(&self) -> Vec<String> {
        let sb = self.sandbox;
        vec![
            sb.record().to_string(),
            sb.keys.team.expiry(),
            sb.keys.team.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.end.mode.to_string(),
            self.end.ms.clone(),
            self.expect_execution.unwrap_or("").to_string(),
        ]
    }

    /// Idempotent for the same arguments.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<(), Error> {
        let sb = self.sandbox;
        match reply.status() {
            "ok" => Ok(()),
            "not_found" => Err(sb.not_found()),
            "exec_mismatch" => Err(sb.exec_mismatch(&reply, self.expect_execution.unwrap_or(""))),
            "settled" => Err(sb.not_live(&reply)),
            _ => Err(reply.refusal(sb.record(), &env.digest)),
        }
    }
}
