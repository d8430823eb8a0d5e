//! Ends, one script call each: a live sandbox's end time moved, a record
//! removed (optionally pinned to one execution), a transition finished by
//! a holder that lost its `Transition` value, or abandoned by an operator.

use crate::bounds;
use crate::error::{Error, Result};
use crate::keys::validate_id;
use crate::lifecycle::{Action, Outcome};
use crate::ops;
use crate::ops::command::invoke;
use crate::ops::finish::Target as FinishTarget;
use crate::ops::settle::{self, Settle, Settled};
use crate::options::Finish;
use crate::redis::Route;
use crate::runtime::Runtime;
use crate::sandbox::{Abandonment, EndTime};
use crate::transition::cut_reason;

/// Moves a live sandbox's end time.
pub(crate) async fn set_end_time(
    rt: &Runtime,
    team: &str,
    id: &str,
    end: EndTime,
    expect_execution: Option<&str>,
) -> Result<()> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    if let Some(e) = expect_execution {
        validate_id("execution id", e)?;
    }
    let end = bounds::end_arg(end)?;
    let command = ops::end_time::SetEndTime {
        sandbox: &ctx,
        end: &end,
        expect_execution,
    };
    let done = invoke(&rt.env, &command).await?;
    ops::replicated("set_end_time", done.replication)
}

/// Removes the record (only `execution`'s, if given).
pub(crate) async fn remove(
    rt: &Runtime,
    team: &str,
    id: &str,
    execution: Option<&str>,
) -> Result<bool> {
    if let Some(e) = execution {
        validate_id("execution id", e)?;
    }
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    let command = ops::remove::Remove {
        sandbox: &ctx,
        expect_execution: execution,
    };
    let done = invoke(&rt.env, &command).await?;
    ops::replicated("remove", done.replication)?;
    Ok(done.reply)
}

/// Finishes transition `fence` of `holder` from outside its `Transition`.
pub(crate) async fn finish(
    rt: &Runtime,
    team: &str,
    id: &str,
    action: Action,
    fence: u64,
    holder: &str,
    how: Finish,
) -> Result<()> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    validate_id("holder id", holder)?;
    let (outcome, reason) = match how {
        Finish::Succeeded => (Outcome::Succeeded, String::new()),
        Finish::Failed(r) => (Outcome::Failed, cut_reason(&r).to_string()),
    };
    let target = FinishTarget {
        sandbox: ctx,
        action,
        fence,
        holder: holder.into(),
    };
    let finish = ops::finish::Finish {
        target: &target,
        outcome,
        reason: &reason,
        until: None,
        unsure: false,
        route: Route::default(),
    };
    ops::finish::finish(&rt.env, &finish).await
}

/// Records `abandoned` for transition `fence` if it has no outcome yet.
pub(crate) async fn abandon(
    rt: &Runtime,
    team: &str,
    id: &str,
    fence: u64,
    reason: &str,
) -> Result<Abandonment> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    let command = Settle {
        sandbox: &ctx,
        fence,
        holder: "",
        mode: settle::Mode::Force,
        reason: cut_reason(reason),
        deadline: None,
    };
    match invoke(&rt.env, &command).await?.reply {
        Settled::Abandoned { action, reason } => {
            crate::metrics::abandoned(action);
            Ok(Abandonment::Abandoned { action, reason })
        }
        Settled::Ended {
            outcome, reason, ..
        } => Ok(Abandonment::AlreadyEnded { outcome, reason }),
        Settled::Live(_) | Settled::Unknown => Err(Error::Fenced {
            team: team.into(),
            id: id.into(),
            fence,
            current: None,
        }),
    }
}
