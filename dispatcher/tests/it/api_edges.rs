//! Edges of the HTTP API found by schema fuzzing: 405 bodies, the auth
//! scheme's case, bodies declared with the wrong media type, and
//! `rotate-secret`'s optional body.

use protocol::Tier;
use serde_json::json;

use crate::harness::{expect_problem, Dispatcher, TestEnv};

#[tokio::test]
async fn api_edges_answer_as_the_schema_says() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let key = env.api_key("shop", Tier::Free).await;
    let http = reqwest::Client::new();

    // 405 carries problem+json and the Allow header.
    let response = http
        .put(dispatcher.url("/v1/scans"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .expect("Allow header kept")
        .to_str()
        .unwrap()
        .to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let problem = expect_problem(response, 405, "method_not_allowed").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("PUT is not allowed"),
        "{problem}"
    );
    expect_problem(
        http.delete(dispatcher.url("/readyz")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;

    // The auth scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = http
            .get(dispatcher.url("/v1/scans"))
            .header("authorization", format!("{scheme} {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let basic = http
        .get(dispatcher.url("/v1/scans"))
        .basic_auth("shop", Some(&key))
        .send()
        .await
        .unwrap();
    expect_problem(basic, 401, "unauthorized").await;

    // JSON sent as anything but JSON is refused before it is read.
    let probe = json!({"kind": "probe"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = http
            .post(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .body(probe.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        expect_problem(request.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM scans")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let response = http
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(&key)
        .header("content-type", "application/json; charset=utf-8")
        .body(probe)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // rotate-secret: no body, `null` and `{}` rotate; anything else is 422.
    let endpoint: serde_json::Value = http
        .post(dispatcher.url("/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .json(&json!({"url": "https://93.184.216.34/hook"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rotate = dispatcher.url(&format!(
        "/v1/webhook-endpoints/{}/rotate-secret",
        endpoint["id"].as_str().unwrap()
    ));
    let mut secrets = vec![endpoint["secret"].as_str().unwrap().to_string()];
    for body in [
        None,
        Some("null"),
        Some("{}"),
        Some(r#"{"overlap_seconds": 60}"#),
    ] {
        let mut request = http.post(&rotate).bearer_auth(&key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{body:?}: {}",
            response.text().await.unwrap()
        );
        let rotated: serde_json::Value = response.json().await.unwrap();
        secrets.push(rotated["secret"].as_str().unwrap().to_string());
    }
    secrets.dedup();
    assert_eq!(secrets.len(), 5, "every rotation made a new secret");
    for body in ["[]", "3", r#"{"overlap_seconds": -1}"#] {
        let response = http
            .post(&rotate)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, "invalid_body").await;
    }
    // The document says the same: the body is optional.
    let document: serde_json::Value = http
        .get(dispatcher.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body =
        &document["paths"]["/v1/webhook-endpoints/{id}/rotate-secret"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");

    // Every answer above was counted by route template, status and method.
    let metrics = http
        .get(dispatcher.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str, labels: &[&str]| -> f64 {
        metric_value(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}"))
    };
    let put_405 = ["method=\"PUT\"", "route=\"/v1/scans\"", "status=\"405\""];
    assert_eq!(count("scanfleet_http_requests_total", &put_405), 1.0);
    assert_eq!(
        count(
            "scanfleet_http_requests_total",
            &["method=\"POST\"", "route=\"/v1/scans\"", "status=\"415\""]
        ),
        3.0
    );
    assert_eq!(
        count(
            "scanfleet_http_requests_total",
            &["method=\"POST\"", "route=\"/v1/scans\"", "status=\"202\""]
        ),
        1.0
    );
    let rotate_200 = [
        "route=\"/v1/webhook-endpoints/{id}/rotate-secret\"",
        "status=\"200\"",
    ];
    assert_eq!(
        count("scanfleet_http_requests_total", &rotate_200),
        4.0,
        "the template, not the endpoint's id"
    );
    assert_eq!(
        count(
            "scanfleet_http_request_duration_seconds_count",
            &["method=\"GET\"", "route=\"/v1/scans\""]
        ),
        4.0
    );
    let response = http
        .get(dispatcher.url("/no/such/path/4f2a"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "not_found").await;
    let metrics = http
        .get(dispatcher.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("4f2a"), "raw paths never become labels");
    assert_eq!(
        metric_value(
            &metrics,
            "scanfleet_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ),
        Some(1.0)
    );

    dispatcher.stop().await;
    env.cleanup().await;
}

/// The value of the series of `name` whose labels include every one of `labels`.
fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
