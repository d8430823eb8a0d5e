//! `watch`: tails the teams' notification channels (`<ns>:{<team>}:notify`),
//! where every outcome is published in the same atomic step that records
//! it: one team's channel with `--team`, else every team's (a pattern
//! subscription, on a single server). Pub/sub delivers only while
//! subscribed: after a reconnect, notifications sent meanwhile are missed,
//! and `watch` says so.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures_util::StreamExt;
use serde::Serialize;

use crate::output::Verdict;
use crate::output::{emit, emit_json_line};
use crate::server::Server;

/// Bound on (re)connecting and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait between reconnection attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// One notification, as printed in JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NoticeReport {
    /// When sandboxctl received it (RFC 3339, UTC).
    pub received: String,
    pub team: String,
    pub id: String,
    pub fence: u64,
    pub action: String,
    pub outcome: String,
    pub reason: String,
}

/// The team of a channel `<ns>:{<team>}:notify`.
fn channel_team(channel: &str) -> Option<&str> {
    let open = channel.find('{')?;
    let close = channel[open..].find('}')? + open;
    Some(&channel[open + 1..close])
}

/// Parses the outcome notice `o <id> <fence> <action> <outcome> <reason>`
/// published on `team`'s channel; the reason may contain spaces or be
/// empty. Other notices (`c ...`: a record changed for its waiters) are
/// not outcomes: None.
fn parse_notice(team: &str, payload: &str, received: SystemTime) -> Option<NoticeReport> {
    // A team view's announcement "=<seq> ..." comes first, then the notice.
    let payload = match payload.strip_prefix('=') {
        Some(view) => view.split_once('\n')?.1,
        None => payload,
    };
    let mut parts = payload.splitn(6, ' ');
    if parts.next()? != "o" {
        return None;
    }
    let team = team.to_string();
    let id = parts.next()?.to_string();
    let fence = parts.next()?.parse().ok()?;
    let action = parts.next()?.to_string();
    let outcome = parts.next()?.to_string();
    let reason = parts.next().unwrap_or("").to_string();
    Some(NoticeReport {
        received: humantime::format_rfc3339_millis(received).to_string(),
        team,
        id,
        fence,
        action,
        outcome,
        reason,
    })
}

/// `sandboxctl watch [--team T] [--count N]`.
pub async fn watch(
    server: &Server,
    team: Option<&str>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<Verdict> {
    if server.is_cluster() {
        anyhow::bail!(
            "watch does not support --cluster yet: on a Redis Cluster the library publishes \
             with sharded pub/sub (SPUBLISH), which has no pattern subscription; \
             `sandboxctl transitions` shows what is in flight"
        );
    }
    let ns = server.namespace().prefix().to_string();
    let channel = match team {
        Some(t) => format!("{ns}:{{{t}}}:notify"),
        None => format!("{ns}:{{*}}:notify"),
    };
    let client = server.client()?;
    let mut seen: u64 = 0;
    let mut first = true;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(Verdict::Done);
        }
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            if team.is_some() {
                pubsub.subscribe(&channel).await?;
            } else {
                pubsub.psubscribe(&channel).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) if first => {
                return Err(e).with_context(|| format!("cannot subscribe to {channel}"));
            }
            Err(_) if first => anyhow::bail!("subscribing to {channel} timed out"),
            Ok(Err(e)) => {
                eprintln!("sandboxctl: reconnecting to {channel}: {e}");
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
            Err(_) => {
                eprintln!("sandboxctl: reconnecting to {channel}: timed out");
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        };
        if first {
            eprintln!("sandboxctl: watching {channel} (Ctrl-C to stop)");
        } else {
            eprintln!(
                "sandboxctl: resubscribed to {channel}; notifications published while \
                 disconnected were missed (`sandboxctl transitions` shows what is in flight)"
            );
        }
        first = false;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let payload: String = match msg.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("sandboxctl: unreadable notification: {e}");
                    continue;
                }
            };
            let from = channel_team(msg.get_channel_name())
                .unwrap_or("")
                .to_string();
            if payload.starts_with('c') || (payload.starts_with('=') && !payload.contains("\no ")) {
                continue;
            }
            let Some(notice) = parse_notice(&from, &payload, SystemTime::now()) else {
                eprintln!("sandboxctl: malformed notification {payload:?}");
                continue;
            };
            if json {
                emit_json_line(&notice)?;
            } else {
                emit(&format!(
                    "{}  {}/{}  fence {}  {} {}{}\n",
                    notice.received,
                    notice.team,
                    notice.id,
                    notice.fence,
                    notice.action,
                    notice.outcome,
                    if notice.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", notice.reason)
                    }
                ))?;
            }
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(Verdict::Done);
            }
        }
        eprintln!("sandboxctl: the subscription to {channel} closed; reconnecting");
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_with_spaces_in_the_reason() {
        let n = parse_notice(
            "t",
            "o s1 7 pause failed vm did not stop",
            SystemTime::UNIX_EPOCH,
        )
        .expect("parses");
        assert_eq!((n.team.as_str(), n.id.as_str(), n.fence), ("t", "s1", 7));
        assert_eq!((n.action.as_str(), n.outcome.as_str()), ("pause", "failed"));
        assert_eq!(n.reason, "vm did not stop");
        let n =
            parse_notice("t", "o s1 8 kill succeeded ", SystemTime::UNIX_EPOCH).expect("parses");
        assert_eq!(n.reason, "");
        assert!(parse_notice("t", "o s1 x kill succeeded", SystemTime::UNIX_EPOCH).is_none());
        assert!(parse_notice("t", "c s1", SystemTime::UNIX_EPOCH).is_none());
        let n = parse_notice(
            "t",
            "=4 1700000000000 s s1 paused e1 9 1 pause - - - -\no s1 9 pause succeeded ",
            SystemTime::UNIX_EPOCH,
        )
        .expect("parses after a view's announcement");
        assert_eq!((n.id.as_str(), n.fence), ("s1", 9));
        assert_eq!(channel_team("sbx:{team-1}:notify"), Some("team-1"));
    }
}
