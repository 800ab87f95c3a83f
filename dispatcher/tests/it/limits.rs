//! Request limits from tower / tower-http: a global concurrency limit that
//! sheds load with `503` + `Retry-After`, a whole-request timeout and an idle
//! timeout between body bytes, each answered with problem+json. Slow clients
//! are played by raw TCP connections that send part of a body and stall.

use std::time::Duration;

use protocol::Tier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{expect_problem, wait_for, Dispatcher, TestEnv, PATIENCE};

/// Opens a connection and sends a request whose body (`length` bytes
/// declared) is only started with `first_bytes`.
async fn start_request(
    dispatcher: &Dispatcher,
    head: &str,
    key: &str,
    length: usize,
    first_bytes: &[u8],
) -> TcpStream {
    let addr = dispatcher.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-length: {length}\r\n{}\r\n",
        if head.contains("/v1/uploads") {
            "content-type: video/mp4\r\n"
        } else {
            "content-type: application/json\r\n"
        }
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(first_bytes).await.unwrap();
    stream
}

/// Reads one response from `stream`: its status and body (as text).
async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> (u16, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let complete = |received: &[u8]| -> Option<(u16, String)> {
        let text = String::from_utf8_lossy(received);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length: usize = head.lines().find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().ok())
        })??;
        (body.len() >= length).then(|| (status, body[..length].to_string()))
    };
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(response) = complete(&received) {
                return response;
            }
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(
                read > 0,
                "connection closed before a whole response: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("a response")
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_are_shed_but_probes_are_not() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_concurrent_requests = 2;
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("slow", Tier::Free).await;
    let http = reqwest::Client::new();

    // Two uploads that have sent half their body hold both slots.
    let mut first = start_request(&dispatcher, "POST /v1/uploads", &key, 8, b"1234").await;
    let second = start_request(&dispatcher, "POST /v1/uploads", &key, 8, b"1234").await;
    let shed = wait_for("a request to be shed", || async {
        let response = http
            .get(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        (response.status() == 503).then_some(response)
    })
    .await;
    assert_eq!(shed.headers()["retry-after"], "1");
    expect_problem(shed, 503, "overloaded").await;
    for probe in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(
            http.get(dispatcher.url(probe))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{probe} is never shed"
        );
    }

    // One upload finishes: its slot is free again.
    first.write_all(b"5678").await.unwrap();
    assert_eq!(read_response(&mut first).await.0, 201);
    wait_for("a slot to be free", || async {
        let response = http
            .get(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        (response.status() == 200).then_some(())
    })
    .await;
    let metrics = http
        .get(dispatcher.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("scanfleet_http_requests_total{") && l.contains("status=\"503\"")
        ),
        "shed requests are counted: {metrics}"
    );
    drop(second);
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_stalled_body_and_a_slow_request_time_out_with_problems() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    // Wide apart, so that a loaded machine cannot turn one into the other.
    config.body_read_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(4);
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("slow", Tier::Free).await;

    // A body that stops arriving: the idle timeout answers.
    for head in ["POST /v1/uploads", "POST /v1/scans"] {
        let mut stalled = start_request(&dispatcher, head, &key, 100, b"{\"kind\"").await;
        let (status, body) = read_response(&mut stalled).await;
        assert_eq!(status, 408, "{head}: {body}");
        assert!(body.contains("\"code\":\"body_timeout\""), "{head}: {body}");
    }

    // A body that keeps trickling, each byte within the idle timeout: the
    // whole-request timeout answers.
    let trickling = start_request(&dispatcher, "POST /v1/scans", &key, 100, b"{").await;
    let (mut reader, mut writer) = trickling.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (status, body) = read_response(&mut reader).await;
    trickle.abort();
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"code\":\"request_timeout\""), "{body}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    dispatcher.stop().await;
    env.cleanup().await;
}
