//! The namespace's slot registry: the set of hash slots that hold teams
//! (read by the fleet-wide operations, `due_for_eviction_all` and
//! `repair`), and each slot's `listed` marker. Written outside any script
//! (a script may touch one slot only), so a register lists its slot first
//! (see [`list`]).

use crate::error::{Error, Result};
use crate::keys::TeamKeys;
use crate::redis::{Route, value};
use crate::runtime::Runtime;

/// Adds the team's slot to the namespace's slot registry (for
/// [`due_for_eviction_all`](crate::Coordinator::due_for_eviction_all)). A
/// register adds it *before* its script when this coordinator has not
/// listed the slot yet, so that no record ever exists in a slot the
/// registry does not list (a fleet-wide read or a repair between the
/// two steps, or a register dropped between them, would otherwise find
/// one). `mark` also sets the slot's `listed` marker, which a script
/// reads to report a slot whose registry entry may be missing.
/// A registry of another type (damaged) is logged and counted, not an
/// error; `repair` reports it.
pub(crate) async fn list(rt: &Runtime, keys: &TeamKeys, mark: bool) -> Result<()> {
    let env = &rt.env;
    let added = env
        .link
        .query(
            redis::cmd("SADD").arg(env.ns.slots()).arg(keys.slot),
            Route::default(),
        )
        .await;
    if let Err(Error::Redis(e)) = &added
        && e.code() == Some("WRONGTYPE")
    {
        crate::metrics::damaged("slot");
        tracing::warn!(registry = %env.ns.slots(), "the slot registry is not a set: slot not listed");
        return Ok(());
    }
    added?;
    rt.listed.insert(keys.slot);
    if mark {
        mark_listed(rt, keys).await?;
    }
    Ok(())
}

/// Sets the slot's `listed` marker (the slot is in the registry).
pub(crate) async fn mark_listed(rt: &Runtime, keys: &TeamKeys) -> Result<()> {
    rt.env
        .link
        .query(
            redis::cmd("SET")
                .arg(format!("{}listed", keys.slot_prefix))
                .arg("1"),
            Route::default(),
        )
        .await?;
    Ok(())
}

/// The slots the registry lists; [`Error::Corrupt`] if it is not a set.
pub(crate) async fn registered(rt: &Runtime) -> Result<Vec<u16>> {
    Ok(members(rt, &rt.env.ns.slots())
        .await?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// The members of the set `key`; [`Error::Corrupt`] if it is a key of
/// another type.
pub(crate) async fn members(rt: &Runtime, key: &str) -> Result<Vec<String>> {
    let value = rt
        .env
        .link
        .query(redis::cmd("SMEMBERS").arg(key), Route::default())
        .await
        .map_err(|e| match e {
            Error::Redis(r) if r.code() == Some("WRONGTYPE") => Error::Corrupt {
                detail: format!("{key} is not a set"),
            },
            e => e,
        })?;
    Ok(value::texts(value))
}
