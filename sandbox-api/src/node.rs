//! The simulated orchestrator node: the resource the coordinator's fences
//! protect. It runs an operation by sleeping `--latency-ms`, fails one with
//! probability `--fail-rate`, and refuses (`409`, nothing run) a fenced
//! operation whose fence is not above the highest it has seen for that
//! sandbox — what a real node does with the fence the API passes along.
//!
//! It also keeps the evidence: every operation with its start, end and
//! result (`GET /ops`), the operations running right now (`GET /inflight`,
//! so a test can order a request after one has reached the node), and
//! every time two operations overlapped on one sandbox (`GET /violations`)
//! — which a correct coordinator never lets happen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::shutdown::Shutdown;

/// `sandbox-api node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on (port 0: any free port; the first stdout line
    /// says which).
    #[arg(long)]
    listen: String,
    /// How long every operation takes, in ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability that an operation fails (answers 500), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    fail_rate: f64,
    /// How long in-flight operations may take to finish after SIGTERM, in ms.
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace_ms: u64,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not between 0 and 1"))
    }
}

/// What the node can be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAction {
    /// Start a new VM (no fence).
    Create,
    /// Start a VM from a paused one's snapshot (no fence).
    Resume,
    /// Pause it (fenced).
    Pause,
    /// Kill it (fenced).
    Kill,
    /// Snapshot it (fenced).
    Snapshot,
}

impl NodeAction {
    /// Whether the operation carries a transition's fence that the node
    /// checks. Create and resume run before the record exists as the new
    /// execution, outside any transition.
    pub fn is_fenced(self) -> bool {
        matches!(
            self,
            NodeAction::Pause | NodeAction::Kill | NodeAction::Snapshot
        )
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAction::Create => "create",
            NodeAction::Resume => "resume",
            NodeAction::Pause => "pause",
            NodeAction::Kill => "kill",
            NodeAction::Snapshot => "snapshot",
        }
    }
}

/// `POST /ops` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeOp {
    /// Team id.
    pub team: String,
    /// Sandbox id.
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    /// What to do.
    pub action: NodeAction,
    /// The transition's fence; `null` for create and resume.
    pub fence: Option<u64>,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum OpResult {
    Ok,
    Failed,
    Stale,
}

/// One line of `GET /ops`. Times are ms since the node started (a
/// monotonic clock, so `startMs`/`endMs` order operations faithfully).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OpRecord {
    team: String,
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    action: NodeAction,
    fence: Option<u64>,
    start_ms: f64,
    end_ms: f64,
    result: OpResult,
}

/// An operation running right now (`GET /inflight`), or one side of an
/// overlap.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Running {
    #[serde(skip)]
    id: u64,
    team: String,
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    action: NodeAction,
    fence: Option<u64>,
    start_ms: f64,
}

/// Two operations that ran at the same time on one sandbox.
#[derive(Clone, Debug, Serialize)]
struct Overlap {
    /// The one that was running.
    running: Running,
    /// The one that started while it ran.
    started: Running,
}

/// One sandbox as the node knows it.
#[derive(Default)]
struct SandboxBook {
    highest_fence: Option<u64>,
    running: Vec<Running>,
}

#[derive(Default)]
struct Books {
    sandboxes: HashMap<(String, String), SandboxBook>,
    log: Vec<OpRecord>,
    overlaps: Vec<Overlap>,
    next_id: u64,
}

struct Node {
    latency: Duration,
    fail_rate: f64,
    epoch: Instant,
    books: Mutex<Books>,
}

