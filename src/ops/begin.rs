//! `begin_<action>.lua`: decide a requested action, and open the transition
//! when the rule says start.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, State};
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};

/// The arguments of one begin call.
pub(crate) struct BeginArgs<'a> {
    pub holder: &'a str,
    pub lease: Duration,
    pub expect_execution: Option<&'a str>,
    pub eviction: bool,
    /// How long a queued waiter keeps its place without a re-check.
    pub queue_place: Duration,
}

/// What the script decided (its refusals are already errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decided {
    /// This call holds the transition.
    Started {
        fence: u64,
        lease: Duration,
        execution: String,
    },
    /// The same action is in flight: wait for its outcome.
    Join {
        fence: u64,
        lease_left: Duration,
        holder: String,
    },
    /// Queued: re-check when transition `fence` (if any) ends, or at `wake`.
    Wait { fence: Option<u64>, wake: Duration },
    /// Transition `fence` is stuck (its holder vanished): record its end
    /// (settle) before deciding.
    Stuck { fence: u64, holder: String },
    /// Already in the action's target state.
    Same(State),
    /// The current state covers the request.
    Absorbed(State),
}

fn state(ctx: &SandboxRef, s: &str) -> Result<State, Error> {
    s.parse().map_err(|e: String| Error::Corrupt {
        detail: format!("{}: {e}", ctx.record()),
    })
}

pub(crate) async fn begin(
    env: &Env,
    ctx: &SandboxRef,
    action: Action,
    args: &BeginArgs<'_>,
    route: Route,
) -> Result<(Decided, Replication), Error> {
    let lease_ms = args.lease.as_millis().to_string();
    let queue_ms = args.queue_place.as_millis().to_string();
    let expect = args.expect_execution.unwrap_or("");
    let (reply, replication) = call(
        env,
        env.scripts.begin(action),
        &[
            ctx.record(),
            &ctx.keys.team.expiry(),
            &ctx.keys.team.tombs(),
            &ctx.keys.team.ids(),
            &ctx.keys.team.seq(),
        ],
        &[
            ctx.prefix(),
            &ctx.id,
            args.holder,
            &lease_ms,
            expect,
            if args.eviction { "1" } else { "0" },
            &queue_ms,
        ],
        Send::Once { write: true },
        route,
    )
    .await?;
    let ms = |i| reply.u64(i).map(Duration::from_millis);
    let decided = match reply.status() {
        "started" => Decided::Started {
            fence: reply.u64(1)?,
            lease: ms(2)?,
            execution: reply.str(3).to_string(),
        },
        "join" => Decided::Join {
            fence: reply.u64(1)?,
            lease_left: ms(2)?,
            holder: reply.str(3).to_string(),
        },
        "wait" => Decided::Wait {
            fence: Some(reply.u64(1)?).filter(|f| *f > 0),
            wake: ms(2)?,
        },
        "stuck" => Decided::Stuck {
            fence: reply.u64(1)?,
            holder: reply.str(2).to_string(),
        },
        "same" => Decided::Same(state(ctx, reply.str(1))?),
        "absorbed" => Decided::Absorbed(state(ctx, reply.str(1))?),
        "invalid" => {
            return Err(Error::InvalidTransition {
                team: ctx.team.clone(),
                id: ctx.id.clone(),
                from: state(ctx, reply.str(1))?,
                action,
            });
        }
        "not_found" => return Err(ctx.not_found()),
        "exec_mismatch" => return Err(ctx.exec_mismatch(&reply, expect)),
        "eviction_in_progress" => {
            return Err(Error::EvictionInProgress {
                team: ctx.team.clone(),
                id: ctx.id.clone(),
                fence: reply.u64(1).unwrap_or(0),
                action: reply.str(2).into(),
            });
        }
        "eviction_not_needed" => {
            return Err(Error::EvictionNotNeeded {
                team: ctx.team.clone(),
                id: ctx.id.clone(),
                end_ms: reply.u64(1)?,
                now_ms: reply.u64(2)?,
            });
        }
        _ => return Err(reply.refusal(ctx.record(), &env.digest)),
    };
    Ok((decided, replication))
}
