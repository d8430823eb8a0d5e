//! `repair.lua`: find (and fix) drift between one team's records and its
//! indexes.

use redis::Value;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::redis::{Route, value};
use crate::sandbox::Drift;

/// The ids in the team's indexes (`ids`, `expiry`, `tombs`, `resv`) as they
/// are now: with the records the client found by SCAN, the candidates whose
/// records the script declares. An index of another type reads as empty
/// (the script reports it).
async fn indexed(env: &Env, keys: &TeamKeys) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    for index in ["ids", "expiry", "tombs", "resv"] {
        let got = env
            .link
            .query(
                redis::cmd("ZRANGE").arg(keys.key(index)).arg(0).arg(-1),
                Route::default(),
            )
            .await;
        match got {
            Ok(Value::Array(items)) => {
                ids.extend(items.iter().filter_map(value::as_str).map(str::to_string))
            }
            Ok(_) => {}
            Err(Error::Redis(e)) if e.code() == Some("WRONGTYPE") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ids)
}

pub(crate) async fn team(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    scanned: &[String],
    dry_run: bool,
) -> Result<Vec<Drift>, Error> {
    let mut candidates = indexed(env, keys).await?;
    candidates.extend(scanned.iter().cloned());
    candidates.sort();
    candidates.dedup();
    let mut key_names = vec![
        keys.ids(),
        keys.expiry(),
        keys.tombs(),
        keys.resv(),
        keys.hash(),
        keys.slot_teams(),
    ];
    key_names.extend(candidates.iter().map(|id| keys.key(&format!("rec:{id}"))));
    // Last: the team view's sequence (repair.lua announces through it).
    key_names.push(keys.seq());
    let key_refs: Vec<&str> = key_names.iter().map(String::as_str).collect();
    let mut args: Vec<&str> = vec![&keys.prefix, if dry_run { "1" } else { "0" }, team];
    args.extend(candidates.iter().map(String::as_str));
    let (reply, _) = call(
        env,
        &env.scripts.repair,
        &key_refs,
        &args,
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "repaired" {
        return Err(reply.refusal(&key_names[0], &env.digest));
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
