//! `sandbox-api serve`: the HTTP API. Handlers are thin: typed extractors,
//! one library call (or one flow from [`crate::flows`]), and errors mapped
//! to statuses in [`ApiError`]'s one `match`.
//!
//! | endpoint | library calls |
//! |---|---|
//! | `POST /sandboxes` | `reserve` → node create → `Reservation::register` ([`flows::create`]) |
//! | `GET /sandboxes` | the team's live view ([`crate::views`]; `x-view-seq`, `x-view-stale-ms`) |
//! | `GET /sandboxes/{id}` | `get` |
//! | `POST /sandboxes/{id}/pause` | `begin(Pause)` → node pause(fence) → `succeed`/`fail` |
//! | `POST /sandboxes/{id}/resume` | `reserve_resume` → node resume → `Reservation::register` ([`flows::resume`]) |
//! | `DELETE /sandboxes/{id}` | `begin(Kill)` → node kill(fence) → `succeed`/`fail` |
//! | `POST /sandboxes/{id}/snapshots` | `begin(Snapshot)` → node snapshot(fence) → `succeed`/`fail` |
//!
//! The lifecycle is the default one with one rule changed
//! ([`Lifecycle::kill_deletes_paused`]): a kill of a paused sandbox
//! *starts* a deletion (killing → killed) instead of being absorbed by the
//! pause. A DELETE therefore always ends in `killed`, a final state that
//! `reserve_resume` and `register` refuse while its tombstone lasts; and a
//! DELETE that arrives while a resume holds its reservation waits for the
//! resume's registration, then kills the new execution. So no resume,
//! however it races the DELETE, brings the sandbox back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use sandbox_coordinator::{
    Action, Begun, Builder, Done, DoneReason, Lifecycle, Sandbox, State as SandboxState,
};
use serde::{Deserialize, Serialize};

use crate::app::{App, Settings};
use crate::error::ApiError;
use crate::flows;
use crate::node_client::NodeClient;
use crate::redis_target::RedisArgs;
use crate::shutdown::Shutdown;
use crate::telemetry;

/// `sandbox-api serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Base URL of the node, e.g. `http://127.0.0.1:7000`.
    #[arg(long)]
    node_url: String,
    /// Address to listen on (port 0: any free port; the first stdout line
    /// says which).
    #[arg(long)]
    listen: String,
    /// Key namespace in Redis.
    #[arg(long, default_value = "sbx")]
    namespace: String,
    /// Most places a team may take — sandboxes that are not paused or
    /// killed, plus creates and resumes in progress — unless the team has
    /// its own limit in Redis (`Coordinator::set_team_limit`). Default: no
    /// limit.
    #[arg(long)]
    team_limit: Option<usize>,
    /// Sandbox lifetime when a request gives no `timeoutSeconds` (also
    /// the lifetime of a resumed sandbox).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    default_timeout_secs: u64,
    /// Transition lease length (the watchdog keeps it alive while the node
    /// works).
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Bound on waiting for another server's transition before answering
    /// 503.
    #[arg(long, default_value_t = 30_000)]
    wait_timeout_ms: u64,
    /// Bound on one node operation.
    #[arg(long, default_value_t = 10_000)]
    node_timeout_ms: u64,
    /// Bound on one Redis reply.
    #[arg(long, default_value_t = 2_000)]
    redis_timeout_ms: u64,
    /// Fallback poll of waiters (pub/sub wakes them first).
    #[arg(long, default_value_t = 1_000)]
    poll_interval_ms: u64,
    /// How long requests in flight may take to finish after SIGTERM; then
    /// their transitions are failed and they get 503.
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace_ms: u64,
}

/// The longest `timeoutSeconds` a sandbox may ask for (30 days).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// The lifecycle of this API: the default one, except that a kill of a
/// paused sandbox starts a deletion (killing → killed) instead of being
/// absorbed, so a DELETE always ends in the final `killed`.
pub fn lifecycle() -> Lifecycle {
    Lifecycle::sandbox().kill_deletes_paused()
}

