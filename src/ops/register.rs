//! `register.lua`: a new record, or a new incarnation over a resumable
//! tombstone, with the team's indexes and limit.

use crate::bounds::EndArg;
use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::inspect::row;
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};
use crate::sandbox::{Registration, Sandbox};

/// A registration: what happened, the record, and whether the team's slot
/// still has to be put in the namespace's slot registry.
pub(crate) struct Registered {
    pub how: Registration,
    pub sandbox: Sandbox,
    pub slot_unlisted: bool,
    pub replication: Replication,
}

pub(crate) async fn register(
    env: &Env,
    ctx: &SandboxRef,
    execution: &str,
    end: &EndArg,
    data: &str,
    token: &str,
) -> Result<Registered, Error> {
    let limit = env.default_limit.map(|n| n.to_string()).unwrap_or_default();
    let (reply, replication) = call(
        env,
        &env.scripts.register,
        &[
            ctx.record(),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.tombs(),
            &ctx.keys.team.ids(),
            &ctx.keys.team.resv(),
            &ctx.keys.team.hash(),
            &ctx.keys.team.slot_teams(),
            &ctx.keys.team.slot_listed(),
            &ctx.keys.team.seq(),
        ],
        &[
            ctx.prefix(),
            &ctx.id,
            execution,
            end.mode,
            &end.ms,
            data,
            &limit,
            &ctx.team,
            &ctx.keys.team.slot_prefix,
            token,
        ],
        Send::Once { write: true },
        Route::default(),
    )
    .await?;
    let how = match reply.status() {
        "created" => Registration::Created,
        "existing" => Registration::Existing,
        "resumed" => Registration::Resumed {
            previous_execution: reply.str(2).to_string(),
        },
        "busy" => return Err(ctx.busy(&reply, 1)),
        "exists" => return Err(ctx.exists(&reply)),
        "team_limit" => return Err(ctx.team_limit(&reply)),
        _ => return Err(reply.refusal(ctx.record(), &env.digest)),
    };
    let sandbox = row(env, &reply, 4, reply.u64(3)?, &ctx.team, &ctx.id)?;
    Ok(Registered {
        how,
        sandbox,
        slot_unlisted: reply.str(1) == "1",
        replication,
    })
}
