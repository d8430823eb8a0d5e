//! `register.lua`: a new record, or a new incarnation over a resumable
//! tombstone, with the team's indexes and limit.

use crate::bounds::EndArg;
use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::inspect::row;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::sandbox::{Registration, Sandbox};
use crate::scripts::Script;

/// A registration: what happened, the record, and whether the team's slot
/// still has to be put in the namespace's slot registry.
pub(crate) struct Registered {
    pub how: Registration,
    pub sandbox: Sandbox,
    pub slot_unlisted: bool,
}

/// One registration of `sandbox` as `execution` (consuming reservation
/// `token`, if not "").
#[derive(Clone)]
pub(crate) struct Register<'a> {
    pub sandbox: &'a SandboxRef,
    pub execution: &'a str,
    pub end: &'a EndArg,
    pub data: &'a str,
    pub token: &'a str,
    /// The limit of a team without its own (`Builder::team_limit`).
    pub default_limit: Option<usize>,
}

impl Command for Register<'_> {
    type Reply = Registered;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.register
    }

    fn keys(&self) -> Vec<String> {
        let (sb, t) = (self.sandbox, &self.sandbox.keys.team);
        vec![
            sb.record().to_string(),
            t.expiry(),
            t.tombs(),
            t.ids(),
            t.resv(),
            t.hash(),
            t.slot_teams(),
            t.slot_listed(),
            t.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let sb = self.sandbox;
        vec![
            sb.prefix().to_string(),
            sb.id.clone(),
            self.execution.to_string(),
            self.end.mode.to_string(),
            self.end.ms.clone(),
            self.data.to_string(),
            self.default_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            sb.team.clone(),
            sb.keys.team.slot_prefix.clone(),
            self.token.to_string(),
        ]
    }

    /// Sent once: the caller decides.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Registered, Error> {
        let sb = self.sandbox;
        let how = match reply.status() {
            "created" => Registration::Created,
            "existing" => Registration::Existing,
            "resumed" => Registration::Resumed {
                previous_execution: reply.str(2).to_string(),
            },
            "busy" => return Err(sb.busy(&reply, 1)),
            "exists" => return Err(sb.exists(&reply)),
            "team_limit" => return Err(sb.team_limit(&reply)),
            _ => return Err(reply.refusal(sb.record(), &env.digest)),
        };
        let sandbox = row(env, &reply, 4, reply.u64(3)?, &sb.team, &sb.id)?;
        Ok(Registered {
            how,
            sandbox,
            slot_unlisted: reply.str(1) == "1",
        })
    }
}
