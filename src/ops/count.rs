//! `count.lua`: a team's sandboxes by state class.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::sandbox::TeamCount;
use crate::scripts::Script;

/// One count of a team's sandboxes.
#[derive(Debug, Clone)]
pub(crate) struct Count<'a> {
    pub team: &'a TeamKeys,
}

impl Command for Count<'_> {
    type Reply = TeamCount;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.count
    }

    fn keys(&self) -> Vec<String> {
        vec![self.team.ids(), self.team.resv(), self.team.hash()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.team.prefix.clone()]
    }

    /// Idempotent (it only drops expired reservations).
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<TeamCount, Error> {
        if reply.status() != "count" {
            return Err(reply.refusal(&self.team.ids(), &env.digest));
        }
        Ok(TeamCount {
            live: reply.usize(1)?,
            in_flight: reply.usize(2)?,
            paused: reply.usize(3)?,
            killed: reply.usize(4)?,
            reserved: reply.usize(5)?,
            limit: reply.str(6).parse().ok(),
        })
    }
}
