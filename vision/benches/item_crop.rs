//! `item_crop`: ms per photo of our burn pipeline (NdArray on the CPU, and
//! CUDA when built with `--features cuda` on a GPU host) and of an OpenCV
//! peer doing the classic recipe on the same photos, in the same run
//! (DESIGN.md: benchmarks print ratios against their peer).
//!
//! `cargo bench -p scanfleet-vision --bench item_crop` (release), or reusing
//! the dev build: `cargo bench -p scanfleet-vision --bench item_crop --profile dev`.
//! Env: `BENCH_PHOTOS` (default 20) synthetic 800×600 photos with 1–6 items.
//!
//! The peer: decode → gray → Gaussian blur → Canny → close 3×3 →
//! findContours (external) → minAreaRect → warpPerspective crop → JPEG.
//! It finds touching items as one (no region splitting) and has no
//! perspective fit, so it does less work; its exact-count rate is printed
//! next to ours so that the speed ratio is read with that in mind.
//! Ratio = OpenCV time / our time: ≥ 1.0 means we are at least as fast.

use std::time::Instant;

use opencv::{
    core::{self, Mat, Point, Point2f, Size, Vector},
    imgcodecs, imgproc,
    prelude::*,
};
use vision::{
    crop_items,
    item_crop::ItemCropOptions,
    synth_photo::{self, PhotoSpec},
    Cpu, ScanBackend,
};

/// The OpenCV peer; returns the number of items it cropped.
fn opencv_crop(jpeg: &[u8], opts: &ItemCropOptions) -> opencv::Result<usize> {
    let img = imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), imgcodecs::IMREAD_COLOR)?;
    let mut gray = Mat::default();
    imgproc::cvt_color_def(&img, &mut gray, imgproc::COLOR_BGR2GRAY)?;
    let mut blurred = Mat::default();
    imgproc::gaussian_blur_def(&gray, &mut blurred, Size::new(0, 0), opts.blur_sigma)?;
    let mut edges = Mat::default();
    imgproc::canny_def(
        &blurred,
        &mut edges,
        opts.canny_low as f64,
        opts.canny_high as f64,
    )?;
    let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(3, 3))?;
    let mut closed = Mat::default();
    imgproc::morphology_ex_def(&edges, &mut closed, imgproc::MORPH_CLOSE, &kernel)?;
    let mut contours = Vector::<Vector<Point>>::new();
    imgproc::find_contours_def(
        &closed,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
    )?;
    let min_area = opts.min_item_area_frac * (img.cols() * img.rows()) as f64;
    let mut found = 0;
    for contour in contours.iter() {
        let rect = imgproc::min_area_rect(&contour)?;
        let (w, h) = (rect.size.width as f64, rect.size.height as f64);
        let area = imgproc::contour_area_def(&contour)?;
        if w * h < min_area
            || w.min(h) / w.max(h) < opts.min_aspect
            || area < opts.min_rectangularity * w * h
        {
            continue;
        }
        let mut corners = [Point2f::default(); 4];
        rect.points(&mut corners)?;
        let src: Vector<Point2f> = corners.iter().copied().collect();
        let dst: Vector<Point2f> = [(0.0, h), (0.0, 0.0), (w, 0.0), (w, h)]
            .iter()
            .map(|&(x, y)| Point2f::new(x as f32, y as f32))
            .collect();
        let m = imgproc::get_perspective_transform(&src, &dst, core::DECOMP_LU)?;
        let mut crop = Mat::default();
        imgproc::warp_perspective_def(
            &img,
            &mut crop,
            &m,
            Size::new(w.round() as i32, h.round() as i32),
        )?;
        let mut buf = Vector::<u8>::new();
        imgcodecs::imencode_def(".jpg", &crop, &mut buf)?;
        found += 1;
    }
    Ok(found)
}

/// ms per photo and exact-count share of our pipeline on `B`, after one
/// warm-up photo (allocators; on a GPU, kernel compilation).
fn time_ours<B: ScanBackend>(
    photos: &[(Vec<u8>, usize)],
    opts: &ItemCropOptions,
    device: &B::Device,
) -> (f64, usize) {
    crop_items::<B>(&photos[0].0, opts, device).expect("warm-up");
    let t = Instant::now();
    let mut exact = 0;
    for (jpeg, truth) in photos {
        let out = crop_items::<B>(jpeg, opts, device).expect("item_crop");
        exact += (out.report.items.len() == *truth) as usize;
    }
    (t.elapsed().as_secs_f64() * 1e3 / photos.len() as f64, exact)
}

fn main() {
    let n: u64 = std::env::var("BENCH_PHOTOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let photos: Vec<(Vec<u8>, usize)> = (0..n)
        .map(|seed| {
            let (jpeg, truth) = synth_photo::render(&PhotoSpec {
                seed: 1000 + seed,
                ..PhotoSpec::default()
            })
            .expect("render");
            (jpeg, truth.items.len())
        })
        .collect();
    let opts = ItemCropOptions::default();
    let (ours_ms, ours_exact) = time_ours::<Cpu>(&photos, &opts, &Default::default());

    opencv_crop(&photos[0].0, &opts).expect("warm-up"); // OpenCV's lazy init
    let t = Instant::now();
    let mut cv_exact = 0;
    for (jpeg, truth) in &photos {
        cv_exact += (opencv_crop(jpeg, &opts).expect("opencv") == *truth) as usize;
    }
    let cv_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;

    println!(
        "item_crop, {n} synthetic 800x600 photos ({} CPU threads available)",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>8}",
        "", "ms/photo", "photos/s", "count exact", "ratio"
    );
    let row = |name: &str, ms: f64, exact: usize| {
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>11.0}% {:>8.2}",
            name,
            ms,
            1e3 / ms,
            100.0 * exact as f64 / n as f64,
            cv_ms / ms
        );
    };
    row("burn NdArray (ours)", ours_ms, ours_exact);
    #[cfg(feature = "cuda")]
    match vision::backend::cuda_device() {
        Ok(device) => {
            let (ms, exact) = time_ours::<vision::backend::Cuda>(&photos, &opts, &device);
            row("burn CUDA (ours)", ms, exact);
        }
        Err(why) => println!("burn CUDA (ours): not run: {why}"),
    }
    row("OpenCV contours (peer)", cv_ms, cv_exact);
    println!("ratio = OpenCV time / that row's time (>= 1.0: at least as fast as the peer)");
}
