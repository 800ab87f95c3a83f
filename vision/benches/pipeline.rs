//! Burn pipeline vs OpenCV on the same frames, in the same run (DESIGN.md:
//! benchmarks print ratios against the peer measured in the same run): on
//! NdArray, and on CUDA too when built with `--features cuda` on a GPU host.
//!
//! `cargo bench -p scanfleet-vision --bench pipeline` (release) or, reusing the
//! dev build, `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench -p scanfleet-vision --bench pipeline --profile dev`.
//! Env: `BENCH_FRAMES` (default 32) frames of vtest.avi (`BENCH_VTEST`: another
//! path to it); `BENCH_SYNTH_FRAMES` (default 24) of a 720p synthetic scan.
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
    Cpu, ScanBackend,
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
    "farneback",
];

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn flow_size(w: usize, h: usize) -> (usize, usize) {
    let s = 320.0 / w.max(h) as f64;
    if s >= 1.0 {
        (w, h)
    } else {
        (
            (w as f64 * s).round() as usize,
            (h as f64 * s).round() as usize,
        )
    }
}

/// The burn pipeline's stages on `B`, batch by batch: ms per frame for each
/// of [`STAGES`], and a checksum of the results (so nothing is optimised away).
/// Each stage reads its result back, which also waits for a GPU to finish.
fn burn_stages<B: ScanBackend>(frames: &[Mat], device: &B::Device) -> ([f64; 5], f64) {
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let mut total = [0.0; 5];
    let mut checksum = 0.0f64;
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
        // As the pipeline does: the batch with its predecessor, flow between consecutive frames.
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
        total[4] += ms(t);
    }
    (total.map(|t| t / frames.len() as f64), checksum)
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
        let mut lap = Mat::default();
        imgproc::laplacian(
            &g,
            &mut lap,
            core::CV_64F,
            1,
            1.0,
            0.0,
            core::BORDER_DEFAULT,
        )
        .unwrap();
        let (mut mean, mut sd) = (Mat::default(), Mat::default());
        core::mean_std_dev(&lap, &mut mean, &mut sd, &core::no_array()).unwrap();
        total[1] += ms(t);
        let t = Instant::now();
        let mut e = Mat::default();
        imgproc::canny(&g, &mut e, 15.0, 60.0, 3, false).unwrap();
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
        let mut s = Mat::default();
        imgproc::resize(
            &g,
            &mut s,
            Size::new(fw as i32, fh as i32),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .unwrap();
        if let Some(p) = prev_small.take() {
            let mut fl = Mat::default();
            video::calc_optical_flow_farneback(&p, &s, &mut fl, 0.5, 3, 15, 3, 5, 1.2, 0).unwrap();
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
fn timed_burn<B: ScanBackend>(frames: &[Mat], device: &B::Device) -> ([f64; 5], f64) {
    burn_stages::<B>(&frames[..frames.len().min(16)], device);
    burn_stages::<B>(frames, device)
}

fn bench(name: &str, frames: &[Mat]) {
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let mut burn: Vec<(&str, [f64; 5], f64)> = vec![];
    let (stages, checksum) = timed_burn::<Cpu>(frames, &Default::default());
    burn.push(("burn NdArray", stages, checksum));
    #[cfg(feature = "cuda")]
    if let Some(device) = cuda_device() {
        let (stages, checksum) = timed_burn::<vision::backend::Cuda>(frames, &device);
        burn.push(("burn CUDA", stages, checksum));
        let before = planar_bgr_gray_ms::<vision::backend::Cuda>(frames, &device);
        println!("burn CUDA gray via planar f32 BGR upload (the path before gray bytes): {before:.2} ms/frame");
    }
    let cv = opencv_stages(frames);

    println!(
        "\n== {name}: {} frames {w}x{h}, flow at {fw}x{fh} ==",
        frames.len()
    );
    for (label, _, checksum) in &burn {
        println!("{label} checksum {checksum:.1}");
    }
    print!("{:<28}", "ms/frame");
    for (label, ..) in &burn {
        print!(" {:>14} {:>7}", label, "ratio");
    }
    println!(" {:>14}", "OpenCV");
    let totals = |v: &[f64; 5]| v.iter().sum::<f64>();
    let ct = totals(&cv);
    for (i, stage) in STAGES.iter().enumerate() {
        print!("{stage:<28}");
        for (_, b, _) in &burn {
            print!(" {:>14.2} {:>7.3}", b[i], cv[i] / b[i]);
        }
        println!(" {:>14.2}", cv[i]);
    }
    print!("{:<28}", "per-frame stages total");
    for (_, b, _) in &burn {
        print!(" {:>14.2} {:>7.3}", totals(b), ct / totals(b));
    }
    println!(" {:>14.2}", ct);
    print!("{:<28}", "frames/s");
    for (_, b, _) in &burn {
        print!(" {:>14.1} {:>7.3}", 1e3 / totals(b), ct / totals(b));
    }
    println!(" {:>14.1}", 1e3 / ct);
    println!("ratio = OpenCV time / burn time (>= 1.0: burn at least as fast)");
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

fn main() {
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
