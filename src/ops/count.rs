//! `count.lua`: a team's sandboxes by state class.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::redis::Route;
use crate::sandbox::TeamCount;

pub(crate) async fn count(env: &Env, keys: &TeamKeys) -> Result<TeamCount, Error> {
    let ids = keys.ids();
    let (reply, _) = call(
        env,
        &env.scripts.count,
        &[&ids, &keys.resv(), &keys.hash()],
        &[&keys.prefix],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "count" {
        return Err(reply.refusal(&ids, &env.digest));
    }
    Ok(TeamCount {
        live: reply.usize(1)?,
        in_flight: reply.usize(2)?,
        paused: reply.usize(3)?,
        killed: reply.usize(4)?,
        reserved: reply.usize(5)?,
        limit: reply.str(6).parse().ok(),
    })
}
