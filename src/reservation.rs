//! [`Reservation`]: a place of a team's limit, and the id, held for a slow
//! create or resume. It holds the runtime (never the façade), is made from
//! what `protocol::reserve` reserved, and registers through
//! `protocol::register`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keeper::Job;
use crate::keys::SandboxRef;
use crate::ops;
use crate::ops::command::invoke;
use crate::protocol::register;
use crate::protocol::reserve::Reserved;
use crate::runtime::Runtime;
use crate::sandbox::{NewSandbox, Registration, Sandbox};

/// A reservation made by [`Coordinator::reserve`](crate::Coordinator::reserve). Register the sandbox
/// with [`Reservation::register`] (which consumes it), or give it back with
/// [`Reservation::release`]; dropping it gives it back in the background.
/// If nothing does, it expires after its ttl.
#[must_use = "a reservation holds a place; dropping it gives the place back"]
pub struct Reservation {
    rt: Arc<Runtime>,
    sandbox: SandboxRef,
    token: String,
    ttl: Duration,
    done: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("team", &self.sandbox.team)
            .field("id", &self.sandbox.id)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Reservation {
    /// The handle of what `protocol::reserve` reserved; a reservation too
    /// few replicas acknowledged is given back (the handle dropped) and is
    /// [`Error::NotReplicated`].
    pub(crate) fn made(rt: &Arc<Runtime>, reserved: Reserved) -> Result<Reservation> {
        let reservation = Reservation {
            rt: Arc::clone(rt),
            sandbox: reserved.sandbox,
            token: reserved.token,
            ttl: reserved.ttl,
            done: false,
        };
        ops::replicated("reserve", reserved.replication)?;
        Ok(reservation)
    }

    /// Team id.
    pub fn team(&self) -> &str {
        &self.sandbox.team
    }

    /// Sandbox id.
    pub fn id(&self) -> &str {
        &self.sandbox.id
    }

    /// How long it held when it was made.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Registers the reserved sandbox (`new.team` and `new.id` must be the
    /// reservation's), consuming the reservation: its place becomes the
    /// sandbox's. On an error the reservation is given back.
    ///
    /// Cancel safety: as for
    /// [`Coordinator::register`](crate::Coordinator::register); the reservation is
    /// given back in the background (a no-op if the register consumed it).
    pub async fn register(mut self, new: NewSandbox) -> Result<(Sandbox, Registration)> {
        if new.team != self.sandbox.team || new.id != self.sandbox.id {
            return Err(Error::InvalidInput {
                what: "sandbox",
                value: format!("{}/{}", new.team, new.id),
                why: format!(
                    "is not the reserved {}/{}",
                    self.sandbox.team, self.sandbox.id
                ),
            });
        }
        let result = register::register(&self.rt, new, &self.token).await;
        if result.is_ok() {
            self.done = true;
        }
        result
    }

    /// Gives the reservation back now. `true` if this call released it
    /// (false: it had expired or been consumed).
    ///
    /// Cancel safety: if dropped, it is given back in the background.
    pub async fn release(mut self) -> Result<bool> {
        let command = ops::reserve::Unreserve {
            sandbox: &self.sandbox,
            token: &self.token,
        };
        let released = invoke(&self.rt.env, &command).await.map(|i| i.reply);
        if released.is_ok() {
            self.done = true;
        }
        released
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.rt.keeper.send(Job::Unreserve {
            sandbox: self.sandbox.clone(),
            token: self.token.clone(),
        });
    }
}
