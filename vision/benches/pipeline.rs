//! Burn pipeline vs OpenCV on the same frames, in the same run (DESIGN.md:
//! benchmarks print ratios against the peer measured in the same run): on
//! NdArray, and on CUDA too when built with `--features cuda` on a GPU host.
//!
//! `cargo bench -p scanfleet-vision --bench pipeline` (release) or, reusing the
//! dev build, `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench -p scanfleet-vision --bench pipeline --profile dev`.
//! Env: `BENCH_FRAMES` (default 32) frames of vtest.avi (`BENCH_VTEST`: another
//! path to it); `BENCH_SYNTH_FRAMES` (default 24) of a 720p synthetic scan;
//! `BENCH_THREADS` (default: all cores) threads for both sides.
//!
//! Like for like: both sides are warmed on the first frames before timing;
//! both run on the same number of threads (rayon's global pool for burn's
//! host ops and NdArray, `cv::setNumThreads` for OpenCV), printed; the
//! Laplacian goes into f32 on both sides; flow is timed per pair on both
//! sides (each pair's polynomial expansion computed afresh, as OpenCV does),
//! and the pipeline's sequence flow, which reuses each frame's expansion for
//! the next pair, is its own row. The whole-file row decodes all of
//! vtest.avi on both sides and does the complete per-frame work of
//! `video_scan` (decode, gray, sharpness, edge density, flow).
//!
//! Ratio = OpenCV time / burn time: ≥ 1.0 means burn is at least as fast.

use std::time::Instant;

use burn_tensor::Tensor;
use opencv::{
    core::{self, Mat, Point, Size},
    imgproc,
    prelude::*,
    video, videoio,
};
use vision::{
    canny,
    flow::{farneback_sequence, mean_magnitude, FarnebackParams},
    frames::{stack_bgr, stack_gray_from_bgr, to_vec_f32},
    primitives::{
        bgr_to_gray, close, laplacian_variance, resize, round_levels, Interpolation, MorphShape,
    },
    synth::{self, SynthSpec},
    Cpu, ScanBackend, ScanOptions,
};

fn decode(path: &str, n: usize) -> Vec<Mat> {
    let mut cap = videoio::VideoCapture::from_file(path, videoio::CAP_ANY).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let mut m = Mat::default();
        if !cap.read(&mut m).unwrap() || m.empty() {
            break;
        }
        out.push(m);
    }
    out
}

/// Frames per batch on the burn side.
const BATCH: usize = 8;

/// The per-frame stages, in the order both sides time them.
const STAGES: [&str; 5] = [
    "gray",
    "sharpness (laplacian var)",
    "canny 15/60",
    "close 5x5",
    "farneback per pair",
];

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The size flow is computed at, as the pipeline picks it.
fn flow_size(w: usize, h: usize) -> (usize, usize) {
    fit(w, h, ScanOptions::default().flow_max_side)
}

/// What one backend measured: ms per frame for each of [`STAGES`], ms per
/// frame of the pipeline's sequence flow, and a checksum of the results (so
/// nothing is optimised away).
type BurnTimes = ([f64; 5], f64, f64);

