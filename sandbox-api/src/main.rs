//! `sandbox-api`: an example API server built on sandbox-coordinator, and the
//! simulated orchestrator node whose operations the coordinator's fences
//! protect. One binary, two subcommands:
//!
//! - `sandbox-api node`: the node ([`node`]). It runs (sleeps through)
//!   create, resume, pause, kill and snapshot operations, refuses a fenced
//!   operation whose fence is not above the highest it has seen for that
//!   sandbox, and records every operation and every overlap of two
//!   operations on one sandbox — the evidence the HTTP tests check.
//! - `sandbox-api serve`: the API ([`api`]). Thin axum handlers call the
//!   library; every physical operation goes to the node with its
//!   transition's fence. The slow create and resume flows live in
//!   [`flows`] (reserve → node → register). Every library error becomes
//!   an HTTP status in one `match` ([`error`]). Its Redis options — a URL
//!   or a cluster's nodes, TLS, credentials — are [`redis_target`]'s.
//!
//! Both print `listening on http://HOST:PORT` as the first line on stdout
//! (so `--listen 127.0.0.1:0` works for scripts), log with `tracing` on
//! stderr, and drain on SIGTERM or Ctrl-C ([`shutdown`]). [`telemetry`]
//! holds the logging setup and the Prometheus recorder with the server's
//! own `sandbox_api_*` metrics.

mod api;
mod app;
mod error;
mod flows;
mod listen;
mod node;
mod node_client;
mod redis_target;
mod shutdown;
mod telemetry;
mod views;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Parser)]
#[command(
    version,
    about = "Example API server on sandbox-coordinator, and its simulated node"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The simulated orchestrator node: runs operations, checks fences,
    /// records overlaps.
    Node(node::NodeArgs),
    /// The API server. (Boxed: its options are most of the enum's size.)
    Serve(Box<api::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbox-api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => node::run(args).await,
            Command::Serve(args) => api::run(*args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            eprintln!("sandbox-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}
