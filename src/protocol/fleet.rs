//! Reads of one sandbox, a team or the whole namespace: a record, the ids
//! due for eviction (one team, or every slot the registry lists,
//! concurrently), the pages of a team's sandboxes, its counts, and its
//! limit. Index entries whose record
//! vanished are swept on the way.

use crate::bounds;
use crate::error::{Error, Result};
use crate::keys::validate_id;
use crate::ops;
use crate::ops::command::invoke;
use crate::protocol::slots;
use crate::runtime::Runtime;
use crate::sandbox::{Page, Sandbox, TeamCount};

/// One sandbox's record, with its lease, queue and reservation.
pub(crate) async fn get(rt: &Runtime, team: &str, id: &str) -> Result<Option<Sandbox>> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    let command = ops::inspect::Inspect {
        sandbox: &ctx,
        deadline: None,
    };
    Ok(invoke(&rt.env, &command).await?.reply)
}

/// The team's ids past their end time, oldest first, at most `limit`.
pub(crate) async fn due(rt: &Runtime, team: &str, limit: usize) -> Result<Vec<String>> {
    let keys = rt.env.ns.team(team)?;
    let limit = bounds::count("limit", limit, 100_000)?;
    let command = ops::due::DueTeam {
        team,
        keys: &keys,
        limit,
    };
    let found = invoke(&rt.env, &command).await?.reply;
    sweep(rt, found.orphans).await?;
    Ok(found.due.into_iter().map(|(_, id, _)| id).collect())
}

/// Sweeps index entries whose record vanished (each by a script that
/// declares the record key, so a slot migration cannot fool it).
/// Housekeeping only: a sweep that fails (an id no key can name, a
/// transient error) is logged and left for the next call or `repair`.
async fn sweep(rt: &Runtime, orphans: Vec<(String, String)>) -> Result<()> {
    let calls = orphans.iter().map(|(team, id)| async move {
        let sandbox = rt.env.ns.sandbox_ref(team, id)?;
        invoke(&rt.env, &ops::due::Sweep { sandbox: &sandbox }).await
    });
    for (swept, (team, id)) in futures_util::future::join_all(calls)
        .await
        .iter()
        .zip(&orphans)
    {
        if let Err(e) = swept {
            tracing::warn!(team = %team, sandbox = %id, error = %e, "stale index entry not swept");
        }
    }
    Ok(())
}

/// `(team, id)` pairs past their end time across the namespace, oldest
/// first, at most `limit`; damaged teams and slots are skipped (logged and
/// counted).
pub(crate) async fn due_all(rt: &Runtime, limit: usize) -> Result<Vec<(String, String)>> {
    let limit = bounds::count("limit", limit, 100_000)?;
    let env = &rt.env;
    let slots = slots::registered(rt).await?;
    let calls = slots.iter().map(|&slot| async move {
        let command = ops::due::DueSlot {
            ns: &env.ns,
            slot,
            limit,
        };
        invoke(env, &command).await.map(|i| i.reply)
    });
    let mut all = Vec::new();
    let mut orphans = Vec::new();
    for (found, slot) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .zip(&slots)
    {
        let found = match found {
            Err(Error::Corrupt { detail }) => {
                crate::metrics::damaged("slot");
                tracing::warn!(slot, %detail, "damaged slot skipped by due_for_eviction_all");
                continue;
            }
            other => other?,
        };
        for (team, detail) in &found.damaged {
            crate::metrics::damaged("team");
            tracing::warn!(team = %team, %detail, "damaged team skipped by due_for_eviction_all");
        }
        // An entry no key can name (a damaged index) is left to repair.
        all.extend(
            found
                .due
                .into_iter()
                .filter(|(team, id, _)| env.ns.sandbox(team, id).is_ok()),
        );
        orphans.extend(found.orphans);
    }
    sweep(rt, orphans).await?;
    all.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    all.truncate(limit);
    Ok(all.into_iter().map(|(team, id, _)| (team, id)).collect())
}

/// Every sandbox of the team, page by page.
pub(crate) async fn list(rt: &Runtime, team: &str) -> Result<Vec<Sandbox>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list_page(rt, team, after.as_deref(), 1000).await?;
        all.extend(page.sandboxes);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// One page of the team's sandboxes: the first `count` after `after`.
pub(crate) async fn list_page(
    rt: &Runtime,
    team: &str,
    after: Option<&str>,
    count: usize,
) -> Result<Page> {
    let keys = rt.env.ns.team(team)?;
    if let Some(a) = after {
        validate_id("sandbox id", a)?;
    }
    let count = bounds::count("count", count, 10_000)?;
    ops::list::page(&rt.env, team, &keys, after, count).await
}

/// The team's counts by state class, reservations and limit.
pub(crate) async fn count(rt: &Runtime, team: &str) -> Result<TeamCount> {
    let keys = rt.env.ns.team(team)?;
    let command = ops::count::Count { team: &keys };
    Ok(invoke(&rt.env, &command).await?.reply)
}

/// Sets or clears the team's limit; the previous one.
pub(crate) async fn set_team_limit(
    rt: &Runtime,
    team: &str,
    limit: Option<usize>,
) -> Result<Option<usize>> {
    let keys = rt.env.ns.team(team)?;
    if let Some(l) = limit {
        bounds::team_limit(l)?;
    }
    let command = ops::team_limit::SetTeamLimit { team: &keys, limit };
    let done = invoke(&rt.env, &command).await?;
    ops::replicated("set_team_limit", done.replication)?;
    Ok(done.reply)
}
