//! A dispatcher-only test harness: each test gets its own PostgreSQL database,
//! RabbitMQ vhost and blob directory (as in the workspace's `tests/` crate,
//! which needs the worker and therefore burn; these tests do not).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use dispatcher::config::{DispatcherConfig, PerTier};
use dispatcher::keys::TierChange;
use dispatcher::routing::RoutingMode;
use protocol::config::ServiceConfig;
use protocol::telemetry::LogFormat;
use protocol::Tier;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
const RABBIT_API: &str = "http://127.0.0.1:15672/api";
/// Upper bound for anything a test waits for; tests wait on state, this only
/// turns a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct TestEnv {
    pub name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub blob_dir: PathBuf,
    pub pool: PgPool,
    /// This test's `SECRETS_KEYS` value: every dispatcher it starts, in
    /// process or not, seals webhook secrets with it.
    pub secrets_keys: String,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let name = format!(
            "sf_dtest_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = PgPool::connect(&format!("{POSTGRES}/postgres"))
            .await
            .expect("postgres is up");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let database_url = format!("{POSTGRES}/{name}");
        let pool = protocol::db::pool(&database_url, 4).expect("pool");
        protocol::db::migrate(&pool)
            .await
            .expect("migrations apply");
        let env = TestEnv {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            blob_dir: std::env::temp_dir().join(&name),
            database_url,
            pool,
            secrets_keys: dispatcher::sealing::Keyring::new_entry("test"),
            name,
        };
        rabbit_api(reqwest::Method::PUT, &format!("vhosts/{}", env.name), None).await;
        let permissions = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        rabbit_api(
            reqwest::Method::PUT,
            &format!("permissions/{}/guest", env.name),
            Some(permissions),
        )
        .await;
        env
    }

    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            service: ServiceConfig {
                database_url: self.database_url.clone().into(),
                amqp_url: self.amqp_url.clone().into(),
                delivery_limit: 5,
                gpu_max_wait: Duration::from_secs(120),
                blob_store: self.blob_dir.to_string_lossy().into_owned(),
                log_format: LogFormat::Text,
            },
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            max_upload_bytes: 1024 * 1024,
            max_json_bytes: 64 * 1024,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            routing_mode: RoutingMode::Auto,
            canary_percent: 0.0,
            backlog_poll: Duration::from_millis(100),
            backlog_high_watermark: 10,
            backlog_low_watermark: 3,
            backlog_hold: Duration::from_secs(30),
            latency_target: Duration::from_secs(120),
            webhook_schedule: vec![Duration::ZERO],
            webhook_timeout: Duration::from_secs(2),
            webhook_poll: Duration::from_millis(50),
            webhook_per_endpoint: 4,
            webhook_max_in_flight: 64,
            webhook_allow_http: true,
            webhook_allow_hosts: vec!["127.0.0.1".to_string()],
            webhook_secret_overlap: Duration::from_secs(3600),
            console_session_ttl: Duration::from_secs(3600),
            secrets_keys: Some(self.secrets_keys.parse().expect("test keys parse")),
            console_secure_cookie: false,
            source_allow_http: true,
            source_allow_hosts: vec![],
            outbox_poll: Duration::from_millis(200),
            submit_rate_per_minute: PerTier::all(0),
            upload_rate_per_minute: PerTier::all(0),
            max_webhook_endpoints: PerTier::all(0),
            max_in_flight_scans: PerTier::all(0),
            escalation_share: PerTier::all(0),
            database_max_connections: 8,
        }
    }

    /// An AMQP URL for a broker user of this test's own (same vhost), so the
    /// test can take the broker away from one process for good with
    /// [`TestEnv::delete_broker_user`] without touching anything else.
    pub async fn broker_user(&self) -> String {
        let user = self.broker_user_name();
        rabbit_api(
            reqwest::Method::PUT,
            &format!("users/{user}"),
            Some(serde_json::json!({ "password": "secret", "tags": "" })),
        )
        .await;
        let permissions = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        rabbit_api(
            reqwest::Method::PUT,
            &format!("permissions/{}/{user}", self.name),
            Some(permissions),
        )
        .await;
        format!("amqp://{user}:secret@127.0.0.1:5672/{}", self.name)
    }

    /// Deletes the user of [`TestEnv::broker_user`]: the broker closes its
    /// connections (320) and refuses new ones (403), as after a revoked
    /// credential.
    pub async fn delete_broker_user(&self) {
        rabbit_api(
            reqwest::Method::DELETE,
            &format!("users/{}", self.broker_user_name()),
            None,
        )
        .await;
    }

    fn broker_user_name(&self) -> String {
        format!("{}_user", self.name)
    }

    /// Seals and opens secrets as this test's dispatchers do.
    pub fn sealer(&self) -> dispatcher::sealing::Sealer {
        dispatcher::sealing::Sealer::new(Some(self.secrets_keys.parse().expect("test keys parse")))
    }

    /// A new tenant with one API key.
    pub async fn api_key(&self, tenant: &str, tier: Tier) -> String {
        dispatcher::keys::create_key(
            &self.pool,
            &self.sealer(),
            tenant,
            tier,
            false,
            TierChange::Refuse,
        )
        .await
        .expect("create key")
        .key
    }

    /// Drops the database, vhost and blob directory.
    pub async fn cleanup(self) {
        self.pool.close().await;
        let admin = PgPool::connect(&format!("{POSTGRES}/postgres"))
            .await
            .expect("postgres is up");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .expect("drop database");
        rabbit_api(
            reqwest::Method::DELETE,
            &format!("vhosts/{}", self.name),
            None,
        )
        .await;
        // The test's own broker user, if it made one and did not delete it.
        let _ = reqwest::Client::new()
            .delete(format!("{RABBIT_API}/users/{}", self.broker_user_name()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
        let _ = std::fs::remove_dir_all(&self.blob_dir);
    }
}

async fn rabbit_api(method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{RABBIT_API}/{path}"))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("RabbitMQ management API is up");
    assert!(
        response.status().is_success(),
        "RabbitMQ API {path}: {}",
        response.status()
    );
}

/// A dispatcher running inside the test process.
pub struct Dispatcher {
    pub base_url: String,
    shutdown: CancellationToken,
    running: dispatcher::startup::RunningDispatcher,
}

impl Dispatcher {
    pub async fn start(config: DispatcherConfig) -> Dispatcher {
        let shutdown = CancellationToken::new();
        let running = dispatcher::startup::start(config, shutdown.clone())
            .await
            .expect("dispatcher starts");
        Dispatcher {
            base_url: format!("http://{}", running.local_addr),
            shutdown,
            running,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running
            .wait()
            .await
            .expect("no background task stopped on its own");
    }
}

/// Polls `check` until it returns Some, failing the test after `PATIENCE`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn expect_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{text}"
    );
    let problem: serde_json::Value = serde_json::from_str(&text).expect("problem is JSON");
    assert_eq!(problem["code"], code, "{text}");
    assert_eq!(problem["status"], status);
    problem
}
