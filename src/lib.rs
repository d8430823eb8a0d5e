//! Coordinates sandbox lifecycle transitions — pause, kill, snapshot —
//! across many API server processes, with Redis as the single source of
//! truth.
//!
//! Exactly one physical operation runs per sandbox at a time. Duplicate
//! requests join the running one and share its outcome; conflicting ones
//! wait for it (fairly, first come first decided) and are then decided
//! against the state it left behind, never against how the race happened
//! to interleave. Every read-check-set runs inside Redis as one Lua script;
//! waiting uses pub/sub with a poll and the lease deadline as fallbacks.
//!
//! The crate's parts, from the API down (dependencies point one way; the
//! layout with one line per file is in CONTRIBUTING.md):
//!
//! - [`Coordinator`] (the façade: each method's docs and one line handing
//!   the call on) and its [`Builder`] (settings, start-up): `register`,
//!   `get`, `begin`, `wait_idle`, `set_end_time`, `remove`, the fleet
//!   operations (`list`, `count`, team limits, `reserve`,
//!   `due_for_eviction_all`, `repair`) and the production settings (TLS,
//!   ACL credentials, Redis Cluster, `wait_for_replicas`).
//! - `protocol`: the request loops. A begin and a `wait_idle` are decided
//!   by a pure step function (no I/O, table-tested and model-checked with
//!   stateright) and driven by a thin async loop; register, reservations,
//!   fleet reads, ends and the operator's repair and migrate each have
//!   their module.
//! - [`Transition`]: a started transition — fence, holder, `lost()`,
//!   `succeed`/`fail`, and a `Drop` that fails it; its lease is kept alive
//!   by the coordinator's one lease keeper. [`Reservation`]: a place of a
//!   team's limit held for a slow create. Both hold the runtime, never the
//!   façade.
//! - [`TeamView`]: a live local model of one team, kept by the team's
//!   announcements (reads cost no Redis time).
//! - `notify`: the one subscription connection per coordinator (plain or
//!   sharded pub/sub), its routing table and its supervisor.
//! - `lua/`: one script per operation assembled from shared pieces (see
//!   [`scripts`]); `ops` holds each script call as a value (its keys,
//!   arguments, retry policy and typed reply), sent by one `invoke`;
//!   `retry` is the one retry schedule, never past the caller's deadline.
//! - `redis`: the edge — where Redis is (TLS, credentials), the command
//!   connections, the script call with its `WAIT` and `NOSCRIPT` reload,
//!   `SCAN`, and the one place a raw reply becomes text or a number.
//! - [`lifecycle`]: states, actions and the rule table as data, with
//!   [`Lifecycle::decide`], the pure executable specification. The table is
//!   generated into the scripts when a coordinator is built.
//! - [`keys`]: the Redis layout, hash slots and id validation; [`Error`]:
//!   the one error type (and the classes of Redis errors); [`acl_rules`]:
//!   least-privilege ACL rules; [`redact_url`]: the one redactor of
//!   passwords in URLs; [`RedisTarget`] and [`RedisOptions`]: where Redis
//!   is, with TLS and credentials, as a program's options give it (what
//!   `sandboxctl` and `sandbox-api` take).
//!
//! Every public async method documents its cancel safety: any of them may
//! be dropped at any await point (an HTTP handler whose client went away)
//! without leaving an orphan lease or an outcome that contradicts one
//! already returned.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, DoneReason, NewSandbox};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sandbox_coordinator::Error> {
//! # let url = match std::env::var("REDIS_URL") {
//! #     Ok(url) => url,
//! #     Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("the doctest needs REDIS_URL in CI"),
//! #     Err(_) => return Ok(()),
//! # };
//! # let ns = format!("doc{}", std::process::id());
//! let coord = Coordinator::builder(url).namespace(ns).build().await?;
//! coord
//!     .register(NewSandbox {
//!         team: "team-1".into(),
//!         id: "sbx-1".into(),
//!         execution: "exec-1".into(),
//!         end_time: Duration::from_secs(3600).into(), // from the Redis server's now
//!         data: "{}".into(),
//!     })
//!     .await?;
//!
//! match coord.begin("team-1", "sbx-1", Action::Pause, BeginOptions::default()).await? {
//!     Begun::Started(t) => {
//!         // ... pause the VM, passing t.fence() along ...
//!         t.succeed().await?;
//!     }
//!     Begun::AlreadyDone(done) => println!("nothing to do: {:?}", done.why),
//! }
//!
//! // A kill after the pause is absorbed by it: nothing runs twice.
//! match coord.begin("team-1", "sbx-1", Action::Kill, BeginOptions::default()).await? {
//!     Begun::AlreadyDone(done) => assert!(matches!(done.why, DoneReason::Absorbed { .. })),
//!     Begun::Started(_) => unreachable!("a paused sandbox absorbs a kill"),
//! }
//! assert_eq!(coord.count("team-1").await?.paused, 1);
//! # coord.remove("team-1", "sbx-1").await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod acl;
mod bounds;
mod builder;
mod coordinator;
pub mod error;
mod keeper;
pub mod keys;
pub mod lifecycle;
mod metrics;
mod notify;
mod ops;
mod options;
mod protocol;
mod record;
mod redact;
mod redis;
mod reservation;
mod retry;
mod runtime;
mod sandbox;
pub mod scripts;
mod transition;
mod view;

pub use crate::redis::{Connections, PASSWORD_ENV, RedisOptions, RedisTarget};
pub use acl::acl_rules;
pub use bounds::MAX_DURATION_MS;
pub use builder::Builder;
pub use coordinator::Coordinator;
pub use error::{BusyWith, Error, Result};
pub use lifecycle::{
    Action, ActionSpec, Decision, LeaseView, Lifecycle, Outcome, State, StateClass,
};
pub use options::{BeginOptions, Begun, Finish};
pub use record::MAX_INT;
#[doc(hidden)]
pub use record::refusal as record_refusal;
pub use redact::redact_url;
pub use reservation::Reservation;
pub use sandbox::{
    Abandonment, Done, DoneReason, Drift, EndTime, LastTransition, Lease, MAX_DATA_LEN, NewSandbox,
    Page, Registration, RepairReport, Sandbox, TeamCount,
};
pub use transition::{MAX_REASON_LEN, Transition};
pub use view::{TeamView, ViewUpdate, ViewUpdates, ViewedLease, ViewedSandbox};

/// The Rust code blocks of README.md, compiled and run as doctests (`make
/// test` runs them against a private server; without `REDIS_URL` they
/// return early).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust code blocks of the pages in docs/, compiled and run as
/// doctests like README.md's.
#[cfg(doctest)]
pub mod docs_doctests {
    #[doc = include_str!("../docs/concepts.md")]
    pub struct Concepts;
    #[doc = include_str!("../docs/integration.md")]
    pub struct Integration;
    #[doc = include_str!("../docs/production.md")]
    pub struct Production;
    #[doc = include_str!("../docs/operations.md")]
    pub struct Operations;
    #[doc = include_str!("../docs/redis-layout.md")]
    pub struct RedisLayout;
    #[doc = include_str!("../docs/example-server.md")]
    pub struct ExampleServer;
    #[doc = include_str!("../docs/BENCHMARKS.md")]
    pub struct Benchmarks;
    #[doc = include_str!("../docs/RELIABILITY.md")]
    pub struct Reliability;
}
