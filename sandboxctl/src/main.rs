//! `sandboxctl`: the operator's and the newcomer's view of a
//! sandbox-coordinator deployment.
//!
//! - `demo` races several simulated API servers over a fleet of sandboxes
//!   and checks the coordinator's guarantees while they run ([`demo`]).
//! - `inspect`, `list`, `count`, `transitions` read records, leases,
//!   outcomes and counts from the library's indexes, never by scanning keys
//!   ([`sandboxes`], [`in_flight`]); `scripts` shows the Lua script cache
//!   and writes the assembled scripts out ([`script_cache`]); `abandon`
//!   repairs a stuck transition, fenced like everything else ([`repair`]);
//!   `repair` finds and fixes index drift ([`index_repair`]); `migrate`
//!   converts a schema-1 namespace ([`migration`]); `watch` tails outcome
//!   notifications ([`watch`]).
//! - `acl` prints the library's least-privilege ACL rules ([`acl`]).
//!
//! Where Redis is and how to reach it — a URL or a cluster's nodes, a
//! private CA, a client certificate, an ACL user and its password — are
//! the global options of [`redis_target`].
//!
//! Without `--redis-url` (`--url`, `REDIS_URL`) or `--cluster` every
//! command that talks to Redis runs against a private
//! `redis-server` on a unix socket in a temporary directory
//! ([`embedded`]), stopped when sandboxctl exits, also on Ctrl-C. The
//! process is arranged so that stopping it is done in exactly one place:
//! `main` installs the signal handlers, starts the server, races the
//! command against the signals, shuts the runtime down, and only then
//! stops the server.

mod acl;
mod demo;
mod embedded;
mod in_flight;
mod index_repair;
mod migration;
mod output;
mod redis_target;
mod repair;
mod sandboxes;
mod script_cache;
mod server;
mod table;
mod team_changes;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use sandbox_coordinator::{Lifecycle, RedisTarget};

use crate::embedded::EmbeddedRedis;
use crate::output::Verdict;
use crate::redis_target::RedisArgs;
use crate::server::Server;

/// Namespace of the read and repair commands when `--namespace` is not given.
const DEFAULT_NAMESPACE: &str = "sbx";

#[derive(Debug, Parser)]
#[command(
    name = "sandboxctl",
    version,
    about = "Inspect, repair and demonstrate sandbox lifecycle coordination over Redis",
    long_about = "Inspect, repair and demonstrate sandbox lifecycle coordination over Redis.\n\n\
        Without --redis-url (--url, REDIS_URL) or --cluster, sandboxctl starts a private redis-server on a unix socket \
        in a temporary directory (no port, no persistence) and stops it when it exits. \
        Start with `sandboxctl demo`."
)]
struct Cli {
    #[command(flatten)]
    redis: RedisArgs,

    /// Key namespace (prefix) of the deployment [default: sbx; the demo
    /// defaults to a fresh demo-<hex> namespace].
    #[arg(long, env = "SANDBOXCTL_NAMESPACE", global = true, value_name = "NS")]
    namespace: Option<String>,

    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,

