//! The dispatcher's command line: `serve`, `migrate`, `keys create`.

use clap::{Parser, Subcommand};
use protocol::Tier;

use crate::config::DispatcherConfig;

#[derive(Debug, Parser)]
#[command(name = "dispatcher", version, about = "ScanFleet dispatcher: HTTP API, outbox relay, routing")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background tasks (migrates first).
    Serve(DispatcherConfig),
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/scanfleet")]
        database_url: String,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key (and its tenant, if new); the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_tier, default_value = "free")]
        tier: Tier,
        /// May call the admin endpoints.
        #[arg(long)]
        admin: bool,
        #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/scanfleet")]
        database_url: String,
    },
}

fn parse_tier(name: &str) -> Result<Tier, String> {
    Tier::parse(name).ok_or_else(|| format!("tier must be free, pro or premium, not {name:?}"))
}
