//! The same scan on two backends gives the same results (DESIGN.md
//! "Equivalence"): video_scan's numbers within 1e-4, item_crop's items and
//! crops. NdArray against Wgpu on Mesa's lavapipe, which runs the same
//! CubeCL kernels as CUDA without a GPU (every CI run), and against CUDA on
//! an NVIDIA GPU (`--features cuda`; those tests fail, not skip, without one).
//!
//! `cargo nextest run -p scanfleet-vision --features wgpu -E 'test(equivalence)'`
//! `cargo nextest run -p scanfleet-vision --features cuda -E 'test(cuda::)'`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use vision::{
    analyze_video,
    pipeline::{ScanOptions, ScanReport},
    synth::{self, SynthSpec},
    Cpu, ScanBackend,
};

/// Absolute 1e-4 for small numbers, relative 1e-4 for large ones (f32
/// sums of hundreds of thousands of pixels carry ~1e-7 relative noise).
fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-4 * a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

fn compare(a: &ScanReport, b: &ScanReport) {
    assert_eq!(a.frames_processed, b.frames_processed);
    for (x, y) in a.frame_stats.iter().zip(&b.frame_stats) {
        close(x.sharpness, y.sharpness, "sharpness");
        close(x.edge_density, y.edge_density, "edge density");
        close(x.motion, y.motion, "motion");
    }
    assert_eq!(
        a.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>(),
        b.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>()
    );
    assert_eq!(a.item.is_some(), b.item.is_some());
    if let (Some(x), Some(y)) = (&a.item, &b.item) {
        assert_eq!(x.size, y.size);
        for (p, q) in x.quad.iter().zip(&y.quad) {
            close(p[0], q[0], "quad x");
            close(p[1], q[1], "quad y");
        }
    }
    assert_eq!(a.defects.len(), b.defects.len(), "defect count");
    for (x, y) in a.defects.iter().zip(&b.defects) {
        assert_eq!(x.kind, y.kind);
        assert_eq!(x.location, y.location);
        for (p, q) in x.bbox.iter().zip(&y.bbox) {
            close(*p, *q, "defect bbox");
        }
        close(x.severity, y.severity, "severity");
    }
    match (&a.scores, &b.scores) {
        (Some(x), Some(y)) => {
            close(x.centering_lr, y.centering_lr, "centering lr");
            close(x.centering_tb, y.centering_tb, "centering tb");
            close(x.surface, y.surface, "surface");
            close(x.overall, y.overall, "overall");
            for i in 0..4 {
                close(x.corners[i], y.corners[i], "corner");
                close(x.edges[i], y.edges[i], "edge");
            }
        }
        (None, None) => {}
        _ => panic!("scores present on one backend only"),
    }
}

/// A whole video_scan on the CPU and on `Gpu`.
fn video_scan_matches<Gpu: ScanBackend>(device: &Gpu::Device) {
    let dir = tempfile::tempdir().unwrap();
    let gt = synth::generate(&SynthSpec::small(), dir.path()).unwrap();
    let opts = ScanOptions::default();
    let cpu = analyze_video::<Cpu>(&gt.video, &opts, &Default::default()).unwrap();
    let t = std::time::Instant::now();
    let gpu = analyze_video::<Gpu>(&gt.video, &opts, device).unwrap();
    println!(
        "{} scan took {:.1} s; cpu defects {} gpu defects {}",
        Gpu::NAME,
        t.elapsed().as_secs_f64(),
        cpu.report.defects.len(),
        gpu.report.defects.len()
    );
    for (x, y) in cpu.report.frame_stats.iter().zip(&gpu.report.frame_stats) {
        println!(
            "frame {}: sharpness {} / {}, edges {} / {}, motion {} / {}",
            x.index, x.sharpness, y.sharpness, x.edge_density, y.edge_density, x.motion, y.motion
        );
    }
    println!(
        "transfers over {} frames: {} {:?}, cpu-ndarray {:?}",
        gpu.report.frames_processed,
        Gpu::NAME,
        gpu.report.transfers,
        cpu.report.transfers
    );
    assert_eq!(gpu.report.backend, Gpu::NAME);
    assert!(
        cpu.report.item.is_some(),
        "the small scan must localise the item"
    );
    compare(&cpu.report, &gpu.report);

    // A second scan on this thread finds the constant tables (filter taps,
    // resize taps, flow basis) still on the device: the same result, with
    // only frame data and per-frame tables uploaded.
    let again = analyze_video::<Gpu>(&gt.video, &opts, device).unwrap();
    println!("second {} scan: {:?}", Gpu::NAME, again.report.transfers);
    compare(&gpu.report, &again.report);
    assert!(
        again.report.transfers.device_writes < gpu.report.transfers.device_writes,
        "constant tables were uploaded again: {:?} then {:?}",
        gpu.report.transfers,
        again.report.transfers
    );
}

