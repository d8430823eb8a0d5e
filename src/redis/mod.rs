//! Redis at the edge: everything that touches a connection or a raw reply.
//!
//! - `target`: where Redis is ([`RedisTarget`]: a single server, or a
//!   Redis Cluster's seed nodes), TLS, credentials, and the redis-rs
//!   clients built from them; `options`: a program's Redis options
//!   ([`RedisOptions`]: the files named, read into a target).
//! - `link`: the command connections (multiplexed round robin, a pool, or
//!   the cluster connection), [`Link::query`] and when a connection is
//!   retired.
//! - `eval`: a script call — `EVALSHA`, the optional `WAIT` in the same
//!   round trip, the `NOSCRIPT` reload — and `SCRIPT LOAD` at start.
//! - `scan`: `SCAN` on every primary, for repair and migrate only.
//! - `value`: the one place a raw reply becomes text or a number.
//!
//! Nothing here knows a script's meaning: `ops` does. The classes of
//! Redis errors (transient, final, their metric kind) live below this
//! module, with the error type (`crate::error`), so that the error type
//! never imports a connection.

pub(crate) mod eval;
pub(crate) mod link;
pub(crate) mod options;
pub(crate) mod scan;
pub(crate) mod target;
pub(crate) mod value;

pub(crate) use eval::Replication;
pub(crate) use link::{Link, Route};
pub use options::{PASSWORD_ENV, RedisOptions};
pub(crate) use target::LinkSettings;
pub use target::{Connections, RedisTarget};
