//! The subscription connection: plain pub/sub on one server, sharded
//! pub/sub (`SSUBSCRIBE`) through a RESP3 cluster connection on Redis
//! Cluster, and what it delivers as [`Event`]s.

use std::collections::HashSet;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::notify::routes::NotifySettings;
use crate::redis::target::{cluster_client, single_client};
use crate::redis::{Link, value};

/// The subscription connection: plain pub/sub on one server, sharded
/// pub/sub through the cluster connection on Redis Cluster.
pub(super) enum Sub {
    Plain {
        sink: redis::aio::PubSubSink,
        stream: redis::aio::PubSubStream,
    },
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

/// Something the connection delivered.
pub(super) enum Event {
    Message(String, String),
    /// The server dropped a subscription (a slot moved): resubscribe.
    Dropped(String),
    /// A node's connection dropped (messages may be lost until it is back).
    Lost,
    /// A subscription was re-established: messages may have been lost.
    Resubscribed,
    Closed,
}

impl Sub {
    pub(super) async fn connect(link: &Link, settings: &NotifySettings) -> Result<Sub, String> {
        let limit = settings
            .connect_timeout
            .saturating_add(settings.response_timeout);
        let target = link.target();
        if link.is_cluster() {
            let (tx, pushes) = mpsc::unbounded_channel();
            let client =
                cluster_client(target, link.settings(), Some(tx)).map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(limit, client.get_async_connection())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Sub::Cluster { conn, pushes })
        } else {
            let client = single_client(target, &target.nodes[0]).map_err(|e| e.to_string())?;
            let pubsub = tokio::time::timeout(limit, client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let (sink, stream) = pubsub.split();
            Ok(Sub::Plain { sink, stream })
        }
    }

    pub(super) async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.subscribe(channel).await,
            Sub::Cluster { conn, .. } => conn.ssubscribe(channel).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.unsubscribe(channel).await,
            Sub::Cluster { conn, .. } => conn.sunsubscribe(channel).await,
        }
    }

    pub(super) async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Sub::Plain { sink, .. } => sink.ping::<redis::Value>().await.map(|_| ()),
            Sub::Cluster { conn, .. } => {
                use redis::cluster_routing::{
                    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo,
                };
                conn.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    )),
                )
                .await
                .map(|_| ())
            }
        }
    }

    pub(super) async fn next(&mut self, wanted: &HashSet<String>) -> Event {
        match self {
            Sub::Plain { stream, .. } => match stream.next().await {
                Some(msg) => Event::Message(
                    msg.get_channel_name().to_string(),
                    msg.get_payload::<String>().unwrap_or_default(),
                ),
                None => Event::Closed,
            },
            Sub::Cluster { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Event::Closed;
                };
                match push.kind {
                    redis::PushKind::SMessage | redis::PushKind::Message
                        if push.data.len() >= 2 =>
                    {
                        return Event::Message(
                            value::text_or_empty(&push.data[0]),
                            value::text_or_empty(&push.data[1]),
                        );
                    }
                    redis::PushKind::SUnsubscribe => {
                        let channel = push
                            .data
                            .first()
                            .map(value::text_or_empty)
                            .unwrap_or_default();
                        if wanted.contains(&channel) {
                            return Event::Dropped(channel);
                        }
                    }
                    redis::PushKind::Disconnection => return Event::Lost,
                    // A confirmation of a subscription redis-rs re-issued
                    // after a reconnect or a slot map change.
                    redis::PushKind::SSubscribe => return Event::Resubscribed,
                    _ => {}
                }
            },
        }
    }
}
