//! The console's operations pages in a real headless Chromium, against a
//! real dispatcher, worker, PostgreSQL and RabbitMQ: webhooks (deliveries,
//! redeliver, rotate secret), dead letters (requeue) and the overview's
//! workers panel. Each action is checked in the database; each new form is
//! checked to refuse a missing or forged CSRF token and another tenant's
//! rows. Screenshots go beside `console.rs`'s.

use dispatcher::sealing::SecretOwner;
use harness::webdriver::Chrome;
use harness::{wait_for, Api, Dispatcher, Receiver, Reply, TestEnv, Worker};
use protocol::Tier;
use serde_json::json;
use worker::config::QueueChoice;

use crate::console::{heading, log_in, post_from_page, screenshot_dir};
use crate::webhooks::register;

async fn delivery_of(env: &TestEnv, scan_id: &str) -> String {
    sqlx::query_scalar("SELECT id::text FROM webhook_deliveries WHERE scan_id = $1::uuid")
        .bind(scan_id)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// The endpoint's current and previous secrets as stored, opened (they are
/// sealed at rest, see `dispatcher::sealing`).
async fn secrets_of(env: &TestEnv, endpoint_id: &str) -> (String, Option<String>) {
    let (secret, previous): (String, Option<String>) =
        sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1::uuid")
            .bind(endpoint_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(
        secret.starts_with("sealed:"),
        "stored in the clear: {secret}"
    );
    let sealer = env.sealer();
    let owner = SecretOwner::Endpoint(endpoint_id.parse().unwrap());
    let open = |stored: &str| {
        sealer
            .open(owner, stored)
            .expect("opens with the test keys")
    };
    (open(&secret), previous.as_deref().map(open))
}

async fn attempts_of(env: &TestEnv, delivery_id: &str) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM webhook_attempts WHERE delivery_id = '{delivery_id}'"
    ))
    .await
}

async fn page_contains(chrome: &Chrome, text: &str) -> bool {
    chrome
        .execute(
            "return document.body.innerHTML.includes(arguments[0]);",
            vec![json!(text)],
        )
        .await
        == json!(true)
}

