//! `team_limit.lua`: set or clear a team's limit.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::redis::{Replication, Route};

/// The previous limit and the replication.
pub(crate) async fn set(
    env: &Env,
    keys: &TeamKeys,
    limit: Option<usize>,
) -> Result<(Option<usize>, Replication), Error> {
    let hash = keys.hash();
    let limit_s = limit.map(|n| n.to_string()).unwrap_or_default();
    let (reply, replication) = call(
        env,
        &env.scripts.team_limit,
        &[&hash, &keys.seq()],
        &[&keys.prefix, &limit_s],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "ok" {
        return Err(reply.refusal(&hash, &env.digest));
    }
    Ok((reply.str(1).parse().ok(), replication))
}
