//! `due.lua` (one team) and `due_slot.lua` (every team of a slot): what is
//! due for eviction by the server clock.

use crate::connection::Route;
use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};

/// A due sandbox: team, id, end time (ms).
pub(crate) type Due = (String, String, u64);

pub(crate) async fn team(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    limit: usize,
) -> Result<Vec<Due>, Error> {
    let expiry = keys.key("expiry");
    let limit_s = limit.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.due,
        &[&expiry],
        &[&keys.prefix, &limit_s],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "due" {
        return Err(reply.refusal(&expiry, &env.digest));
    }
    let mut out = Vec::with_capacity((reply.len() - 2) / 2);
    let mut i = 2;
    while i + 1 < reply.len() {
        out.push((
            team.to_string(),
            reply.str(i).to_string(),
            reply.u64(i + 1)?,
        ));
        i += 2;
    }
    Ok(out)
}

pub(crate) async fn slot(env: &Env, slot: u16, limit: usize) -> Result<Vec<Due>, Error> {
    let teams = env.ns.slot_teams(slot);
    let limit_s = limit.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.due_slot,
        &[&teams],
        &[env.ns.prefix(), &limit_s],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "due" {
        return Err(reply.refusal(&teams, &env.digest));
    }
    let mut out = Vec::with_capacity((reply.len() - 2) / 3);
    let mut i = 2;
    while i + 2 < reply.len() {
        out.push((
            reply.str(i).to_string(),
            reply.str(i + 1).to_string(),
            reply.u64(i + 2)?,
        ));
        i += 3;
    }
    Ok(out)
}
