//! `list`: one page of a team's sandboxes, read without a script. The page
//! of ids comes from the team's id index (`ZRANGEBYLEX`, with the server's
//! `TIME`), then each record with `HGETALL` and `PTTL`, pipelined — every
//! key in the team's slot — and each is validated by [`crate::record`],
//! the Rust twin of `record.lua`, as `list.lua` did in Lua. A script ran
//! Lua on every record (116k instructions each, against 10k for a pipelined
//! `HGETALL`: docs/BENCHMARKS.md) and held Redis for the whole page; a read
//! needs no atomicity beyond each record's, and a record missing from the
//! index's page (removed meanwhile) is skipped, as the script skipped it.

use redis::Value;

use crate::error::{Error, to_error};
use crate::keys::TeamKeys;
use crate::ops::Env;
use crate::record::{FIELDS, Raw, data_piece, join_data};
use crate::redis::{Route, value};
use crate::retry::Retry;
use crate::sandbox::{Page, Sandbox};

/// One page of team `team`'s sandboxes: the first `count` after `after`,
/// read again (twice at most) after a transport failure.
pub(crate) async fn page(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    after: Option<&str>,
    count: usize,
) -> Result<Page, Error> {
    let mut attempt = 0;
    loop {
        match read(env, team, keys, after, count).await {
            Err(e) if e.is_retryable() && !matches!(e, Error::NotReplicated { .. }) => {
                let now = tokio::time::Instant::now().into_std();
                let Some(pause) = Retry::TWICE.next(attempt, now) else {
                    return Err(e);
                };
                tracing::debug!(team, error = %e, "list: reading the page again");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

async fn read(
    env: &Env,
    team: &str,
    keys: &TeamKeys,
    after: Option<&str>,
    count: usize,
) -> Result<Page, Error> {
    let ids_key = keys.ids();
    let from = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
    let mut pipe = redis::pipe();
    // (The index first: on a cluster the pipeline goes where its first key
    // is; TIME has none.)
    pipe.cmd("ZRANGEBYLEX")
        .arg(&ids_key)
        .arg(&from)
        .arg("+")
        .arg("LIMIT")
        .arg(0)
        .arg(count);
    pipe.cmd("TIME");
    let mut replies = env
        .link
        .pipeline(&pipe, Route::default())
        .await?
        .into_iter();
    let ids = match replies.next() {
        Some(Value::ServerError(e)) if e.code() == "WRONGTYPE" => {
            return Err(Error::Corrupt {
                detail: format!("{ids_key} is not a sorted set"),
            });
        }
        Some(Value::ServerError(e)) => return Err(to_error(e.into())),
        Some(v) => value::texts(v),
        None => return Err(short(&ids_key)),
    };
    let now_ms = match replies.next() {
        Some(Value::Array(t)) if t.len() == 2 => {
            match (
                t.first().and_then(value::uint),
                t.get(1).and_then(value::uint),
            ) {
                (Some(s), Some(us)) => s * 1000 + us / 1000,
                _ => return Err(short(&ids_key)),
            }
        }
        Some(Value::ServerError(e)) => return Err(to_error(e.into())),
        _ => return Err(short(&ids_key)),
    };
    let next = (ids.len() == count).then(|| ids.last().cloned()).flatten();
    if ids.is_empty() {
        return Ok(Page {
            sandboxes: Vec::new(),
            next,
        });
    }
    let mut pipe = redis::pipe();
    let records: Vec<String> = ids.iter().map(|id| keys.record(id)).collect();
    for key in &records {
        pipe.cmd("HGETALL").arg(key);
        pipe.cmd("PTTL").arg(key);
    }
    let replies = env.link.pipeline(&pipe, Route::default()).await?;
    if replies.len() != 2 * ids.len() {
        return Err(short(&ids_key));
    }
    let mut sandboxes = Vec::with_capacity(ids.len());
    for ((id, key), pair) in ids.iter().zip(&records).zip(replies.chunks(2)) {
        if let Some(s) = sandbox(env, team, id, key, &pair[0], &pair[1], now_ms)? {
            sandboxes.push(s);
        }
    }
    Ok(Page { sandboxes, next })
}

/// The sandbox record `key` holds, from its `HGETALL` and `PTTL` replies;
/// `None` when there is no record (its index entry outlived it).
fn sandbox(
    env: &Env,
    team: &str,
    id: &str,
    key: &str,
    all: &Value,
    pttl: &Value,
    now_ms: u64,
) -> Result<Option<Sandbox>, Error> {
    let raw: Vec<(&Value, &Value)> = match all {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => {
            return Err(Error::Corrupt {
                detail: format!("{key} is not a hash"),
            });
        }
        Value::ServerError(e) => return Err(to_error(e.clone().into())),
        Value::Map(pairs) => pairs.iter().map(|(f, v)| (f, v)).collect(),
        Value::Array(flat) if flat.len() % 2 == 0 => {
            flat.chunks(2).map(|p| (&p[0], &p[1])).collect()
        }
        _ => return Err(short(key)),
    };
    let pairs: Vec<(String, String)> = raw
        .iter()
        .map(|(f, v)| (value::text_or_empty(f), value::text_or_empty(v)))
        .collect();
    let pieces = pairs
        .iter()
        .zip(&raw)
        .filter_map(|((f, _), (_, v))| Some((data_piece(f)?, value::bytes(v).unwrap_or_default())));
    let data = join_data(pieces);
    if pairs.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(f, _)| f == name)
            .map_or("", |(_, v)| v.as_str())
    };
    if !pairs.iter().any(|(f, _)| f == "v") {
        return Err(Error::Corrupt {
            detail: format!("{key} has no schema version"),
        });
    }
    let pttl = match pttl {
        Value::ServerError(e) => return Err(to_error(e.clone().into())),
        v => value::int(v).ok_or_else(|| short(key))?,
    };
    let fields: [&str; FIELDS.len()] = std::array::from_fn(|i| get(FIELDS[i]));
    Raw { fields }
        .to_sandbox(&env.lifecycle, key, team, id, now_ms, pttl, &data)
        .map(Some)
}

fn short(key: &str) -> Error {
    Error::Corrupt {
        detail: format!("list of {key}: Redis's reply has not the expected shape"),
    }
}