/// The burn pipeline's stages on `B`, batch by batch. Each stage reads its
/// result back, which also waits for a GPU to finish.
fn burn_stages<B: ScanBackend>(frames: &[Mat], device: &B::Device) -> BurnTimes {
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let mut total = [0.0; 5];
    let mut checksum = 0.0f64;
    let mut sequence_ms = 0.0;
    let mut prev: Option<Tensor<B, 4>> = None;
    for chunk in frames.chunks(BATCH) {
        let t = Instant::now();
        // What the pipeline runs: decoded BGR frames to gray tensors.
        let gray = stack_gray_from_bgr::<B>(chunk, device).unwrap();
        checksum += to_vec_f32(gray.clone().slice([0..1, 0..1, 0..1, 0..1]))[0] as f64;
        total[0] += ms(t);
        let t = Instant::now();
        checksum += to_vec_f32(laplacian_variance(gray.clone()))
            .iter()
            .sum::<f32>() as f64;
        total[1] += ms(t);
        let t = Instant::now();
        let edges = canny::canny(gray.clone(), canny::LOW, canny::HIGH);
        checksum += to_vec_f32(edges.clone().mean()).iter().sum::<f32>() as f64;
        total[2] += ms(t);
        let t = Instant::now();
        checksum += to_vec_f32(close(edges, MorphShape::Rect, 5, 5).mean())[0] as f64;
        total[3] += ms(t);
        let t = Instant::now();
        let small = round_levels(resize(gray, fw, fh, Interpolation::Area));
        let k = chunk.len();
        // Per pair, as OpenCV computes it: each pair's two expansions afresh.
        let mut pair_prev = prev.clone();
        for j in 0..k {
            let cur = small.clone().narrow(0, j, 1);
            if let Some(p) = pair_prev.take() {
                let pair = Tensor::cat(vec![p, cur.clone()], 0);
                checksum += to_vec_f32(mean_magnitude(farneback_sequence(
                    pair,
                    &FarnebackParams::default(),
                )))[0] as f64;
            }
            pair_prev = Some(cur);
        }
        total[4] += ms(t);
        let t = Instant::now();
        // As the pipeline does: the batch with its predecessor, each frame's
        // expansion reused by the two pairs it belongs to.
        let seq = match prev.take() {
            Some(p) => Tensor::cat(vec![p, small.clone()], 0),
            None => small.clone(),
        };
        if seq.dims()[0] > 1 {
            checksum += to_vec_f32(mean_magnitude(farneback_sequence(
                seq,
                &FarnebackParams::default(),
            )))
            .iter()
            .sum::<f32>() as f64;
        }
        prev = Some(small.narrow(0, k - 1, 1));
        sequence_ms += ms(t);
    }
    let per_frame = |t: f64| t / frames.len() as f64;
    (total.map(per_frame), per_frame(sequence_ms), checksum)
}

/// OpenCV's sharpness as the pipeline defines it: the Laplacian (into f32,
/// as ours) and its standard deviation (the variance's square root).
fn opencv_sharpness(g: &Mat) -> f64 {
    let mut lap = Mat::default();
    imgproc::laplacian(g, &mut lap, core::CV_32F, 1, 1.0, 0.0, core::BORDER_DEFAULT).unwrap();
    let (mut mean, mut sd) = (Mat::default(), Mat::default());
    core::mean_std_dev(&lap, &mut mean, &mut sd, &core::no_array()).unwrap();
    *sd.at::<f64>(0).unwrap()
}

/// OpenCV's area-averaging resize, as the pipeline downscales.
fn opencv_resize(g: &Mat, w: usize, h: usize) -> Mat {
    let mut out = Mat::default();
    imgproc::resize(
        g,
        &mut out,
        Size::new(w as i32, h as i32),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )
    .unwrap();
    out
}

/// OpenCV's Farneback flow from `prev` to `next` with DESIGN.md's parameters.
fn opencv_flow(prev: &Mat, next: &Mat) -> Mat {
    let mut flow = Mat::default();
    video::calc_optical_flow_farneback(prev, next, &mut flow, 0.5, 3, 15, 3, 5, 1.2, 0).unwrap();
    flow
}

/// OpenCV's Canny edge map with the pipeline's thresholds.
fn opencv_edges(g: &Mat, low: f32, high: f32) -> Mat {
    let mut e = Mat::default();
    imgproc::canny(g, &mut e, low as f64, high as f64, 3, false).unwrap();
    e
}

