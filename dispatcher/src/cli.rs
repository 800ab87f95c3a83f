//! The dispatcher's command line: `serve`, `migrate`, `keys …`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use protocol::config::{parse_duration, SecretUrl};
use protocol::Tier;
use uuid::Uuid;

use crate::config::DispatcherConfig;

#[derive(Debug, Parser)]
#[command(
    name = "dispatcher",
    version,
    about = "ScanFleet dispatcher: HTTP API, outbox relay, routing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One value, parsed once at start-up: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background tasks (migrates first).
    Serve(DispatcherConfig),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where the database is, for the commands that need nothing else.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (its value from the environment is not shown
    /// in `--help`: it may hold a password).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/scanfleet"
    )]
    pub database_url: SecretUrl,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key (and its tenant, if new); the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_tier, default_value = "free")]
        tier: Tier,
        /// Move an existing tenant to `--tier` (without it, a tier that
        /// differs from the tenant's is refused).
        #[arg(long)]
        set_tier: bool,
        /// May call the admin endpoints.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List keys (never the keys themselves, only their first characters).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Replace a key with a new one (printed once) for the same tenant.
    Rotate {
        /// The key's id, as `keys list` shows it.
        id: Uuid,
        /// How long the old key keeps working, so clients can switch (`0s`: stops at once).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        grace: Duration,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_tier(name: &str) -> Result<Tier, String> {
    Tier::parse(name).ok_or_else(|| format!("tier must be free, pro or premium, not {name:?}"))
}
