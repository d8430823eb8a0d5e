//! `sandboxctl demo`: several API servers (separate `Coordinator`s, as
//! separate processes would have) fire racing pause / kill / snapshot
//! requests at a fleet of sandboxes; the holders' simulated work sometimes
//! fails, crashes or stalls past its lease. A progress bar runs meanwhile;
//! the run ends with what happened per action and the invariant checks,
//! PASS/FAIL, and exits non-zero on any violation.
//!
//! - [`fleet`]: the servers, the sandboxes, the request bursts and the
//!   holders' simulated work.
//! - [`ledger`]: what every request got, and the holder observer.
//! - [`invariants`]: the checks, computed from the ledger.
//! - [`report`]: the closing table or JSON.

mod fleet;
mod invariants;
mod ledger;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sandbox_coordinator::{Builder, Coordinator, Error, RedisTarget};
use tokio::time::Instant;

use self::fleet::{Fleet, SHORT_LEASE, SandboxName};
use self::report::{Report, Setup};
use crate::output::Verdict;
use crate::output::{emit, emit_json};
use crate::server::{Server, glob_escape};

/// Waiters' fallback poll in the demo's coordinators (pub/sub wakes them
/// first; this bounds a lost notification).
const POLL: Duration = Duration::from_millis(250);

/// Options of `sandboxctl demo`. The defaults take about 10 s on 2 cores.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Simulated API servers, each with its own Coordinator (connections,
    /// notification subscription).
    #[arg(long, default_value_t = 4)]
    servers: usize,
    /// Sandboxes in the fleet.
    #[arg(long, default_value_t = 32)]
    sandboxes: usize,
    /// Teams the sandboxes are spread over (each team has its own fence counter).
    #[arg(long, default_value_t = 4)]
    teams: usize,
    /// Requests to fire in all.
    #[arg(long, default_value_t = 4000)]
    ops: usize,
    /// Seed of the request plan (default: random, printed). Timing still
    /// varies between runs: the races are real.
    #[arg(long)]
    seed: Option<u64>,
    /// With --url: keep the demo's keys instead of deleting its generated
    /// namespace at the end.
    #[arg(long)]
    keep: bool,
}

impl DemoArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=64).contains(&self.servers) {
            bail!("--servers must be 1 to 64, not {}", self.servers);
        }
        if !(1..=10_000).contains(&self.sandboxes) {
            bail!("--sandboxes must be 1 to 10000, not {}", self.sandboxes);
        }
        if self.teams == 0 || self.teams > self.sandboxes {
            bail!(
                "--teams must be 1 to --sandboxes ({}), not {}",
                self.sandboxes,
                self.teams
            );
        }
        if self.ops == 0 {
            bail!("--ops must be at least 1");
        }
        Ok(())
    }
}