/// OpenCV's own functions doing the same work on the same frames: ms per frame for each of [`STAGES`].
fn opencv_stages(frames: &[Mat]) -> [f64; 5] {
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let mut total = [0.0; 5];
    let mut prev_small: Option<Mat> = None;
    let kernel =
        imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(5, 5), Point::new(-1, -1))
            .unwrap();
    for f in frames {
        let t = Instant::now();
        let mut g = Mat::default();
        imgproc::cvt_color_def(f, &mut g, imgproc::COLOR_BGR2GRAY).unwrap();
        total[0] += ms(t);
        let t = Instant::now();
        opencv_sharpness(&g);
        total[1] += ms(t);
        let t = Instant::now();
        let e = opencv_edges(&g, canny::LOW, canny::HIGH);
        // Edge density, as the burn side reads back its mean.
        let _ = core::count_non_zero(&e).unwrap();
        total[2] += ms(t);
        let t = Instant::now();
        let mut c = Mat::default();
        imgproc::morphology_ex(
            &e,
            &mut c,
            imgproc::MORPH_CLOSE,
            &kernel,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value().unwrap(),
        )
        .unwrap();
        total[3] += ms(t);
        let t = Instant::now();
        let s = opencv_resize(&g, fw, fh);
        if let Some(p) = prev_small.take() {
            opencv_flow(&p, &s);
        }
        prev_small = Some(s);
        total[4] += ms(t);
    }
    total.map(|t| t / frames.len() as f64)
}

/// The CUDA device when this build has CUDA and a GPU answers; says why not otherwise.
#[cfg(feature = "cuda")]
fn cuda_device() -> Option<burn_cuda::CudaDevice> {
    vision::backend::cuda_device()
        .map_err(|why| println!("CUDA: not run: {why}"))
        .ok()
}

/// ms per frame of the gray stage as it was before frames went up as gray
/// bytes: planar f32 BGR uploaded and converted on the device (12 bytes a
/// pixel instead of 1). After a warm-up pass, as `timed_burn`.
fn planar_bgr_gray_ms<B: ScanBackend>(frames: &[Mat], device: &B::Device) -> f64 {
    let run = |frames: &[Mat]| {
        let t = Instant::now();
        for chunk in frames.chunks(BATCH) {
            let gray = bgr_to_gray(stack_bgr::<B>(chunk, device).unwrap());
            to_vec_f32(gray.slice([0..1, 0..1, 0..1, 0..1]));
        }
        ms(t) / frames.len() as f64
    };
    run(&frames[..frames.len().min(16)]);
    run(frames)
}

/// `burn_stages` on `B` after a warm-up pass over the first two batches
/// (allocators; on a GPU, kernel compilation).
fn timed_burn<B: ScanBackend>(frames: &[Mat], device: &B::Device) -> BurnTimes {
    burn_stages::<B>(&frames[..frames.len().min(16)], device);
    burn_stages::<B>(frames, device)
}

/// `opencv_stages` after the same warm-up pass `timed_burn` gets.
fn timed_opencv(frames: &[Mat]) -> [f64; 5] {
    opencv_stages(&frames[..frames.len().min(16)]);
    opencv_stages(frames)
}

