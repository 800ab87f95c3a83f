use anyhow::Context;
use clap::Parser;
use dispatcher::cli::{Cli, Command, DatabaseArgs, KeysCommand, SecretsCommand};
use dispatcher::keys::{self, TierChange};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => {
            protocol::telemetry::init_tracing(config.service.log_format);
            let running = dispatcher::startup::start(config, CancellationToken::new()).await?;
            // A background task that failed is an error exit: the
            // orchestrator restarts the dispatcher.
            running
                .wait_until(protocol::telemetry::shutdown_signal())
                .await?;
        }
        Command::Migrate(database) => {
            migrated_pool(&database).await?;
            println!("migrations applied");
        }
        Command::Keys { command } => run_keys(command).await?,
        Command::Secrets { command } => run_secrets(command).await?,
    }
    Ok(())
}

async fn migrated_pool(database: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    let pool = protocol::db::pool(database.database_url.expose_secret(), 2)?;
    protocol::db::migrate(&pool).await.context("migrating")?;
    Ok(pool)
}

/// Keys go to stdout (so scripts can capture them); what they are, to stderr.
async fn run_keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            tenant,
            tier,
            set_tier,
            admin,
            secrets,
            database,
        } => {
            let pool = migrated_pool(&database).await?;
            let change = if set_tier {
                TierChange::Allow
            } else {
                TierChange::Refuse
            };
            let created =
                keys::create_key(&pool, &secrets.sealer(), &tenant, tier, admin, change).await?;
            eprintln!(
                "tenant {tenant} ({}) tier {}, key {}: store this key now, it is not shown again",
                created.tenant_id,
                tier.as_str(),
                created.key_id
            );
            eprintln!(
                "webhook callback secret (verify signatures on callback_url deliveries): {}",
                created.callback_secret
            );
            println!("{}", created.key);
        }
        KeysCommand::List { tenant, database } => {
            let pool = migrated_pool(&database).await?;
            let listed = keys::list_keys(&pool, tenant.as_deref()).await?;
            print!("{}", keys::render_table(&listed, chrono::Utc::now()));
        }
        KeysCommand::Revoke { id, database } => {
            let pool = migrated_pool(&database).await?;
            let revoked = keys::revoke_key(&pool, id).await?;
            eprintln!(
                "revoked key {id} ({}…) of tenant {}",
                revoked.prefix, revoked.tenant
            );
        }
        KeysCommand::Rotate {
            id,
            grace,
            database,
        } => {
            let pool = migrated_pool(&database).await?;
            let rotated = keys::rotate_key(&pool, id, grace).await?;
            eprintln!(
                "key {id} replaced by key {}; the old key works for {} more: store the new key now, it is not shown again",
                rotated.key_id,
                humantime::format_duration(grace)
            );
            println!("{}", rotated.key);
        }
    }
    Ok(())
}

async fn run_secrets(command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::NewKey { id } => {
            let entry = dispatcher::sealing::Keyring::new_entry(&id);
            // Checked as SECRETS_KEYS will check it (the id's characters).
            entry.parse::<dispatcher::sealing::Keyring>()?;
            eprintln!("put this first in SECRETS_KEYS (comma-separated), keep the old keys after it until `secrets rewrap` has run");
            println!("{entry}");
        }
        SecretsCommand::Rewrap { secrets, database } => {
            let pool = migrated_pool(&database).await?;
            let done = dispatcher::webhooks::rewrap::rewrap_all(&pool, &secrets.sealer()).await?;
            eprintln!(
                "{} secret(s) sealed under key {}, {} already were",
                done.resealed,
                secrets
                    .secrets_keys
                    .as_ref()
                    .map_or("", |keys| keys.primary()),
                done.current
            );
        }
    }
    Ok(())
}
