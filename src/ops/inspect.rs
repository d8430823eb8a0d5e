//! `inspect.lua` (one record), and the record rows it and `register.lua`
//! reply with: parsed and validated by [`crate::record`], the Rust twin of
//! the scripts' validation.

use std::time::Instant;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::record::{FIELDS, Raw};
use crate::retry::Retry;
use crate::sandbox::Sandbox;
use crate::scripts::Script;

/// Fields one record row takes in a reply: PTTL, the FIELDS, data.
pub(crate) const ROW: usize = FIELDS.len() + 2;

/// The record row of `reply` starting at `at` (its PTTL), read at `now_ms`.
pub(crate) fn row(
    env: &Env,
    reply: &Reply,
    at: usize,
    now_ms: u64,
    team: &str,
    id: &str,
) -> Result<Sandbox, Error> {
    let key = format!("{}:{{{team}}}:rec:{id}", env.ns.prefix());
    if reply.len() < at + ROW {
        return Err(Error::Corrupt {
            detail: format!("{key}: the reply's record row is too short"),
        });
    }
    let pttl = reply.i64(at)?;
    let fields: [&str; FIELDS.len()] = std::array::from_fn(|i| reply.str(at + 1 + i));
    Raw { fields }.to_sandbox(
        &env.lifecycle,
        &key,
        team,
        id,
        now_ms,
        pttl,
        reply.str(at + 1 + FIELDS.len()),
    )
}

/// One read of `sandbox`'s record (with its lease, queue and reservation).
#[derive(Debug, Clone)]
pub(crate) struct Inspect<'a> {
    pub sandbox: &'a SandboxRef,
    /// The caller's: no retry waits past it.
    pub deadline: Option<Instant>,
}

impl Command for Inspect<'_> {
    type Reply = Option<Sandbox>;
    const WRITE: bool = false;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.inspect
    }

    fn keys(&self) -> Vec<String> {
        vec![self.sandbox.record().to_string()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.sandbox.prefix().to_string(), self.sandbox.id.clone()]
    }

    /// Read-only.
    fn retry(&self) -> Retry {
        Retry::TWICE.within(self.deadline)
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Option<Sandbox>, Error> {
        let sb = self.sandbox;
        match reply.status() {
            "record" => Ok(Some(row(env, &reply, 2, reply.u64(1)?, &sb.team, &sb.id)?)),
            "not_found" => Ok(None),
            _ => Err(reply.refusal(sb.record(), &env.digest)),
        }
    }
}
