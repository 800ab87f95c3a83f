//! Helpers shared by the binaries' typed configurations (which are clap
//! structs read from flags and environment variables).

use std::time::Duration;

use crate::topology::Topology;

/// Parses `250ms`, `5s`, `2m`, `1h 30m` (humantime syntax) for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// The URLs in a comma-separated list, trimmed (`AMQP_URL` may name every
/// node of a RabbitMQ cluster). A comma starts a new entry only where a
/// `scheme://` follows it, so a single URL with commas of its own (a
/// PostgreSQL multi-host URL, `postgres://h1:5432,h2:5432/db`) stays one
/// entry. Empty entries (a trailing comma) are dropped.
pub fn url_list(raw: &str) -> Vec<&str> {
    let mut entries = Vec::new();
    let mut start = 0;
    for (comma, _) in raw.match_indices(',') {
        let rest = raw[comma + 1..].trim_start();
        if rest.is_empty() || starts_with_scheme(rest) {
            entries.push(raw[start..comma].trim());
            start = comma + 1;
        }
    }
    entries.push(raw[start..].trim());
    entries.retain(|entry| !entry.is_empty());
    entries
}

/// Whether `text` begins with `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-` or `.`).
fn starts_with_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Every URL of a comma-separated list, checked one by one: an error names
/// the entry by position and shows it masked, never with its password.
pub fn parse_url_list(raw: &str, schemes: &[&str]) -> Result<Vec<url::Url>, String> {
    let entries = url_list(raw);
    if entries.is_empty() {
        return Err("no URL given".into());
    }
    let count = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let which = if count == 1 {
                mask_one_url(entry)
            } else {
                format!("URL {} of {count} ({})", i + 1, mask_one_url(entry))
            };
            let url = url::Url::parse(entry).map_err(|e| format!("{which}: {e}"))?;
            if !schemes.contains(&url.scheme()) {
                return Err(format!(
                    "{which}: scheme {:?} is not one of {}",
                    url.scheme(),
                    schemes.join(", ")
                ));
            }
            Ok(url)
        })
        .collect()
}

/// A URL, or a comma-separated list of them, with every password replaced,
/// safe to print.
pub fn mask_url(raw: &str) -> String {
    let entries = url_list(raw);
    if entries.len() > 1 {
        return entries
            .iter()
            .map(|entry| mask_one_url(entry))
            .collect::<Vec<_>>()
            .join(",");
    }
    mask_one_url(raw)
}

fn mask_one_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparseable url>".to_string(),
    }
}

/// A connection URL that may carry a password. `Debug` shows it with the
/// password masked (host, user, database and vhost stay visible, which is
/// what an operator reading a log needs); there is no `Display`, so it cannot
/// be put into a log line or error by accident; the clear text is only
/// reached through [`SecretUrl::expose_secret`], at the call that connects.
///
/// A newtype rather than `secrecy::SecretString`: `secrecy` would hide the
/// whole URL, and its other feature, zeroing memory on drop, buys nothing
/// here because sqlx and lapin keep their own copies of the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the driver that connects.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced, safe to print.
    pub fn masked(&self) -> String {
        mask_url(&self.0)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.masked()).finish()
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(url.to_string()))
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

/// Settings every process needs: where the database and broker are, and the
/// queue arguments, which must agree across the fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    /// PostgreSQL connection URL. (Its value from the environment is not
    /// shown in `--help`: it may hold a password.)
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/scanfleet"
    )]
    pub database_url: SecretUrl,
    /// RabbitMQ connection URL (the vhost is the path, `%2f` for `/`), or
    /// a comma-separated list of them, one per node of a cluster: each
    /// connection starts at another node and moves on to the next when one
    /// is down.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        hide_default_value = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: SecretUrl,
    /// Deliveries of one scan message before it is dead-lettered.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
    /// How long a scan waits on the GPU queue before falling back to CPU.
    #[arg(long, env = "GPU_MAX_WAIT", default_value = "2m", value_parser = parse_duration)]
    pub gpu_max_wait: Duration,
    /// Blob store: a directory, `file://` URL or `s3://bucket/prefix`.
    #[arg(long, env = "BLOB_STORE", default_value = "./data/blobs")]
    pub blob_store: String,
    /// `json` for production log shippers, `text` for people.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
}

