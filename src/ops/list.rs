//! `list.lua`: one page of a team's sandboxes from its id index.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::command::Command;
use crate::ops::inspect::{ROW, row};
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::sandbox::Page;
use crate::scripts::Script;

/// One page of team `team`'s sandboxes: the first `count` after `after`.
#[derive(Debug, Clone)]
pub(crate) struct List<'a> {
    pub team: &'a str,
    pub keys: &'a TeamKeys,
    pub after: Option<&'a str>,
    pub count: usize,
}

impl Command for List<'_> {
    type Reply = Page;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.list
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.ids()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.keys.prefix.clone(),
            self.after.unwrap_or("").to_string(),
            self.count.to_string(),
        ]
    }

    /// Idempotent (a read that may drop expired entries).
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Page, Error> {
        if reply.status() != "page" {
            return Err(reply.refusal(&self.keys.ids(), &env.digest));
        }
        let now = reply.u64(2)?;
        let n = reply.usize(3)?;
        let mut sandboxes = Vec::with_capacity(n);
        for i in 0..n {
            let at = 4 + i * (ROW + 1);
            let id = reply.str(at).to_string();
            sandboxes.push(row(env, &reply, at + 1, now, self.team, &id)?);
        }
        let next = Some(reply.str(1).to_string()).filter(|s| !s.is_empty());
        Ok(Page { sandboxes, next })
    }
}
