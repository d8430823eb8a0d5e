//! Wake-ups: one subscription connection per coordinator (outside the
//! command connections), subscribed on demand to the channels of the teams
//! its waiters wait on, and fanned out to those waiters by sandbox.
//!
//! The scripts publish on `<ns>:{<team>}:notify` in the same atomic step
//! as the change they announce (see `lua/include/notify.lua`), so a notice
//! is authoritative. On a single server that is `PUBLISH`/`SUBSCRIBE`; on
//! Redis Cluster it is sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): the
//! channel lives in the team's slot, a notice never crosses the cluster
//! bus, and a server receives the notices of the teams it waits on only —
//! its notification traffic grows with its own waiters, not with the
//! fleet's transitions. A team's channel is unsubscribed a while after its
//! last waiter left (so a busy team is not resubscribed on every wait).
//!
//! Pub/sub can drop messages (a connection that breaks, a slot that moves),
//! so waiters never rely on it alone: they register here *before* they
//! check Redis, they poll, and every event after which messages may have
//! been lost — a reconnect, a resubscription after a slot move, a failed
//! health check — bumps an epoch that makes every waiter re-check at once.
//! The connection is health-checked with `PING` every few seconds, so a
//! half-open connection is found and replaced instead of leaving waiters on
//! their poll.
//!
//! - `routes`: the routing table and the delivery of a message to waiters;
//! - `handles`: [`Notifier`], [`Watch`] (a waiter), [`Tap`] (a team view);
//! - `wire`: the notice format the scripts publish;
//! - `subscription`: the plain or sharded subscription connection;
//! - `supervisor`: the task that keeps it up.

mod handles;
mod routes;
mod subscription;
mod supervisor;
mod wire;

pub(crate) use handles::{Notifier, Tap, Watch};
pub(crate) use routes::{NotifySettings, Wake};
pub(crate) use wire::Notice;
