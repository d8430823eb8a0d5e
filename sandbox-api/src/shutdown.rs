//! [`Shutdown`]: the two moments of a graceful stop. On SIGTERM or Ctrl-C
//! the server starts *draining*: it stops accepting connections and lets
//! requests in flight finish. If they have not finished when the grace
//! period *expires*, handlers stop waiting: a transition whose node call is
//! still running is failed explicitly (awaited, so no lease is left behind
//! and no background task is needed) and the request is answered `503`.

use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

/// Cheap to clone; every clone sees the same two moments.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    expired: CancellationToken,
    watcher: Option<AbortHandle>,
}

impl Shutdown {
    /// Starts watching SIGTERM and Ctrl-C; the grace period starts at the
    /// first of them.
    pub fn on_signals(grace: Duration) -> Shutdown {
        let mut shutdown = Shutdown::default();
        let watcher = shutdown.clone();
        let task = tokio::spawn(async move {
            signal().await;
            tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
            watcher.draining.cancel();
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: failing what is still in flight");
            watcher.expired.cancel();
        });
        shutdown.watcher = Some(task.abort_handle());
        shutdown
    }

    /// Stops watching the signals (once the server has stopped), so that
    /// the watcher does not outlive what it watched for.
    pub fn stop_watching(&self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }

    /// Resolves when the server should stop accepting connections.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves when requests still in flight should give up.
    pub async fn expired(&self) {
        self.expired.cancelled().await
    }
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
