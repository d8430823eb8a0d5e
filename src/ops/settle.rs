//! `settle.lua`: how a transition ended; records `abandoned` for a lease
//! that ended without an outcome (mode check), or ends a live one (force).

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, Outcome};
use crate::ops::{Env, Send, call};
use crate::redis::Route;

/// What settle found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It had ended this way (nothing written).
    Ended {
        action: Option<Action>,
        outcome: Outcome,
        reason: String,
    },
    /// This call recorded `abandoned`.
    Abandoned {
        action: Option<Action>,
        reason: String,
    },
    /// Still in flight for this long.
    Live(Duration),
    /// No outcome can be known any more.
    Unknown,
}

/// `holder`: the transition's holder ("" for any: the operator);
/// `force`: end a live lease too.
pub(crate) async fn settle(
    env: &Env,
    ctx: &SandboxRef,
    fence: u64,
    holder: &str,
    force: bool,
    reason: &str,
) -> Result<Settled, Error> {
    let fence_s = fence.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.settle,
        &[ctx.record(), &ctx.outcome(fence), &ctx.keys.team.seq()],
        &[
            ctx.prefix(),
            &ctx.id,
            &fence_s,
            holder,
            if force { "force" } else { "check" },
            reason,
        ],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    let corrupt = |e: String| Error::Corrupt {
        detail: format!("{}: {e}", ctx.record()),
    };
    match reply.status() {
        "outcome" => Ok(Settled::Ended {
            action: reply.str(1).parse().ok(),
            outcome: reply.str(2).parse().map_err(corrupt)?,
            reason: reply.str(3).to_string(),
        }),
        "abandoned" => Ok(Settled::Abandoned {
            action: reply.str(1).parse().ok(),
            reason: reply.str(2).to_string(),
        }),
        "live" => Ok(Settled::Live(Duration::from_millis(reply.u64(1)?))),
        "unknown" => Ok(Settled::Unknown),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
