//! `video_scan` through the fleet: real (synthetic) videos, uploads and
//! source URLs, artifacts in the blob store, bad input failing with a code.

use harness::{wait_for, Api, Dispatcher, TestEnv, Worker};
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

/// A short rendered scan (720p, 8 frames, one motion-blurred): its bytes.
fn small_scan_video() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let spec = vision::synth::SynthSpec { frames: 8, blurred_frames: vec![3], ..Default::default() };
    let truth = vision::synth::generate(&spec, dir.path()).unwrap();
    std::fs::read(truth.video).unwrap()
}

/// Serves `files` (path → bytes) on 127.0.0.1, and `/moved.avi` redirecting
/// to `/scan.avi`; anything else is a 404.
async fn file_server(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let mut app = axum::Router::new().route(
        "/moved.avi",
        axum::routing::get(|| async { axum::response::Redirect::temporary("/scan.avi") }),
    );
    for (path, bytes) in files {
        app = app.route(path, axum::routing::get(move || async move { bytes.clone() }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn upload(api: &Api, bytes: Vec<u8>) -> String {
    let response = api.post("/v1/uploads").body(bytes).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let upload: Value = response.json().await.unwrap();
    upload["id"].as_str().unwrap().to_string()
}

async fn finished(env: &TestEnv, api: &Api, scan_id: &str) -> Value {
    wait_for(&format!("scan {scan_id} to finish"), || async {
        matches!(env.scan_status(scan_id).await.as_str(), "succeeded" | "failed").then_some(())
    })
    .await;
    api.scan(scan_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_scan_is_graded_with_artifacts_from_an_upload_and_from_a_url() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_upload_bytes = 64 * 1024 * 1024;
    let dispatcher = Dispatcher::start(config).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("grader", Tier::Free).await);
    let video = small_scan_video();
    let server = file_server(vec![("/scan.avi", video.clone())]).await;

    let uploaded = api.submit(json!({"kind": "video_scan", "upload_id": upload(&api, video).await, "item_type": "trading_card"})).await;
    let fetched = api.submit(json!({"kind": "video_scan", "source_url": format!("{server}/scan.avi")})).await;
    for scan_id in [&uploaded, &fetched] {
        let scan = finished(&env, &api, scan_id).await;
        assert_eq!(scan["status"], "succeeded", "{scan}");
        let result = &scan["result"];
        assert_eq!(result["kind"], "video_scan");
        assert_eq!(result["backend"], "cpu-ndarray");
        assert_eq!(result["report"]["frames_decoded"], 8);
        let golden_indices: Vec<_> = result["report"]["golden_frames"].as_array().unwrap().iter().map(|g| g["index"].as_u64().unwrap()).collect();
        assert!(!golden_indices.contains(&3), "never a blurred golden frame: {golden_indices:?}");
        assert!(result["report"]["timings_ms"].as_array().unwrap().len() >= 3, "per-stage timings");
        assert!(result["cost_usd"].as_f64().unwrap() > 0.0);
        let grade = result["summary"]["grade"].as_f64().expect("the card is found and graded");
        assert!((1.0..=10.0).contains(&grade));
        // Artifacts are real images in the blob store.
        let mask = std::fs::read(env.blob_dir.join(result["artifacts"]["defect_mask"].as_str().unwrap())).unwrap();
        assert_eq!(&mask[..8], b"\x89PNG\r\n\x1a\n");
        let golden = result["artifacts"]["golden_frames"].as_array().unwrap();
        assert!(!golden.is_empty());
        for frame in golden {
            let jpeg = std::fs::read(env.blob_dir.join(frame["path"].as_str().unwrap())).unwrap();
            assert_eq!(&jpeg[..2], b"\xff\xd8");
        }
    }
    // Same video, same pipeline: the same grade whichever way it came.
    let (a, b) = (api.scan(&uploaded).await, api.scan(&fetched).await);
    assert_eq!(a["result"]["report"]["scores"], b["result"]["report"]["scores"]);
    let metrics = reqwest::get(format!("{}/metrics", worker.metrics_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("scanfleet_worker_stage_seconds_count{kind=\"video_scan\""), "stage histograms exported");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_video_input_fails_at_once_with_a_code() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(&dispatcher.base_url, &env.api_key("careless", Tier::Free).await);
    let video = small_scan_video();
    let png = one_pixel_png();
    let server = file_server(vec![("/scan.avi", video.clone())]).await;

    let cases: Vec<(&str, Value)> = vec![
        ("text file", json!({"kind": "video_scan", "upload_id": upload(&api, b"this is not a video at all".to_vec()).await})),
        ("an image", json!({"kind": "video_scan", "upload_id": upload(&api, png).await})),
        ("truncated video", json!({"kind": "video_scan", "upload_id": upload(&api, video[..video.len() / 3].to_vec()).await})),
        ("missing source", json!({"kind": "video_scan", "source_url": format!("{server}/nothing-here.avi")})),
        ("redirecting source", json!({"kind": "video_scan", "source_url": format!("{server}/moved.avi")})),
        ("private source", json!({"kind": "video_scan", "source_url": "http://10.0.0.1/scan.avi"})),
        ("metadata source", json!({"kind": "video_scan", "source_url": "http://169.254.169.254/latest/meta-data"})),
    ];
    for (what, body) in cases {
        let scan_id = api.submit(body).await;
        let scan = finished(&env, &api, &scan_id).await;
        assert_eq!(scan["status"], "failed", "{what}: {scan}");
        assert_eq!(scan["attempts"], 1, "{what}: bad input is not retried");
        let code = scan["error"]["code"].as_str().unwrap();
        let expected: &[&str] = match what {
            "truncated video" => &["input_truncated", "input_not_video", "input_empty"],
            "missing source" => &["source_unavailable"],
            "redirecting source" => &["source_redirected"],
            "private source" | "metadata source" => &["source_refused"],
            _ => &["input_not_video"],
        };
        assert!(expected.contains(&code), "{what}: got {code}");
        assert!(!scan["error"]["message"].as_str().unwrap().is_empty());
    }
    // The worker is still serving after all that.
    let ok = api.submit(json!({"kind": "probe"})).await;
    assert_eq!(finished(&env, &api, &ok).await["status"], "succeeded");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// A valid 1×1 grey PNG, written out so the test needs no image library.
fn one_pixel_png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41,
        0x54, 0x78, 0x9c, 0x63, 0x68, 0x00, 0x00, 0x00, 0x82, 0x00, 0x81, 0x77, 0xcd, 0x72, 0xb6, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}
