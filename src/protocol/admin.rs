//! The operator's tools over the whole namespace, the only code that uses
//! `SCAN` (it needs `+scan`, `sandboxctl acl --admin`): repair of the drift
//! between records and every index, and migration of schema-1 and schema-2 records.
//! Each team's check and fix, and each record's conversion, is one script
//! on the state at that moment, so either is safe beside live traffic.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::ops;
use crate::ops::command::invoke;
use crate::protocol::slots;
use crate::runtime::Runtime;
use crate::sandbox::{Drift, RepairReport};

/// Finds (and unless `dry_run`, fixes) drift between records and indexes.
pub(crate) async fn repair(rt: &Runtime, dry_run: bool) -> Result<RepairReport> {
    let env = &rt.env;
    let mut report = RepairReport {
        dry_run,
        ..RepairReport::default()
    };
    let mut teams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in rt.env.link.scan(&env.ns.record_pattern()).await? {
        if let Some((team, id)) = parse_record_key(env.ns.prefix(), &key) {
            teams.entry(team).or_default().push(id);
        }
    }
    // Teams known to the slot sets but without records (indexes only).
    let (registered, registry_sound) = match slots::registered(rt).await {
        Err(Error::Corrupt { .. }) => {
            report.drift.push(type_drift("", "slots", env.ns.slots()));
            (Vec::new(), false)
        }
        other => (other?, true),
    };
    for &slot in &registered {
        match slots::members(rt, &env.ns.slot_teams(slot)).await {
            Err(Error::Corrupt { .. }) => {
                report
                    .drift
                    .push(type_drift("", "teams", env.ns.slot_teams(slot)));
            }
            got => {
                for team in got? {
                    teams.entry(team).or_default();
                }
            }
        }
    }
    for key in rt
        .env
        .link
        .scan(&format!("{}:{{*}}:ids", env.ns.prefix()))
        .await?
    {
        if let Some(team) = key
            .strip_prefix(&format!("{}:{{", env.ns.prefix()))
            .and_then(|rest| rest.strip_suffix("}:ids"))
        {
            teams.entry(team.to_string()).or_default();
        }
    }
    for (team, ids) in &teams {
        let Ok(keys) = env.ns.team(team) else {
            continue;
        };
        report.teams += 1;
        report.records += ids.len();
        let command = ops::repair::Repair::new(env, team, &keys, ids, dry_run).await?;
        let mut drift = invoke(env, &command).await?.reply;
        let has_records = !ids.is_empty();
        if registry_sound && has_records && !registered.contains(&keys.slot) {
            drift.push(Drift {
                team: team.clone(),
                index: "slots".into(),
                problem: "missing".into(),
                id: keys.slot.to_string(),
            });
            if !dry_run {
                slots::list(rt, &keys, true).await?;
            }
        }
        report.drift.extend(drift);
    }
    Ok(report)
}

/// Converts schema-1 and schema-2 records; with `adopt_lifecycle`, re-stamps records
/// of another rule table. Returns (converted, re-stamped).
pub(crate) async fn migrate(rt: &Runtime, adopt_lifecycle: bool) -> Result<(usize, usize)> {
    let env = &rt.env;
    let (mut converted, mut restamped) = (0, 0);
    for key in rt.env.link.scan(&env.ns.record_pattern()).await? {
        let Some((team, id)) = parse_record_key(env.ns.prefix(), &key) else {
            continue;
        };
        let Ok(sandbox) = env.ns.sandbox_ref(&team, &id) else {
            continue;
        };
        let command = ops::migrate::Migrate {
            sandbox: &sandbox,
            adopt_lifecycle,
        };
        match invoke(env, &command).await?.reply {
            ops::migrate::Migrated::Converted { slot_unlisted } => {
                converted += 1;
                if slot_unlisted {
                    slots::list(rt, &sandbox.keys.team, true).await?;
                }
            }
            ops::migrate::Migrated::Restamped { .. } => restamped += 1,
            _ => {}
        }
    }
    Ok((converted, restamped))
}

/// A key of another type found by `repair`, reported as drift.
fn type_drift(team: &str, index: &str, key: String) -> Drift {
    Drift {
        team: team.to_string(),
        index: index.to_string(),
        problem: "type".to_string(),
        id: key,
    }
}

/// `(team, id)` of a record key `<ns>:{<team>}:rec:<id>`.
fn parse_record_key(prefix: &str, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (team, rest) = rest.split_once("}:")?;
    let id = rest.strip_prefix("rec:")?;
    Some((team.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_name_team_and_id() {
        assert_eq!(
            parse_record_key("sbx", "sbx:{t1}:rec:s1"),
            Some(("t1".into(), "s1".into()))
        );
        assert_eq!(parse_record_key("sbx", "sbx:{t1}:ids"), None);
        assert_eq!(parse_record_key("sbx", "other:{t1}:rec:s1"), None);
    }
}
