//! `begin_<action>.lua`: decide a requested action, and open the transition
//! when the rule says start.

use std::time::Duration;

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, State};
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::redis::Route;
use crate::retry::Retry;
use crate::scripts::Script;

/// One begin call: request `action` for `sandbox` as `holder`.
#[derive(Debug, Clone)]
pub(crate) struct Begin<'a> {
    pub sandbox: &'a SandboxRef,
    pub action: Action,
    pub holder: &'a str,
    pub lease: Duration,
    /// Refuse unless the record is this execution's.
    pub expect_execution: Option<&'a str>,
    /// The call is the evictor's (at the sandbox's end time).
    pub eviction: bool,
    /// How long a queued waiter keeps its place without a re-check.
    pub queue_place: Duration,
    pub route: Route,
}

/// What the script decided (its refusals are already errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decided {
    /// This call holds the transition.
    Started {
        fence: u64,
        lease: Duration,
        execution: String,
    },
    /// The same action is in flight: wait for its outcome.
    Join {
        fence: u64,
        lease_left: Duration,
        holder: String,
    },
    /// Queued: re-check when transition `fence` (if any) ends, or at `wake`.
    Wait { fence: Option<u64>, wake: Duration },
    /// Transition `fence` is stuck (its holder vanished): record its end
    /// (settle) before deciding.
    Stuck { fence: u64, holder: String },
    /// Already in the action's target state.
    Same(State),
    /// The current state covers the request.
    Absorbed(State),
}

fn state(ctx: &SandboxRef, s: &str) -> Result<State, Error> {
    s.parse().map_err(|e: String| Error::Corrupt {
        detail: format!("{}: {e}", ctx.record()),
    })
}

impl Command for Begin<'_> {
    type Reply = Decided;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        env.scripts.begin(self.action)
    }

    fn keys(&self) -> Vec<String> {
        let (sb, team) = (self.sandbox, &self.sandbox.keys.team);
        vec![
            sb.record().to_string(),
            team.expiry(),
            team.tombs(),
            team.ids(),
            team.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.holder.to_string(),
            self.lease.as_millis().to_string(),
            self.expect_execution.unwrap_or("").to_string(),
            if self.eviction { "1" } else { "0" }.to_string(),
            self.queue_place.as_millis().to_string(),
        ]
    }

    /// Sent once here: the step function (`protocol::step`) retries a
    /// begin (by its holder id) with [`Retry::TWICE`] within the request's
    /// deadline, since a retry is one of its decisions.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    fn route(&self) -> Route {
        self.route
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Decided, Error> {
        let ctx = self.sandbox;
        let ms = |i| reply.u64(i).map(Duration::from_millis);
        Ok(match reply.status() {
            "started" => Decided::Started {
                fence: reply.u64(1)?,
                lease: ms(2)?,
                execution: reply.str(3).to_string(),
            },
            "join" => Decided::Join {
                fence: reply.u64(1)?,
                lease_left: ms(2)?,
                holder: reply.str(3).to_string(),
            },
            "wait" => Decided::Wait {
                fence: Some(reply.u64(1)?).filter(|f| *f > 0),
                wake: ms(2)?,
            },
            "stuck" => Decided::Stuck {
                fence: reply.u64(1)?,
                holder: reply.str(2).to_string(),
            },
            "same" => Decided::Same(state(ctx, reply.str(1))?),
            "absorbed" => Decided::Absorbed(state(ctx, reply.str(1))?),
            "invalid" => {
                return Err(Error::InvalidTransition {
                    team: ctx.team.clone(),
                    id: ctx.id.clone(),
                    from: state(ctx, reply.str(1))?,
                    action: self.action,
                });
            }
            "not_found" => return Err(ctx.not_found()),
            "exec_mismatch" => {
                return Err(ctx.exec_mismatch(&reply, self.expect_execution.unwrap_or("")));
            }
            "eviction_in_progress" => return Err(ctx.eviction_in_progress(&reply, 1)),
            "eviction_not_needed" => {
                return Err(Error::EvictionNotNeeded {
                    team: ctx.team.clone(),
                    id: ctx.id.clone(),
                    end_ms: reply.u64(1)?,
                    now_ms: reply.u64(2)?,
                });
            }
            _ => return Err(reply.refusal(ctx.record(), &env.digest)),
        })
    }
}
