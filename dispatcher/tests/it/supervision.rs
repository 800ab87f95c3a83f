//! Supervised background work: a task that stops for good fails `/readyz`,
//! naming the task, and stops the dispatcher with a non-zero exit. The fault
//! is real: the broker user of the dispatcher under test is deleted, so the
//! broker closes its connections and refuses the next ones.

use std::process::Stdio;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::harness::{expect_problem, wait_for, TestEnv, PATIENCE};

/// The tasks that hold a broker session (the backlog monitor only while it
/// leads, which a lone replica does).
const BROKER_TASKS: [&str; 3] = ["outbox-relay", "dead-letter-watcher", "backlog-monitor"];

async fn wait_until_ready(readyz: &str) {
    wait_for("the dispatcher to be ready", || async {
        let response = reqwest::get(readyz).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_task_refused_by_the_broker_fails_readyz_and_stops_the_dispatcher() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.service.amqp_url = env.broker_user().await.into();
    let running = dispatcher::startup::start(config, CancellationToken::new())
        .await
        .expect("dispatcher starts");
    let state = running.state.clone();
    wait_until_ready(&format!("http://{}/readyz", running.local_addr)).await;
    assert_eq!(state.health().failure(), None);

    env.delete_broker_user().await;
    let failure = tokio::time::timeout(PATIENCE, running.wait())
        .await
        .expect("the dispatcher stops by itself")
        .expect_err("a task failed");
    assert!(BROKER_TASKS.contains(&failure.task), "{failure}");
    assert!(
        failure.reason.contains("ACCESS_REFUSED"),
        "the broker's refusal is the reason: {failure}"
    );
    assert_eq!(state.health().failure(), Some(&failure));

    // The stopped server cannot be asked any more: ask the same state
    // through a fresh one, as a probe would have in between.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(protocol::http::serve_until(
        listener,
        dispatcher::api::router(state),
        stop.clone(),
    ));
    let response = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    let problem = expect_problem(response, 503, "task_failed").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("`{}`", failure.task)), "{detail}");
    // The public answer names the task, not the broker's text (users, vhosts).
    assert!(!problem.to_string().contains(&env.name), "{problem}");
    stop.cancel();
    server.await.unwrap().unwrap();
    env.cleanup().await;
}

/// Starts the dispatcher binary; returns it and its base URL.
fn spawn_dispatcher(env: &TestEnv, amqp_url: &str) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .arg("serve")
        .env("DATABASE_URL", &env.database_url)
        .env("SECRETS_KEYS", &env.secrets_keys)
        .env("AMQP_URL", amqp_url)
        .env("BLOB_STORE", &env.blob_dir)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        // Warnings and errors only, so the pipes never fill while unread.
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("dispatcher binary starts");
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn the_dispatcher_process_exits_non_zero_naming_the_task_that_failed() {
    let env = TestEnv::new().await;
    let (child, base_url) = spawn_dispatcher(&env, &env.broker_user().await);
    wait_until_ready(&format!("{base_url}/readyz")).await;

    env.delete_broker_user().await;
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the dispatcher exits by itself")
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        BROKER_TASKS
            .iter()
            .any(|task| log.contains(&format!("background task `{task}` stopped"))),
        "the exit names the task: {log}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn sigterm_stops_the_dispatcher_process_with_success() {
    let env = TestEnv::new().await;
    let (child, base_url) = spawn_dispatcher(&env, &env.amqp_url);
    wait_until_ready(&format!("{base_url}/readyz")).await;

    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the dispatcher exits after SIGTERM")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    env.cleanup().await;
}

/// The broker's connections to this test's vhost named `name` by the client.
async fn broker_connections(env: &TestEnv, name: &str) -> Vec<String> {
    let connections: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:15672/api/vhosts/{}/connections",
            env.name
        ))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    connections
        .iter()
        .filter(|connection| connection["user_provided_name"] == name)
        .filter_map(|connection| connection["name"].as_str().map(str::to_string))
        .collect()
}

/// lapin ends a consumer's stream when its connection closes, but the relay
/// consumes nothing: it has to look. A relay that did not would sit on a
/// dead channel, idle, until the next scan failed to publish.
#[tokio::test]
async fn the_relay_reconnects_when_the_broker_closes_its_idle_connection() {
    let env = TestEnv::new().await;
    let dispatcher = crate::harness::Dispatcher::start(env.dispatcher_config()).await;
    let relay = "scanfleet-dispatcher-relay";
    let first = wait_for("the relay's connection", || async {
        broker_connections(&env, relay).await.pop()
    })
    .await;

    // What an operator (or a broker failing over) does: close it.
    let response = reqwest::Client::new()
        .delete(format!(
            "http://127.0.0.1:15672/api/connections/{}",
            first.replace(' ', "%20").replace('>', "%3E")
        ))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    wait_for(
        "the relay to connect again, with nothing to publish",
        || async {
            let now = broker_connections(&env, relay).await;
            (now.len() == 1 && now[0] != first).then_some(())
        },
    )
    .await;
    wait_until_ready(&dispatcher.url("/readyz")).await;
    dispatcher.stop().await;
    env.cleanup().await;
}