/// Runs `sandbox-api serve` until SIGTERM or Ctrl-C, then drains.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (metrics, upkeep) = telemetry::install_metrics()?;
    let target = args.redis.options().resolve()?;
    let mut builder = Builder::from(target.clone())
        .namespace(&args.namespace)
        .lifecycle(lifecycle())
        .response_timeout(Duration::from_millis(args.redis_timeout_ms))
        .connect_timeout(Duration::from_millis(args.redis_timeout_ms))
        .poll_interval(Duration::from_millis(args.poll_interval_ms));
    if let Some(limit) = args.team_limit {
        builder = builder.team_limit(limit);
    }
    let coord = builder
        .build()
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let node_timeout = Duration::from_millis(args.node_timeout_ms);
    let settings = Settings {
        lease: Duration::from_millis(args.lease_ms),
        wait_timeout: Duration::from_millis(args.wait_timeout_ms),
        default_timeout: Duration::from_secs(args.default_timeout_secs),
        reservation_ttl: node_timeout + Duration::from_millis(args.redis_timeout_ms) * 2,
    };
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let shutdown = Shutdown::on_signals(grace);
    let app = Arc::new(App {
        coord: coord.clone(),
        node: NodeClient::new(&args.node_url, node_timeout)?,
        settings,
        shutdown: shutdown.clone(),
        metrics,
        views: Default::default(),
    });
    let listener = crate::listen::listen(&args.listen).await?;
    let draining = shutdown.clone();
    axum::serve(listener, router(Arc::clone(&app)))
        .with_graceful_shutdown(async move { draining.draining().await })
        .await?;
    drop(app);
    shutdown.stop_watching();
    upkeep.abort();
    // After the last request: the library's background undo work (a
    // transition whose request was cancelled failed, a dropped begin
    // undone, a reservation given back) is done before the process exits,
    // so it leaves no lease and no reservation behind.
    if !coord.close(CLOSE_TIMEOUT).await {
        tracing::warn!(
            timeout_ms = CLOSE_TIMEOUT.as_millis() as u64,
            "exiting before the library's background work was done; its leases and \
             reservations end with their ttl"
        );
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Bound on waiting for the library's background work at exit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/sandboxes", post(create).get(list))
        .route("/sandboxes/{id}", get(get_one).delete(delete))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/resume", post(resume))
        .route("/sandboxes/{id}/snapshots", post(snapshot))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn(telemetry::record_request))
        .with_state(app)
}

/// The team, from the `X-Team-ID` header.
pub struct Team(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Team {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Team, ApiError> {
        parts
            .headers
            .get("x-team-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| Team(v.to_owned()))
            .ok_or(ApiError::MissingTeam)
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s (JSON bodies, not text).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    #[serde(rename = "sandboxID")]
    sandbox_id: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Created {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "executionID")]
    execution_id: String,
    state: SandboxStateName,
}

#[derive(Serialize)]
struct SandboxView {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "executionID")]
    execution_id: String,
    state: SandboxStateName,
    fence: u64,
}

#[derive(Serialize)]
struct Resumed {
    #[serde(rename = "executionID")]
    execution_id: String,
}

#[derive(Serialize)]
struct Snapshotted {
    fence: u64,
}

/// A state as its lowercase name.
struct SandboxStateName(SandboxState);

impl Serialize for SandboxStateName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl From<Sandbox> for SandboxView {
    fn from(s: Sandbox) -> SandboxView {
        SandboxView {
            sandbox_id: s.id,
            execution_id: s.execution,
            state: SandboxStateName(s.state),
            fence: s.fence,
        }
    }
}

type AppState = State<Arc<App>>;

/// `POST /sandboxes`.
async fn create(
    State(app): AppState,
    Team(team): Team,
    Body(req): Body<CreateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id = req.sandbox_id.unwrap_or_else(|| new_id("sbx"));
    let timeout = timeout(req.timeout_seconds, &app.settings)?;
    let execution = new_id("exec");
    let sandbox = flows::create(&app, &team, &id, &execution, timeout).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            sandbox_id: sandbox.id,
            execution_id: sandbox.execution,
            state: SandboxStateName(sandbox.state),
        }),
    ))
}

