//! `due.lua` (one team) and `due_slot.lua` (every team of a slot): what is
//! due for eviction by the server clock.

use crate::error::Error;
use crate::keys::{Namespace, SandboxRef, TeamKeys};
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// A due sandbox: team, id, end time (ms).
pub(crate) type Due = (String, String, u64);

/// What a due script found: the due sandboxes, (team, id) of stale index
/// entries to sweep, and (team, what is wrong) of the teams skipped because
/// an index of theirs is damaged.
pub(crate) struct Found {
    pub due: Vec<Due>,
    pub orphans: Vec<(String, String)>,
    pub damaged: Vec<(String, String)>,
}

/// What is due in one team, at most `limit`.
#[derive(Debug, Clone)]
pub(crate) struct DueTeam<'a> {
    pub team: &'a str,
    pub keys: &'a TeamKeys,
    pub limit: usize,
}

impl Command for DueTeam<'_> {
    type Reply = Found;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.due
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.expiry(), self.keys.tombs()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.keys.prefix.clone(), self.limit.to_string()]
    }

    /// Idempotent (a read that may drop expired tombstones).
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Found, Error> {
        if reply.status() != "due" {
            return Err(reply.refusal(&self.keys.expiry(), &env.digest));
        }
        let team = self.team;
        let n = reply.usize(2)?;
        let mut found = Found {
            due: Vec::with_capacity(n),
            orphans: Vec::new(),
            damaged: Vec::new(),
        };
        for k in 0..n {
            let i = 3 + 2 * k;
            found.due.push((
                team.to_string(),
                reply.str(i).to_string(),
                reply.u64(i + 1)?,
            ));
        }
        for i in 3 + 2 * n..reply.len() {
            found
                .orphans
                .push((team.to_string(), reply.str(i).to_string()));
        }
        Ok(found)
    }
}

/// What is due in every team of hash slot `slot`, at most `limit`.
#[derive(Debug, Clone)]
pub(crate) struct DueSlot<'a> {
    pub ns: &'a Namespace,
    pub slot: u16,
    pub limit: usize,
}

impl Command for DueSlot<'_> {
    type Reply = Found;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.due_slot
    }

    fn keys(&self) -> Vec<String> {
        vec![self.ns.slot_teams(self.slot)]
    }

    fn args(&self) -> Vec<String> {
        vec![self.ns.prefix().to_string(), self.limit.to_string()]
    }

    /// Idempotent (a read that may drop expired tombstones).
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Found, Error> {
        if reply.status() != "due" {
            return Err(reply.refusal(&self.ns.slot_teams(self.slot), &env.digest));
        }
        let n = reply.usize(2)?;
        let mut found = Found {
            due: Vec::with_capacity(n),
            orphans: Vec::new(),
            damaged: Vec::new(),
        };
        for k in 0..n {
            let i = 3 + 3 * k;
            found.due.push((
                reply.str(i).to_string(),
                reply.str(i + 1).to_string(),
                reply.u64(i + 2)?,
            ));
        }
        let mut i = 3 + 3 * n;
        let d = reply.usize(i)?;
        i += 1;
        for _ in 0..d {
            found
                .damaged
                .push((reply.str(i).to_string(), reply.str(i + 1).to_string()));
            i += 2;
        }
        while i + 1 < reply.len() {
            found
                .orphans
                .push((reply.str(i).to_string(), reply.str(i + 1).to_string()));
            i += 2;
        }
        Ok(found)
    }
}

/// `sweep.lua`: drops an id from the team's indexes if its record is gone.
/// Its reply: `true` if it was swept.
#[derive(Debug, Clone)]
pub(crate) struct Sweep<'a> {
    pub sandbox: &'a SandboxRef,
}

impl Command for Sweep<'_> {
    type Reply = bool;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.sweep
    }

    fn keys(&self) -> Vec<String> {
        self.sandbox.removal_keys()
    }

    fn args(&self) -> Vec<String> {
        let sb = self.sandbox;
        vec![sb.id.clone(), sb.prefix().to_string(), sb.team.clone()]
    }

    /// Idempotent: a swept id is not swept again.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, _env: &Env, reply: Reply) -> Result<bool, Error> {
        Ok(reply.status() == "swept")
    }
}
