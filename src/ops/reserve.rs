//! `reserve.lua` and `unreserve.lua`: a place of the team's limit (and the
//! id) held for a slow create or resume.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// What a reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A new id.
    Create,
    /// A paused sandbox to resume.
    Resume,
}

/// One reservation of `sandbox` for `ttl` as `token`. Its reply: the time
/// it holds, by the server clock.
#[derive(Debug, Clone)]
pub(crate) struct Reserve<'a> {
    pub sandbox: &'a SandboxRef,
    pub token: &'a str,
    pub ttl: Duration,
    pub purpose: Purpose,
    /// The limit of a team without its own (`Builder::team_limit`).
    pub default_limit: Option<usize>,
}

impl Command for Reserve<'_> {
    type Reply = Duration;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.reserve
    }

    fn keys(&self) -> Vec<String> {
        let (sb, t) = (self.sandbox, &self.sandbox.keys.team);
        vec![
            sb.record().to_string(),
            t.expiry(),
            t.resv(),
            t.hash(),
            t.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let purpose = match self.purpose {
            Purpose::Create => "create",
            Purpose::Resume => "resume",
        };
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.token.to_string(),
            self.ttl.as_millis().to_string(),
            self.default_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            purpose.to_string(),
        ]
    }

    /// Sent once: the caller decides.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Duration, Error> {
        let sb = self.sandbox;
        match reply.status() {
            "reserved" => Ok(self.ttl),
            "exists" => Err(sb.exists(&reply)),
            "not_found" => Err(sb.not_found()),
            "busy" => Err(sb.busy(&reply, 1)),
            "team_limit" => Err(sb.team_limit(&reply)),
            _ => Err(reply.refusal(sb.record(), &env.digest)),
        }
    }
}

/// One release of the reservation `token` of `sandbox`. Its reply: `true`
/// if this call released it.
#[derive(Debug, Clone)]
pub(crate) struct Unreserve<'a> {
    pub sandbox: &'a SandboxRef,
    pub token: &'a str,
}

impl Command for Unreserve<'_> {
    type Reply = bool;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.unreserve
    }

    fn keys(&self) -> Vec<String> {
        let (sb, t) = (self.sandbox, &self.sandbox.keys.team);
        vec![sb.record().to_string(), t.resv(), t.hash(), t.seq()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.token.to_string(),
        ]
    }

    /// Idempotent by its token.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<bool, Error> {
        match reply.status() {
            "released" => Ok(true),
            "none" => Ok(false),
            _ => Err(reply.refusal(self.sandbox.record(), &env.digest)),
        }
    }
}
