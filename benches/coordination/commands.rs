//! Commands per transition, counted by the server, not timed.
//!
//! `INFO commandstats` deltas around `n` sequential transitions give the
//! exact number of calls per command name. Redis counts the commands a Lua
//! script runs under their own names too, so the deltas alone mix "sent by
//! the client" with "run inside a script". The slow log, with a threshold of
//! 0 µs for the duration of the count, tells the two apart: it logs script
//! commands with the pseudo client address `?:0`. Client-sent = commandstats
//! delta − in-script (from the slow log). If the server refuses `CONFIG SET`
//! (a managed `--url` server), only the totals are reported.
//!
//! A second, unlogged pass reads the execution time Redis spent on what the
//! client sent (`commandstats` usec): the server-side cost of a transition,
//! free of network and scheduling noise in the client.

use std::collections::BTreeMap;
use std::future::Future;

use crate::result::Result;
use crate::server::{ADMIN_NAME, Admin, is_admin};

/// Calls of one command per transition.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerCommand {
    /// Counted by `INFO commandstats` (client-sent + in-script).
    pub total: f64,
    /// Of those, run inside a Lua script (`None`: could not be told apart).
    pub in_scripts: Option<f64>,
}

impl PerCommand {
    pub fn client(&self) -> Option<f64> {
        self.in_scripts.map(|s| self.total - s)
    }
}

/// The count for one protocol.
#[derive(Debug, Clone, Default)]
pub struct Count {
    pub transitions: u64,
    pub commands: BTreeMap<String, PerCommand>,
    /// Server execution time of what the client sent, from
    /// `commandstats` usec: command -> (calls, total µs) over `transitions`.
    /// A script's time includes the commands it ran.
    pub server_time: BTreeMap<String, (u64, u64)>,
}

impl Count {
    /// Commands the client sent per transition (None without the split).
    pub fn client_total(&self) -> Option<f64> {
        self.commands.values().map(PerCommand::client).sum()
    }

    /// Of each command's calls, the share the client sent (for reading a
    /// throughput window's `commandstats`).
    pub fn shares(&self) -> crate::load::Shares {
        self.commands
            .iter()
            .filter_map(|(name, c)| c.client().map(|x| (name.clone(), x / c.total.max(1e-9))))
            .collect()
    }

    /// Every command Redis executed per transition, script bodies included.
    pub fn executed_total(&self) -> f64 {
        self.commands.values().map(|c| c.total).sum()
    }

    /// Server µs per transition spent on what the client sent.
    pub fn server_us(&self) -> Option<f64> {
        if self.server_time.is_empty() {
            return None;
        }
        let total: u64 = self.server_time.values().map(|v| v.1).sum();
        Some(total as f64 / self.transitions.max(1) as f64)
    }

    /// "EVALSHA 31.0 µs, …": mean server time per call of each.
    pub fn server_time_breakdown(&self) -> String {
        self.server_time
            .iter()
            .map(|(k, (calls, total))| {
                format!("{k} {:.1} µs", *total as f64 / (*calls).max(1) as f64)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// "evalsha 2" style list of what the client sent.
    pub fn client_breakdown(&self) -> String {
        self.breakdown(|c| c.client())
    }

    /// "hmget 2, set 1" style list of what ran inside scripts.
    pub fn script_breakdown(&self) -> String {
        self.breakdown(|c| c.in_scripts)
    }

    fn breakdown(&self, f: impl Fn(&PerCommand) -> Option<f64>) -> String {
        let mut v: Vec<(String, f64)> = self
            .commands
            .iter()
            .filter_map(|(k, c)| f(c).map(|x| (k.to_uppercase(), x)))
            .filter(|(_, x)| *x > 0.004)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter()
            .map(|(k, x)| format!("{k} {}", trim(*x)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// 2 -> "2", 2.5 -> "2.5".
pub fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Runs `op` `n` times one after the other, twice: once with the slow log
/// on to count and split the commands, once with it off (logging every
/// command costs Redis time) to read their execution time from
/// `commandstats`. `quiesce` runs before each closing snapshot (e.g. waits
/// for fire-and-forget publishes).
pub async fn count<F, Fut, Q, QFut>(admin: &Admin, n: u64, mut op: F, quiesce: Q) -> Result<Count>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<()>>,
    Q: Fn() -> QFut,
    QFut: Future<Output = ()>,
{
    let saved = (
        admin.config_get("slowlog-log-slower-than").await.ok(),
        admin.config_get("slowlog-max-len").await.ok(),
    );
    let split = match saved {
        (Some(_), Some(_)) => {
            admin
                .config_set("slowlog-max-len", &(n * 100 + 1000).to_string())
                .await
                .is_ok()
                && admin
                    .config_set("slowlog-log-slower-than", "0")
                    .await
                    .is_ok()
        }
        _ => false,
    };
    if split {
        admin.cmd::<()>(redis::cmd("SLOWLOG").arg("RESET")).await?;
    }
    let before = admin.commandstats().await?;
    let result = async {
        for i in 0..n {
            op(i).await?;
        }
        Ok::<_, crate::result::BoxError>(())
    }
    .await;
    quiesce().await;
    let after = admin.commandstats().await?;
    let mut in_scripts: BTreeMap<String, u64> = BTreeMap::new();
    if split {
        for e in admin.slowlog().await? {
            let Some(cmd) = e.args.first().map(|c| c.to_lowercase()) else {
                continue;
            };
            if e.client != ADMIN_NAME && e.addr == "?:0" {
                *in_scripts.entry(cmd).or_default() += 1;
            }
        }
    }
    if let (Some(t), Some(m)) = &saved {
        admin.config_set("slowlog-log-slower-than", t).await?;
        admin.config_set("slowlog-max-len", m).await?;
        admin.cmd::<()>(redis::cmd("SLOWLOG").arg("RESET")).await?;
    }
    result?;
    let mut commands = BTreeMap::new();
    for (name, (calls, _)) in &after {
        if is_admin(name) {
            continue;
        }
        let delta = calls - before.get(name).map(|c| c.0).unwrap_or(0);
        if delta == 0 {
            continue;
        }
        // commandstats names subcommands "a|b"; the slow log has the first
        // word only, which is all the protocols here use.
        let scripted = in_scripts.remove(name.split('|').next().unwrap_or(name));
        commands.insert(
            name.clone(),
            PerCommand {
                total: delta as f64 / n as f64,
                in_scripts: split.then(|| scripted.unwrap_or(0) as f64 / n as f64),
            },
        );
    }

    // Second pass: execution time. A script's time includes the commands it
    // runs, which commandstats also counts under their own names; so each
    // name's time is scaled to its client-sent share of calls.
    let before = admin.commandstats().await?;
    for i in n..2 * n {
        op(i).await?;
    }
    quiesce().await;
    let after = admin.commandstats().await?;
    let mut server_time = BTreeMap::new();
    for (name, c) in &commands {
        let Some(client) = c.client() else { continue };
        if client <= 0.0 {
            continue;
        }
        let (calls1, usec1) = after.get(name).copied().unwrap_or_default();
        let (calls0, usec0) = before.get(name).copied().unwrap_or_default();
        let share = client / c.total;
        let calls = ((calls1 - calls0) as f64 * share).round() as u64;
        let usec = ((usec1 - usec0) as f64 * share).round() as u64;
        server_time.insert(name.to_uppercase(), (calls, usec));
    }
    Ok(Count {
        transitions: n,
        commands,
        server_time,
    })
}
