//! Hostile webhook receivers: one that answers 200 and then streams a body
//! for ever, one that trickles its body a byte at a time. The deliverer keeps
//! at most 1 KiB of a reply and stops reading there.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::Stream;
use protocol::Tier;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::harness::{wait_for, Dispatcher, TestEnv, PATIENCE};

/// An endless body of 64 KiB chunks that counts what it produced and says
/// when the server dropped it (the client went away).
struct Endless {
    produced: Arc<AtomicU64>,
    dropped: CancellationToken,
}

impl Stream for Endless {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        self.produced
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// Serves `body()` with status 200 to every request; returns the callback URL.
async fn hostile_receiver(body: impl Fn() -> Body + Clone + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { body() }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Submits a probe scan calling back `callback_url` and cancels it, which
/// queues a `scan.canceled` webhook; returns the scan id.
async fn queue_webhook(dispatcher: &Dispatcher, key: &str, callback_url: &str) -> String {
    let http = reqwest::Client::new();
    let response = http
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(key)
        .json(&json!({"kind": "probe", "callback_url": callback_url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let scan: serde_json::Value = response.json().await.unwrap();
    let scan_id = scan["id"].as_str().unwrap().to_string();
    let response = http
        .delete(dispatcher.url(&format!("/v1/scans/{scan_id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    scan_id
}

type AttemptRow = (String, Option<i32>, Option<String>, Option<String>);

async fn first_attempt(env: &TestEnv) -> AttemptRow {
    wait_for("a webhook attempt to be recorded", || async {
        sqlx::query_as::<_, AttemptRow>(
            "SELECT outcome, status_code, error, response_body FROM webhook_attempts",
        )
        .fetch_optional(&env.pool)
        .await
        .unwrap()
    })
    .await
}

#[tokio::test]
async fn an_endless_reply_is_cut_at_one_kib_and_not_drained() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let key = env.api_key("shop", Tier::Free).await;
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = CancellationToken::new();
    let (count, done) = (produced.clone(), dropped.clone());
    let url = hostile_receiver(move || {
        Body::from_stream(Endless {
            produced: count.clone(),
            dropped: done.clone(),
        })
    })
    .await;

    queue_webhook(&dispatcher, &key, &url).await;
    let (outcome, status_code, error, body) = first_attempt(&env).await;
    assert_eq!(
        (outcome.as_str(), status_code, error),
        ("delivered", Some(200), None)
    );
    let body = body.expect("the reply's start is kept");
    assert_eq!(
        body,
        format!("{}…", "x".repeat(1024)),
        "1 KiB kept and marked as cut"
    );
    // The deliverer hung up after 1 KiB: the receiver's stream is dropped
    // having sent no more than the socket buffers hold. (Draining it until
    // the 2 s timeout, as before, let it send gigabytes over loopback.)
    tokio::time::timeout(PATIENCE, dropped.cancelled())
        .await
        .expect("the hostile stream is dropped");
    let sent = produced.load(Ordering::SeqCst);
    assert!(
        sent < 64 * 1024 * 1024,
        "the receiver got to stream {sent} bytes"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_deliveries")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(status, "delivered");
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_trickling_reply_fails_with_the_timeout() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.webhook_timeout = Duration::from_millis(800);
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("shop", Tier::Free).await;
    let url = hostile_receiver(|| {
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
        });
        Body::from_stream(trickle)
    })
    .await;

    queue_webhook(&dispatcher, &key, &url).await;
    let (outcome, status_code, error, body) = first_attempt(&env).await;
    assert_eq!(
        (outcome.as_str(), status_code, error.as_deref(), body),
        ("timeout", None, Some("timed out"), None)
    );
    let (status, last_error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM webhook_deliveries")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), last_error.as_deref()),
        ("failed", Some("timed out")),
        "one attempt scheduled"
    );
    dispatcher.stop().await;
    env.cleanup().await;
}
