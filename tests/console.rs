//! The operator console (`/ui`) in a real headless Chromium, against a real
//! dispatcher, worker, PostgreSQL and RabbitMQ (issue #25's browser tests).
//! Screenshots of each page go to `<target dir>/ui-screenshots/`.

use std::path::PathBuf;

use harness::webdriver::Chrome;
use harness::{wait_for, Api, Dispatcher, Receiver, TestEnv, Worker};
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

/// `$CARGO_TARGET_DIR/ui-screenshots`, or beside the test binary's target dir.
pub(crate) fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("own path");
            // target/<profile>/deps/<test binary>
            exe.ancestors().nth(3).expect("target dir").to_path_buf()
        });
    target.join("ui-screenshots")
}

pub(crate) async fn log_in(chrome: &Chrome, base: &str, key: &str) {
    chrome.goto(&format!("{base}/ui/login")).await;
    let field = chrome.find("#key").await;
    chrome.type_into(&field, key).await;
    chrome
        .click(&chrome.find("form[action='/ui/login'] button").await)
        .await;
    chrome.find("#queues").await;
}

pub(crate) async fn wait_live(chrome: &Chrome) {
    chrome
        .wait_until(
            "the live stream to open",
            "const s = document.getElementById('live-status'); return s && s.dataset.state === 'open';",
        )
        .await;
}

pub(crate) async fn heading(chrome: &Chrome) -> String {
    chrome.text(&chrome.find("h1").await).await
}

