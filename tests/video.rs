//! `video_scan` through the fleet: real (synthetic) videos, uploads and
//! source URLs, artifacts in the blob store, bad input failing with a code.

use harness::{Api, Dispatcher, TestEnv, Worker};
use protocol::Tier;
use serde_json::{json, Value};
use worker::config::QueueChoice;

/// A short rendered scan (720p, 8 frames, one motion-blurred): its bytes.
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

/// Serves `files` (path → bytes) on 127.0.0.1, `/moved.avi` redirecting
/// to `/scan.avi`, `/stalled.avi` that never answers, and `/trickle.avi`
/// that sends a byte every 100 ms for ever; anything else is a 404.
async fn file_server(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let mut app = axum::Router::new()
        .route(
            "/moved.avi",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/scan.avi") }),
        )
        .route(
            "/trickle.avi",
            axum::routing::get(|| async {
                let bytes = futures::stream::unfold((), |()| async {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"R")),
                        (),
                    ))
                });
                axum::body::Body::from_stream(bytes)
            }),
        )
        .route(
            "/stalled.avi",
            axum::routing::get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                "too late"
            }),
        );
    for (path, bytes) in files {
        app = app.route(
            path,
            axum::routing::get(move || async move { bytes.clone() }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_scan_is_graded_with_artifacts_from_an_upload_and_from_a_url() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_upload_bytes = 64 * 1024 * 1024;
    let dispatcher = Dispatcher::start(config).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("grader", Tier::Free).await,
    );
    let video = small_scan_video();
    let server = file_server(vec![("/scan.avi", video.clone())]).await;

    let uploaded = api.submit(json!({"kind": "video_scan", "upload_id": api.upload(video).await, "item_type": "trading_card"})).await;
    let fetched = api
        .submit(json!({"kind": "video_scan", "source_url": format!("{server}/scan.avi")}))
        .await;
    for scan_id in [&uploaded, &fetched] {
        let scan = api.finished(&env, scan_id).await;
        assert_eq!(scan["status"], "succeeded", "{scan}");
        let result = &scan["result"];
        assert_eq!(result["kind"], "video_scan");
        assert_eq!(result["backend"], "cpu-ndarray");
        assert_eq!(result["report"]["frames_decoded"], 8);
        let golden_indices: Vec<_> = result["report"]["golden_frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["index"].as_u64().unwrap())
            .collect();
        assert!(
            !golden_indices.contains(&3),
            "never a blurred golden frame: {golden_indices:?}"
        );
        assert!(
            result["report"]["timings_ms"].as_array().unwrap().len() >= 3,
            "per-stage timings"
        );
        assert!(result["cost_usd"].as_f64().unwrap() > 0.0);
        let grade = result["summary"]["grade"]
            .as_f64()
            .expect("the card is found and graded");
        assert!((1.0..=10.0).contains(&grade));
        // Artifacts are real images in the blob store.
        let mask = std::fs::read(
            env.blob_dir
                .join(result["artifacts"]["defect_mask"].as_str().unwrap()),
        )
        .unwrap();
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
    assert_eq!(
        a["result"]["report"]["scores"],
        b["result"]["report"]["scores"]
    );
    let metrics = reqwest::get(format!("{}/metrics", worker.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("scanfleet_worker_stage_seconds_count{kind=\"video_scan\""),
        "stage histograms exported"
    );

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_video_input_fails_at_once_with_a_code() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("careless", Tier::Free).await,
    );
    let video = small_scan_video();
    let png = one_pixel_png();
    let server = file_server(vec![("/scan.avi", video.clone())]).await;

    let cases: Vec<(&str, Value)> = vec![
        (
            "text file",
            json!({"kind": "video_scan", "upload_id": api.upload(b"this is not a video at all".to_vec()).await}),
        ),
        (
            "an image",
            json!({"kind": "video_scan", "upload_id": api.upload(png).await}),
        ),
        (
            "truncated video",
            json!({"kind": "video_scan", "upload_id": api.upload(video[..video.len() / 3].to_vec()).await}),
        ),
        (
            "missing source",
            json!({"kind": "video_scan", "source_url": format!("{server}/nothing-here.avi")}),
        ),
        (
            "redirecting source",
            json!({"kind": "video_scan", "source_url": format!("{server}/moved.avi")}),
        ),
    ];
    for (what, body) in cases {
        let scan_id = api.submit(body).await;
        let scan = api.finished(&env, &scan_id).await;
        assert_eq!(scan["status"], "failed", "{what}: {scan}");
        assert_eq!(scan["attempts"], 1, "{what}: bad input is not retried");
        let code = scan["error"]["code"].as_str().unwrap();
        let expected: &[&str] = match what {
            "truncated video" => &["input_truncated", "input_not_video", "input_empty"],
            "missing source" => &["source_unavailable"],
            "redirecting source" => &["source_redirected"],
            _ => &["input_not_video"],
        };
        assert!(expected.contains(&code), "{what}: got {code}");
        assert!(!scan["error"]["message"].as_str().unwrap().is_empty());
    }
    // Private and metadata addresses are refused at submit, before anything
    // is stored or queued (the worker checks again when it fetches).
    for url in [
        "http://10.0.0.1/scan.avi",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let response = api
            .post("/v1/scans")
            .json(&json!({"kind": "video_scan", "source_url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "source_url_refused", "{url}: {problem}");
    }
    // The worker is still serving after all that.
    let ok = api.submit(json!({"kind": "probe"})).await;
    assert_eq!(api.finished(&env, &ok).await["status"], "succeeded");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_answers_times_out_and_fails_after_its_retries() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let mut config = env.worker_config(QueueChoice::Cpu, "cpu-1");
    config.download_timeout = std::time::Duration::from_millis(300);
    let worker = Worker::start(config).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("patient", Tier::Free).await,
    );
    let server = file_server(Vec::new()).await;

    let scan_id = api
        .submit(json!({"kind": "video_scan", "source_url": format!("{server}/stalled.avi")}))
        .await;
    let scan = api.finished(&env, &scan_id).await;
    // A timeout may be the network's fault, so it is retried, but only up to
    // the delivery limit: the scan ends failed, never stuck.
    assert_eq!(scan["status"], "failed", "{scan}");
    assert_eq!(scan["error"]["code"], "retries_exhausted");
    assert!(
        scan["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{scan}"
    );
    assert_eq!(
        scan["attempts"].as_i64().unwrap(),
        env.service_config().delivery_limit as i64
    );

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// A scan that cannot finish (here a source trickling a byte at a time,
/// each within every network timeout) fails at the worker's time limit with
/// its own code, on its first delivery, and frees its slot: the one-slot
/// worker goes on to the next scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_never_finishes_fails_at_its_time_limit_and_frees_its_slot() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let mut config = env.worker_config(QueueChoice::Cpu, "cpu-1");
    config.max_concurrent_jobs = 1;
    config.download_timeout = std::time::Duration::from_secs(600);
    config.scan_time_limit = std::time::Duration::from_secs(2);
    let worker = Worker::start(config).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("trickled", Tier::Free).await,
    );
    let server = file_server(Vec::new()).await;

    let stuck = api
        .submit(json!({"kind": "video_scan", "source_url": format!("{server}/trickle.avi")}))
        .await;
    let next = api.submit(json!({"kind": "probe"})).await;
    let scan = api.finished(&env, &stuck).await;
    assert_eq!(scan["status"], "failed", "{scan}");
    assert_eq!(scan["error"]["code"], "time_limit_exceeded", "{scan}");
    assert!(
        scan["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SCAN_TIME_LIMIT of 2s"),
        "{scan}"
    );
    assert_eq!(
        scan["attempts"], 1,
        "a scan over its limit is not retried: {scan}"
    );
    assert_eq!(api.finished(&env, &next).await["status"], "succeeded");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// The result cache (seed 003): the same bytes with the same parameters are
/// answered from the first scan's result, from memory on the worker that
/// computed it and from Postgres on any other; other parameters or another
/// tenant compute again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_scan_is_served_from_the_result_cache_and_new_parameters_recompute() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_upload_bytes = 64 * 1024 * 1024;
    let dispatcher = Dispatcher::start(config).await;
    let first_worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("repeat-customer", Tier::Free).await,
    );
    let video = small_scan_video();
    let scan_of = |upload_id: String, params: Value| json!({"kind": "video_scan", "upload_id": upload_id, "params": params});

    let original = api
        .submit(scan_of(api.upload(video.clone()).await, json!({})))
        .await;
    let original_result = api.finished(&env, &original).await["result"].clone();
    assert!(original_result.get("cached").is_none(), "{original_result}");
    // A new upload of the same bytes: the key is the content, not the upload.
    let repeat = api
        .submit(scan_of(api.upload(video.clone()).await, json!({})))
        .await;
    let repeat_result = api.finished(&env, &repeat).await["result"].clone();
    assert_eq!(repeat_result["cached"], true, "{repeat_result}");
    assert_eq!(repeat_result["cached_from"], original);
    assert_eq!(repeat_result["report"], original_result["report"]);
    assert_eq!(repeat_result["artifacts"], original_result["artifacts"]);
    // Other parameters: computed again.
    let smaller = api
        .submit(scan_of(
            api.upload(video.clone()).await,
            json!({"downscale_max": 640}),
        ))
        .await;
    let smaller_result = api.finished(&env, &smaller).await["result"].clone();
    assert!(smaller_result.get("cached").is_none(), "{smaller_result}");
    assert_eq!(smaller_result["report"]["frames_decoded"], 8);

    let metrics_of = |worker: &Worker| {
        let url = format!("{}/metrics", worker.metrics_url);
        async move { harness::parse_metrics(&reqwest::get(url).await.unwrap().text().await.unwrap()) }
    };
    let counted = metrics_of(&first_worker).await;
    assert_eq!(
        counted["scanfleet_worker_result_cache_lookups_total{kind=video_scan,outcome=miss}"],
        2.0
    );
    assert_eq!(
        counted["scanfleet_worker_result_cache_lookups_total{kind=video_scan,outcome=memory}"],
        1.0
    );
    // The pipeline ran twice, not three times.
    assert_eq!(
        counted["scanfleet_worker_stage_seconds_count{kind=video_scan,stage=decode}"],
        2.0
    );
    first_worker.stop().await;

    // A fresh worker has an empty memory: Postgres answers.
    let second_worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-2")).await;
    let later = api
        .submit(scan_of(api.upload(video.clone()).await, json!({})))
        .await;
    let later_result = api.finished(&env, &later).await["result"].clone();
    assert_eq!(
        later_result["cached_from"], original,
        "the original, not the repeat: {later_result}"
    );
    // Another tenant never gets this tenant's result.
    let other_api = Api::new(
        &dispatcher.base_url,
        &env.api_key("someone-else", Tier::Free).await,
    );
    let other = other_api
        .submit(scan_of(other_api.upload(video).await, json!({})))
        .await;
    let other_result = other_api.finished(&env, &other).await["result"].clone();
    assert!(other_result.get("cached").is_none(), "{other_result}");
    let counted = metrics_of(&second_worker).await;
    assert_eq!(
        counted["scanfleet_worker_result_cache_lookups_total{kind=video_scan,outcome=database}"],
        1.0
    );
    assert_eq!(
        counted["scanfleet_worker_result_cache_lookups_total{kind=video_scan,outcome=miss}"],
        1.0
    );

    second_worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}

/// Peak resident memory (KiB) of `worker analyze VIDEO`, measured by the
/// kernel for that one child process.
fn analyze_peak_rss_kib(video: &std::path::Path, frames: u64) -> u64 {
    let script = r#"
import json, resource, subprocess, sys
worker, video = json.loads(sys.stdin.read())
run = subprocess.run([worker, "analyze", video, "--backend", "cpu", "--json"], capture_output=True, text=True)
if run.returncode != 0:
    sys.exit(f"worker analyze failed: {run.stderr}")
report = json.loads(run.stdout)
print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, report["frames_decoded"]]))
"#;
    let args = serde_json::to_vec(&json!([harness::worker_binary(), video])).unwrap();
    let (peak_kib, decoded): (u64, u64) =
        serde_json::from_slice(&harness::python(script, &args)).unwrap();
    assert_eq!(decoded, frames, "every frame decoded");
    peak_kib
}

/// Frames are streamed in batches, so a video ten times longer needs no more
/// memory: holding every frame of the long one would take 240 × 480 × 270 ×
/// (3 bytes BGR + 4 bytes f32) ≈ 210 MiB more.
#[test]
fn memory_stays_bounded_on_a_long_video() {
    let dir = tempfile::tempdir().unwrap();
    let peak_for = |frames: u32| {
        let out = dir.path().join(format!("frames-{frames}"));
        let spec = vision::synth::SynthSpec {
            frames,
            width: 480,
            height: 270,
            ..Default::default()
        };
        analyze_peak_rss_kib(
            &vision::synth::generate(&spec, &out).unwrap().video,
            frames.into(),
        )
    };
    let short = peak_for(24);
    let long = peak_for(240);
    println!("peak RSS of worker analyze: {short} KiB for 24 frames, {long} KiB for 240 frames");
    assert!(
        long < short + 64 * 1024,
        "peak RSS grew from {short} KiB (24 frames) to {long} KiB (240 frames): frames are being held"
    );
}

/// A valid 1×1 grey PNG, written out so the test needs no image library.
fn one_pixel_png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a,
        0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x68,
        0x00, 0x00, 0x00, 0x82, 0x00, 0x81, 0x77, 0xcd, 0x72, 0xb6, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}

