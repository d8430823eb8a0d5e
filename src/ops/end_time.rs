//! `set_end_time.lua`: move a sandbox's end time and its expiry entry.

use crate::bounds::EndArg;
use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};

pub(crate) async fn set_end_time(
    env: &Env,
    ctx: &SandboxRef,
    end: &EndArg,
    expect_execution: Option<&str>,
) -> Result<Replication, Error> {
    let expect = expect_execution.unwrap_or("");
    let (reply, replication) = call(
        env,
        &env.scripts.set_end_time,
        &[ctx.record(), &ctx.keys.team.expiry(), &ctx.keys.team.seq()],
        &[ctx.prefix(), &ctx.id, end.mode, &end.ms, expect],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "ok" => Ok(replication),
        "not_found" => Err(ctx.not_found()),
        "exec_mismatch" => Err(ctx.exec_mismatch(&reply, expect)),
        "settled" => Err(Error::NotLive {
            team: ctx.team.clone(),
            id: ctx.id.clone(),
            state: reply.str(1).into(),
        }),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
