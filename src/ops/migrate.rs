//! `migrate.lua`: convert one schema-1 record in place.

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Send, call};
use crate::redis::Route;

/// What migrating one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Migrated {
    /// Converted from schema 1 (and whether its slot must be registered).
    Converted { slot_unlisted: bool },
    /// Already at this schema.
    Current,
    /// At this schema, its lifecycle digest re-stamped (was `previous`).
    Restamped { previous: String },
    /// Gone meanwhile.
    NotFound,
}

pub(crate) async fn migrate(
    env: &Env,
    ctx: &SandboxRef,
    adopt_lifecycle: bool,
) -> Result<Migrated, Error> {
    let (reply, _) = call(
        env,
        &env.scripts.migrate,
        &[
            ctx.record(),
            &ctx.keys.team.key(&format!("lease:{}", ctx.id)),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.tombs(),
            &ctx.keys.team.ids(),
            &ctx.keys.team.hash(),
            &ctx.keys.team.fence(),
            &ctx.keys.team.slot_teams(),
            &ctx.keys.team.slot_listed(),
        ],
        &[
            ctx.prefix(),
            &ctx.id,
            &ctx.team,
            if adopt_lifecycle { "1" } else { "0" },
            &ctx.keys.team.slot_prefix,
        ],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "migrated" => Ok(Migrated::Converted {
            slot_unlisted: reply.str(1) == "1",
        }),
        "current" => Ok(Migrated::Current),
        "restamped" => Ok(Migrated::Restamped {
            previous: reply.str(1).to_string(),
        }),
        "not_found" => Ok(Migrated::NotFound),
        "busy" => Err(ctx.busy(&reply, 1)),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
