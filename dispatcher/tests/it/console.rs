//! The operator console over plain HTTP: sessions, CSRF, tenant isolation,
//! the escalation timeline, and the scan list's plans at scale. (The
//! browser tests are in `tests/console.rs`.)

use dispatcher::console::scan_list::{self, Cursor, Filters};
use protocol::{ScanStatus, Tier};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::harness::{wait_for, Dispatcher, TestEnv};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Logs in with `key`; returns the `Cookie` header value of the session.
async fn log_in(dispatcher: &Dispatcher, key: &str) -> String {
    let response = browser()
        .post(dispatcher.url("/ui/login"))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/ui");
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    set_cookie.split(';').next().unwrap().to_string()
}

async fn get(dispatcher: &Dispatcher, cookie: &str, path: &str) -> (u16, String) {
    let response = browser()
        .get(dispatcher.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(dispatcher: &Dispatcher, cookie: &str, path: &str, form: &[(&str, &str)]) -> u16 {
    browser()
        .post(dispatcher.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn status_of(env: &TestEnv, scan_id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM scans WHERE id = $1::uuid")
        .bind(scan_id)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// The CSRF token from a page's forms.
fn csrf_in(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("page has a form") + marker.len();
    page[start..start + 64].to_string()
}

async fn submit(dispatcher: &Dispatcher, key: &str, body: serde_json::Value) -> String {
    let response = reqwest::Client::new()
        .post(dispatcher.url("/v1/scans"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: serde_json::Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sessions_are_strict_cookies_and_every_form_needs_its_csrf_token() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let key = env.api_key("acme", Tier::Free).await;

    // Without a session everything but the login page sends you there.
    for path in [
        "/ui",
        "/ui/scans",
        "/ui/routing",
        "/ui/live?view=overview",
        "/ui/x",
    ] {
        let response = browser().get(dispatcher.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()[LOCATION], "/ui/login", "{path}");
    }
    let response = browser()
        .post(dispatcher.url("/ui/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (status, login) = get(&dispatcher, "", "/ui/login").await;
    assert_eq!(status, 200);
    assert!(login.contains(r#"name="key""#));

    // A wrong key is refused; a right one gets a strict, HttpOnly cookie.
    let refused = browser()
        .post(dispatcher.url("/ui/login"))
        .form(&[("key", "sf_nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get(SET_COOKIE).is_none());
    let response = browser()
        .post(dispatcher.url("/ui/login"))
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=3600"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let token = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sf_console=");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_sha256 FROM console_sessions")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_ne!(stored, token.as_bytes(), "only the token's hash is stored");
    let cookie = format!("sf_console={token}");

    let (status, overview) = get(&dispatcher, &cookie, "/ui").await;
    assert_eq!(status, 200);
    assert!(overview.contains("acme"));
    let csrf = csrf_in(&overview);

    // Forms without the token, with another value, or posted cross-site: 403.
    let scan_id = submit(&dispatcher, &key, json!({"kind": "probe"})).await;
    let cancel = format!("/ui/scans/{scan_id}/cancel");
    assert_eq!(post(&dispatcher, &cookie, &cancel, &[]).await, 403);
    let forged = "0".repeat(64);
    assert_eq!(
        post(&dispatcher, &cookie, &cancel, &[("csrf", forged.as_str())]).await,
        403
    );
    let cross_site = browser()
        .post(dispatcher.url(&cancel))
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert_eq!(
        status_of(&env, &scan_id).await,
        "queued",
        "nothing was canceled"
    );
    // With it, the action runs.
    assert_eq!(
        post(&dispatcher, &cookie, &cancel, &[("csrf", csrf.as_str())]).await,
        303
    );
    assert_eq!(status_of(&env, &scan_id).await, "canceled");

    // Logout ends the session on the server, not only in the browser.
    let response = browser()
        .post(dispatcher.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = get(&dispatcher, &cookie, "/ui").await;
    assert_eq!(status, 303);

    // Revoking the key ends its sessions at once.
    let cookie = log_in(&dispatcher, &key).await;
    assert_eq!(get(&dispatcher, &cookie, "/ui").await.0, 200);
    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&env.pool)
        .await
        .unwrap();
    assert_eq!(get(&dispatcher, &cookie, "/ui").await.0, 303);

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_scans_and_an_admin_sees_all() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let alice_key = env.api_key("alice", Tier::Free).await;
    let bob_key = env.api_key("bob", Tier::Pro).await;
    let admin_key = dispatcher::keys::create_key(
        &env.pool,
        &env.sealer(),
        "operators",
        Tier::Free,
        true,
        dispatcher::keys::TierChange::Refuse,
    )
    .await
    .unwrap()
    .key;
    let alices = submit(
        &dispatcher,
        &alice_key,
        json!({"kind": "probe", "metadata": {"note": "<script>alert(1)</script>"}}),
    )
    .await;
    let bobs = submit(&dispatcher, &bob_key, json!({"kind": "probe"})).await;

    let alice = log_in(&dispatcher, &alice_key).await;
    let (status, page) = get(&dispatcher, &alice, &format!("/ui/scans/{alices}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>alert(1)</script>"), "escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for path in [
        format!("/ui/scans/{bobs}"),
        "/ui/scans/not-a-uuid".to_string(),
    ] {
        assert_eq!(get(&dispatcher, &alice, &path).await.0, 404, "{path}");
    }
    let csrf = csrf_in(&page);
    assert_eq!(
        post(
            &dispatcher,
            &alice,
            &format!("/ui/scans/{bobs}/cancel"),
            &[("csrf", csrf.as_str())]
        )
        .await,
        404
    );
    let (_, list) = get(&dispatcher, &alice, "/ui/scans").await;
    assert!(list.contains(&alices) && !list.contains(&bobs));
    assert_eq!(
        get(&dispatcher, &alice, "/ui/scans?tenant=bob").await.0,
        403
    );
    assert_eq!(get(&dispatcher, &alice, "/ui/routing").await.0, 403);
    let (status, bad) = get(&dispatcher, &alice, "/ui/scans?status=exploded").await;
    assert_eq!(status, 400);
    assert!(bad.contains("status: unknown value"));

    let admin = log_in(&dispatcher, &admin_key).await;
    let (_, list) = get(&dispatcher, &admin, "/ui/scans").await;
    assert!(list.contains(&alices) && list.contains(&bobs));
    let (_, only_bob) = get(&dispatcher, &admin, "/ui/scans?tenant=bob").await;
    assert!(only_bob.contains(&bobs) && !only_bob.contains(&alices));
    assert_eq!(
        get(&dispatcher, &admin, &format!("/ui/scans/{bobs}"))
            .await
            .0,
        200
    );

    // Routing: a review page first, the change only on confirmation.
    let (status, routing) = get(&dispatcher, &admin, "/ui/routing").await;
    assert_eq!(status, 200);
    let csrf = csrf_in(&routing);
    let form = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("canary_percent", "12.5"),
    ];
    assert_eq!(post(&dispatcher, &admin, "/ui/routing", &form).await, 200);
    let mode: String = sqlx::query_scalar("SELECT mode FROM routing_policy")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(mode, "auto", "not changed before confirmation");
    let confirmed = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("canary_percent", "12.5"),
        ("confirm", "yes"),
    ];
    assert_eq!(
        post(&dispatcher, &admin, "/ui/routing", &confirmed).await,
        303
    );
    let (mode, canary_bp, by): (String, i32, String) =
        sqlx::query_as("SELECT mode, canary_bp, updated_by FROM routing_policy")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((mode.as_str(), canary_bp), ("gpu", 1250));
    let watermarks = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("high_watermark", "25"),
        // The value in force, sent back by the form: stays the deployment's.
        ("low_watermark", "3"),
        ("confirm", "yes"),
    ];
    assert_eq!(
        post(&dispatcher, &admin, "/ui/routing", &watermarks).await,
        303
    );
    let (high, low): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT high_watermark, low_watermark FROM routing_policy")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((high, low), (Some(25), None));
    let (_, routing) = get(&dispatcher, &admin, "/ui/routing").await;
    assert!(routing.contains("escalate above 25 waiting"), "{routing}");
    let reset = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("watermarks_from_config", "yes"),
        ("confirm", "yes"),
    ];
    assert_eq!(post(&dispatcher, &admin, "/ui/routing", &reset).await, 303);
    let high: Option<i64> = sqlx::query_scalar("SELECT high_watermark FROM routing_policy")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(high, None);
    let inverted = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("low_watermark", "50"),
        ("confirm", "yes"),
    ];
    assert_eq!(
        post(&dispatcher, &admin, "/ui/routing", &inverted).await,
        422
    );
    assert!(by.starts_with("console: tenant operators (key sf_"), "{by}");
    let bad = [
        ("csrf", csrf.as_str()),
        ("mode", "gpu"),
        ("canary_percent", "101"),
        ("confirm", "yes"),
    ];
    assert_eq!(post(&dispatcher, &admin, "/ui/routing", &bad).await, 400);

    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn escalations_are_recorded_with_their_reason_and_shown_on_the_overview() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let key = env.api_key("busy", Tier::Free).await;
    // Watermarks lowered at run time through the admin API (the deployment's
    // are 10/3); the monitor picks them up on its next sample.
    let admin_key = dispatcher::keys::create_key(
        &env.pool,
        &env.sealer(),
        "operators",
        Tier::Free,
        true,
        dispatcher::keys::TierChange::Refuse,
    )
    .await
    .unwrap()
    .key;
    let changed = reqwest::Client::new()
        .put(dispatcher.url("/v1/admin/routing"))
        .bearer_auth(&admin_key)
        .json(&json!({"mode": "auto", "high_watermark": 2, "low_watermark": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let view: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(view["watermarks"]["high_watermark"], 2);
    assert_eq!(view["watermarks"]["hold_seconds"], 30.0);
    assert_eq!(view["watermarks"]["from_config"], false);
    // No worker: the probes wait on the CPU queue.
    for _ in 0..3 {
        submit(&dispatcher, &key, json!({"kind": "probe"})).await;
    }
    let reason: String = wait_for("an escalation event", || async {
        sqlx::query_scalar("SELECT reason FROM escalation_events WHERE escalated")
            .fetch_optional(&env.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(reason, "CPU queue depth 3 above the high watermark 2");
    let cookie = log_in(&dispatcher, &key).await;
    let (status, overview) = get(&dispatcher, &cookie, "/ui").await;
    assert_eq!(status, 200);
    assert!(overview.contains(&reason), "the timeline lists the change");
    assert!(
        overview.contains(r#"data-escalated="true""#),
        "and draws it"
    );
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn the_scan_list_walks_an_index_in_order_at_scale() {
    let env = TestEnv::new().await;
    // One large tenant and one small one (0.5 % of the scans): the small
    // tenant's page must not walk the large tenant's rows.
    let tenants: Vec<uuid::Uuid> = (0..2).map(|_| uuid::Uuid::now_v7()).collect();
    for (i, id) in tenants.iter().enumerate() {
        sqlx::query("INSERT INTO tenants (id, name, tier) VALUES ($1, $2, 'free')")
            .bind(id)
            .bind(format!("t{i}"))
            .execute(&env.pool)
            .await
            .unwrap();
    }
    // 200k scans over 30 days; one in a hundred failed.
    sqlx::query(
        r#"INSERT INTO scans (id, tenant_id, kind, input, status, route, route_reason, created_at)
           SELECT gen_random_uuid(), CASE WHEN i % 200 = 1 THEN $2 ELSE $1 END, 'probe', '{}'::jsonb,
                  CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'succeeded' END, 'cpu', 'default',
                  now() - make_interval(secs => i * 12.96)
             FROM generate_series(1, 200000) i"#,
    )
    .bind(tenants[0])
    .bind(tenants[1])
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE scans")
        .execute(&env.pool)
        .await
        .unwrap();
    let cursor = Cursor {
        created_at: chrono::Utc::now() - chrono::Duration::days(10),
        id: uuid::Uuid::max(),
    };
    let cases = [
        (
            "admin, all scans",
            Filters::default(),
            None,
            "scans_console_recent",
        ),
        (
            "admin, deep page",
            Filters {
                after: Some(cursor),
                ..Default::default()
            },
            None,
            "scans_console_recent",
        ),
        (
            "a large tenant",
            Filters::default(),
            Some(tenants[0]),
            "Index Scan using scans_console_",
        ),
        (
            "a small tenant",
            Filters::default(),
            Some(tenants[1]),
            "scans_console_tenant_recent",
        ),
        (
            "a small tenant, deep page",
            Filters {
                after: Some(cursor),
                ..Default::default()
            },
            Some(tenants[1]),
            "scans_console_tenant_recent",
        ),
        (
            "failed scans",
            Filters {
                status: Some(ScanStatus::Failed),
                ..Default::default()
            },
            None,
            "scans_console_status_recent",
        ),
    ];
    for (what, filters, scope, index) in cases {
        let plan = scan_list::explain_page(&env.pool, &filters, scope)
            .await
            .unwrap();
        assert!(plan.contains(index), "{what}: expected {index}:\n{plan}");
        assert!(!plan.contains("Sort"), "{what}: no sort:\n{plan}");
        assert!(!plan.contains("Seq Scan on scans"), "{what}:\n{plan}");
        let page = scan_list::page(&env.pool, &filters, scope).await.unwrap();
        assert_eq!(page.rows.len(), 50, "{what}");
        assert!(page
            .rows
            .windows(2)
            .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id)));
    }
    // Walking pages visits each row once, in order.
    let filters = Filters {
        status: Some(ScanStatus::Failed),
        ..Default::default()
    };
    let first = scan_list::page(&env.pool, &filters, None).await.unwrap();
    let second = scan_list::page(
        &env.pool,
        &Filters {
            after: first.next,
            ..filters.clone()
        },
        None,
    )
    .await
    .unwrap();
    let last_of_first = first.rows.last().unwrap().cursor();
    assert!(second
        .rows
        .iter()
        .all(|r| (r.created_at, r.id) < (last_of_first.created_at, last_of_first.id)));
    env.cleanup().await;
}

#[tokio::test]
async fn the_viewer_draws_the_report_and_artifacts_are_served_to_their_tenant_only() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let alice_key = env.api_key("alice", Tier::Free).await;
    let bob_key = env.api_key("bob", Tier::Free).await;
    let scan_id = submit(&dispatcher, &alice_key, json!({"kind": "probe"})).await;
    let tenant_id: uuid::Uuid =
        sqlx::query_scalar("SELECT tenant_id FROM scans WHERE id = $1::uuid")
            .bind(&scan_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    // What a video_scan worker leaves: a golden frame and a defect mask in
    // the blob store, listed in the result.
    let frame = format!("artifacts/{tenant_id}/{scan_id}/golden_00003.jpg");
    let mask = format!("artifacts/{tenant_id}/{scan_id}/defect_mask.png");
    let blobs = protocol::blob::BlobStore::open(&env.blob_dir.to_string_lossy()).unwrap();
    blobs
        .put(&frame, bytes::Bytes::from_static(b"\xff\xd8jpeg"))
        .await
        .unwrap();
    let result = json!({
        "kind": "video_scan",
        "report": {
            "processed_size": [640, 360],
            "frame_stats": [
                {"index": 0, "sharpness": 10.0, "motion": 1.0},
                {"index": 3, "sharpness": 40.0, "motion": 0.1},
                {"index": 6, "sharpness": 20.0, "motion": 2.0},
            ],
            "golden_frames": [{"index": 3, "sharpness": 40.0, "motion": 0.1, "score": 1.0}],
            "item": {"frame": 3, "bbox": [10, 20, 110, 180],
                     "quad": [[10.0, 20.0], [110.0, 22.5], [108.0, 180.0], [9.0, 178.0]],
                     "size": [200, 280]},
            "defects": [{"kind": "scratch", "bbox": [0.1, 0.5, 0.3, 0.75], "length_px": 50.0,
                         "area_px": 90.0, "severity": 0.4, "location": null, "support": 1}],
        },
        "artifacts": {"golden_frames": [{"frame": 3, "path": frame}], "defect_mask": mask},
    });
    sqlx::query(
        "UPDATE scans SET status = 'succeeded', finished_at = now(), result = $2 WHERE id = $1::uuid",
    )
    .bind(&scan_id)
    .bind(&result)
    .execute(&env.pool)
    .await
    .unwrap();

    let alice = log_in(&dispatcher, &alice_key).await;
    let (_, page) = get(&dispatcher, &alice, &format!("/ui/scans/{scan_id}")).await;
    // The golden frame under its overlay, the defect mask under the boxes.
    assert!(page.contains(&format!(r#"href="/ui/scans/{scan_id}/artifacts/0""#)));
    assert!(page.contains(&format!(r#"href="/ui/scans/{scan_id}/artifacts/1""#)));
    assert!(page.contains("golden frame 3"));
    // The viewer draws the report's quad on its frame and the defect box on
    // the rectified item (200 × 280 px).
    assert!(
        page.contains(r#"points="10.0,20.0 110.0,22.5 108.0,180.0 9.0,178.0""#),
        "{page}"
    );
    assert!(page.contains(r#"x="20.0" y="140.0" width="40.0" height="70.0""#));
    let response = browser()
        .get(dispatcher.url(&format!("/ui/scans/{scan_id}/artifacts/0")))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(&response.bytes().await.unwrap()[..], b"\xff\xd8jpeg");
    // Listed but not in the store, not listed, not a number: 404.
    for index in ["1", "2", "x", "..%2F..%2Fetc%2Fpasswd"] {
        let path = format!("/ui/scans/{scan_id}/artifacts/{index}");
        assert_eq!(get(&dispatcher, &alice, &path).await.0, 404, "{path}");
    }
    let bob = log_in(&dispatcher, &bob_key).await;
    let path = format!("/ui/scans/{scan_id}/artifacts/0");
    assert_eq!(get(&dispatcher, &bob, &path).await.0, 404);
    assert_eq!(get(&dispatcher, "", &path).await.0, 303);
    dispatcher.stop().await;
    env.cleanup().await;
}

async fn scan_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM scans")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// Marks a scan finished with `result`, as a worker on `backend` would.
async fn finish(env: &TestEnv, scan_id: &str, backend: &str, result: serde_json::Value) {
    sqlx::query(
        "UPDATE scans SET status = 'succeeded', backend = $2, worker = 'w-' || $2, result = $3,
                started_at = created_at + interval '50 ms', finished_at = created_at + interval '850 ms'
          WHERE id = $1::uuid",
    )
    .bind(scan_id)
    .bind(backend)
    .bind(result)
    .execute(&env.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn compare_routes_reruns_on_the_other_route_uncached_and_shows_the_differences() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let key = env.api_key("acme", Tier::Free).await;
    let other_key = env.api_key("globex", Tier::Free).await;
    let first = submit(
        &dispatcher,
        &key,
        json!({"kind": "probe", "params": {"hold_ms": 5}}),
    )
    .await;
    finish(
        &env,
        &first,
        "cpu-ndarray",
        json!({"kind": "probe", "backend": "cpu-ndarray", "echo": {"hold_ms": 5}, "score": 8.5, "total_ms": 900}),
    )
    .await;

    let session = log_in(&dispatcher, &key).await;
    let (_, page) = get(&dispatcher, &session, &format!("/ui/scans/{first}")).await;
    assert!(page.contains("Compare on GPU"), "a CPU scan offers the GPU");
    let csrf = csrf_in(&page);
    let nonce = "0123456789abcdef0123456789abcdef";
    let compare = |form: Vec<(&'static str, String)>| {
        let (dispatcher, session, first) = (&dispatcher, session.clone(), first.clone());
        async move {
            browser()
                .post(dispatcher.url(&format!("/ui/scans/{first}/compare")))
                .header(COOKIE, session)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    // Without the CSRF token nothing is submitted.
    let refused = compare(vec![("nonce", nonce.into())]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(scan_count(&env).await, 1);

    let response = compare(vec![("csrf", csrf.clone()), ("nonce", nonce.into())]).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    let prefix = format!("/ui/scans/{first}/compare/");
    assert!(location.starts_with(&prefix), "{location}");
    let second = location[prefix.len()..].to_string();
    // A double click is the same comparison, not a third scan.
    let again = compare(vec![("csrf", csrf), ("nonce", nonce.into())]).await;
    assert_eq!(again.headers()[LOCATION].to_str().unwrap(), location);
    assert_eq!(scan_count(&env).await, 2);

    // The new scan went to the GPU queue, whatever the policy (auto: a free
    // tenant with no backlog goes to CPU), and its message asks the worker
    // to compute, not to serve the cached result of the first.
    let (route, reason, input): (String, String, serde_json::Value) =
        sqlx::query_as("SELECT route, route_reason, input FROM scans WHERE id = $1::uuid")
            .bind(&second)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((route.as_str(), reason.as_str()), ("gpu", "compare"));
    assert_eq!(input["params"], json!({"hold_ms": 5}));
    let message: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE scan_id = $1::uuid")
            .bind(&second)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(message["recompute"], true);
    assert_eq!(message["route"], "gpu");
    let first_message: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE scan_id = $1::uuid")
            .bind(&first)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(first_message.get("recompute").is_none(), "{first_message}");

    // Before the second finishes the page says so; after, it shows both.
    let (status, page) = get(&dispatcher, &session, &location).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"data-done="false""#));
    finish(
        &env,
        &second,
        "cuda",
        json!({"kind": "probe", "backend": "cuda", "echo": {"hold_ms": 5}, "score": 8.25, "total_ms": 300}),
    )
    .await;
    let (_, page) = get(&dispatcher, &session, &location).await;
    assert!(page.contains(r#"data-done="true""#), "{page}");
    assert!(page.contains("1 result field(s) differ"), "{page}");
    assert!(
        page.contains(r#"<tr class="differs" data-path="score">"#),
        "{page}"
    );
    assert!(page.contains("-0.25"), "the score's difference: {page}");
    assert!(
        page.contains(r#"<tr data-path="total_ms">"#),
        "timings are not findings: {page}"
    );
    assert!(page.contains("gpu (compare)") && page.contains("cpu (default)"));
    // Both scan pages link the comparison.
    for scan in [&first, &second] {
        let (_, page) = get(&dispatcher, &session, &format!("/ui/scans/{scan}")).await;
        assert!(
            page.contains(&format!(r#"href="{location}""#)),
            "{scan}: {page}"
        );
    }

    // Another tenant sees neither the comparison nor the action.
    let stranger = log_in(&dispatcher, &other_key).await;
    let (status, _) = get(&dispatcher, &stranger, &location).await;
    assert_eq!(status, 404);
    let (_, page) = get(&dispatcher, &stranger, "/ui/scans").await;
    let status = post(
        &dispatcher,
        &stranger,
        &format!("/ui/scans/{first}/compare"),
        &[("csrf", &csrf_in(&page)), ("nonce", nonce)],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(scan_count(&env).await, 2);

    dispatcher.stop().await;
    env.cleanup().await;
}
