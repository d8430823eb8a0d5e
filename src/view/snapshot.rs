//! `view.lua`: one page of a team for a team view, read atomically with the
//! team's sequence (or, with a page size of 0, the sequence alone).

use std::time::SystemTime;

use crate::error::Error;
use crate::keys::TeamKeys;
use crate::ops::command::{Command, invoke};
use crate::ops::{Env, Reply};
use crate::retry::Retry;
use crate::scripts::Script;
use crate::view::model::{Change, Page, parse_change};

/// One page of a team view: the `count` rows after `after` (`None`: the
/// first page).
#[derive(Debug, Clone)]
pub(crate) struct ViewPage<'a> {
    pub keys: &'a TeamKeys,
    pub after: Option<&'a str>,
    pub count: usize,
}

impl Command for ViewPage<'_> {
    type Reply = Page;
    const WRITE: bool = false;

    fn script<'e>(&self, env: &'e Env) -> &'e Script {
        &env.scripts.view
    }

    fn keys(&self) -> Vec<String> {
        let k = self.keys;
        vec![k.ids(), k.seq(), k.resv(), k.hash()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.keys.prefix.clone(),
            self.after.unwrap_or("").to_string(),
            self.count.to_string(),
        ]
    }

    /// Read-only.
    fn retry(&self) -> Retry {
        Retry::TWICE
    }

    fn parse(&self, env: &Env, reply: Reply) -> Result<Page, Error> {
        let ids = self.keys.ids();
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
}

/// Reads the page after `after` (`None`: the first page), `count` rows.
pub(crate) async fn page(
    env: &Env,
    keys: &TeamKeys,
    after: Option<&str>,
    count: usize,
) -> Result<Page, Error> {
    let command = ViewPage { keys, after, count };
    Ok(invoke(env, &command).await?.reply)
}

/// The team's sequence now.
pub(crate) async fn seq(env: &Env, keys: &TeamKeys) -> Result<u64, Error> {
    page(env, keys, None, 0).await.map(|p| p.seq)
}

#[cfg(test)]
mod tests {
    use super::ViewPage;
    use crate::ops::keys_tests::{Sample, assert_keys_agree};

    /// The other ops' commands are checked in `ops::keys_tests`.
    #[test]
    fn a_view_page_passes_the_keys_view_lua_declares() {
        let s = Sample::new();
        for (after, count) in [(None, 0), (Some("s1"), 100)] {
            let page = ViewPage {
                keys: &s.sandbox.keys.team,
                after,
                count,
            };
            assert_keys_agree("view", &page, &s);
        }
    }
}
