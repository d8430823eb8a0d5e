//! `due.lua` (one team) and `due_slot.lua` (every team of a slot): what is
//! due for eviction by the server clock.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::redis::Route;

/// A due sandbox: team, id, end time (ms).
pub(crate) type Due = (String, String, u64);

/// What a due script found: the due sandboxes, (team, id) of stale index
/// entries to sweep, and (team, what is wrong) of the teams skipped because
/// an index of theirs is damaged.
pub(crate) struct Found {
    pub due: Vec<Due>,
    pub orphans: Vec<(String, String)>,
    pub damaged: Vec<(String, String)>,
}

pub(crate) async fn team(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    limit: usize,
) -> Result<Found, Error> {
    let expiry = keys.expiry();
    let limit_s = limit.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.due,
        &[&expiry, &keys.tombs()],
        &[&keys.prefix, &limit_s],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "due" {
        return Err(reply.refusal(&expiry, &env.digest));
    }
    let n = reply.usize(2)?;
    let mut found = Found {
        due: Vec::with_capacity(n),
        orphans: Vec::new(),
        damaged: Vec::new(),
    };
    for k in 0..n {
        let i = 3 + 2 * k;
        found.due.push((
            team.to_string(),
            reply.str(i).to_string(),
            reply.u64(i + 1)?,
        ));
    }
    for i in 3 + 2 * n..reply.len() {
        found
            .orphans
            .push((team.to_string(), reply.str(i).to_string()));
    }
    Ok(found)
}

pub(crate) async fn slot(env: &Env, slot: u16, limit: usize) -> Result<Found, Error> {
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
    let n = reply.usize(2)?;
    let mut found = Found {
        due: Vec::with_capacity(n),
        orphans: Vec::new(),
        damaged: Vec::new(),
    };
    for k in 0..n {
        let i = 3 + 3 * k;
        found.due.push((
            reply.str(i).to_string(),
            reply.str(i + 1).to_string(),
            reply.u64(i + 2)?,
        ));
    }
    let mut i = 3 + 3 * n;
    let d = reply.usize(i)?;
    i += 1;
    for _ in 0..d {
        found
            .damaged
            .push((reply.str(i).to_string(), reply.str(i + 1).to_string()));
        i += 2;
    }
    while i + 1 < reply.len() {
        found
            .orphans
            .push((reply.str(i).to_string(), reply.str(i + 1).to_string()));
        i += 2;
    }
    Ok(found)
}

/// `sweep.lua`: drops an id from the team's indexes if its record is gone.
/// `true` if it was swept.
pub(crate) async fn sweep(env: &Env, team: &str, id: &str) -> Result<bool, Error> {
    let keys = env.ns.sandbox(team, id)?;
    let (reply, _) = call(
        env,
        &env.scripts.sweep,
        &[
            &keys.record,
            &keys.team.expiry(),
            &keys.team.tombs(),
            &keys.team.ids(),
            &keys.team.hash(),
            &keys.team.slot_teams(),
            &keys.team.seq(),
        ],
        &[id, &keys.team.prefix, team],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    Ok(reply.status() == "swept")
}
