//! Logging and metrics. Logs go to stderr (stdout carries only the
//! `listening on` line), as text or JSON lines. Metrics: the server
//! installs the Prometheus recorder, so the library's
//! `sandbox_coordinator_*` metrics (recorded through the `metrics` facade)
//! and the server's own `sandbox_api_*` ones below come out of one
//! `GET /metrics`. Every name is described here, once; labels have few
//! values (route templates, never sandbox ids).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::AbortHandle;
use tracing_subscriber::EnvFilter;

/// Requests answered, by method, route and status.
pub const REQUESTS: &str = "sandbox_api_requests_total";
/// Requests whose client went away before the answer (the handler future
/// was dropped).
pub const REQUESTS_CANCELLED: &str = "sandbox_api_requests_cancelled_total";
/// Time to answer a request, by method and route.
pub const REQUEST_SECONDS: &str = "sandbox_api_request_duration_seconds";
/// Node operations, by action and result (ok, failed, stale, unreachable).
pub const NODE_OPERATIONS: &str = "sandbox_api_node_operations_total";
/// Time of one node operation, by action.
pub const NODE_SECONDS: &str = "sandbox_api_node_operation_duration_seconds";
/// Node operations (create, resume) that ran but whose registration was
/// then refused: the node holds a VM the API does not know. The flows'
/// reservation makes this impossible unless it expired during the node
/// call (see `flows`), so anything but zero is worth an alert.
pub const ORPHANED: &str = "sandbox_api_orphaned_node_operations_total";

/// Latency buckets, in seconds, for every `*_seconds` histogram.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How logs are written on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up `tracing` on stderr. The level comes from `RUST_LOG` (default
/// `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Installs the Prometheus recorder (histograms with [`BUCKETS`]), describes
/// the server's metrics, and spawns the exporter's periodic upkeep (the
/// returned handle stops it).
pub fn install_metrics() -> anyhow::Result<(PrometheusHandle, AbortHandle)> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()?;
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests answered, by method, route and status"
    );
    describe_counter!(
        REQUESTS_CANCELLED,
        Unit::Count,
        "Requests whose client went away before the answer, by method and route"
    );
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Time to answer a request");
    describe_counter!(
        NODE_OPERATIONS,
        Unit::Count,
        "Node operations, by action and result"
    );
    describe_histogram!(NODE_SECONDS, Unit::Seconds, "Time of one node operation");
    describe_counter!(
        ORPHANED,
        Unit::Count,
        "Node operations whose registration was refused afterwards, by action"
    );
    let upkeep = handle.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok((handle, task.abort_handle()))
}

/// Middleware: counts and times every request by its route template; a
/// request whose future is dropped (client gone) counts as cancelled.
pub async fn record_request(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| route_label(m.as_str()));
    let mut guard = Cancelled {
        labels: Some((method, route)),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let (method, route) = guard.labels.take().unwrap_or_default();
    histogram!(REQUEST_SECONDS, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(REQUESTS, "method" => method, "route" => route,
        "status" => response.status().as_u16().to_string())
    .increment(1);
    response
}

/// A route template as a label value: `/sandboxes/{id}/pause` becomes
/// `/sandboxes/:id/pause`. Braces are legal in Prometheus label values, but
/// line-oriented readers of the text format trip on them (prometheus-parse's
/// sample regex silently drops such lines), so the label avoids them.
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// Counts a request as cancelled if dropped before it was answered.
struct Cancelled {
    labels: Option<(String, String)>,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some((method, route)) = self.labels.take() {
            counter!(REQUESTS_CANCELLED, "method" => method, "route" => route).increment(1);
        }
    }
}
