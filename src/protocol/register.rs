//! A register: a new sandbox, or a new incarnation over a paused one (a
//! resume), with its place under the team's limit — validated, its slot
//! listed in the registry first (see `slots::list`), then one script call.
//! A reservation's register passes the reservation's token (consumed).

use tracing::Instrument;

use crate::bounds;
use crate::error::{Error, Result};
use crate::keys::validate_id;
use crate::ops;
use crate::ops::command::invoke;
use crate::protocol::slots;
use crate::runtime::Runtime;
use crate::sandbox::{MAX_DATA_LEN, NewSandbox, Registration, Sandbox};

/// Registers `new`; `token` is a reservation's ("" for none).
pub(crate) async fn register(
    rt: &Runtime,
    new: NewSandbox,
    token: &str,
) -> Result<(Sandbox, Registration)> {
    let ctx = rt.env.ns.sandbox_ref(&new.team, &new.id)?;
    validate_id("execution id", &new.execution)?;
    if new.data.len() > MAX_DATA_LEN {
        return Err(Error::InvalidInput {
            what: "data",
            value: format!("{} bytes", new.data.len()),
            why: format!("is over the {MAX_DATA_LEN}-byte limit"),
        });
    }
    let end = bounds::end_arg(new.end_time)?;
    let span = tracing::info_span!("register", team = %new.team, sandbox = %new.id);
    let listed_first = !rt.listed.contains(ctx.keys.team.slot);
    if listed_first {
        slots::list(rt, &ctx.keys.team, false).await?;
    }
    let command = ops::register::Register {
        sandbox: &ctx,
        execution: &new.execution,
        end: &end,
        data: &new.data,
        token,
        default_limit: rt.env.default_limit,
    };
    let done = invoke(&rt.env, &command).instrument(span).await?;
    let registered = done.reply;
    if registered.slot_unlisted {
        if listed_first && rt.listed.contains(ctx.keys.team.slot) {
            slots::mark_listed(rt, &ctx.keys.team).await?;
        } else {
            slots::list(rt, &ctx.keys.team, true).await?;
        }
    }
    ops::replicated("register", done.replication)?;
    Ok((registered.sandbox, registered.how))
}
