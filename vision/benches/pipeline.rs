//! Burn CPU pipeline vs OpenCV on the same frames, in the same run
//! (DESIGN.md: benchmarks print ratios against the peer measured in the same run).
//!
//! `cargo bench -p scanfleet-vision --bench pipeline` (release) or, reusing the
//! dev build, `CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo bench -p scanfleet-vision --bench pipeline --profile dev`.
//! Env: `BENCH_FRAMES` (default 32) frames of vtest.avi; `BENCH_SYNTH_FRAMES` (default 24) of a 720p synthetic scan.
//!
//! Ratio = OpenCV time / burn time: ≥ 1.0 means burn is at least as fast.

use std::time::Instant;

use burn_tensor::Tensor;
use opencv::{
    core::{self, Mat, Point, Size},
    imgproc, prelude::*, video, videoio,
};
use vision::{
    canny,
    flow::{farneback_sequence, mean_magnitude, FarnebackParams},
    frames::{stack_gray_from_bgr, to_vec_f32},
    primitives::{close, laplacian_variance, resize, round_levels, Interpolation, MorphShape},
    synth::{self, SynthSpec},
    Cpu,
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

struct Row {
    stage: &'static str,
    burn_ms: f64,
    cv_ms: f64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn flow_size(w: usize, h: usize) -> (usize, usize) {
    let s = 320.0 / w.max(h) as f64;
    if s >= 1.0 { (w, h) } else { ((w as f64 * s).round() as usize, (h as f64 * s).round() as usize) }
}

fn bench(name: &str, frames: &[Mat]) {
    let n = frames.len();
    let device = Default::default();
    let (w, h) = (frames[0].cols() as usize, frames[0].rows() as usize);
    let (fw, fh) = flow_size(w, h);
    let batch = 8;
    let mut rows = vec![];

    // burn, batch by batch, per stage.
    let (mut t_gray, mut t_sharp, mut t_canny, mut t_flow, mut t_morph) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut checksum = 0.0f64;
    let mut prev: Option<Tensor<Cpu, 4>> = None;
    for chunk in frames.chunks(batch) {
        let t = Instant::now();
        // What the pipeline runs: decoded BGR frames to gray tensors.
        let gray = stack_gray_from_bgr::<Cpu>(chunk, &device).unwrap();
        checksum += to_vec_f32(gray.clone().slice([0..1, 0..1, 0..1, 0..1]))[0] as f64;
        t_gray += ms(t);
        let t = Instant::now();
        checksum += to_vec_f32(laplacian_variance(gray.clone())).iter().sum::<f32>() as f64;
        t_sharp += ms(t);
        let t = Instant::now();
        let edges = canny::canny(gray.clone(), canny::LOW, canny::HIGH);
        checksum += to_vec_f32(edges.clone().mean()).iter().sum::<f32>() as f64;
        t_canny += ms(t);
        let t = Instant::now();
        checksum += to_vec_f32(close(edges, MorphShape::Rect, 5, 5).mean())[0] as f64;
        t_morph += ms(t);
        let t = Instant::now();
        let small = round_levels(resize(gray, fw, fh, Interpolation::Area));
        let k = chunk.len();
        // As the pipeline does: the batch with its predecessor, flow between consecutive frames.
        let seq = match prev.take() {
            Some(p) => Tensor::cat(vec![p, small.clone()], 0),
            None => small.clone(),
        };
        if seq.dims()[0] > 1 {
            checksum += to_vec_f32(mean_magnitude(farneback_sequence(seq, &FarnebackParams::default()))).iter().sum::<f32>() as f64;
        }
        prev = Some(small.narrow(0, k - 1, 1));
        t_flow += ms(t);
    }

    // OpenCV, same work on the same frames.
    let (mut c_gray, mut c_sharp, mut c_canny, mut c_flow, mut c_morph) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut prev_small: Option<Mat> = None;
    let kernel = imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(5, 5), Point::new(-1, -1)).unwrap();
    for f in frames {
        let t = Instant::now();
        let mut g = Mat::default();
        imgproc::cvt_color_def(f, &mut g, imgproc::COLOR_BGR2GRAY).unwrap();
        c_gray += ms(t);
        let t = Instant::now();
        let mut lap = Mat::default();
        imgproc::laplacian(&g, &mut lap, core::CV_64F, 1, 1.0, 0.0, core::BORDER_DEFAULT).unwrap();
        let (mut mean, mut sd) = (Mat::default(), Mat::default());
        core::mean_std_dev(&lap, &mut mean, &mut sd, &core::no_array()).unwrap();
        c_sharp += ms(t);
        let t = Instant::now();
        let mut e = Mat::default();
        imgproc::canny(&g, &mut e, 15.0, 60.0, 3, false).unwrap();
        let _ = core::count_non_zero(&e).unwrap();
        c_canny += ms(t);
        let t = Instant::now();
        let mut c = Mat::default();
        imgproc::morphology_ex(&e, &mut c, imgproc::MORPH_CLOSE, &kernel, Point::new(-1, -1), 1, core::BORDER_CONSTANT, imgproc::morphology_default_border_value().unwrap()).unwrap();
        c_morph += ms(t);
        let t = Instant::now();
        let mut s = Mat::default();
        imgproc::resize(&g, &mut s, Size::new(fw as i32, fh as i32), 0.0, 0.0, imgproc::INTER_AREA).unwrap();
        if let Some(p) = prev_small.take() {
            let mut fl = Mat::default();
            video::calc_optical_flow_farneback(&p, &s, &mut fl, 0.5, 3, 15, 3, 5, 1.2, 0).unwrap();
        }
        prev_small = Some(s);
        c_flow += ms(t);
    }
    let per = |v: f64| v / n as f64;
    rows.push(Row { stage: "gray", burn_ms: per(t_gray), cv_ms: per(c_gray) });
    rows.push(Row { stage: "sharpness (laplacian var)", burn_ms: per(t_sharp), cv_ms: per(c_sharp) });
    rows.push(Row { stage: "canny 15/60", burn_ms: per(t_canny), cv_ms: per(c_canny) });
    rows.push(Row { stage: "close 5x5", burn_ms: per(t_morph), cv_ms: per(c_morph) });
    rows.push(Row { stage: "farneback", burn_ms: per(t_flow), cv_ms: per(c_flow) });
    let (bt, ct): (f64, f64) = (rows.iter().map(|r| r.burn_ms).sum(), rows.iter().map(|r| r.cv_ms).sum());
    println!("\n== {name}: {n} frames {w}x{h}, flow at {fw}x{fh} (checksum {checksum:.1}) ==");
    println!("{:<28} {:>14} {:>14} {:>8}", "stage", "burn ms/frame", "opencv ms/fr", "ratio");
    for r in &rows {
        println!("{:<28} {:>14.2} {:>14.2} {:>8.3}", r.stage, r.burn_ms, r.cv_ms, r.cv_ms / r.burn_ms);
    }
    println!("{:<28} {:>14.2} {:>14.2} {:>8.3}", "per-frame stages total", bt, ct, ct / bt);
    println!("{:<28} {:>14.1} {:>14.1} {:>8.3}", "frames/s", 1e3 / bt, 1e3 / ct, ct / bt);
}

fn main() {
    let frames: usize = std::env::var("BENCH_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let synth_frames: u32 = std::env::var("BENCH_SYNTH_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let vtest = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
    bench("vtest.avi", &decode(vtest, frames));

    let dir = std::env::temp_dir().join("scanfleet-bench-synth");
    let gt = synth::generate(&SynthSpec { frames: synth_frames, ..SynthSpec::default() }, &dir).unwrap();
    let video = gt.video.to_str().unwrap().to_string();
    bench("synthetic 720p scan", &decode(&video, synth_frames as usize));

    // Whole scan end to end (decode → report) on the burn CPU backend.
    let t = Instant::now();
    let out = vision::analyze_video::<Cpu>(&gt.video, &Default::default(), &Default::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("\n== whole video_scan, synthetic 720p, {} frames: {:.2} s, {:.2} frames/s ==", out.report.frames_processed, secs, out.report.frames_processed as f64 / secs);
    for s in &out.report.timings_ms {
        println!("{:<14} {:>10.1} ms  {:>8.2} ms/frame", s.stage, s.ms, s.ms / out.report.frames_processed as f64);
    }
}
