//! Builds and runs the dispatcher: HTTP API plus its background tasks, all
//! under one [`Supervisor`]: if any of them stops while the dispatcher should
//! be running, `/readyz` fails naming it and the process exits non-zero.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use protocol::blob::BlobStore;
use protocol::supervise::{Supervisor, TaskFailure};
use tokio_util::sync::CancellationToken;

use crate::config::DispatcherConfig;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("blob store: {0}")]
    Blob(#[from] protocol::blob::BlobError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A dispatcher that is serving; its tasks stop when `shutdown` fires.
pub struct RunningDispatcher {
    pub local_addr: SocketAddr,
    pub state: AppState,
    supervisor: Supervisor,
}

impl RunningDispatcher {
    /// Runs until `stop` resolves (a signal) or a task fails, then waits for
    /// the server and every background task to stop. The failure, if any, is
    /// the process's reason to exit non-zero.
    pub async fn wait_until(self, stop: impl Future<Output = ()>) -> Result<(), TaskFailure> {
        self.supervisor.wait_until(stop).await
    }

    /// Waits until the server and every background task have stopped
    /// (`shutdown` fired, or a task failed).
    pub async fn wait(self) -> Result<(), TaskFailure> {
        self.supervisor.wait().await
    }
}

/// Migrates the database, binds the listener and starts serving.
pub async fn start(
    config: DispatcherConfig,
    shutdown: CancellationToken,
) -> Result<RunningDispatcher, StartError> {
    config.validate().map_err(StartError::Config)?;
    tracing::info!(config = %config.describe(), "dispatcher starting");
    if config.secrets_keys.is_none() {
        tracing::warn!(
            "SECRETS_KEYS is not set: webhook signing secrets are stored in plain text; \
             set it (`dispatcher secrets new-key`) and run `dispatcher secrets rewrap`"
        );
    }
    let pool = protocol::db::pool(
        config.service.database_url.expose_secret(),
        config.database_max_connections,
    )?;
    protocol::db::migrate(&pool).await?;
    crate::routing::seed_policy(&pool, config.routing_policy()).await?;
    let blobs = BlobStore::open(&config.service.blob_store)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen_addr,
        source,
    })?;
    let topology = config.service.topology();
    let mut supervisor = Supervisor::new(shutdown.clone(), drain_limit(&config));
    let state = AppState::new(pool, blobs, config, supervisor.health(), shutdown.clone());

    supervisor.spawn(
        "outbox-relay",
        crate::relay::run(state.clone(), topology, shutdown.clone()),
    );
    supervisor.spawn(
        "dead-letter-watcher",
        crate::dead_letters::run(state.clone(), topology, shutdown.clone()),
    );
    supervisor.spawn(
        "backlog-monitor",
        crate::backlog::run(state.clone(), topology, shutdown.clone()),
    );
    let deliverer = crate::webhooks::deliverer::run(state.clone(), shutdown.clone());
    supervisor.spawn("webhook-deliverer", async move {
        deliverer.await;
        Ok::<_, Infallible>(())
    });
    let live = crate::console::live::listen(state.clone(), shutdown.clone());
    supervisor.spawn("console-live", async move {
        live.await;
        Ok::<_, Infallible>(())
    });
    let app = crate::api::router(state.clone());
    supervisor.spawn(
        "http-server",
        protocol::http::serve_until(listener, app, shutdown.clone()),
    );
    tracing::info!(%local_addr, "dispatcher listening");
    Ok(RunningDispatcher {
        local_addr,
        state,
        supervisor,
    })
}

/// How long stopping may take before the supervisor aborts what is left: the
/// longest request (an upload) and a webhook attempt are waited out, with a
/// margin; every task bounds its own stop within this.
fn drain_limit(config: &DispatcherConfig) -> Duration {
    config.upload_timeout.max(config.request_timeout)
        + config.webhook_timeout
        + Duration::from_secs(5)
}
