//! Serving HTTP until shutdown, the same way in every process.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `shutdown` fires, then drains in-flight
/// requests. A failure is logged, not fatal: the process's other tasks (the
/// consumer, the relay) keep their own lifecycle.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    what: &'static str,
) {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, server = what, "HTTP server failed");
    }
}
