//! The end-to-end test harness: every test gets its own PostgreSQL database,
//! RabbitMQ vhost and blob directory, so tests run in parallel against the
//! real services and leave nothing behind.

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
use worker::config::{QueueChoice, WorkerConfig};

pub mod processes;
pub mod webdriver;

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub const RABBIT_API: &str = "http://127.0.0.1:15672/api";

/// Generous upper bound for anything a test waits for; tests wait on state,
/// this only turns a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub struct TestEnv {
    pub name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub blob_dir: PathBuf,
    pub pool: PgPool,
    /// This test's `SECRETS_KEYS` value: every dispatcher it starts, in
    /// process or not, seals webhook secrets with it.
    pub secrets_keys: String,
    http: reqwest::Client,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        init_logging();
        let name = format!(
            "sf_test_{}",
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
        let pool = protocol::db::pool(&database_url, 8).expect("pool");
        protocol::db::migrate(&pool)
            .await
            .expect("migrations apply");
        let env = TestEnv {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            blob_dir: std::env::temp_dir().join(&name),
            database_url,
            pool,
            secrets_keys: dispatcher::sealing::Keyring::new_entry("test"),
            http: reqwest::Client::new(),
            name,
        };
        env.create_vhost().await;
        env
    }

    /// Creates this test's vhost (again, after `delete_vhost`).
    pub async fn create_vhost(&self) {
        self.rabbit_api(reqwest::Method::PUT, &format!("vhosts/{}", self.name), None)
            .await;
        let permissions = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        self.rabbit_api(
            reqwest::Method::PUT,
            &format!("permissions/{}/guest", self.name),
            Some(permissions),
        )
        .await;
    }

    /// Deletes this test's vhost: every connection to it drops and new ones
    /// are refused, which is a broker outage as far as this test's processes see.
    pub async fn delete_vhost(&self) {
        self.rabbit_api(
            reqwest::Method::DELETE,
            &format!("vhosts/{}", self.name),
            None,
        )
        .await;
    }

    /// An AMQP URL for a broker user of this test's own (same vhost), so the
    /// test can take the broker away from one process for good with
    /// [`TestEnv::delete_broker_user`] without touching anything else.
    pub async fn broker_user(&self) -> String {
        let user = self.broker_user_name();
        self.rabbit_api(
            reqwest::Method::PUT,
            &format!("users/{user}"),
            Some(serde_json::json!({ "password": "secret", "tags": "" })),
        )
        .await;
        let permissions = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        self.rabbit_api(
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
        self.rabbit_api(
            reqwest::Method::DELETE,
            &format!("users/{}", self.broker_user_name()),
            None,
        )
        .await;
    }

    fn broker_user_name(&self) -> String {
        format!("{}_user", self.name)
    }

    async fn rabbit_api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) {
        let mut request = self
            .http
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

    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            database_url: self.database_url.clone().into(),
            amqp_url: self.amqp_url.clone().into(),
            delivery_limit: 5,
            gpu_max_wait: Duration::from_secs(120),
            blob_store: self.blob_dir.to_string_lossy().into_owned(),
            log_format: LogFormat::Text,
        }
    }

    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            service: self.service_config(),
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
            webhook_schedule: vec![
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_millis(400),
            ],
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
            source_allow_hosts: vec!["127.0.0.1".to_string()],
            outbox_poll: Duration::from_millis(200),
            submit_rate_per_minute: PerTier::all(0),
            upload_rate_per_minute: PerTier::all(0),
            max_webhook_endpoints: PerTier::all(0),
            max_in_flight_scans: PerTier::all(0),
            escalation_share: PerTier::all(0),
            database_max_connections: 16,
        }
    }

    pub fn worker_config(&self, queue: QueueChoice, name: &str) -> WorkerConfig {
        WorkerConfig {
            service: self.service_config(),
            queue,
            backend: vision::BackendChoice::Cpu,
            downscale_max: 1280,
            warm_model: false,
            cpu_price_per_hour: 0.05,
            gpu_price_per_hour: 0.50,
            max_download_bytes: 64 * 1024 * 1024,
            download_timeout: Duration::from_secs(10),
            scan_time_limit: Duration::from_secs(300),
            source_allow_http: true,
            source_allow_hosts: vec!["127.0.0.1".to_string()],
            result_cache_max: 256,
            result_cache_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
            max_concurrent_jobs: 8,
            shutdown_grace: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(500),
            worker_name: Some(name.to_string()),
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        }
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

    /// An API key allowed to call the admin endpoints.
    pub async fn admin_key(&self) -> String {
        dispatcher::keys::create_key(
            &self.pool,
            &self.sealer(),
            "operators",
            Tier::Free,
            true,
            TierChange::Refuse,
        )
        .await
        .expect("create key")
        .key
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    pub async fn scan_status(&self, scan_id: &str) -> String {
        sqlx::query_scalar::<_, String>("SELECT status FROM scans WHERE id = $1::uuid")
            .bind(scan_id)
            .fetch_one(&self.pool)
            .await
            .expect("scan exists")
    }

    /// Publishes a scan's queued message (its outbox row) straight to the
    /// dead-letter exchange, as the broker does when the delivery limit runs
    /// out, and waits for the broker to confirm it.
    pub async fn dead_letter(&self, scan_id: &str) {
        let payload: serde_json::Value =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE scan_id = $1::uuid")
                .bind(scan_id)
                .fetch_one(&self.pool)
                .await
                .expect("the scan's outbox row");
        let connection = protocol::topology::connect(&self.amqp_url, "test")
            .await
            .unwrap();
        let channel = protocol::topology::confirm_channel(&connection)
            .await
            .unwrap();
        self.service_config()
            .topology()
            .declare(&channel)
            .await
            .unwrap();
        channel
            .basic_publish(
                "scans.dlx",
                "dead",
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload.to_string().as_bytes(),
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        connection.close(200, "done").await.unwrap();
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
        self.delete_vhost().await;
        // The test's own broker user, if it made one and did not delete it.
        let _ = self
            .http
            .delete(format!("{RABBIT_API}/users/{}", self.broker_user_name()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await;
        let _ = std::fs::remove_dir_all(&self.blob_dir);
    }
}

fn init_logging() {
    protocol::telemetry::init_tracing(LogFormat::Text);
}

/// A dispatcher running inside the test process.
pub struct Dispatcher {
    pub base_url: String,
    pub state: dispatcher::state::AppState,
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
            state: running.state.clone(),
            shutdown,
            running,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running
            .wait()
            .await
            .expect("no background task stopped on its own");
    }
}

/// A worker running inside the test process.
pub struct Worker {
    pub metrics_url: String,
    shutdown: CancellationToken,
    running: worker::startup::RunningWorker,
}

impl Worker {
    pub async fn start(config: WorkerConfig) -> Worker {
        let shutdown = CancellationToken::new();
        let running = worker::startup::start(config, shutdown.clone())
            .await
            .expect("worker starts");
        Worker {
            metrics_url: format!("http://{}", running.metrics_addr.expect("metrics enabled")),
            shutdown,
            running,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running
            .wait()
            .await
            .expect("no background task stopped on its own");
    }
}

/// The `worker` binary built beside this test binary (`cargo build --bins`).
pub fn worker_binary() -> PathBuf {
    binary("worker")
}

/// A workspace binary next to the running one (benches live in target/debug,
/// test binaries in target/debug/deps).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("target dir");
    let candidates = [
        dir.join(name),
        dir.parent().map(|d| d.join(name)).unwrap_or_default(),
    ];
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} binary missing next to {}: run `cargo build --bins` first (scripts/test does)", exe.display()))
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

/// An HTTP client for the dispatcher API with one tenant's key.
#[derive(Clone)]
pub struct Api {
    pub base_url: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base_url: &str, key: &str) -> Api {
        Api {
            base_url: base_url.to_string(),
            key: key.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
    }

    /// Submits a scan and returns its id, asserting the 202.
    pub async fn submit(&self, body: serde_json::Value) -> String {
        let response = self
            .post("/v1/scans")
            .json(&body)
            .send()
            .await
            .expect("dispatcher answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 202, "submit answered {status}: {text}");
        let accepted: serde_json::Value = serde_json::from_str(&text).unwrap();
        accepted["id"].as_str().unwrap().to_string()
    }

    pub async fn scan(&self, scan_id: &str) -> serde_json::Value {
        let response = self
            .get(&format!("/v1/scans/{scan_id}"))
            .send()
            .await
            .expect("dispatcher answers");
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Uploads `bytes`; returns the upload id.
    pub async fn upload(&self, bytes: Vec<u8>) -> String {
        let response = self.post("/v1/uploads").body(bytes).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let upload: serde_json::Value = response.json().await.unwrap();
        upload["id"].as_str().unwrap().to_string()
    }

    /// The scan once it has succeeded or failed.
    pub async fn finished(&self, env: &TestEnv, scan_id: &str) -> serde_json::Value {
        wait_for(&format!("scan {scan_id} to finish"), || async {
            matches!(
                env.scan_status(scan_id).await.as_str(),
                "succeeded" | "failed"
            )
            .then_some(())
        })
        .await;
        self.scan(scan_id).await
    }
}

/// One request a `Receiver` got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// How a `Receiver` answers its next request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Wait, then answer 200 (a slow receiver).
    After(Duration),
}

/// A real HTTP server on 127.0.0.1 that records every request and answers
/// from a script (then 200 once the script is used up).
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    shutdown: CancellationToken,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    /// Starts on a given port (a receiver that comes back up).
    pub async fn start_on(port: u16, script: Vec<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        Self::serve(listener, script)
    }

    fn serve(listener: tokio::net::TcpListener, script: Vec<Reply>) -> Receiver {
        use axum::extract::State;
        type Shared = (
            std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
            std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Reply>>>,
        );
        let addr = listener.local_addr().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = std::sync::Arc::new(std::sync::Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        async fn record(
            State((received, script)): State<Shared>,
            uri: axum::http::Uri,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::http::StatusCode {
            received.lock().unwrap().push(Received {
                path: uri.path().to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect(),
                body: body.to_vec(),
            });
            let reply = script.lock().unwrap().pop_front();
            match reply {
                Some(Reply::Status(code)) => axum::http::StatusCode::from_u16(code).unwrap(),
                Some(Reply::After(delay)) => {
                    tokio::time::sleep(delay).await;
                    axum::http::StatusCode::OK
                }
                None => axum::http::StatusCode::OK,
            }
        }
        let app = axum::Router::new()
            .fallback(record)
            .with_state((received.clone(), script));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .unwrap();
        });
        Receiver {
            addr,
            received,
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_for(
            &format!("{count} webhook requests at {}", self.addr),
            || async {
                let received = self.received();
                (received.len() >= count).then_some(received)
            },
        )
        .await
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// Verifies webhooks with the reference Python library `standardwebhooks`
/// (not only our own code): each request against each of `secrets`.
pub fn verify_with_standardwebhooks(secrets: &[&str], requests: &[Received]) {
    let cases: Vec<serde_json::Value> = requests
        .iter()
        .flat_map(|request| {
            secrets.iter().map(move |secret| {
                serde_json::json!({
                    "secret": secret,
                    "body": String::from_utf8_lossy(&request.body),
                    "headers": {
                        "webhook-id": request.header("webhook-id"),
                        "webhook-timestamp": request.header("webhook-timestamp"),
                        "webhook-signature": request.header("webhook-signature"),
                    },
                })
            })
        })
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
cases = json.load(sys.stdin)
for case in cases:
    Webhook(case["secret"]).verify(case["body"], case["headers"])
print(f"standardwebhooks verified {len(cases)} signatures")
"#;
    let output = python(script, serde_json::to_string(&cases).unwrap().as_bytes());
    assert!(
        String::from_utf8_lossy(&output).contains(&format!("verified {} signatures", cases.len()))
    );
}

/// A program installed in the test venv (scripts/lib.sh creates it from
/// scripts/requirements-test.txt; `SCANFLEET_VENV` overrides where).
pub fn venv_bin(name: &str) -> PathBuf {
    std::env::var("SCANFLEET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/scanfleet-venv")
        })
        .join("bin")
        .join(name)
}

/// Runs a Python script (with the project venv's packages) on `stdin`;
/// returns its stdout, failing the test if it fails.
pub fn python(script: &str, stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let venv_python = venv_bin("python");
    let interpreter = if venv_python.exists() {
        venv_python
    } else {
        PathBuf::from("python3")
    };
    let mut child = std::process::Command::new(&interpreter)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} not runnable ({e}); scripts/test installs the venv",
                interpreter.display()
            )
        });
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Parses a Prometheus exposition with the reference Python parser
/// (`prometheus_client`); returns "name{k=v,…}" (labels sorted) → value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        out[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(out))
"#;
    let output = python(script, text.as_bytes());
    serde_json::from_slice(&output).expect("parser output")
}
