//! The same scan on two backends gives the same defects and numbers within
//! 1e-4 (DESIGN.md "Equivalence"): NdArray vs Wgpu on Mesa's lavapipe, which
//! runs the same CubeCL kernels as CUDA without a GPU.
//!
//! `cargo nextest run -p scanfleet-vision --features wgpu -E 'test(equivalence)'`
#![cfg(feature = "wgpu")]

use vision::{
    pipeline::{ScanOptions, ScanReport},
    synth::{self, SynthSpec},
    analyze_video, Cpu,
};

type Gpu = burn_wgpu::Wgpu<f32, i32>;

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
    assert_eq!(a.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>(), b.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>());
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

#[test]
fn equivalence_ndarray_vs_wgpu() {
    let dir = tempfile::tempdir().unwrap();
    let gt = synth::generate(&SynthSpec::small(), dir.path()).unwrap();
    let opts = ScanOptions::default();
    let cpu = analyze_video::<Cpu>(&gt.video, &opts, &Default::default()).unwrap();
    let t = std::time::Instant::now();
    let gpu = analyze_video::<Gpu>(&gt.video, &opts, &burn_wgpu::WgpuDevice::default()).unwrap();
    println!("wgpu scan took {:.1} s; cpu defects {} gpu defects {}", t.elapsed().as_secs_f64(), cpu.report.defects.len(), gpu.report.defects.len());
    assert_eq!(gpu.report.backend, "wgpu");
    assert!(cpu.report.item.is_some(), "the small scan must localise the item");
    compare(&cpu.report, &gpu.report);
}
