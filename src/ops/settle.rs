//! `settle.lua`: how a transition ended; records `abandoned` for a lease
//! that ended without an outcome (mode check), or ends a live one (force).

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::keys::SandboxRef;
use crate::lifecycle::{Action, Outcome};
use crate::ops::command::Command;
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;

/// What settle found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It had ended this way (nothing written).
    Ended {
        action: Option<Action>,
        outcome: Outcome,
        reason: String,
    },
    /// This call recorded `abandoned`.
    Abandoned {
        action: Option<Action>,
        reason: String,
    },
    /// Still in flight for this long.
    Live(Duration),
    /// No outcome can be known any more.
    Unknown,
}

/// Which leases a settle ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only one that has expired (a waiter's check).
    Check,
    /// A live one too (an operator's abandon).
    Force,
}

/// One settle of transition `fence`.
#[derive(Debug, Clone)]
pub(crate) struct Settle<'a> {
    pub sandbox: &'a SandboxRef,
    pub fence: u64,
    /// The transition's holder ("" for any: the operator).
    pub holder: &'a str,
    pub mode: Mode,
    /// Recorded with `abandoned`.
    pub reason: &'a str,
    /// The caller's: no retry waits past it.
    pub deadline: Option<Instant>,
}

impl Command for Settle<'_> {
    type Reply = Settled;
    const WRITE: bool = true;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.settle
    }

    fn keys(&self) -> Vec<String> {
        let sb = self.sandbox;
        vec![
            sb.record().to_string(),
            sb.outcome(self.fence),
            sb.keys.team.seq(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Check => "check",
            Mode::Force => "force",
        };
        vec![
            self.sandbox.prefix().to_string(),
            self.sandbox.id.clone(),
            self.fence.to_string(),
            self.holder.to_string(),
            mode.to_string(),
            self.reason.to_string(),
        ]
    }

    /// Idempotent for the same arguments.
    fn retry(&self) -> Retry {
        Retry::TWICE.within(self.deadline)
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Settled, Error> {
        let record = self.sandbox.record();
        let corrupt = |e: String| Error::Corrupt {
            detail: format!("{record}: {e}"),
        };
        match reply.status() {
            "outcome" => Ok(Settled::Ended {
                action: reply.str(1).parse().ok(),
                outcome: reply.str(2).parse().map_err(corrupt)?,
                reason: reply.str(3).to_string(),
            }),
            "abandoned" => Ok(Settled::Abandoned {
                action: reply.str(1).parse().ok(),
                reason: reply.str(2).to_string(),
            }),
            "live" => Ok(Settled::Live(Duration::from_millis(reply.u64(1)?))),
            "unknown" => Ok(Settled::Unknown),
            _ => Err(reply.refusal(record, &env.digest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Namespace;
    use crate::ops::inspect::Inspect;

    /// The calls a begin or wait_idle makes while it waits (settle,
    /// inspect) take the request's deadline: no retry of theirs waits past
    /// it, and without one they retry twice.
    #[test]
    fn a_waiting_requests_calls_never_retry_past_its_deadline() {
        let sb = Namespace::new("sbx")
            .unwrap()
            .sandbox_ref("t", "s")
            .unwrap();
        let now = Instant::now();
        let ms = Duration::from_millis;
        for deadline in [None, Some(now + ms(50))] {
            let settle = Settle {
                sandbox: &sb,
                fence: 1,
                holder: "h",
                mode: Mode::Check,
                reason: "lease expired",
                deadline,
            };
            let inspect = Inspect {
                sandbox: &sb,
                deadline,
            };
            for retry in [settle.retry(), inspect.retry()] {
                assert_eq!(retry.next(0, now), Some(ms(20)));
                let second = retry.next(1, now + ms(20));
                match deadline {
                    None => assert_eq!(second, Some(ms(80))),
                    Some(_) => assert_eq!(second, None, "20 + 80 ms is past 50"),
                }
            }
        }
    }
}