/// Cards drawn by the independent renderer (`bench/vision/eval/video`, which
/// shares no code or constants with `vision`), one per border × print look
/// on plain backgrounds (development seeds 0–7): white, black, coloured and
/// grey borders around light and dark prints. Each must be found, with the
/// reported outline on the true one (polygon IoU ≥ 0.85, as the evaluation
/// scores it); this is the "white-bordered card made by another tool gives
/// no item found" case of issue 28, kept from coming back.
#[test]
fn cards_rendered_by_another_tool_are_found_in_every_border_and_print_look() {
    let scripts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/vision/eval/video");
    let dir = tempfile::tempdir().unwrap();
    let python = harness::venv_bin("python");
    let run = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(&python)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} not runnable ({e}); scripts/test installs the venv",
                    python.display()
                )
            });
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        scripts.join("render_video.py").as_os_str(),
        dir.path().as_os_str(),
        "--seeds".as_ref(),
        "0-7".as_ref(),
        "--frames".as_ref(),
        "30".as_ref(),
    ]);
    let report = dir.path().join("report.json");
    run(&[
        scripts.join("eval_video.py").as_os_str(),
        dir.path().as_os_str(),
        "--worker".as_ref(),
        harness::worker_binary().as_os_str(),
        "--json".as_ref(),
        report.as_os_str(),
    ]);
    let videos: Vec<Value> = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(videos.len(), 8);
    let missed: Vec<String> = videos
        .iter()
        .filter(|v| v["found"] != json!(true))
        .map(|v| format!("seed {} {} (IoU {})", v["seed"], v["look"], v["quad_iou"]))
        .collect();
    assert!(missed.is_empty(), "not found: {missed:?}");
}