impl ServiceConfig {
    pub fn topology(&self) -> Topology {
        Topology {
            delivery_limit: self.delivery_limit,
            gpu_max_wait: self.gpu_max_wait,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.delivery_limit == 0 {
            return Err("DELIVERY_LIMIT must be at least 1".into());
        }
        if self.gpu_max_wait.is_zero() {
            return Err("GPU_MAX_WAIT must be positive".into());
        }
        parse_url_list(self.amqp_url.expose_secret(), &["amqp", "amqps"])
            .map_err(|e| format!("AMQP_URL: {e}"))?;
        url::Url::parse(self.database_url.expose_secret())
            .map_err(|e| format!("DATABASE_URL: {e}"))?;
        Ok(())
    }

    /// The configuration as printed at start-up, secrets masked.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "database_url": self.database_url.masked(),
            "amqp_url": self.amqp_url.masked(),
            "delivery_limit": self.delivery_limit,
            "gpu_max_wait": humantime::format_duration(self.gpu_max_wait).to_string(),
            "blob_store": mask_url(&self.blob_store).replace("<unparseable url>", &self.blob_store),
            "log_format": format!("{:?}", self.log_format).to_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            mask_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:****@host:5672/%2f"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn secret_urls_print_without_their_password() {
        let config = ServiceConfig {
            database_url: SecretUrl::new(
                "postgres://scanfleet:hunter2-db@db.internal:5432/scanfleet",
            ),
            amqp_url: SecretUrl::new(
                "amqps://fleet:hunter2-mq@mq.internal:5671/prod,amqps://fleet:hunter2-mq@mq-1.internal:5671/prod",
            ),
            delivery_limit: 5,
            gpu_max_wait: Duration::from_secs(120),
            blob_store: "./data".into(),
            log_format: crate::telemetry::LogFormat::Json,
        };
        for printed in [
            format!("{config:?}"),
            format!("{config:#?}"),
            config.describe().to_string(),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(
                printed.contains("db.internal")
                    && printed.contains("mq.internal")
                    && printed.contains("mq-1.internal"),
                "{printed}"
            );
        }
        assert!(config.validate().is_ok());
        assert_eq!(
            config.amqp_url.expose_secret(),
            "amqps://fleet:hunter2-mq@mq.internal:5671/prod,amqps://fleet:hunter2-mq@mq-1.internal:5671/prod"
        );
    }

    #[test]
    fn url_lists_split_at_each_scheme() {
        assert_eq!(url_list("amqp://a/%2f"), ["amqp://a/%2f"]);
        assert_eq!(
            url_list("amqp://u:p@a:5672/v, amqps://u:p@b/v,amqp://c/v,"),
            ["amqp://u:p@a:5672/v", "amqps://u:p@b/v", "amqp://c/v"]
        );
        // A PostgreSQL multi-host URL is one URL, not a list.
        assert_eq!(
            url_list("postgres://u:p@h1:5432,h2:5432/db"),
            ["postgres://u:p@h1:5432,h2:5432/db"]
        );
        assert!(url_list(" , ").is_empty());
    }

    #[test]
    fn every_password_of_a_list_is_masked() {
        let list = "amqp://fleet:hunter2-a@mq-0:5672/prod,amqp://fleet:hunter2-b@mq-1:5672/prod";
        let masked = mask_url(list);
        assert_eq!(
            masked,
            "amqp://fleet:****@mq-0:5672/prod,amqp://fleet:****@mq-1:5672/prod"
        );
        assert_eq!(
            format!("{:?}", SecretUrl::new(list)),
            format!("SecretUrl({masked:?})")
        );
    }

    #[test]
    fn an_invalid_url_in_a_list_is_named_without_its_password() {
        let schemes = ["amqp", "amqps"];
        assert_eq!(
            parse_url_list("amqp://a/%2f,amqp://b/%2f", &schemes)
                .unwrap()
                .len(),
            2
        );
        let error = parse_url_list(
            "amqp://u:hunter2@a:5672/v,amqp://u:hunter2@b:99999/v,amqp://c/v",
            &schemes,
        )
        .unwrap_err();
        assert!(error.starts_with("URL 2 of 3 ("), "{error}");
        assert!(error.contains("invalid port"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error =
            parse_url_list("amqp://u:hunter2@a/v, http://u:hunter2@b/v", &schemes).unwrap_err();
        assert_eq!(
            error,
            "URL 2 of 2 (http://u:****@b/v): scheme \"http\" is not one of amqp, amqps"
        );
        assert_eq!(parse_url_list(" ", &schemes).unwrap_err(), "no URL given");
        // The single-URL form reads as before, without a position.
        assert!(parse_url_list("amqp://u:hunter2@a:notaport/v", &schemes)
            .unwrap_err()
            .starts_with("<unparseable url>: "));
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }
}