/// The session's CSRF token, read from a form on the current page.
async fn csrf_token(chrome: &Chrome) -> String {
    chrome
        .execute(
            "return document.querySelector('input[name=csrf]').value;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

async fn log_out(chrome: &Chrome, base: &str) {
    chrome.goto(&format!("{base}/ui")).await;
    chrome.click(&chrome.find("form.logout button").await).await;
    chrome.find("#key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_webhooks_page_redelivers_rotates_and_keeps_tenants_apart() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "console-hooks-cpu-1")).await;
    let alice_key = env.api_key("alice", Tier::Free).await;
    let bob_key = env.api_key("bob", Tier::Free).await;
    let admin_key = env.admin_key().await;
    let alice = Api::new(&dispatcher.base_url, &alice_key);
    let bob = Api::new(&dispatcher.base_url, &bob_key);
    // Alice's receiver fails the first attempt: her delivery has two.
    let alice_receiver = Receiver::start(vec![Reply::Status(500)]).await;
    let bob_receiver = Receiver::start(vec![]).await;
    let alice_url = alice_receiver.url("/alice");
    let bob_url = bob_receiver.url("/bob");
    let (alice_endpoint, alice_secret) = register(&alice, &alice_url).await;
    let (bob_endpoint, bob_secret) = register(&bob, &bob_url).await;
    let alice_scan = alice.submit(json!({"kind": "probe"})).await;
    let bob_scan = bob.submit(json!({"kind": "probe"})).await;
    alice_receiver.wait_for(2).await;
    bob_receiver.wait_for(1).await;
    wait_for("both deliveries to be recorded as delivered", || async {
        (env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    let alice_delivery = delivery_of(&env, &alice_scan).await;
    let bob_delivery = delivery_of(&env, &bob_scan).await;
    let base = dispatcher.base_url.clone();
    let shots = screenshot_dir();
    let chrome = Chrome::start().await;

    // The tenant sees its endpoint and its delivery with every attempt…
    log_in(&chrome, &base, &alice_key).await;
    chrome.goto(&format!("{base}/ui/webhooks")).await;
    chrome.find(&format!("#endpoint-{alice_endpoint}")).await;
    let row = format!("#delivery-{alice_delivery}");
    chrome
        .find(&format!("{row}[data-status='delivered']"))
        .await;
    let attempts = chrome
        .execute(
            "return [...document.querySelectorAll(arguments[0] + ' .attempt')]
                 .map(a => [a.dataset.outcome, a.querySelector('.status-code').textContent]);",
            vec![json!(row)],
        )
        .await;
    assert_eq!(
        attempts,
        json!([["http_error", "500"], ["delivered", "200"]])
    );
    // …and nothing of the other tenant's.
    for other in [&bob_endpoint, &bob_delivery, &bob_scan, &bob_url] {
        assert!(
            !page_contains(&chrome, other).await,
            "{other} is shown to alice"
        );
    }
    chrome.screenshot(&shots.join("11-webhooks.png")).await;

    // Redeliver: another attempt with the same webhook-id.
    chrome
        .click(&chrome.find(&format!("{row} button.redeliver")).await)
        .await;
    chrome.find("#notice").await;
    let received = alice_receiver.wait_for(3).await;
    assert_eq!(
        received[1].header("webhook-id"),
        received[2].header("webhook-id")
    );
    wait_for("the redelivery's attempt to be logged", || async {
        (attempts_of(&env, &alice_delivery).await == 3).then_some(())
    })
    .await;

    // Forms without the CSRF token, or with a forged one, are refused.
    chrome.goto(&format!("{base}/ui/webhooks")).await;
    let rotate_path = format!("/ui/webhooks/endpoints/{alice_endpoint}/rotate");
    let redeliver_path = format!("/ui/webhooks/deliveries/{alice_delivery}/redeliver");
    let forged = format!("csrf={}", "ab".repeat(32));
    for (path, body) in [
        (&rotate_path, "confirm=yes".to_string()),
        (&rotate_path, format!("{forged}&confirm=yes")),
        (&redeliver_path, String::new()),
        (&redeliver_path, forged.clone()),
    ] {
        assert_eq!(
            post_from_page(&chrome, path, &body).await,
            json!(403),
            "{path} {body}"
        );
    }
    assert_eq!(secrets_of(&env, &alice_endpoint).await.0, alice_secret);
    assert_eq!(attempts_of(&env, &alice_delivery).await, 3);

    // With a valid token, the other tenant's endpoint and delivery are not found.
    let token = csrf_token(&chrome).await;
    let bob_rotate = format!("/ui/webhooks/endpoints/{bob_endpoint}/rotate");
    let bob_redeliver = format!("/ui/webhooks/deliveries/{bob_delivery}/redeliver");
    assert_eq!(
        post_from_page(&chrome, &bob_rotate, &format!("csrf={token}&confirm=yes")).await,
        json!(404)
    );
    assert_eq!(
        post_from_page(&chrome, &bob_redeliver, &format!("csrf={token}")).await,
        json!(404)
    );
    assert_eq!(secrets_of(&env, &bob_endpoint).await, (bob_secret, None));
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE id = '{bob_delivery}' AND status = 'delivered'"
        ))
        .await,
        1,
        "bob's delivery was not queued again"
    );

    // Rotation asks first; only the confirmed second step rotates.
    chrome
        .click(
            &chrome
                .find(&format!("#endpoint-{alice_endpoint} button.rotate"))
                .await,
        )
        .await;
    chrome.find("#confirm-rotation").await;
    assert_eq!(
        chrome.text(&chrome.find("#rotate-url").await).await,
        alice_url
    );
    assert_eq!(secrets_of(&env, &alice_endpoint).await.0, alice_secret);
    chrome
        .screenshot(&shots.join("12-webhook-rotate-confirm.png"))
        .await;
    chrome.click(&chrome.find("#confirm").await).await;
    let shown = chrome.text(&chrome.find("#new-secret").await).await;
    assert!(
        shown.starts_with("whsec_") && shown != alice_secret,
        "{shown}"
    );
    assert_eq!(
        secrets_of(&env, &alice_endpoint).await,
        (shown, Some(alice_secret)),
        "the shown secret is stored; the old one signs during the overlap"
    );
    chrome
        .screenshot(&shots.join("13-webhook-rotated.png"))
        .await;
    chrome.goto(&format!("{base}/ui/webhooks")).await;
    chrome
        .find(&format!("#endpoint-{alice_endpoint} .overlap"))
        .await;

    // An admin sees every tenant's endpoints and deliveries.
    log_out(&chrome, &base).await;
    log_in(&chrome, &base, &admin_key).await;
    chrome.goto(&format!("{base}/ui/webhooks")).await;
    chrome.find(&format!("#endpoint-{bob_endpoint}")).await;
    chrome.find(&format!("#endpoint-{alice_endpoint}")).await;
    chrome.find(&format!("#delivery-{bob_delivery}")).await;
    assert_eq!(heading(&chrome).await, "Webhooks");
    chrome
        .screenshot(&shots.join("14-admin-webhooks.png"))
        .await;

    chrome.close().await;
    alice_receiver.stop();
    bob_receiver.stop();
    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// Dead-letters a scan's queued message and waits for the dead-letter
/// watcher to fail the scan.
async fn dead_letter(env: &TestEnv, scan_id: &str) {
    env.dead_letter(scan_id).await;
    wait_for("the dead-letter watcher to fail the scan", || async {
        (env.scan_status(scan_id).await == "failed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_dead_letters_requeue_and_the_workers_panel() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    // Every scan to the CPU queue, which no worker consumes here: the scans
    // stay where the test puts them.
    config.routing_mode = dispatcher::routing::RoutingMode::Cpu;
    let dispatcher = Dispatcher::start(config).await;
    // A worker on the GPU queue (on the CPU backend): it reports itself to
    // the workers panel and takes none of the CPU-routed scans.
    let worker = Worker::start(env.worker_config(QueueChoice::Gpu, "console-ops-gpu-1")).await;
    let alice_key = env.api_key("alice", Tier::Free).await;
    let bob_key = env.api_key("bob", Tier::Free).await;
    let admin_key = env.admin_key().await;
    let alice = Api::new(&dispatcher.base_url, &alice_key);
    let bob = Api::new(&dispatcher.base_url, &bob_key);
    let alice_scan = alice.submit(json!({"kind": "probe"})).await;
    let bob_scan = bob.submit(json!({"kind": "probe"})).await;
    dead_letter(&env, &alice_scan).await;
    dead_letter(&env, &bob_scan).await;
    let base = dispatcher.base_url.clone();
    let shots = screenshot_dir();
    let chrome = Chrome::start().await;
    let requeues = "SELECT count(*) FROM scan_events WHERE event = 'requeued'";

    // A tenant sees its own dead letter with the reason, and cannot requeue.
    log_in(&chrome, &base, &alice_key).await;
    chrome.goto(&format!("{base}/ui/dead-letters")).await;
    let row = format!("#dead-{alice_scan}");
    let reason = chrome
        .text(&chrome.find(&format!("{row} .reason")).await)
        .await;
    assert!(reason.contains("dead-lettered"), "{reason}");
    assert!(!page_contains(&chrome, &bob_scan).await);
    assert!(chrome.try_find("button.requeue").await.is_none());
    let token = csrf_token(&chrome).await;
    assert_eq!(
        post_from_page(
            &chrome,
            &format!("/ui/dead-letters/{alice_scan}/requeue"),
            &format!("csrf={token}")
        )
        .await,
        json!(403),
        "requeue is for admin keys"
    );
    assert_eq!(env.count(requeues).await, 0);

    // The admin sees every tenant's dead letters.
    log_out(&chrome, &base).await;
    log_in(&chrome, &base, &admin_key).await;
    chrome.goto(&format!("{base}/ui/dead-letters")).await;
    chrome.find(&format!("#dead-{bob_scan}")).await;
    chrome
        .find(&format!("{row}[data-requeued='no'] button.requeue"))
        .await;
    chrome.screenshot(&shots.join("15-dead-letters.png")).await;

    // Without the CSRF token, or with a forged one: refused, nothing queued.
    let requeue_path = format!("/ui/dead-letters/{alice_scan}/requeue");
    for body in [String::new(), format!("csrf={}", "ab".repeat(32))] {
        assert_eq!(
            post_from_page(&chrome, &requeue_path, &body).await,
            json!(403)
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM scans").await, 2);

    // Requeue: a new scan of alice's with the same input, queued through the
    // outbox, and both scans' events say who did it.
    chrome
        .click(&chrome.find(&format!("{row} button.requeue")).await)
        .await;
    chrome.find("#notice").await;
    chrome
        .find(&format!("{row}[data-requeued='yes'] a.requeued-as"))
        .await;
    let (new_scan, tenant, by): (String, String, String) = sqlx::query_as(
        r#"SELECT s.id::text, t.name, e.detail ->> 'by'
             FROM scan_events e JOIN scans s ON s.id = (e.detail ->> 'as')::uuid
             JOIN tenants t ON t.id = s.tenant_id
            WHERE e.scan_id = $1::uuid AND e.event = 'requeued'"#,
    )
    .bind(&alice_scan)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(tenant, "alice");
    assert!(by.starts_with("console: tenant operators"), "{by}");
    assert_eq!(env.scan_status(&new_scan).await, "queued");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM scan_events WHERE scan_id = '{new_scan}'
                AND event = 'resubmitted' AND detail ->> 'from' = '{alice_scan}'"
        ))
        .await,
        1
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM outbox WHERE scan_id = '{new_scan}'"
        ))
        .await,
        1
    );
    assert_eq!(env.scan_status(&alice_scan).await, "failed", "stays final");
    // A second requeue of the same dead letter replays the first.
    let token = csrf_token(&chrome).await;
    post_from_page(&chrome, &requeue_path, &format!("csrf={token}")).await;
    assert_eq!(env.count("SELECT count(*) FROM scans").await, 3);
    assert_eq!(env.count(requeues).await, 1);
    chrome
        .screenshot(&shots.join("16-dead-letter-requeued.png"))
        .await;

    // The workers panel shows the worker's own report.
    chrome.goto(&format!("{base}/ui")).await;
    let worker_row = "#workers tr[data-worker='console-ops-gpu-1']";
    let cells = chrome
        .execute(
            "const row = document.querySelector(arguments[0]);
             return row && [...row.cells].map(c => c.textContent.trim());",
            vec![json!(worker_row)],
        )
        .await;
    assert_eq!(cells[1], json!("scans.gpu"), "{cells}");
    assert!(
        cells[2].as_str().unwrap().starts_with("cpu-ndarray"),
        "{cells}"
    );
    assert_eq!(cells[4], json!("0 / 8"), "{cells}");
    chrome
        .execute(
            "document.getElementById('workers').scrollIntoView(); return true;",
            vec![],
        )
        .await;
    chrome.screenshot(&shots.join("17-workers.png")).await;
    assert_eq!(
        env.count(
            "SELECT count(*) FROM workers WHERE name = 'console-ops-gpu-1'
                AND queue = 'scans.gpu' AND stopped_at IS NULL AND last_seen > now() - interval '1 minute'"
        )
        .await,
        1
    );

    // A stopped worker says so, and the panel greys it.
    worker.stop().await;
    assert_eq!(
        env.count("SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL")
            .await,
        1
    );
    chrome.goto(&format!("{base}/ui")).await;
    chrome.find(&format!("{worker_row}.stale")).await;

    chrome.close().await;
    dispatcher.stop().await;
    env.cleanup().await;
}
