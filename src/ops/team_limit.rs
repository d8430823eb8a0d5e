//! `team_limit.lua`: set or clear a team's limit.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// One set (or, `None`, clear) of a team's limit. Its reply: the previous
/// limit.
#[derive(Debug, Clone)]
pub(crate) struct SetTeamLimit<'a> {
    pub team: &'a TeamKeys,
    pub limit: Option<usize>,
}

impl Command for SetTeamLimit<'_> {
    type Reply = Option<usize>;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.team_limit
    }

    fn keys(&self) -> Vec<String> {
        vec![self.team.hash(), self.team.seq()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.team.prefix.clone(),
            self.limit.map(|n| n.to_string()).unwrap_or_default(),
        ]
    }

    /// Idempotent for the same arguments.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Option<usize>, Error> {
        if reply.status() != "ok" {
            return Err(reply.refusal(&self.team.hash(), &env.digest));
        }
        Ok(reply.str(1).parse().ok())
    }
}
