//! `repair.lua`: find (and fix) drift between one team's records and its
//! indexes.

use crate::connection::Route;
use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::sandbox::Drift;

pub(crate) async fn team(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    candidates: &[String],
    dry_run: bool,
) -> Result<Vec<Drift>, Error> {
    let ids = keys.key("ids");
    let mut args: Vec<&str> = vec![
        &keys.prefix,
        if dry_run { "1" } else { "0" },
        team,
        &keys.slot_prefix,
    ];
    args.extend(candidates.iter().map(String::as_str));
    let (reply, _) = call(
        env,
        &env.scripts.repair,
        &[&ids, &keys.key("seq")],
        &args,
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "repaired" {
        return Err(reply.refusal(&ids, &env.digest));
    }
    let n = reply.usize(1)?;
    Ok((0..n)
        .map(|i| Drift {
            team: team.to_string(),
            index: reply.str(2 + 3 * i).to_string(),
            problem: reply.str(3 + 3 * i).to_string(),
            id: reply.str(4 + 3 * i).to_string(),
        })
        .collect())
}
