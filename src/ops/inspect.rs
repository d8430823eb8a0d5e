//! `inspect.lua` (one record) and the record rows that `register.lua` and
//! `list.lua` reply with: parsed and validated by [`crate::record`], the
//! Rust twin of the scripts' validation.

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::ops::{Env, Reply, Send, call};
use crate::record::{FIELDS, Raw};
use crate::redis::Route;
use crate::sandbox::Sandbox;

/// Fields one record row takes in a reply: PTTL, the FIELDS, data.
pub(crate) const ROW: usize = FIELDS.len() + 2;

/// The record row of `reply` starting at `at` (its PTTL), read at `now_ms`.
pub(crate) fn row(
    env: &Env,
    reply: &Reply,
    at: usize,
    now_ms: u64,
    team: &str,
    id: &str,
) -> Result<Sandbox, Error> {
    let key = format!("{}:{{{team}}}:rec:{id}", env.ns.prefix());
    if reply.len() < at + ROW {
        return Err(Error::Corrupt {
            detail: format!("{key}: the reply's record row is too short"),
        });
    }
    let pttl = reply.i64(at)?;
    let fields: [&str; FIELDS.len()] = std::array::from_fn(|i| reply.str(at + 1 + i));
    Raw { fields }.to_sandbox(
        &env.lifecycle,
        &key,
        team,
        id,
        now_ms,
        pttl,
        reply.str(at + 1 + FIELDS.len()),
    )
}

pub(crate) async fn inspect(env: &Env, ctx: &SandboxRef) -> Result<Option<Sandbox>, Error> {
    let (reply, _) = call(
        env,
        &env.scripts.inspect,
        &[ctx.record()],
        &[ctx.prefix(), &ctx.id],
        Send::Retried { write: false },
        Route::default(),
    )
    .await?;
    match reply.status() {
        "record" => Ok(Some(row(
            env,
            &reply,
            2,
            reply.u64(1)?,
            &ctx.team,
            &ctx.id,
        )?)),
        "not_found" => Ok(None),
        _ => Err(reply.refusal(ctx.record(), &env.digest)),
    }
}
