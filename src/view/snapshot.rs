//! `view.lua`: one page of a team for a team view, read atomically with the
//! team's sequence (or, with a page size of 0, the sequence alone).

use std::time::SystemTime;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::{Env, Send, call};
use crate::redis::Route;
use crate::view::model::{Change, Page, parse_change};

/// Reads the page after `after` (`None`: the first page), `count` rows.
pub(crate) async fn page(
    env: &Env,
    keys: &TeamKeys,
    after: Option<&str>,
    count: usize,
) -> Result<Page, Error> {
    let ids = keys.ids();
    let count_s = count.to_string();
    let (reply, _) = call(
        env,
        &env.scripts.view,
        &[&ids, &keys.seq(), &keys.resv(), &keys.hash()],
        &[&keys.prefix, after.unwrap_or(""), &count_s],
        Send::Retried { write: false },
        Route::default(),
    )
    .await?;
    if reply.status() != "page" {
        return Err(reply.refusal(&ids, &env.digest));
    }
    let corrupt = |detail: String| Error::Corrupt {
        detail: format!("{ids}: {detail}"),
    };
    let now = SystemTime::now();
    let mut page = Page {
        seq: reply.u64(1)?,
        next: Some(reply.str(3).to_string()).filter(|s| !s.is_empty()),
        limit: match reply.str(4) {
            "" => None,
            _ => Some(reply.usize(4)?),
        },
        ..Page::default()
    };
    let r = reply.usize(5)?;
    let mut at = 6;
    for _ in 0..r {
        page.reservations
            .push((reply.str(at).to_string(), reply.u64(at + 1)?));
        at += 2;
    }
    let n = reply.usize(at)?;
    at += 1;
    if reply.len() != at + n {
        return Err(corrupt(format!(
            "a page of {} fields, not {}",
            reply.len(),
            at + n
        )));
    }
    for i in at..at + n {
        match parse_change(reply.str(i), now).map_err(corrupt)? {
            Change::Record(sb) => page.rows.push(sb),
            other => return Err(corrupt(format!("a row {other:?}"))),
        }
    }
    Ok(page)
}

/// The team's sequence now.
pub(crate) async fn seq(env: &Env, keys: &TeamKeys) -> Result<u64, Error> {
    page(env, keys, None, 0).await.map(|p| p.seq)
}