    /// The rule table the deployment's servers decide by: it is generated
    /// into the scripts (`scripts`), compared with each record's (`inspect`)
    /// and stamped by `migrate --adopt-lifecycle`.
    #[arg(long, global = true, value_enum, default_value_t = RuleTable::Sandbox)]
    lifecycle: RuleTable,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Race simulated API servers over a fleet of sandboxes and check the
    /// guarantees (one transition at a time, fencing, joiners' outcomes).
    Demo(demo::DemoArgs),
    /// Show one sandbox: record, lease, last outcome, tombstone TTL (one atomic read).
    Inspect {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
    },
    /// List the sandboxes of a team, from its id index.
    List {
        /// Team id.
        team: String,
    },
    /// Count a team's sandboxes by state class, its reservations and its limit.
    Count {
        /// Team id.
        team: String,
    },
    /// List every transition in flight, across teams, with age and TTL left.
    Transitions,
    /// Print the ACL rules the library needs for the namespace, space-separated:
    /// `redis-cli ACL SETUSER coord $(sandboxctl acl) '>secret'`. Needs no Redis.
    Acl {
        /// Also the rules sandboxctl's operator commands need (SCAN for
        /// repair and migrate, SCRIPT EXISTS, PSUBSCRIBE, INFO).
        #[arg(long)]
        admin: bool,
    },
    /// Show the Lua scripts, their SHA1s and whether the server has them cached.
    Scripts {
        /// Load every script into the server's cache (SCRIPT LOAD) first.
        #[arg(long)]
        load: bool,
        /// Exit non-zero unless every script is cached on the server.
        #[arg(long)]
        check: bool,
        /// Write every assembled script to DIR as <name>.lua, runnable with
        /// `redis-cli --eval`. Alone, it needs no Redis.
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
    },
    /// Find and fix drift between records and the namespace's indexes
    /// (dangling, missing or wrongly scored entries); exits 1 if drift is
    /// left (always, with --dry-run, when some was found).
    Repair {
        /// Report only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Convert a namespace written by schema 1 or 2 to this schema in place,
    /// record by record; refused while a schema-1 transition is in flight.
    Migrate {
        /// Also re-stamp records of this schema created under another rule table
        /// with the one of --lifecycle.
        #[arg(long)]
        adopt_lifecycle: bool,
    },
    /// Mark a stuck transition abandoned, only if FENCE is still the live
    /// one, and wake its waiters.
    Abandon {
        /// Team id.
        team: String,
        /// Sandbox id.
        id: String,
        /// Fence of the transition to abandon (see `inspect`).
        #[arg(long)]
        fence: u64,
        /// Reason recorded with the outcome.
        #[arg(long, default_value = "abandoned by operator (sandboxctl)")]
        reason: String,
    },
    /// Print transition outcomes as they are published.
    Watch {
        /// Only this team's sandboxes (needed on a Redis Cluster: sharded
        /// pub/sub has no pattern subscription).
        #[arg(long)]
        team: Option<String>,
        /// Exit after this many notifications.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// With --team: print every change of the team's sandboxes as its
        /// live view applies it (state, fence, removal), not only outcomes.
        #[arg(long, requires = "team")]
        changes: bool,
    },
}

/// The rule tables a deployment can run (`--lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuleTable {
    /// `Lifecycle::sandbox()`: the default table.
    Sandbox,
    /// `Lifecycle::sandbox().kill_deletes_paused()`: a kill of a paused
    /// sandbox starts a deletion (sandbox-api's table).
    KillDeletesPaused,
}

impl RuleTable {
    fn lifecycle(self) -> Lifecycle {
        match self {
            RuleTable::Sandbox => Lifecycle::sandbox(),
            RuleTable::KillDeletesPaused => Lifecycle::sandbox().kill_deletes_paused(),
        }
    }
}