/// Primitive by primitive on one batch, to say which op differs if the scan does.
fn primitives_match<Gpu: ScanBackend>(device: &Gpu::Device) {
    use burn_tensor::Tensor;
    use vision::{canny, flow, frames, primitives};
    fn run<B: vision::ScanBackend>(
        mats: &[opencv::core::Mat],
        device: &B::Device,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let bgr: Tensor<B, 4> = frames::stack_bgr::<B>(mats, device).unwrap();
        let gray = primitives::bgr_to_gray(bgr);
        let small = primitives::round_levels(primitives::resize(
            gray.clone(),
            160,
            120,
            primitives::Interpolation::Area,
        ));
        let [n, ..] = gray.dims();
        let mut out = vec![
            ("gray", frames::to_vec_f32(gray.clone())),
            // The pipeline's own path: gray bytes from the host, cast on the device.
            (
                "gray_frames",
                frames::to_vec_f32(frames::stack_gray_from_bgr::<B>(mats, device).unwrap()),
            ),
            ("resize", frames::to_vec_f32(small.clone())),
            (
                "laplacian",
                frames::to_vec_f32(primitives::laplacian(gray.clone())),
            ),
            (
                "lapvar",
                frames::to_vec_f32(primitives::laplacian_variance(gray.clone())),
            ),
            (
                "canny",
                frames::to_vec_f32(canny::canny(gray.clone(), canny::LOW, canny::HIGH)),
            ),
            (
                "close",
                frames::to_vec_f32(primitives::close(
                    gray.clone(),
                    primitives::MorphShape::Ellipse,
                    15,
                    15,
                )),
            ),
        ];
        let f = flow::farneback(
            small.clone().narrow(0, 0, n - 1),
            small.narrow(0, 1, n - 1),
            &flow::FarnebackParams::default(),
        );
        out.push(("flow", frames::to_vec_f32(f)));
        out
    }
    let dir = tempfile::tempdir().unwrap();
    let gt = synth::generate(&SynthSpec::small(), dir.path()).unwrap();
    let mut cap = opencv::videoio::VideoCapture::from_file(
        gt.video.to_str().unwrap(),
        opencv::videoio::CAP_ANY,
    )
    .unwrap();
    let mut mats = vec![];
    use opencv::prelude::*;
    loop {
        let mut m = opencv::core::Mat::default();
        if !cap.read(&mut m).unwrap() || m.empty() {
            break;
        }
        mats.push(m);
    }
    let a = run::<Cpu>(&mats, &Default::default());
    let b = run::<Gpu>(&mats, device);
    let mut bad = vec![];
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let plane = x.len() / mats.len().max(1);
        let max = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        let per_frame: Vec<usize> = (0..mats.len())
            .map(|i| {
                x.iter()
                    .zip(y)
                    .skip(i * plane)
                    .take(plane)
                    .filter(|(p, q)| (*p - *q).abs() > 1e-3 * p.abs().max(1.0))
                    .count()
            })
            .collect();
        println!("{name}: max abs diff {max}, differing per frame {per_frame:?}");
        // Integer-valued images and masks must be identical; the raw flow
        // field carries f32 summation-order noise (its scan-level mean
        // magnitude is compared at 1e-4 in the test above).
        let tol = match *name {
            "flow" => 5e-3,
            "lapvar" => 1e-4 * x.iter().fold(1f32, |m, v| m.max(v.abs())),
            _ => 0.0,
        };
        if max > tol {
            bad.push(*name);
        }
    }
    assert!(bad.is_empty(), "differ: {bad:?}");
}