/// POSTs a form from inside the page (same origin, with the session cookie)
/// and returns the HTTP status.
pub(crate) async fn post_from_page(chrome: &Chrome, path: &str, body: &str) -> Value {
    chrome
        .execute_async(
            "const [path, body, done] = arguments;
             fetch(path, {method: 'POST', redirect: 'manual',
                          headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body})
               .then(r => done(r.status)).catch(e => done(String(e)));",
            vec![json!(path), json!(body)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_console_in_a_headless_browser() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "console-cpu-1")).await;
    let alice_key = env.api_key("alice", Tier::Free).await;
    let bob_key = env.api_key("bob", Tier::Free).await;
    let admin_key = env.admin_key().await;
    let alice = Api::new(&dispatcher.base_url, &alice_key);
    let bob = Api::new(&dispatcher.base_url, &bob_key);
    let receiver = Receiver::start(vec![]).await;
    let shots = screenshot_dir();
    let base = dispatcher.base_url.clone();
    let chrome = Chrome::start().await;

    // Nothing but the login page without a session.
    for path in ["/ui", "/ui/scans", "/ui/routing", "/ui/no-such-page"] {
        chrome.goto(&format!("{base}{path}")).await;
        assert!(
            chrome.current_url().await.ends_with("/ui/login"),
            "{path} should redirect to the login page"
        );
    }
    chrome.screenshot(&shots.join("01-login.png")).await;
    chrome
        .type_into(&chrome.find("#key").await, "sf_wrong")
        .await;
    chrome
        .click(&chrome.find("form[action='/ui/login'] button").await)
        .await;
    chrome.find("#login-error").await;

    // A tenant logs in and watches a probe scan arrive and finish live.
    log_in(&chrome, &base, &alice_key).await;
    wait_live(&chrome).await;
    chrome.screenshot(&shots.join("02-overview.png")).await;
    chrome.goto(&format!("{base}/ui/scans")).await;
    wait_live(&chrome).await;
    chrome
        .execute(
            "window.__samePage = 'yes'; window.__seen = [];
             new MutationObserver(() => {
               for (const row of document.querySelectorAll('#scan-rows tr[data-status]')) {
                 const last = window.__seen[window.__seen.length - 1];
                 if (last !== row.dataset.status) window.__seen.push(row.dataset.status);
               }
             }).observe(document.getElementById('scan-rows'), {childList: true, subtree: true, attributes: true});
             return true;",
            vec![],
        )
        .await;
    let scan_id = alice
        .submit(json!({
            "kind": "probe",
            "params": {"hold_ms": 1500},
            "callback_url": receiver.url("/hook"),
        }))
        .await;
    chrome
        .wait_until(
            "the new scan to appear in the list",
            &format!("return document.getElementById('scan-{scan_id}') !== null;"),
        )
        .await;
    chrome
        .wait_until(
            "the scan to show as succeeded",
            &format!(
                "const row = document.getElementById('scan-{scan_id}');
                 return row !== null && row.dataset.status === 'succeeded';"
            ),
        )
        .await;
    assert_eq!(
        chrome.execute("return window.__samePage;", vec![]).await,
        json!("yes"),
        "the list updated without a reload"
    );
    let seen = chrome.execute("return window.__seen;", vec![]).await;
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(seen.last(), Some(&"succeeded"), "{seen:?}");
    assert!(
        seen.iter().any(|s| *s == "queued" || *s == "running"),
        "a status before success was shown: {seen:?}"
    );
    chrome.screenshot(&shots.join("03-scans.png")).await;

    // Detail page, and a webhook redelivered with the same webhook-id.
    receiver.wait_for(1).await;
    wait_for("the delivery to be recorded", || async {
        (env.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    chrome.goto(&format!("{base}/ui/scans/{scan_id}")).await;
    chrome.find("#deliveries tr[data-status='delivered']").await;
    chrome.find("#timeline li[data-event='succeeded']").await;
    chrome.screenshot(&shots.join("04-scan-detail.png")).await;
    chrome.click(&chrome.find("button.redeliver").await).await;
    chrome.find("#notice").await;
    let received = receiver.wait_for(2).await;
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );

    // A form without the CSRF token, or with a made-up one, is refused.
    let retry_path = format!("/ui/scans/{scan_id}/retry");
    let nonce = "nonce=0123456789abcdef0123456789abcdef";
    assert_eq!(
        post_from_page(&chrome, &retry_path, nonce).await,
        json!(403)
    );
    let forged = format!("csrf={}&{nonce}", "ab".repeat(32));
    assert_eq!(
        post_from_page(&chrome, &retry_path, &forged).await,
        json!(403)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM scans").await,
        1,
        "no scan was created by the refused forms"
    );

    // Retry submits the input again as a new scan.
    chrome.goto(&format!("{base}/ui/scans/{scan_id}")).await;
    chrome.click(&chrome.find("#retry").await).await;
    chrome.find("#notice").await;
    let url = chrome.current_url().await;
    assert!(
        url.contains("done=retried") && !url.contains(&scan_id),
        "{url}"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM scan_events WHERE event = 'resubmitted' AND detail ->> 'from' = '{scan_id}'"
        ))
        .await,
        1
    );

    // Another tenant's scan is not there for this tenant; routing is admin-only.
    let bobs_scan = bob.submit(json!({"kind": "probe"})).await;
    chrome.goto(&format!("{base}/ui/scans/{bobs_scan}")).await;
    assert_eq!(heading(&chrome).await, "404 Not Found");
    chrome
        .screenshot(&shots.join("05-other-tenant-404.png"))
        .await;
    chrome.goto(&format!("{base}/ui/scans")).await;
    chrome.find("#scan-table").await;
    assert_eq!(
        chrome
            .execute(
                "return document.body.innerHTML.includes(arguments[0]);",
                vec![json!(bobs_scan)]
            )
            .await,
        json!(false)
    );
    chrome.goto(&format!("{base}/ui/routing")).await;
    assert_eq!(heading(&chrome).await, "403 Forbidden");

    // Log out; the admin switches routing mode after a confirmation.
    chrome.goto(&format!("{base}/ui")).await;
    chrome.click(&chrome.find("form.logout button").await).await;
    chrome.find("#key").await;
    chrome.goto(&format!("{base}/ui/scans")).await;
    assert!(chrome.current_url().await.ends_with("/ui/login"));
    log_in(&chrome, &base, &admin_key).await;
    chrome.goto(&format!("{base}/ui/routing")).await;
    chrome
        .click(&chrome.find("#mode option[value='cpu']").await)
        .await;
    chrome.click(&chrome.find("#review").await).await;
    chrome.find("#confirm-change").await;
    assert_eq!(chrome.text(&chrome.find("#new-mode").await).await, "cpu");
    chrome
        .screenshot(&shots.join("06-routing-confirm.png"))
        .await;
    chrome.click(&chrome.find("#confirm").await).await;
    chrome.find("#notice").await;
    assert_eq!(
        chrome.text(&chrome.find("#current-mode").await).await,
        "cpu"
    );
    chrome.screenshot(&shots.join("07-routing.png")).await;
    let (mode, updated_by): (String, String) =
        sqlx::query_as("SELECT mode, updated_by FROM routing_policy")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(mode, "cpu");
    assert!(
        updated_by.starts_with("console: tenant operators"),
        "{updated_by}"
    );

    // The admin sees every tenant's scans.
    chrome.goto(&format!("{base}/ui/scans/{bobs_scan}")).await;
    chrome.find("#summary").await;
    chrome.goto(&format!("{base}/ui/scans")).await;
    chrome.find(&format!("#scan-{bobs_scan}")).await;
    chrome.screenshot(&shots.join("08-admin-scans.png")).await;
    chrome.goto(&format!("{base}/ui")).await;
    wait_live(&chrome).await;
    chrome
        .screenshot(&shots.join("09-admin-overview.png"))
        .await;

    chrome.close().await;
    receiver.stop();
    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// A short rendered scan video (8 frames, 720p), as `tests/video.rs` makes.
fn small_scan_video() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let spec = vision::synth::SynthSpec {
        frames: 8,
        blurred_frames: vec![3],
        ..Default::default()
    };
    let truth = vision::synth::generate(&spec, dir.path()).unwrap();
    std::fs::read(truth.video).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_viewer_draws_a_video_scans_result() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_upload_bytes = 64 * 1024 * 1024;
    let dispatcher = Dispatcher::start(config).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "viewer-cpu-1")).await;
    let key = env.api_key("grader", Tier::Free).await;
    let api = Api::new(&dispatcher.base_url, &key);
    let upload = api.upload(small_scan_video()).await;
    let scan_id = api
        .submit(json!({"kind": "video_scan", "upload_id": upload, "item_type": "trading_card"}))
        .await;
    let scan = api.finished(&env, &scan_id).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let report = &scan["result"]["report"];
    let base = dispatcher.base_url.clone();
    let chrome = Chrome::start().await;
    log_in(&chrome, &base, &key).await;
    chrome.goto(&format!("{base}/ui/scans/{scan_id}")).await;
    chrome.find("#viewer").await;

    // One figure per golden frame, each image served (200) to this session.
    let golden = report["golden_frames"].as_array().unwrap().len();
    let statuses = chrome
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const hrefs = [...document.querySelectorAll('#viewer image')].map(i => i.getAttribute('href'));
             Promise.all(hrefs.map(h => fetch(h).then(r => r.status))).then(done);",
            vec![],
        )
        .await;
    let statuses: Vec<u64> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(statuses.len() > golden, "frames and mask: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // The outline drawn is the result's quad, on the frame it was measured on.
    if let Some(item) = report["item"].as_object() {
        let expected: Vec<String> = item["quad"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    p[0].as_f64().unwrap(),
                    p[1].as_f64().unwrap()
                )
            })
            .collect();
        let drawn = chrome
            .execute(
                "const q = document.querySelector('polygon.quad');
                 return q && [q.getAttribute('points'), q.closest('figure').dataset.frame];",
                vec![],
            )
            .await;
        assert_eq!(drawn[0], json!(expected.join(" ")));
        assert_eq!(drawn[1], json!(item["frame"].to_string()));
    }
    // One box per defect, scaled from the item-normalised box.
    let defects = report["defects"].as_array().unwrap().len();
    let boxes = chrome
        .execute(
            "return document.querySelectorAll('#rectified rect.defect').length;",
            vec![],
        )
        .await;
    assert_eq!(boxes, json!(defects));
    chrome
        .execute(
            "document.getElementById('viewer').scrollIntoView(); return true;",
            vec![],
        )
        .await;
    chrome
        .screenshot(&screenshot_dir().join("10-scan-viewer.png"))
        .await;

    // Compare routes: the same video on the GPU queue, computed afresh (not
    // served from the result cache), side by side with the CPU run. This
    // machine's GPU-queue worker runs NdArray too (and says so in the
    // backend row), so both runs must find the same.
    let gpu_worker = Worker::start(env.worker_config(QueueChoice::Gpu, "viewer-gpu-1")).await;
    chrome.goto(&format!("{base}/ui/scans/{scan_id}")).await;
    chrome.click(&chrome.find("#compare").await).await;
    chrome.find("main#compare").await;
    let comparison = chrome.current_url().await;
    let rerun = comparison.rsplit('/').next().unwrap().to_string();
    assert_ne!(rerun, scan_id, "{comparison}");
    let rerun_scan = api.finished(&env, &rerun).await;
    assert_eq!(rerun_scan["status"], "succeeded", "{rerun_scan}");
    assert_eq!(rerun_scan["route"], "gpu");
    assert_eq!(rerun_scan["route_reason"], "compare");
    assert!(
        rerun_scan["result"].get("cached").is_none(),
        "a comparison is computed, not served from the cache: {rerun_scan}"
    );
    chrome.goto(&comparison).await;
    chrome.find("main#compare[data-done='true']").await;
    let verdict = chrome.text(&chrome.find("#verdict").await).await;
    assert!(
        verdict.starts_with("Both routes found the same."),
        "{verdict}"
    );
    chrome
        .screenshot(&screenshot_dir().join("18-compare-routes.png"))
        .await;

    chrome.close().await;
    gpu_worker.stop().await;
    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}
