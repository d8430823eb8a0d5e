//! `remove.lua`: delete a record and its index entries.

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};

/// `true` if a record was removed, `false` if there was none.
pub(crate) async fn remove(
    env: &Env,
    ctx: &SandboxRef,
    expect_execution: Option<&str>,
) -> Result<(bool, Replication), Error> {
    let expect = expect_execution.unwrap_or("");
    let (reply, replication) = call(
        env,
        &env.scripts.remove,
        &[
            ctx.record(),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.tombs(),
            &ctx.keys.team.ids(),
            &ctx.keys.team.hash(),
            &ctx.keys.team.slot_teams(),
            &ctx.keys.team.seq(),
        ],
        &[ctx.prefix(), &ctx.id, expect, &ctx.team],
        Send::Once { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "removed" => Ok((true, replication)),
        "not_found" => Ok((false, replication)),
        "busy" => Err(ctx.busy(&reply, 1)),
        "exec_mismatch" => Err(ctx.exec_mismatch(&reply, expect)),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
