//! `list.lua`: one page of a team's sandboxes from its id index.

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::inspect::{ROW, row};
use crate::ops::{Env, Send, call};
use crate::redis::Route;
use crate::sandbox::Page;

pub(crate) async fn page(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    after: Option<&str>,
    count: usize,
) -> Result<Page, Error> {
    let ids = keys.ids();
    let count_s = count.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.list,
        &[&ids],
        &[&keys.prefix, after.unwrap_or(""), &count_s],
        Send::Retried { write: true },
        Route::default(),
    )
    .await?;
    if reply.status() != "page" {
        return Err(reply.refusal(&ids, &env.digest));
    }
    let now = reply.u64(2)?;
    let n = reply.usize(3)?;
    let mut sandboxes = Vec::with_capacity(n);
    for i in 0..n {
        let at = 4 + i * (ROW + 1);
        let id = reply.str(at).to_string();
        sandboxes.push(row(env, &reply, at + 1, now, team, &id)?);
    }
    let next = Some(reply.str(1).to_string()).filter(|s| !s.is_empty());
    Ok(Page { sandboxes, next })
}
