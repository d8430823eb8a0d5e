//! [`NodeClient`]: how the API server asks the node to do something. One
//! call per physical operation; the answer is ok, or a [`NodeError`] that
//! says whether the node ran and failed it, refused it for its fence, or
//! could not be reached (then whether it ran is unknown — the fence is
//! what makes that safe).

use std::time::{Duration, Instant};

use metrics::{counter, histogram};

use crate::node::{NodeAction, NodeOp};
use crate::telemetry::{NODE_OPERATIONS, NODE_SECONDS};

/// Why the node did not do it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node ran the operation and it failed.
    #[error("the node failed {action} of {team}/{id}: {message}")]
    Failed {
        action: &'static str,
        team: String,
        id: String,
        message: String,
    },
    /// The node has seen a newer fence for this sandbox: a newer transition
    /// reached it first, so this one ran nothing.
    #[error("the node refused {action} of {team}/{id} with a stale fence: {message}")]
    Stale {
        action: &'static str,
        team: String,
        id: String,
        message: String,
    },
    /// No answer (connection refused, timeout, unexpected reply): the
    /// operation may or may not have run.
    #[error("the node could not be reached for {action} of {team}/{id}: {message}")]
    Unreachable {
        action: &'static str,
        team: String,
        id: String,
        message: String,
    },
}

/// Calls `POST {node}/ops`. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    ops_url: String,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:7000`);
    /// `timeout` bounds one operation.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<NodeClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(NodeClient {
            http,
            ops_url: format!("{}/ops", base.trim_end_matches('/')),
        })
    }

    /// Runs one operation on the node. `fence` is the transition's, for
    /// pause, kill and snapshot; `None` for create and resume.
    ///
    /// Cancel safety: dropping the future drops the HTTP request; the node
    /// may still run the operation (it has no way to know), which is why
    /// fenced operations carry the fence.
    pub async fn run(
        &self,
        team: &str,
        id: &str,
        action: NodeAction,
        fence: Option<u64>,
    ) -> Result<(), NodeError> {
        let op = NodeOp {
            team: team.to_owned(),
            sandbox_id: id.to_owned(),
            action,
            fence,
        };
        let started = Instant::now();
        let result = self.send(&op).await;
        let label = match &result {
            Ok(()) => "ok",
            Err(NodeError::Failed { .. }) => "failed",
            Err(NodeError::Stale { .. }) => "stale",
            Err(NodeError::Unreachable { .. }) => "unreachable",
        };
        counter!(NODE_OPERATIONS, "action" => action.as_str(), "result" => label).increment(1);
        histogram!(NODE_SECONDS, "action" => action.as_str())
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            team,
            sandbox = id,
            action = action.as_str(),
            ?fence,
            result = label,
            "node operation"
        );
        result
    }

    async fn send(&self, op: &NodeOp) -> Result<(), NodeError> {
        let action = op.action.as_str();
        let unreachable = |message: String| NodeError::Unreachable {
            action,
            team: op.team.clone(),
            id: op.sandbox_id.clone(),
            message,
        };
        let response = self
            .http
            .post(&self.ops_url)
            .json(op)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let message = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let (team, id) = (op.team.clone(), op.sandbox_id.clone());
        match status {
            409 => Err(NodeError::Stale {
                action,
                team,
                id,
                message,
            }),
            500 => Err(NodeError::Failed {
                action,
                team,
                id,
                message,
            }),
            other => Err(unreachable(format!("unexpected status {other}"))),
        }
    }
}