/// `GET /sandboxes`.
/// From the team's live view, with the sequence it reflects (`x-view-seq`)
/// and how stale it may be (`x-view-stale-ms`, 0 while current).
async fn list(State(app): AppState, Team(team): Team) -> Result<impl IntoResponse, ApiError> {
    let listed = app.views.list(&app.coord, &team).await?;
    let rows: Vec<SandboxView> = listed
        .sandboxes
        .into_iter()
        .map(|s| SandboxView {
            sandbox_id: s.id,
            execution_id: s.execution,
            state: SandboxStateName(s.state),
            fence: s.fence,
        })
        .collect();
    Ok((
        [
            ("x-view-seq", listed.seq.to_string()),
            ("x-view-stale-ms", listed.stale.as_millis().to_string()),
        ],
        Json(rows),
    ))
}

/// `GET /sandboxes/{id}`.
async fn get_one(
    State(app): AppState,
    Team(team): Team,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    match app.coord.get(&team, &id).await? {
        Some(sandbox) => Ok(Json(sandbox.into())),
        None => Err(sandbox_coordinator::Error::NotFound { team, id }.into()),
    }
}

/// `POST /sandboxes/{id}/pause`: 204 when it ends paused — this request
/// paused it, joined a pause in flight, or found it paused.
async fn pause(
    State(app): AppState,
    Team(team): Team,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if let Begun::Started(t) = app.begin(&team, &id, Action::Pause).await? {
        app.perform(&team, &id, t).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/resume`: 201 with the new execution, from paused.
async fn resume(
    State(app): AppState,
    Team(team): Team,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Resumed>), ApiError> {
    let timeout = timeout(None, &app.settings)?;
    let execution = new_id("exec");
    let sandbox = flows::resume(&app, &team, &id, &execution, timeout).await?;
    Ok((
        StatusCode::CREATED,
        Json(Resumed {
            execution_id: sandbox.execution,
        }),
    ))
}

/// `DELETE /sandboxes/{id}`: 204 when it ends killed.
async fn delete(
    State(app): AppState,
    Team(team): Team,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match app.begin(&team, &id, Action::Kill).await? {
        Begun::Started(t) => {
            app.perform(&team, &id, t).await?;
        }
        // Killed already, or joined a kill that succeeded.
        Begun::AlreadyDone(Done {
            state: SandboxState::Killed,
            ..
        }) => {}
        // Only the default rule absorbs a kill into a pause; ours starts it.
        Begun::AlreadyDone(done) => {
            return Err(ApiError::Internal(format!(
                "kill of {team}/{id} ended {:?} in state {}: the lifecycle lacks the deletion rule",
                done.why, done.state
            )));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/snapshots`: 201 with the snapshot's fence (a
/// request that joins a snapshot in flight gets that one's).
async fn snapshot(
    State(app): AppState,
    Team(team): Team,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Snapshotted>), ApiError> {
    let fence = match app.begin(&team, &id, Action::Snapshot).await? {
        Begun::Started(t) => app.perform(&team, &id, t).await?,
        Begun::AlreadyDone(Done {
            why: DoneReason::Joined { fence },
            ..
        }) => fence,
        Begun::AlreadyDone(done) => {
            return Err(ApiError::Internal(format!(
                "snapshot of {team}/{id} ended {:?}: a snapshot has no state to be done in",
                done.why
            )));
        }
    };
    Ok((StatusCode::CREATED, Json(Snapshotted { fence })))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn metrics(State(app): AppState) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

/// The sandbox's lifetime: the request's, or the server's default.
fn timeout(timeout_seconds: Option<u64>, settings: &Settings) -> Result<Duration, ApiError> {
    let timeout = timeout_seconds.map_or(settings.default_timeout, Duration::from_secs);
    if timeout > MAX_TIMEOUT {
        return Err(ApiError::BadRequest(format!(
            "timeoutSeconds {} is over the limit of {}",
            timeout.as_secs(),
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(timeout)
}

/// A fresh id: `<prefix>-<16 hex digits>`.
fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