/// The photos the item_crop comparisons run on: items apart, in contact, six at once.
fn sample_photos() -> Vec<Vec<u8>> {
    use vision::synth_photo::{render, PhotoSpec};
    [(3, None), (13, None), (227, Some(6))]
        .into_iter()
        .map(|(seed, items)| {
            render(&PhotoSpec {
                seed,
                items,
                ..PhotoSpec::default()
            })
            .unwrap()
            .0
        })
        .collect()
}

/// Largest corner distance (working pixels) between two runs' items, and
/// the largest mean absolute difference between their decoded crops.
fn item_crop_gap(a: &vision::ItemCropOutput, b: &vision::ItemCropOutput) -> (f64, f64) {
    use opencv::{core::Vector, imgcodecs, prelude::MatTraitConst};
    let (x, y) = (&a.report.items, &b.report.items);
    assert_eq!(
        x.len(),
        y.len(),
        "item count: {} vs {}",
        a.report.backend,
        b.report.backend
    );
    let (mut corner, mut pixel) = (0f64, 0f64);
    for ((p, q), (cp, cq)) in x.iter().zip(y).zip(a.crops.iter().zip(&b.crops)) {
        for (u, v) in p.quad.iter().zip(&q.quad) {
            corner = corner.max((u[0] - v[0]).hypot(u[1] - v[1]));
        }
        assert_eq!(p.crop_size, q.crop_size, "crop size");
        let decode = |jpeg: &[u8]| {
            imgcodecs::imdecode(&Vector::from_slice(jpeg), imgcodecs::IMREAD_COLOR).unwrap()
        };
        let (mp, mq) = (decode(cp), decode(cq));
        let diff = opencv::core::norm2(&mp, &mq, opencv::core::NORM_L1, &opencv::core::no_array())
            .unwrap();
        pixel = pixel.max(diff / (mp.total() * 3) as f64);
    }
    (corner, pixel)
}

/// item_crop's device stages (edges, morphology, rectification) on `Gpu`
/// give the CPU backend's items: same count, corners and crops.
fn item_crop_matches<Gpu: ScanBackend>(device: &Gpu::Device) {
    use vision::{crop_items, ItemCropOptions};
    let opts = ItemCropOptions::default();
    for photo in sample_photos() {
        let cpu = crop_items::<Cpu>(&photo, &opts, &Default::default()).unwrap();
        let gpu = crop_items::<Gpu>(&photo, &opts, device).unwrap();
        let (corner, pixel) = item_crop_gap(&cpu, &gpu);
        println!(
            "{} items: corners differ by ≤ {corner:.2e} px, crops by ≤ {pixel:.3} levels",
            cpu.report.items.len()
        );
        assert!(corner <= 1e-3, "corners moved {corner} px");
        assert!(pixel <= 0.5, "crops differ by {pixel} levels on average");
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    type Gpu = burn_wgpu::Wgpu<f32, i32>;

    #[test]
    fn equivalence_ndarray_vs_wgpu() {
        super::video_scan_matches::<Gpu>(&Default::default());
    }

    #[test]
    fn equivalence_primitives_ndarray_vs_wgpu() {
        super::primitives_match::<Gpu>(&Default::default());
    }

    #[test]
    fn equivalence_item_crop_ndarray_vs_wgpu() {
        super::item_crop_matches::<Gpu>(&Default::default());
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    type Gpu = vision::backend::Cuda;

    /// The GPU scans run on. These tests are for a GPU host (CI filters them
    /// out), so a missing driver fails them rather than passing them unrun.
    fn device() -> burn_cuda::CudaDevice {
        vision::backend::cuda_device()
            .unwrap_or_else(|why| panic!("the CUDA equivalence tests need an NVIDIA GPU: {why}"))
    }

    #[test]
    fn equivalence_ndarray_vs_cuda() {
        super::video_scan_matches::<Gpu>(&device());
    }

    #[test]
    fn equivalence_primitives_ndarray_vs_cuda() {
        super::primitives_match::<Gpu>(&device());
    }

    #[test]
    fn equivalence_item_crop_ndarray_vs_cuda() {
        super::item_crop_matches::<Gpu>(&device());
    }
}
