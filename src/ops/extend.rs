//! `extend.lua`: extend a lease held by fence and holder.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Send, call};
use crate::redis::Route;

/// `Some(lease)` when extended, `None` when fenced (the lease is not ours).
pub(crate) async fn extend(
    env: &Env,
    ctx: &SandboxRef,
    fence: u64,
    holder: &str,
    lease: Duration,
) -> Result<Option<Duration>, Error> {
    let fence_s = fence.to_string();
    let lease_ms = lease.as_millis().to_string();
    let (reply, _) = call(
        env,
        &env.scripts.extend,
        &[ctx.record(), &ctx.keys.team.seq()],
        &[ctx.prefix(), &ctx.id, &fence_s, holder, &lease_ms],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "extended" => Ok(Some(Duration::from_millis(reply.u64(1)?))),
        "fenced" => Ok(None),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
