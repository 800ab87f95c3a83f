//! The dispatcher's command line: `serve`, `migrate`, `keys …`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use protocol::config::{parse_duration, SecretUrl};
use protocol::Tier;
use uuid::Uuid;

use crate::config::DispatcherConfig;
use crate::sealing::{Keyring, Sealer};

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
    /// Manage the keys that seal webhook secrets at rest (`SECRETS_KEYS`).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

/// `SECRETS_KEYS`, for the commands that store webhook secrets.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsArgs {
    /// Keys that seal webhook secrets at rest, `id:base64key,…` (see `serve --help`).
    #[arg(long, env = "SECRETS_KEYS", hide_env_values = true)]
    pub secrets_keys: Option<Keyring>,
}

impl SecretsArgs {
    pub fn sealer(&self) -> Sealer {
        Sealer::new(self.secrets_keys.clone())
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a new `id:base64key` entry for SECRETS_KEYS (32 random bytes).
    NewKey {
        /// The key's id, stored with every value it seals.
        #[arg(long)]
        id: String,
    },
    /// Seal every stored webhook secret under the first key of SECRETS_KEYS
    /// (plain ones, and ones sealed under older keys): the last step of a
    /// key rotation, after which older keys can be dropped.
    Rewrap {
        #[command(flatten)]
        secrets: SecretsArgs,
        #[command(flatten)]
        database: DatabaseArgs,
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
        secrets: SecretsArgs,
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
