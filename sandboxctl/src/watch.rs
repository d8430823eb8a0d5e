//! `watch`: tails the teams' notification channels (`<ns>:{<team>}:notify`),
//! where every outcome is published in the same atomic step that records
//! it: one team's channel with `--team`, else every team's (a pattern
//! subscription, on a single server; on a Redis Cluster, where the library
//! publishes with sharded pub/sub, one team's channel with `SSUBSCRIBE`,
//! so `--team` is needed). Pub/sub delivers only while
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

/// A subscription's messages: plain pub/sub on one server, sharded pub/sub
/// (`SSUBSCRIBE`, what the library publishes on a cluster) on a cluster.
enum Feed {
    Plain(std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>),
    Sharded {
        conn: redis::cluster_async::ClusterConnection,
        pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
        channel: String,
    },
}

/// What a feed delivered.
enum Delivery {
    /// (channel, payload).
    Message(String, String),
    /// Messages published meanwhile may have been missed (a node's
    /// connection dropped, or the subscription moved with its slot).
    Gap(String),
    Closed,
}

impl Feed {
    async fn subscribe(server: &Server, channel: &str, pattern: bool) -> anyhow::Result<Feed> {
        if server.is_cluster() {
            let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
            let mut conn = server.cluster_pushes(tx).await?;
            conn.ssubscribe(channel).await?;
            return Ok(Feed::Sharded {
                conn,
                pushes,
                channel: channel.to_string(),
            });
        }
        let mut pubsub = server.client()?.get_async_pubsub().await?;
        if pattern {
            pubsub.psubscribe(channel).await?;
        } else {
            pubsub.subscribe(channel).await?;
        }
        Ok(Feed::Plain(Box::pin(pubsub.into_on_message())))
    }

    async fn next(&mut self) -> Delivery {
        match self {
            Feed::Plain(messages) => match messages.next().await {
                Some(msg) => match msg.get_payload::<String>() {
                    Ok(payload) => Delivery::Message(msg.get_channel_name().to_string(), payload),
                    Err(e) => Delivery::Gap(format!("unreadable notification: {e}")),
                },
                None => Delivery::Closed,
            },
            Feed::Sharded {
                conn,
                pushes,
                channel,
            } => loop {
                let Some(push) = pushes.recv().await else {
                    return Delivery::Closed;
                };
                let text = |i: usize| {
                    push.data
                        .get(i)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                        .unwrap_or_default()
                };
                match push.kind {
                    redis::PushKind::SMessage => return Delivery::Message(text(0), text(1)),
                    redis::PushKind::Disconnection => {
                        return Delivery::Gap("a node's connection dropped".into());
                    }
                    // The slot moved: the server dropped the subscription.
                    redis::PushKind::SUnsubscribe if text(0) == *channel => {
                        if let Err(e) = conn.ssubscribe(channel.as_str()).await {
                            return Delivery::Gap(format!("resubscribing failed: {e}"));
                        }
                        return Delivery::Gap("the team's slot moved".into());
                    }
                    _ => {}
                }
            },
        }
    }
}

/// `sandboxctl watch [--team T] [--count N]`.
pub async fn watch(
    server: &Server,
    team: Option<&str>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<Verdict> {
    if server.is_cluster() && team.is_none() {
        anyhow::bail!(
            "watch --cluster needs --team: on a Redis Cluster the library publishes with \
             sharded pub/sub (SPUBLISH), which has no pattern subscription; \
             `sandboxctl transitions` shows what is in flight across teams"
        );
    }
    let ns = server.namespace().prefix().to_string();
    let channel = match team {
        Some(t) => format!("{ns}:{{{t}}}:notify"),
        None => format!("{ns}:{{*}}:notify"),
    };
    let mut seen: u64 = 0;
    let mut first = true;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(Verdict::Done);
        }
        let subscribed = tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            Feed::subscribe(server, &channel, team.is_none()),
        )
        .await;
        let mut feed = match subscribed {
            Ok(Ok(feed)) => feed,
            Ok(Err(e)) if first => {
                return Err(e).with_context(|| format!("cannot subscribe to {channel}"));
            }
            Err(_) if first => anyhow::bail!("subscribing to {channel} timed out"),
            Ok(Err(e)) => {
                eprintln!("sandboxctl: reconnecting to {channel}: {e:#}");
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
            eprintln!("sandboxctl: resubscribed to {channel}; {MISSED}");
        }
        first = false;
        loop {
            let (from, payload) = match feed.next().await {
                Delivery::Message(from, payload) => (from, payload),
                Delivery::Gap(why) => {
                    eprintln!("sandboxctl: {why}; {MISSED}");
                    continue;
                }
                Delivery::Closed => break,
            };
            let from = channel_team(&from).unwrap_or("").to_string();
            if payload.starts_with('c') || (payload.starts_with('=') && !payload.contains("\no ")) {
                continue;
            }
            let Some(notice) = parse_notice(&from, &payload, SystemTime::now()) else {
                eprintln!("sandboxctl: malformed notification {payload:?}");
                continue;
            };
            print_notice(&notice, json)?;
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(Verdict::Done);
            }
        }
        eprintln!("sandboxctl: the subscription to {channel} closed; reconnecting");
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

/// What a gap in a subscription means for the reader.
const MISSED: &str = "notifications published meanwhile may have been missed \
                      (`sandboxctl transitions` shows what is in flight)";

fn print_notice(notice: &NoticeReport, json: bool) -> anyhow::Result<()> {
    if json {
        return emit_json_line(notice);
    }
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
    ))
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