impl Node {
    fn now_ms(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the fence and registers the operation as running, in one
    /// step under the lock: a stale fence is refused before anything runs,
    /// and an overlap is recorded the moment it begins.
    fn admit(&self, op: &NodeOp) -> Result<Running, String> {
        let now = self.now_ms();
        let mut books = self.books();
        let books = &mut *books;
        let book = books
            .sandboxes
            .entry((op.team.clone(), op.sandbox_id.clone()))
            .or_default();
        if op.action.is_fenced() {
            let fence = op.fence.unwrap_or(0);
            if book.highest_fence.is_some_and(|h| fence <= h) {
                let why = format!(
                    "stale fence {fence}: the node has seen fence {} for {}/{}",
                    book.highest_fence.unwrap_or(0),
                    op.team,
                    op.sandbox_id
                );
                books.log.push(OpRecord {
                    team: op.team.clone(),
                    sandbox_id: op.sandbox_id.clone(),
                    action: op.action,
                    fence: op.fence,
                    start_ms: now,
                    end_ms: now,
                    result: OpResult::Stale,
                });
                return Err(why);
            }
            book.highest_fence = Some(fence);
        }
        books.next_id += 1;
        let running = Running {
            id: books.next_id,
            team: op.team.clone(),
            sandbox_id: op.sandbox_id.clone(),
            action: op.action,
            fence: op.fence,
            start_ms: now,
        };
        for other in &book.running {
            tracing::error!(
                team = %op.team, sandbox = %op.sandbox_id,
                running = other.action.as_str(), started = op.action.as_str(),
                "two operations overlap on one sandbox"
            );
            books.overlaps.push(Overlap {
                running: other.clone(),
                started: running.clone(),
            });
        }
        book.running.push(running.clone());
        Ok(running)
    }

    fn finish(&self, running: &Running, result: OpResult) {
        let now = self.now_ms();
        let mut books = self.books();
        if let Some(book) = books
            .sandboxes
            .get_mut(&(running.team.clone(), running.sandbox_id.clone()))
        {
            book.running.retain(|r| r.id != running.id);
        }
        books.log.push(OpRecord {
            team: running.team.clone(),
            sandbox_id: running.sandbox_id.clone(),
            action: running.action,
            fence: running.fence,
            start_ms: running.start_ms,
            end_ms: now,
            result,
        });
    }
}

/// Runs `sandbox-api node` until SIGTERM or Ctrl-C.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let node = Arc::new(Node {
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        epoch: Instant::now(),
        books: Mutex::default(),
    });
    let app = Router::new()
        .route("/ops", get(log).post(perform))
        .route("/inflight", get(inflight))
        .route("/violations", get(violations))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .with_state(node);
    let listener = crate::listen::listen(&args.listen).await?;
    let shutdown = Shutdown::on_signals(Duration::from_millis(args.shutdown_grace_ms));
    let draining = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { draining.draining().await })
        .await?;
    tracing::info!("node stopped");
    Ok(())
}

/// `POST /ops`: runs one operation.
async fn perform(State(node): State<Arc<Node>>, Json(op): Json<NodeOp>) -> Response {
    if op.action.is_fenced() && op.fence.is_none() {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("{} needs the transition's fence", op.action.as_str()),
        );
    }
    let running = match node.admit(&op) {
        Ok(running) => running,
        Err(why) => return answer(StatusCode::CONFLICT, &why),
    };
    // The operation "runs" for the latency. If the caller goes away the
    // future is dropped here; the guard still records the end, so the log
    // and the overlap books stay true (a real node would finish it too).
    let mut guard = Finishing {
        node: &node,
        running: &running,
        result: OpResult::Failed,
    };
    tokio::time::sleep(node.latency).await;
    let failed = node.fail_rate > 0.0 && rand::random_bool(node.fail_rate);
    guard.result = if failed {
        OpResult::Failed
    } else {
        OpResult::Ok
    };
    drop(guard);
    if failed {
        answer(StatusCode::INTERNAL_SERVER_ERROR, "injected failure")
    } else {
        (StatusCode::OK, Json(serde_json::json!({"ok": true}))).into_response()
    }
}

/// Records the end of an operation when dropped, however `perform` ends.
struct Finishing<'a> {
    node: &'a Node,
    running: &'a Running,
    result: OpResult,
}

impl Drop for Finishing<'_> {
    fn drop(&mut self) {
        self.node.finish(self.running, self.result);
    }
}

fn answer(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"ok": false, "error": error})),
    )
        .into_response()
}

/// `GET /ops`: every operation, in the order they ended.
async fn log(State(node): State<Arc<Node>>) -> Json<Vec<OpRecord>> {
    Json(node.books().log.clone())
}

/// `GET /inflight`: the operations running right now.
async fn inflight(State(node): State<Arc<Node>>) -> Json<Vec<Running>> {
    let books = node.books();
    let mut running: Vec<Running> = books
        .sandboxes
        .values()
        .flat_map(|b| b.running.iter().cloned())
        .collect();
    running.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    Json(running)
}

/// `GET /violations`: every overlap of two operations on one sandbox.
async fn violations(State(node): State<Arc<Node>>) -> Json<Vec<Overlap>> {
    Json(node.books().overlaps.clone())
}
