//! [`ApiError`]: everything a request can end with besides success, and the
//! one place where each becomes an HTTP status. Bodies are
//! `{"code", "message"}` (plus `"limit"` when a team is full); conditions
//! worth retrying get `503` with `Retry-After`.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sandbox_coordinator::{Error as CoordError, State};

use crate::node_client::NodeError;

/// Seconds a client is told to wait before retrying a `503` or `429`.
const RETRY_AFTER_SECS: u64 = 1;

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The library refused or failed.
    #[error(transparent)]
    Coordinator(#[from] CoordError),
    /// The node did not do the physical operation.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// No `X-Team-ID` header.
    #[error("the X-Team-ID header is missing or not text")]
    MissingTeam,
    /// The body could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// Resume of a sandbox that is not paused.
    #[error("sandbox {team}/{id} is {state}; only a paused sandbox can be resumed")]
    NotPaused {
        team: String,
        id: String,
        state: State,
    },
    /// The transition's lease was lost while the node worked (Redis was
    /// unreachable past the lease): its outcome was not recorded.
    #[error("the lease of {action} of {team}/{id} (fence {fence}) was lost; try again")]
    LeaseLost {
        action: &'static str,
        team: String,
        id: String,
        fence: u64,
    },
    /// The server is shutting down and gave up on this request.
    #[error("the server is shutting down; try another one")]
    ShuttingDown,
    /// A state this server's lifecycle makes impossible.
    #[error("{0}")]
    Internal(String),
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        // The one mapping from error to status. A full team is retryable
        // for the library but answered 429 with the limit: asking again is
        // no use until the team frees a place. Interruptions and other
        // retryable library errors come next, so that a variant the library
        // later makes retryable is a 503 without touching this code.
        let (status, code) = match &self {
            ApiError::Coordinator(CoordError::TeamLimit { .. }) => {
                (S::TOO_MANY_REQUESTS, "team_full")
            }
            // A joined transition whose holder went away (dropped,
            // cancelled, not replicated, or vanished) did not fail on the
            // node: asking again re-decides from the record.
            ApiError::Coordinator(CoordError::Abandoned { .. }) => {
                (S::SERVICE_UNAVAILABLE, "abandoned")
            }
            ApiError::Coordinator(e) if e.is_interruption() => {
                (S::SERVICE_UNAVAILABLE, "interrupted")
            }
            ApiError::Coordinator(e) if e.is_retryable() => (S::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Coordinator(e) => match e {
                CoordError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
                CoordError::InvalidTransition { .. } => (S::CONFLICT, "invalid_transition"),
                CoordError::AlreadyExists { .. } => (S::CONFLICT, "already_exists"),
                CoordError::ExecutionMismatch { .. } => (S::CONFLICT, "execution_mismatch"),
                CoordError::NotLive { .. } => (S::CONFLICT, "not_live"),
                CoordError::InvalidInput { .. } => (S::BAD_REQUEST, "invalid_input"),
                // The joined transition failed on the node.
                CoordError::TransitionFailed { .. } => (S::BAD_GATEWAY, "node_failed"),
                // The finish could not be confirmed, or the lease was lost:
                // nothing definite was recorded, and asking again
                // re-decides from the record.
                CoordError::FinishUnknown { .. } => (S::SERVICE_UNAVAILABLE, "outcome_unknown"),
                CoordError::Fenced { .. } => (S::SERVICE_UNAVAILABLE, "lease_lost"),
                // Corrupt data, a schema or lifecycle mismatch (a rolling
                // deploy gone wrong), eviction answers (this server never
                // evicts), and whatever the library adds later.
                _ => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Node(NodeError::Failed { .. }) => (S::BAD_GATEWAY, "node_failed"),
            ApiError::Node(NodeError::Unreachable { .. }) => (S::BAD_GATEWAY, "node_unreachable"),
            // A newer transition reached the node first: this request's is
            // outdated, so asking again decides against the newer state.
            ApiError::Node(NodeError::Stale { .. }) => (S::SERVICE_UNAVAILABLE, "superseded"),
            ApiError::MissingTeam => (S::BAD_REQUEST, "missing_team"),
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            ApiError::NotPaused { .. } => (S::CONFLICT, "not_paused"),
            ApiError::LeaseLost { .. } => (S::SERVICE_UNAVAILABLE, "lease_lost"),
            ApiError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = self.to_string();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code, %message, "request failed");
        }
        let mut body = serde_json::json!({ "code": code, "message": message });
        if let Some(limit) = self.limit() {
            body["limit"] = limit.into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == S::SERVICE_UNAVAILABLE || status == S::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl ApiError {
    /// The team limit, for the body of a `429`.
    fn limit(&self) -> Option<usize> {
        match self {
            ApiError::Coordinator(CoordError::TeamLimit { limit, .. }) => Some(*limit),
            _ => None,
        }
    }
}
