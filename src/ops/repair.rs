//! `repair.lua`: find (and fix) drift between one team's records and its
//! indexes.

use redis::Value;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::redis::{Route, value};
use crate::retry::Retry;
use crate::sandbox::Drift;
use crate::scripts::Script;

/// The ids in the team's indexes (`ids`, `expiry`, `tombs`, `resv`) as they
/// are now: with the records the client found by SCAN, the candidates whose
/// records the script declares. An index of another type reads as empty
/// (the script reports it).
async fn indexed(env: &Env, keys: &TeamKeys) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    for index in [keys.ids(), keys.expiry(), keys.tombs(), keys.resv()] {
        let got = env
            .link
            .query(
                redis::cmd("ZRANGE").arg(index).arg(0).arg(-1),
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

/// One repair pass over team `team` (with `dry_run`: report only): the
/// ids in its indexes now plus `scanned` (the records SCAN found).
#[derive(Debug, Clone)]
pub(crate) struct Repair<'a> {
    pub team: &'a str,
    pub keys: &'a TeamKeys,
    /// Sorted, without duplicates.
    pub candidates: Vec<String>,
    pub dry_run: bool,
}

impl Repair<'_> {
    /// The pass for `scanned` plus what the team's indexes hold now.
    pub(crate) async fn new<'a>(
        env: &Env,
        team: &'a str,
        keys: &'a TeamKeys,
        scanned: &[String],
        dry_run: bool,
    ) -> Result<Repair<'a>, Error> {
        let mut candidates = indexed(env, keys).await?;
        candidates.extend(scanned.iter().cloned());
        candidates.sort();
        candidates.dedup();
        Ok(Repair {
            team,
            keys,
            candidates,
            dry_run,
        })
    }
}

impl Command for Repair<'_> {
    type Reply = Vec<Drift>;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.repair
    }

    fn keys(&self) -> Vec<String> {
        let keys = self.keys;
        let mut names = vec![
            keys.ids(),
            keys.expiry(),
            keys.tombs(),
            keys.resv(),
            keys.hash(),
            keys.slot_teams(),
        ];
        names.extend(self.candidates.iter().map(|id| keys.record(id)));
        // Last: the team view's sequence (repair.lua announces through it).
        names.push(keys.seq());
        names
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.keys.prefix.clone(),
            if self.dry_run { "1" } else { "0" }.to_string(),
            self.team.to_string(),
        ];
        args.extend(self.candidates.iter().cloned());
        args
    }

    /// Idempotent: a second pass finds nothing left to fix.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Vec<Drift>, Error> {
        if reply.status() != "repaired" {
            return Err(reply.refusal(&self.keys.ids(), &env.digest));
        }
        let n = reply.usize(1)?;
        Ok((0..n)
            .map(|i| Drift {
                team: self.team.to_string(),
                index: reply.str(2 + 3 * i).to_string(),
                problem: reply.str(3 + 3 * i).to_string(),
                id: reply.str(4 + 3 * i).to_string(),
            })
            .collect())
    }
}