/// Runs the demo against `target`.
pub async fn run(
    target: &RedisTarget,
    namespace: Option<String>,
    embedded: bool,
    args: &DemoArgs,
    json: bool,
) -> anyhow::Result<Verdict> {
    args.validate()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let generated = namespace.is_none();
    let namespace = namespace.unwrap_or_else(|| format!("demo-{:08x}", rand::random::<u32>()));
    let redis = if embedded {
        format!("embedded redis-server on {target}")
    } else {
        target.to_string()
    };

    if !json {
        emit(&format!(
            "sandboxctl demo: {} API servers race pause/kill/snapshot requests over {} sandboxes \
             in {} teams\n{} requests, seed {seed}; redis: {redis}; namespace {namespace}\n",
            args.servers, args.sandboxes, args.teams, args.ops
        ))?;
    }

    let mut servers = Vec::with_capacity(args.servers);
    for _ in 0..args.servers {
        servers.push(
            Builder::from(target.clone())
                .namespace(namespace.clone())
                .poll_interval(POLL)
                .build()
                .await
                .with_context(|| format!("cannot connect to {target}"))?,
        );
    }
    let sandboxes: Vec<SandboxName> = (0..args.sandboxes)
        .map(|i| SandboxName {
            team: format!("team-{}", i % args.teams),
            id: format!("sbx-{i:02}"),
        })
        .collect();
    let progress = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.ops as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:32}] {pos}/{len} requests  {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    };
    // Cleared however the run ends, also when Ctrl-C drops it midway.
    let _clear = ClearOnDrop(progress.clone());
    let fleet = Arc::new(Fleet::new(servers, sandboxes, args.ops, progress.clone()));
    fleet.register_all().await?;

    let started = Instant::now();
    let ticker = tokio::spawn({
        let fleet = Arc::clone(&fleet);
        let progress = progress.clone();
        async move {
            loop {
                let waiting: usize = fleet.servers.iter().map(Coordinator::waiting).sum();
                progress.set_message(format!(
                    "{} holding, {waiting} waiting",
                    fleet.ledger.holding()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let drivers: Vec<_> = (0..args.sandboxes)
        .map(|i| {
            let seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            tokio::spawn(Arc::clone(&fleet).drive(i, seed))
        })
        .collect();
    for driver in drivers {
        driver.await.context("a sandbox driver failed")?;
    }
    ticker.abort();
    progress.finish_and_clear();

    // Crashed holders' leases run out within SHORT_LEASE; wait_idle returns
    // once each sandbox has no lease (recording `abandoned` where due).
    let mut final_states: BTreeMap<String, usize> = BTreeMap::new();
    let mut leftovers = Vec::new();
    let observer = &fleet.servers[0];
    for name in &fleet.sandboxes {
        match observer
            .wait_idle(&name.team, &name.id, SHORT_LEASE * 10)
            .await
        {
            Ok(sb) => {
                let in_flight = matches!(
                    observer.lifecycle().class(sb.state),
                    sandbox_coordinator::StateClass::InFlight(_)
                );
                // Idle now, so an in-flight state means stuck.
                let label = if !in_flight {
                    sb.state.to_string()
                } else {
                    format!("{} (stuck)", sb.state)
                };
                *final_states.entry(label).or_default() += 1;
            }
            Err(Error::Timeout { .. }) => leftovers.push(format!(
                "{}/{} still has a transition in flight",
                name.team, name.id
            )),
            Err(e) => leftovers.push(format!("{}/{}: {e}", name.team, name.id)),
        }
    }
    let elapsed = started.elapsed();

    let requests = fleet.ledger.requests();
    let lifecycle = fleet.ledger.lifecycle();
    let names = &fleet.sandboxes;
    let checks = vec![
        invariants::one_live_transition(names, &fleet.ledger.tracks),
        invariants::fences_increase(names, &fleet.ledger.tracks, &lifecycle),
        invariants::joiners_saw_their_leader(names, &requests),
        invariants::stale_holders_fenced(names, &requests),
        invariants::definite_answers(names, &requests, &lifecycle),
        invariants::nothing_left_in_flight(names.len(), leftovers),
    ];
    let report = Report::new(
        Setup {
            servers: args.servers,
            sandboxes: args.sandboxes,
            teams: args.teams,
            seed,
            redis,
            namespace: namespace.clone(),
        },
        &requests,
        &lifecycle,
        final_states,
        checks,
        elapsed,
    );
    if json {
        emit_json(&report)?;
    } else {
        emit(&report.text())?;
    }

    if !embedded && generated && !args.keep {
        let removed = remove_namespace(target, &namespace).await?;
        if !json {
            emit(&format!(
                "removed the demo's {removed} keys (namespace {namespace}; --keep keeps them)\n"
            ))?;
        }
    }
    Ok(if report.pass {
        Verdict::Done
    } else {
        Verdict::Failed
    })
}

/// Clears the progress bar when the run ends or is dropped.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Deletes every key of the demo's generated namespace.
async fn remove_namespace(target: &RedisTarget, namespace: &str) -> anyhow::Result<usize> {
    let server = Server::new(
        target.clone(),
        namespace.to_string(),
        sandbox_coordinator::Lifecycle::sandbox(),
    )?;
    let keys: Vec<String> = server
        .scan(&format!("{}:*", glob_escape(namespace)))
        .await?
        .into_iter()
        .collect();
    let mut conn = server.connection().await?;
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .context("removing the demo's keys")?;
    }
    Ok(keys.len())
}