impl Command {
    /// Whether the command talks to Redis (else no embedded server is
    /// started for it).
    fn needs_redis(&self) -> bool {
        match self {
            Command::Acl { .. } => false,
            Command::Scripts {
                load, check, dump, ..
            } => *load || *check || dump.is_none(),
            _ => true,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = cli.redis.options();
    if let Some(problem) = options.usage_error() {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, problem)
            .exit();
    }
    // Given, or none (an embedded server, or a command that needs none).
    let target = match options.is_given().then(|| options.resolve()).transpose() {
        Ok(target) => target,
        Err(e) => {
            eprintln!("sandboxctl: {}", output::describe(&e.into()));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandboxctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers first, so a Ctrl-C while the embedded server starts is not
    // lost (it would kill sandboxctl and leave the directory behind).
    let mut signals = {
        let _runtime = runtime.enter();
        Signals::install()
    };

    // The embedded server is started from the main thread, which lives
    // until the end: its parent-death signal is tied to the spawning thread.
    let embedded = match target.is_some() {
        true => None,
        false if !cli.command.needs_redis() => None,
        false => match EmbeddedRedis::start() {
            Ok(redis) => {
                eprintln!(
                    "sandboxctl: no --redis-url, REDIS_URL or --cluster: using a private redis-server (pid {}) \
                     on {}; it stops when sandboxctl exits",
                    redis.pid(),
                    redis.socket().display()
                );
                Some(redis)
            }
            Err(e) => {
                eprintln!("sandboxctl: {}", output::describe(&e));
                return ExitCode::FAILURE;
            }
        },
    };
    // The embedded server has no TLS and no users: credentials given (say
    // a REDIS_PASSWORD left in the environment) are for a server named by
    // a URL or a cluster.
    let target = match &embedded {
        Some(redis) => Some(RedisTarget::url(redis.url())),
        // Given, or none for a command that needs none.
        None => target,
    };

    let result = runtime.block_on(async {
        tokio::select! {
            result = dispatch(cli, target, embedded.is_some()) => Ok(result),
            signal = signals.next() => Err(signal),
        }
    });
    // No task may still talk to Redis when the embedded server stops.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let code = match result {
        Ok(Ok(Verdict::Done)) => ExitCode::SUCCESS,
        Ok(Ok(Verdict::Failed)) => ExitCode::FAILURE,
        Ok(Err(e)) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("sandboxctl: {}", output::describe(&e));
            ExitCode::FAILURE
        }
        Err(signal) => {
            eprintln!("sandboxctl: interrupted by {}", signal.name);
            ExitCode::from(signal.exit_code)
        }
    };

    if let Some(redis) = embedded {
        let (pid, dir) = (redis.pid(), redis.dir().to_path_buf());
        match redis.stop() {
            Ok(()) => eprintln!(
                "sandboxctl: stopped the private redis-server (pid {pid}) and removed {}",
                dir.display()
            ),
            Err(e) => eprintln!(
                "sandboxctl: stopping the private redis-server: {}",
                output::describe(&e)
            ),
        }
    }
    code
}

async fn dispatch(
    cli: Cli,
    target: Option<RedisTarget>,
    embedded: bool,
) -> anyhow::Result<Verdict> {
    let json = cli.json;
    let target = || target.context("no Redis (the command needs one)");
    if let Command::Demo(args) = cli.command {
        return demo::run(&target()?, cli.namespace, embedded, &args, json).await;
    }
    let namespace = cli
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let lifecycle = cli.lifecycle.lifecycle();
    if let Command::Acl { admin } = cli.command {
        return acl::acl(&namespace, admin, json);
    }
    if let Command::Scripts {
        load: false,
        check: false,
        dump: Some(dir),
    } = &cli.command
    {
        return script_cache::dump_only(&lifecycle, dir, json);
    }
    let server = Server::new(target()?, namespace, lifecycle)?;
    match cli.command {
        Command::Demo(_) | Command::Acl { .. } => unreachable!("handled above"),
        Command::Inspect { team, id } => sandboxes::inspect(&server, &team, &id, json).await,
        Command::List { team } => sandboxes::list(&server, &team, json).await,
        Command::Count { team } => sandboxes::count(&server, &team, json).await,
        Command::Transitions => in_flight::transitions(&server, json).await,
        Command::Scripts { load, check, dump } => {
            script_cache::scripts(&server, load, check, dump.as_deref(), json).await
        }
        Command::Repair { dry_run } => index_repair::repair(&server, dry_run, json).await,
        Command::Migrate { adopt_lifecycle } => {
            migration::migrate(&server, adopt_lifecycle, json).await
        }
        Command::Abandon {
            team,
            id,
            fence,
            reason,
        } => repair::abandon(&server, &team, &id, fence, &reason, json).await,
        Command::Watch {
            team: Some(team),
            count,
            changes: true,
        } => team_changes::follow(&server, &team, count, json).await,
        Command::Watch { team, count, .. } => {
            watch::watch(&server, team.as_deref(), count, json).await
        }
    }
}

/// A signal that ends sandboxctl early.
struct Shutdown {
    name: &'static str,
    exit_code: u8,
}

/// Ctrl-C (SIGINT) and SIGTERM, caught. If a handler cannot be installed,
/// that signal keeps its default action (the process dies; the embedded
/// server then gets its parent-death signal).
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers; needs a runtime context.
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves at the first signal.
    async fn next(&mut self) -> Shutdown {
        let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
        tokio::select! {
            Some(()) = async { interrupt.as_mut()?.recv().await } => Shutdown { name: "Ctrl-C (SIGINT)", exit_code: 130 },
            Some(()) = async { terminate.as_mut()?.recv().await } => Shutdown { name: "SIGTERM", exit_code: 143 },
            else => std::future::pending().await,
        }
    }
}
