//! What one submission costs PostgreSQL: the statements the submit path
//! sends, counted from sqlx's own log of every statement (`sqlx::query`
//! events) and printed, so a change in the count shows in the test output.
//! The scan, its outbox row and its first event go in one statement.

use std::sync::{Arc, Mutex};

use dispatcher::state::AppState;
use protocol::blob::BlobStore;
use protocol::supervise::Health;
use protocol::Tier;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::harness::TestEnv;

/// The statements sqlx reported, in order.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        #[derive(Default)]
        struct Sql {
            summary: String,
            statement: String,
        }
        impl Visit for Sql {
            fn record_str(&mut self, field: &Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_string(),
                    "db.statement" => self.statement = value.trim().to_string(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut sql = Sql::default();
        event.record(&mut sql);
        // sqlx leaves the full text out when the summary is all of it.
        let text = if sql.statement.is_empty() {
            sql.summary
        } else {
            sql.statement
        };
        self.0.lock().unwrap().push(text);
    }
}

impl Statements {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Statements on the submit path: auth, in-flight cap, routing policy, the
/// insert. Raise it only with a reason; the issue is to bring it down.
const SUBMIT_BUDGET: usize = 4;

// Single-threaded runtime: the subscriber below is this thread's, and the
// API runs on this thread, with no background task to add statements.
#[tokio::test(flavor = "current_thread")]
async fn a_submission_writes_scan_and_outbox_in_one_statement() {
    let env = TestEnv::new().await;
    let key = env.api_key("counted", Tier::Free).await;
    let mut config = env.dispatcher_config();
    // The default path, cap included (the harness turns caps off).
    config.max_in_flight_scans = dispatcher::config::PerTier::all(100);
    let pool = protocol::db::pool(&env.database_url, 2).unwrap();
    dispatcher::routing::seed_policy(&pool, config.routing_policy())
        .await
        .unwrap();
    let blobs = BlobStore::open(&config.service.blob_store).unwrap();
    let state = AppState::new(
        pool,
        blobs,
        config,
        Health::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/scans", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(protocol::http::serve_until(
        listener,
        dispatcher::api::router(state),
        stop.clone(),
    ));

    let statements = Statements::default();
    let subscriber = tracing_subscriber::registry().with(
        statements.clone().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("sqlx::query", tracing::Level::DEBUG),
        ),
    );
    let guard = tracing::subscriber::set_default(subscriber);
    let client = reqwest::Client::new();
    let submit = |idempotency_key: &'static str| {
        client
            .post(&url)
            .bearer_auth(&key)
            .header("Idempotency-Key", idempotency_key)
            .json(&serde_json::json!({"kind": "probe"}))
            .send()
    };
    let accepted = |response: reqwest::Response| async move {
        let status = response.status();
        assert_eq!(status, 202, "{}", response.text().await.unwrap());
    };
    // The first request also warms the pool; count from the second.
    accepted(submit("warm-up").await.unwrap()).await;
    statements.take();
    accepted(submit("counted").await.unwrap()).await;
    let sent = statements.take();

    let summary: Vec<String> = sent
        .iter()
        .map(|sql| sql.split_whitespace().collect::<Vec<_>>().join(" "))
        .map(|sql| sql.chars().take(100).collect())
        .collect();
    println!(
        "statements per submission: {}, each its own transaction:\n  {}",
        sent.len(),
        summary.join("\n  ")
    );
    assert!(
        !sent
            .iter()
            .any(|sql| sql.trim().eq_ignore_ascii_case("BEGIN")),
        "no explicit transaction: {summary:#?}"
    );
    let writes: Vec<&String> = sent
        .iter()
        .filter(|sql| sql.contains("INSERT INTO scans"))
        .collect();
    assert_eq!(writes.len(), 1, "{summary:#?}");
    assert!(
        writes[0].contains("INSERT INTO outbox") && writes[0].contains("INSERT INTO scan_events"),
        "scan, outbox row and event in one statement: {}",
        writes[0]
    );
    assert!(
        sent.len() <= SUBMIT_BUDGET,
        "{} statements for one submission: {summary:#?}",
        sent.len()
    );
    // The one statement wrote all three rows.
    drop(guard);
    for table in ["scans", "outbox", "scan_events"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(rows, 2, "{table}: one row per submission");
    }

    stop.cancel();
    server.await.unwrap().unwrap();
    env.cleanup().await;
}
