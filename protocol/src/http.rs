//! Serving HTTP until shutdown, the same way in every process.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `shutdown` fires, then drains in-flight
/// requests. Run it under a [`crate::supervise::Supervisor`]: a server that
/// fails is a process that cannot be reached, so its error ends the process.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