fn bench(name: &str, frames: &[Mat]) {
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let mut burn: Vec<(&str, BurnTimes)> = vec![];
    burn.push((
        "burn NdArray",
        timed_burn::<Cpu>(frames, &Default::default()),
    ));
    #[cfg(feature = "cuda")]
    if let Some(device) = cuda_device() {
        burn.push((
            "burn CUDA",
            timed_burn::<vision::backend::Cuda>(frames, &device),
        ));
        let before = planar_bgr_gray_ms::<vision::backend::Cuda>(frames, &device);
        println!("burn CUDA gray via planar f32 BGR upload (the path before gray bytes): {before:.2} ms/frame");
    }
    let cv = timed_opencv(frames);

    println!(
        "\n== {name}: {} frames {w}x{h}, flow at {fw}x{fh} ==",
        frames.len()
    );
    for (label, (_, _, checksum)) in &burn {
        println!("{label} checksum {checksum:.1}");
    }
    print!("{:<34}", "ms/frame");
    for (label, ..) in &burn {
        print!(" {:>14} {:>7}", label, "ratio");
    }
    println!(" {:>14}", "OpenCV");
    let totals = |v: &[f64; 5]| v.iter().sum::<f64>();
    let ct = totals(&cv);
    for (i, stage) in STAGES.iter().enumerate() {
        print!("{stage:<34}");
        for (_, (b, _, _)) in &burn {
            print!(" {:>14.2} {:>7.3}", b[i], cv[i] / b[i]);
        }
        println!(" {:>14.2}", cv[i]);
    }
    print!("{:<34}", "per-frame stages total");
    for (_, (b, _, _)) in &burn {
        print!(" {:>14.2} {:>7.3}", totals(b), ct / totals(b));
    }
    println!(" {:>14.2}", ct);
    print!("{:<34}", "frames/s");
    for (_, (b, _, _)) in &burn {
        print!(" {:>14.1} {:>7.3}", 1e3 / totals(b), ct / totals(b));
    }
    println!(" {:>14.1}", 1e3 / ct);
    print!("{:<34}", "farneback sequence (reuse; burn)");
    for (_, (b, seq, _)) in &burn {
        print!(" {:>14.2} {:>7}", seq, format!("{:.2}x", b[4] / seq));
    }
    println!(" {:>14}", "-");
    println!("ratio = OpenCV time / burn time (>= 1.0: burn at least as fast); the sequence row's");
    println!("factor is its speed-up over burn's own per-pair flow (different work from OpenCV's)");
}

/// OpenCV doing `video_scan`'s whole per-frame pass over a file: decode,
/// gray, resize to the processed size, Laplacian variance (f32), Canny edge
/// density, and Farneback flow between consecutive frames at flow size.
/// Returns (frames, ms).
fn opencv_whole_file(path: &str, opts: &ScanOptions) -> (usize, f64) {
    let t = Instant::now();
    let mut cap = videoio::VideoCapture::from_file(path, videoio::CAP_ANY).unwrap();
    let mut prev_small: Option<Mat> = None;
    let mut frames = 0;
    let mut checksum = 0.0;
    loop {
        let mut m = Mat::default();
        if !cap.read(&mut m).unwrap() || m.empty() {
            break;
        }
        frames += 1;
        let (w, h) = (m.cols() as usize, m.rows() as usize);
        let (pw, ph) = fit(w, h, opts.downscale_max);
        let (fw, fh) = fit(pw, ph, opts.flow_max_side);
        let mut g = Mat::default();
        imgproc::cvt_color_def(&m, &mut g, imgproc::COLOR_BGR2GRAY).unwrap();
        if (pw, ph) != (w, h) {
            g = opencv_resize(&g, pw, ph);
        }
        checksum += opencv_sharpness(&g);
        let e = opencv_edges(&g, opts.canny_low, opts.canny_high);
        checksum += core::count_non_zero(&e).unwrap() as f64;
        let s = opencv_resize(&g, fw, fh);
        if let Some(p) = prev_small.take() {
            let fl = opencv_flow(&p, &s);
            checksum += core::norm_def(&fl).unwrap();
        }
        prev_small = Some(s);
    }
    assert!(checksum.is_finite());
    (frames, ms(t))
}

/// The size a frame is processed at: the long side fitted to `max_side`, as the pipeline does.
fn fit(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (
        (w as f64 * s).round() as usize,
        (h as f64 * s).round() as usize,
    )
}

