//! `migrate.lua`: convert one schema-1 or schema-2 record in place.

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// What migrating one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Migrated {
    /// Converted from schema 1 or 2 (and whether its slot must be registered).
    Converted { slot_unlisted: bool },
    /// Already at this schema.
    Current,
    /// At this schema, its lifecycle digest re-stamped (was `previous`).
    Restamped { previous: String },
    /// Gone meanwhile.
    NotFound,
}

/// One migration of `sandbox`'s record (with `adopt_lifecycle`: re-stamp
/// a record of another rule table).
#[derive(Debug, Clone)]
pub(crate) struct Migrate<'a> {
    pub sandbox: &'a SandboxRef,
    pub adopt_lifecycle: bool,
}

impl Command for Migrate<'_> {
    type Reply = Migrated;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.migrate
    }

    fn keys(&self) -> Vec<String> {
        let (sb, t) = (self.sandbox, &self.sandbox.keys.team);
        vec![
            sb.record().to_string(),
            t.lease_v1(&sb.id),
            t.expiry(),
            t.tombs(),
            t.ids(),
            t.hash(),
            t.fence(),
            t.slot_teams(),
            t.slot_listed(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let sb = self.sandbox;
        vec![
            sb.prefix().to_string(),
            sb.id.clone(),
            sb.team.clone(),
            if self.adopt_lifecycle { "1" } else { "0" }.to_string(),
            sb.keys.team.slot_prefix.clone(),
        ]
    }

    /// Idempotent: a converted record is `current`.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Migrated, Error> {
        let sb = self.sandbox;
        match reply.status() {
            "migrated" => Ok(Migrated::Converted {
                slot_unlisted: reply.str(1) == "1",
            }),
            "current" => Ok(Migrated::Current),
            "restamped" => Ok(Migrated::Restamped {
                previous: reply.str(1).to_string(),
            }),
            "not_found" => Ok(Migrated::NotFound),
            "busy" => Err(sb.busy(&reply, 1)),
            _ => Err(reply.refusal(sb.record(), &env.digest)),
        }
    }
}
