//! `remove.lua`: delete a record and its index entries.

use crate::error::Error;
use crate::ops::{Ctx, Env, Send, call};
use crate::redis::{Replication, Route};

/// `true` if a record was removed, `false` if there was none.
pub(crate) async fn remove(
    env: &Env,
    ctx: &Ctx<'_>,
    expect_execution: Option<&str>,
) -> Result<(bool, Replication), Error> {
    let expect = expect_execution.unwrap_or("");
    let (reply, replication) = call(
        env,
        &env.scripts.remove,
        &[
            &ctx.keys.record,
            &ctx.keys.team.key("expiry"),
            &ctx.keys.team.key("tombs"),
            &ctx.keys.team.key("ids"),
            &ctx.keys.team.key("team"),
            &ctx.keys.team.slot_key("teams"),
            &ctx.keys.team.key("seq"),
        ],
        &[&ctx.keys.team.prefix, ctx.id, expect, ctx.team],
        Send::Once { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "removed" => Ok((true, replication)),
        "not_found" => Ok((false, replication)),
        "busy" => Err(ctx.busy(&reply, 1)),
        "exec_mismatch" => Err(ctx.exec_mismatch(&reply, expect)),
        _ => Err(reply.refusal(&ctx.keys.record, &env.digest)),
    }
}