/// The per-frame pass of a whole `video_scan` (its first pass over the
/// file) against OpenCV doing the same work, both decoding the whole file.
fn whole_file_vs_opencv(path: &str) {
    let opts = ScanOptions::default();
    let per_frame_stages = ["decode", "gray_resize", "sharpness", "edges", "flow"];
    // Warm both sides on the same file first.
    vision::analyze_video::<Cpu>(std::path::Path::new(path), &opts, &Default::default()).unwrap();
    opencv_whole_file(path, &opts);
    let out = vision::analyze_video::<Cpu>(std::path::Path::new(path), &opts, &Default::default())
        .unwrap();
    let (cv_frames, cv_ms) = opencv_whole_file(path, &opts);
    let report = &out.report;
    let ours: f64 = report
        .timings_ms
        .iter()
        .filter(|s| per_frame_stages.contains(&s.stage.as_str()))
        .map(|s| s.ms)
        .sum();
    assert_eq!(
        report.frames_processed, cv_frames,
        "both sides read the same frames"
    );
    println!(
        "\n== whole file {path}: {} frames {}x{}, decode included ==",
        cv_frames, report.processed_size[0], report.processed_size[1]
    );
    println!(
        "{:<44} {:>10} {:>10} {:>7}",
        "", "burn NdArray", "OpenCV", "ratio"
    );
    println!(
        "{:<44} {:>10.1} {:>10.1} {:>7.3}",
        "per-frame pass, ms (decode, gray, sharpness, edges, flow)",
        ours,
        cv_ms,
        cv_ms / ours
    );
    println!(
        "{:<44} {:>10.1} {:>10.1} {:>7.3}",
        "frames/s",
        cv_frames as f64 * 1e3 / ours,
        cv_frames as f64 * 1e3 / cv_ms,
        cv_ms / ours
    );
    println!(
        "whole video_scan (per-frame pass + golden frames, localisation, defects, artifacts): {:.1} ms (no OpenCV counterpart)",
        report.total_ms
    );
}

/// A whole video_scan (decode → report) on `B`, with its per-stage timings.
fn whole_scan<B: ScanBackend>(video: &std::path::Path, device: &B::Device) {
    let t = Instant::now();
    let out = vision::analyze_video::<B>(video, &Default::default(), device).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\n== whole video_scan on {}, synthetic 720p, {} frames: {:.2} s, {:.2} frames/s ==",
        B::NAME,
        out.report.frames_processed,
        secs,
        out.report.frames_processed as f64 / secs
    );
    for s in &out.report.timings_ms {
        println!(
            "{:<14} {:>10.1} ms  {:>8.2} ms/frame",
            s.stage,
            s.ms,
            s.ms / out.report.frames_processed as f64
        );
    }
}

/// Pins both sides to the same thread count before anything runs.
fn pin_threads() -> usize {
    let threads = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon's global pool is configured once, first");
    core::set_num_threads(threads as i32).unwrap();
    println!(
        "threads: burn (rayon global pool) {}, OpenCV {}; debug assertions {}",
        rayon::current_num_threads(),
        core::get_num_threads().unwrap(),
        cfg!(debug_assertions)
    );
    threads
}

fn main() {
    pin_threads();
    let frames: usize = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let synth_frames: u32 = std::env::var("BENCH_SYNTH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let vtest = std::env::var("BENCH_VTEST")
        .unwrap_or_else(|_| "/usr/share/doc/opencv-doc/examples/data/vtest.avi".into());
    bench("vtest.avi", &decode(&vtest, frames));
    whole_file_vs_opencv(&vtest);

    let dir = std::env::temp_dir().join("scanfleet-bench-synth");
    let gt = synth::generate(
        &SynthSpec {
            frames: synth_frames,
            ..SynthSpec::default()
        },
        &dir,
    )
    .unwrap();
    let video = gt.video.to_str().unwrap().to_string();
    bench(
        "synthetic 720p scan",
        &decode(&video, synth_frames as usize),
    );

    whole_scan::<Cpu>(&gt.video, &Default::default());
    #[cfg(feature = "cuda")]
    if let Some(device) = cuda_device() {
        // The first scan compiles the kernels the whole scan needs; the second is the one to read.
        whole_scan::<vision::backend::Cuda>(&gt.video, &device);
        whole_scan::<vision::backend::Cuda>(&gt.video, &device);
    }
}
