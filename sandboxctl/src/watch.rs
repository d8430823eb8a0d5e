//! `watch`: tails the namespace's notification channel, where every outcome
//! is published in the same atomic step that records it. Pub/sub delivers
//! only while subscribed: after a reconnect, notifications sent meanwhile
//! are missed, and `watch` says so.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures_util::StreamExt;
use serde::Serialize;

use crate::Verdict;
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

/// Parses `<team> <id> <fence> <action> <outcome> <reason>`; the reason
/// may contain spaces or be empty.
fn parse_notice(payload: &str, received: SystemTime) -> Option<NoticeReport> {
    let mut parts = payload.splitn(6, ' ');
    let team = parts.next()?.to_string();
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
    let channel = server.namespace().channel();
    let client = server.client()?;
    let mut seen: u64 = 0;
    let mut first = true;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(Verdict::Done);
        }
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
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
            let Some(notice) = parse_notice(&payload, SystemTime::now()) else {
                eprintln!("sandboxctl: malformed notification {payload:?}");
                continue;
            };
            if team.is_some_and(|t| t != notice.team) {
                continue;
            }
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
            "t s1 7 pause failed vm did not stop",
            SystemTime::UNIX_EPOCH,
        )
        .expect("parses");
        assert_eq!((n.team.as_str(), n.id.as_str(), n.fence), ("t", "s1", 7));
        assert_eq!((n.action.as_str(), n.outcome.as_str()), ("pause", "failed"));
        assert_eq!(n.reason, "vm did not stop");
        let n = parse_notice("t s1 8 kill succeeded ", SystemTime::UNIX_EPOCH).expect("parses");
        assert_eq!(n.reason, "");
        assert!(parse_notice("t s1 x kill succeeded", SystemTime::UNIX_EPOCH).is_none());
    }
}
