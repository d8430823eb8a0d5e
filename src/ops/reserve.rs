//! `reserve.lua` and `unreserve.lua`: a place of the team's limit (and the
//! id) held for a slow create or resume.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};

/// A reservation as the script made it.
pub(crate) struct Reserved {
    /// Time it holds, by the server clock.
    pub ttl: Duration,
    pub replication: Replication,
}

pub(crate) async fn reserve(
    env: &Env,
    ctx: &SandboxRef,
    token: &str,
    ttl: Duration,
    resume: bool,
) -> Result<Reserved, Error> {
    let ttl_ms = ttl.as_millis().to_string();
    let limit = env.default_limit.map(|n| n.to_string()).unwrap_or_default();
    let (reply, replication) = call(
        env,
        &env.scripts.reserve,
        &[
            ctx.record(),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.resv(),
            &ctx.keys.team.hash(),
            &ctx.keys.team.seq(),
        ],
        &[
            ctx.prefix(),
            &ctx.id,
            token,
            &ttl_ms,
            &limit,
            if resume { "resume" } else { "create" },
        ],
        Send::Once { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "reserved" => Ok(Reserved { ttl, replication }),
        "exists" => Err(ctx.exists(&reply)),
        "not_found" => Err(ctx.not_found()),
        "busy" => Err(ctx.busy(&reply, 1)),
        "team_limit" => Err(ctx.team_limit(&reply)),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}

/// `true` if this call released it.
pub(crate) async fn unreserve(env: &Env, ctx: &SandboxRef, token: &str) -> Result<bool, Error> {
    let (reply, _) = call(
        env,
        &env.scripts.unreserve,
        &[
            ctx.record(),
            &ctx.keys.team.resv(),
            &ctx.keys.team.hash(),
            &ctx.keys.team.seq(),
        ],
        &[ctx.prefix(), &ctx.id, token],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "released" => Ok(true),
        "none" => Ok(false),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
