//! Builds and runs the dispatcher: HTTP API plus its background tasks.

use std::net::SocketAddr;

use protocol::blob::BlobStore;
use tokio::task::JoinSet;
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

/// A dispatcher that is serving; dropped tasks stop when `shutdown` fires.
pub struct RunningDispatcher {
    pub local_addr: SocketAddr,
    pub state: AppState,
    tasks: JoinSet<()>,
}

impl RunningDispatcher {
    /// Waits until the server and every background task have stopped.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Migrates the database, binds the listener and starts serving.
pub async fn start(
    config: DispatcherConfig,
    shutdown: CancellationToken,
) -> Result<RunningDispatcher, StartError> {
    config.validate().map_err(StartError::Config)?;
    tracing::info!(config = %config.describe(), "dispatcher starting");
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
    let state = AppState::new(pool, blobs, config, shutdown.clone());

    let mut tasks = JoinSet::new();
    tasks.spawn(crate::relay::run(state.clone(), topology, shutdown.clone()));
    tasks.spawn(crate::dead_letters::run(
        state.clone(),
        topology,
        shutdown.clone(),
    ));
    tasks.spawn(crate::backlog::run(
        state.clone(),
        topology,
        shutdown.clone(),
    ));
    tasks.spawn(crate::webhooks::deliverer::run(
        state.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::console::live::listen(
        state.clone(),
        shutdown.clone(),
    ));
    let app = crate::api::router(state.clone());
    tasks.spawn(protocol::http::serve_until(
        listener,
        app,
        shutdown.clone(),
        "api",
    ));
    tracing::info!(%local_addr, "dispatcher listening");
    Ok(RunningDispatcher {
        local_addr,
        state,
        tasks,
    })
}
