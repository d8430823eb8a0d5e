//! The listening socket of both servers (`serve` and `node`).

use std::io::Write;

/// Binds `addr` and prints `listening on http://HOST:PORT` as the first
/// line on stdout, flushed, before anything else is printed there: scripts
/// and tests start us on port 0 and read the port from it.
pub async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{local}")?;
    out.flush()?;
    tracing::info!(%local, "listening");
    Ok(listener)
}
