use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use worker::config::WorkerConfig;

#[derive(Debug, Parser)]
#[command(name = "worker", version, about = "ScanFleet worker: runs scans from RabbitMQ on CPU or GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume scans from a queue until SIGTERM.
    Serve(WorkerConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            protocol::telemetry::init_tracing(config.service.log_format);
            let shutdown = CancellationToken::new();
            let running = worker::startup::start(config, shutdown.clone()).await?;
            protocol::telemetry::shutdown_signal().await;
            tracing::info!("SIGTERM: no new scans; finishing in-flight ones");
            shutdown.cancel();
            running.wait().await;
        }
    }
    Ok(())
}
