//! Coordinates sandbox lifecycle transitions — pause, kill, snapshot —
//! across many API server processes, with Redis as the single source of
//! truth.
//!
//! Exactly one physical operation runs per sandbox at a time. Duplicate
//! requests join the running one and share its outcome; conflicting ones
//! wait for it and are then decided against the state it left behind, never
//! against how the race happened to interleave. Every read-check-set runs
//! inside Redis as one Lua script; waiting uses pub/sub with a poll and the
//! lease deadline as fallbacks.
//!
//! The crate's parts:
//!
//! - [`lifecycle`]: states, actions and the rule table as data, with
//!   [`Lifecycle::decide`], the pure executable specification. The scripts
//!   get their rules from here on every call.
//! - [`Coordinator`]: `register`, `get`, `begin`, `wait_idle`,
//!   `set_end_time`, `due_for_eviction`, `remove`.
//! - [`Transition`]: a started transition — fence, lease watchdog,
//!   `lost()`, `succeed`/`fail`, and a `Drop` that fails it.
//! - `lua/`: one script per operation (see [`scripts`]), each runnable with
//!   `redis-cli --eval`.
//! - [`keys`]: the Redis layout and id validation; [`Error`]: the one error
//!   type.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use sandbox_coordinator::{Action, BeginOptions, Begun, Coordinator, DoneReason, NewSandbox};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sandbox_coordinator::Error> {
//! # let Ok(url) = std::env::var("REDIS_URL") else { return Ok(()) };
//! # let ns = format!("doc{}", std::process::id());
//! let coord = Coordinator::builder(url).namespace(ns).build().await?;
//! coord
//!     .register(NewSandbox {
//!         team: "team-1".into(),
//!         id: "sbx-1".into(),
//!         execution: "exec-1".into(),
//!         end_time: SystemTime::now() + Duration::from_secs(3600),
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
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod coordinator;
pub mod error;
pub mod keys;
pub mod lifecycle;
mod notify;
mod pool;
mod sandbox;
pub mod scripts;
mod transition;

pub use coordinator::{BeginOptions, Begun, Builder, Coordinator, Finish, MAX_REASON_LEN};
pub use error::{Error, Result};
pub use lifecycle::{
    Action, ActionSpec, Decision, LeaseView, Lifecycle, Outcome, State, StateClass,
};
pub use sandbox::{
    Abandonment, Done, DoneReason, LastTransition, Lease, MAX_DATA_LEN, NewSandbox, Registration,
    Sandbox,
};
pub use transition::Transition;
