//! Reservations: a place of a team's limit (and the id) held for a slow
//! create or resume, made by one script call; and the wait for a place
//! while the team is full, woken by the team's notifications with the
//! poll as a fallback.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;
use crate::error::{Error, Result};
use crate::ops;
use crate::ops::command::invoke;
pub(crate) use crate::ops::reserve::Purpose;
use crate::ops::reserve::Reserve;
use crate::reservation::Reservation;
use crate::runtime::Runtime;

/// Reserves `id` for `ttl`: a new id, or a paused sandbox to resume.
pub(crate) async fn reserve(
    rt: &Arc<Runtime>,
    team: &str,
    id: &str,
    ttl: Duration,
    purpose: Purpose,
) -> Result<Reservation> {
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
    let reservation = Reservation::new(Arc::clone(rt), ctx, token, reserved.reply);
    ops::replicated("reserve", reserved.replication)?;
    Ok(reservation)
}

/// Reserves a new id, waiting for a place while the team is full, at most
/// `timeout`; then the last [`Error::TeamLimit`].
pub(crate) async fn reserve_waiting(
    rt: &Arc<Runtime>,
    team: &str,
    id: &str,
    ttl: Duration,
    timeout: Duration,
) -> Result<Reservation> {
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
