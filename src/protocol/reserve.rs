//! Reservations: a place of a team's limit (and the id) held for a slow
//! create or resume, made by one script call; and the wait for a place
//! while the team is full, woken by the team's notifications with the
//! poll as a fallback. What they make is a [`Reserved`] value; the handle
//! that holds it (`crate::reservation`) is made from it, and registers
//! through this module's sibling `register` — so the handle depends on the
//! protocol, never the other way round.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;
use crate::error::{Error, Result};
use crate::keys::SandboxRef;
use crate::ops::command::invoke;
pub(crate) use crate::ops::reserve::Purpose;
use crate::ops::reserve::Reserve;
use crate::redis::Replication;
use crate::runtime::Runtime;

/// A reservation the script made: the id, the holder's token, how long it
/// holds, and whether enough replicas have it (checked by the handle made
/// from it, which gives it back when they do not).
#[derive(Debug)]
pub(crate) struct Reserved {
    pub sandbox: SandboxRef,
    pub token: String,
    pub ttl: Duration,
    pub replication: Replication,
}

/// Reserves `id` for `ttl`: a new id, or a paused sandbox to resume.
pub(crate) async fn reserve(
    rt: &Arc<Runtime>,
    team: &str,
    id: &str,
    ttl: Duration,
    purpose: Purpose,
) -> Result<Reserved> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    bounds::duration_ms("reservation ttl", ttl, Duration::from_millis(10))?;
    let token = rt.next_holder();
    let command = Reserve {
        sandbox: &ctx,
        token: &token,
        ttl,
        purpose,
        default_limit: rt.env.default_limit,
    };
    let reserved = invoke(&rt.env, &command).await?;
    Ok(Reserved {
        sandbox: ctx,
        token,
        ttl: reserved.reply,
        replication: reserved.replication,
    })
}

/// Reserves a new id, waiting for a place while the team is full, at most
/// `timeout`; then the last [`Error::TeamLimit`].
pub(crate) async fn reserve_waiting(
    rt: &Arc<Runtime>,
    team: &str,
    id: &str,
    ttl: Duration,
    timeout: Duration,
) -> Result<Reserved> {
    let ctx = rt.env.ns.sandbox_ref(team, id)?;
    let deadline = bounds::deadline(Instant::now(), timeout);
    let mut watch = None;
    loop {
        match reserve(rt, team, id, ttl, Purpose::Create).await {
            Err(e @ Error::TeamLimit { .. }) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(e);
                }
                match &mut watch {
                    None => {
                        let mut w = rt.notifier.watch_team(team, &ctx.keys.team.channel());
                        w.ready(rt.settings.response_timeout.min(Duration::from_secs(2)))
                            .await;
                        watch = Some(w);
                    }
                    Some(w) => {
                        let mut until = now + rt.settings.poll_interval;
                        if let Some(d) = deadline {
                            until = until.min(d);
                        }
                        tokio::select! {
                            _ = w.next() => {}
                            _ = tokio::time::sleep_until(until) => {}
                        }
                    }
                }
            }
            other => return other,
        }
    }
}
