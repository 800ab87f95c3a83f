use anyhow::Context;
use clap::Parser;
use dispatcher::cli::{Cli, Command, KeysCommand};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => {
            protocol::telemetry::init_tracing(config.service.log_format);
            let shutdown = CancellationToken::new();
            let running = dispatcher::startup::start(config, shutdown.clone()).await?;
            protocol::telemetry::shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
            running.wait().await;
        }
        Command::Migrate { database_url } => {
            let pool = protocol::db::pool(&database_url, 2)?;
            protocol::db::migrate(&pool).await.context("migrating")?;
            println!("migrations applied");
        }
        Command::Keys { command: KeysCommand::Create { tenant, tier, admin, database_url } } => {
            let pool = protocol::db::pool(&database_url, 2)?;
            protocol::db::migrate(&pool).await.context("migrating")?;
            let created = dispatcher::auth::create_key(&pool, &tenant, tier, admin).await?;
            eprintln!("tenant {tenant} ({}) tier {}: store this key now, it is not shown again", created.tenant_id, tier.as_str());
            eprintln!("webhook callback secret (verify signatures on callback_url deliveries): {}", created.callback_secret);
            println!("{}", created.key);
        }
    }
    Ok(())
}
