//! The `video_scan` pipeline end to end on synthetic scans with ground truth,
//! and its handling of bad input.

use std::path::Path;

use opencv::{
    core::{Mat, Scalar, Size, CV_8UC3},
    imgcodecs,
    prelude::*,
    videoio,
};
use vision::{
    analyze_video, analyze_video_with_progress,
    pipeline::{Defect, DefectKind, ScanOptions},
    synth::{self, GroundTruth, SynthSpec},
    BackendChoice, CancelFlag, Cpu, VisionError,
};

fn overlaps(a: &[f64; 4], b: &[f64; 4], e: f64) -> bool {
    a[0] - e < b[2] && b[0] - e < a[2] && a[1] - e < b[3] && b[1] - e < a[3]
}

/// (recall, precision) of typed defects against ground truth.
fn match_defects(gt: &GroundTruth, found: &[Defect]) -> (f64, f64) {
    let e = 0.01;
    let hit_gt = gt
        .defects
        .iter()
        .filter(|g| {
            found
                .iter()
                .any(|d| d.kind == g.kind && overlaps(&d.bbox, &g.bbox, e))
        })
        .count();
    let hit_found = found
        .iter()
        .filter(|d| {
            gt.defects
                .iter()
                .any(|g| d.kind == g.kind && overlaps(&d.bbox, &g.bbox, e))
        })
        .count();
    (
        hit_gt as f64 / gt.defects.len().max(1) as f64,
        hit_found as f64 / found.len().max(1) as f64,
    )
}

#[test]
fn synthetic_scans_meet_accuracy_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gt_total, mut gt_hit, mut found_total, mut found_hit) = (0usize, 0.0, 0usize, 0.0);
    let mut worst_centering: f64 = 0.0;
    for seed in [7u64, 11, 23] {
        let spec = SynthSpec {
            seed,
            centering_lr: 0.5 + 0.04 * (seed % 5) as f64,
            ..SynthSpec::default()
        };
        let gt = synth::generate(&spec, &dir.path().join(seed.to_string())).unwrap();
        let out =
            analyze_video::<Cpu>(&gt.video, &ScanOptions::default(), &Default::default()).unwrap();
        let r = &out.report;
        let scores = r.scores.as_ref().expect("item found");
        let (recall, precision) = match_defects(&gt, &r.defects);
        let c_err = (scores.centering_lr - gt.centering_lr)
            .abs()
            .max((scores.centering_tb - gt.centering_tb).abs());
        worst_centering = worst_centering.max(c_err);
        println!(
            "seed {seed}: recall {recall:.3} precision {precision:.3} centering lr {:.4} (gt {:.4}) tb {:.4} (gt {:.4}) golden {:?} grade {} timings {:?}",
            scores.centering_lr, gt.centering_lr, scores.centering_tb, gt.centering_tb,
            r.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>(), scores.overall,
            r.timings_ms.iter().map(|t| format!("{}={:.0}", t.stage, t.ms)).collect::<Vec<_>>()
        );
        for d in &r.defects {
            println!(
                "  found {:?} {:?} {:.3?} sev {:.2}",
                d.kind, d.location, d.bbox, d.severity
            );
        }
        for g in &gt.defects {
            println!("  truth {:?} {:.3?}", g.kind, g.bbox);
        }
        for g in &r.golden_frames {
            assert!(
                !gt.blurred_frames.contains(&(g.index as u32)),
                "seed {seed}: golden frame {} is blurred",
                g.index
            );
        }
        assert_eq!(r.frames_processed, spec.frames as usize);
        assert!(
            !out.artifacts.defect_mask_png.is_empty()
                && out.artifacts.golden_jpegs.len() == r.golden_frames.len()
        );
        assert!(r.timings_ms.iter().any(|t| t.stage == "flow"));
        assert!((1.0..=10.0).contains(&scores.overall));
        gt_total += gt.defects.len();
        gt_hit += recall * gt.defects.len() as f64;
        found_total += r.defects.len();
        found_hit += precision * r.defects.len() as f64;
    }
    let (recall, precision) = (
        gt_hit / gt_total as f64,
        found_hit / found_total.max(1) as f64,
    );
    println!("overall recall {recall:.3} precision {precision:.3} worst centering error {worst_centering:.4}");
    assert!(recall >= 0.95, "recall {recall}");
    assert!(precision >= 0.95, "precision {precision}");
    assert!(worst_centering <= 0.01, "centering error {worst_centering}");
}

/// `DOWNSCALE_MAX=640` (and lower) on a 720p scan: the item is still found,
/// measured and graded, and defects typed, as at full resolution. (At 640
/// the print edge used to be taken for the item edge, and small corner wear
/// fell under fixed pixel thresholds.)
#[test]
fn downscaled_scan_still_localises_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let gt = synth::generate(
        &SynthSpec {
            frames: 12,
            blurred_frames: vec![3, 8],
            ..SynthSpec::default()
        },
        dir.path(),
    )
    .unwrap();
    for max in [640, 480] {
        let opts = ScanOptions {
            downscale_max: max,
            ..ScanOptions::default()
        };
        let out = analyze_video::<Cpu>(&gt.video, &opts, &Default::default()).unwrap();
        let r = &out.report;
        assert_eq!(r.processed_size[0], max);
        let scores = r
            .scores
            .as_ref()
            .unwrap_or_else(|| panic!("{max}: item not found"));
        let (recall, precision) = match_defects(&gt, &r.defects);
        let c_err = (scores.centering_lr - gt.centering_lr)
            .abs()
            .max((scores.centering_tb - gt.centering_tb).abs());
        println!("{max}: recall {recall:.3} precision {precision:.3} centering error {c_err:.4} item {:?}", r.item.as_ref().map(|i| i.size));
        for d in &r.defects {
            println!("  found {:?} {:?} {:.3?}", d.kind, d.location, d.bbox);
        }
        for g in &gt.defects {
            println!("  truth {:?} {:.3?}", g.kind, g.bbox);
        }
        // Golden frames are stored in colour at the processed size.
        for (index, jpeg) in &out.artifacts.golden_jpegs {
            let img = imgcodecs::imdecode(
                &opencv::core::Vector::<u8>::from_slice(jpeg),
                imgcodecs::IMREAD_UNCHANGED,
            )
            .unwrap();
            assert_eq!(
                (img.cols() as usize, img.rows() as usize, img.channels()),
                (r.processed_size[0], r.processed_size[1], 3),
                "golden {index}"
            );
            // The card is coloured (blue-ish border, warm print): B and R means differ.
            let m = opencv::core::mean_def(&img).unwrap();
            assert!(
                (m[0] - m[2]).abs() > 3.0,
                "golden {index} looks gray: mean BGR {m:?}"
            );
        }
        // Centering and precision as at full resolution, and every scratch
        // and crease found. Wear and stains are not required here: at 640
        // the item is ~210 px wide (160 at 480) and the synthetic wear is
        // 1–4 px deep, within the outermost pixel row that the wear
        // detector skips (the rectification's edge; counting it as wear put
        // false wear on every real card), and the stains shrink to a few
        // pixels.
        assert!(c_err <= 0.01, "{max}: centering error {c_err}");
        assert!(precision >= 0.95, "{max}: precision {precision}");
        // At 480 the item is 160 px wide and a scratch is under a pixel wide.
        let lines_resolved = r.item.as_ref().is_some_and(|i| i.size[0] >= 200);
        for g in gt.defects.iter().filter(|g| {
            lines_resolved && matches!(g.kind, DefectKind::Scratch | DefectKind::Crease)
        }) {
            assert!(
                r.defects
                    .iter()
                    .any(|d| d.kind == g.kind && overlaps(&d.bbox, &g.bbox, 0.01)),
                "{max}: {:?} at {:?} not found (recall of all kinds {recall})",
                g.kind,
                g.bbox
            );
        }
    }
}

fn expect_code(path: &Path, code: &str) {
    let err = analyze_video::<Cpu>(path, &ScanOptions::default(), &Default::default())
        .expect_err("bad input must fail");
    assert_eq!(err.code(), code, "{path:?}: {err}");
    assert!(err.is_bad_input());
}

#[test]
fn bad_inputs_fail_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    // Not a video at all.
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, b"this is not a video, just some text\n".repeat(50)).unwrap();
    expect_code(&text, "input_not_video");
    // Missing file.
    expect_code(&dir.path().join("missing.avi"), "input_not_video");
    // An image where a video is expected.
    let img = Mat::new_rows_cols_with_default(64, 64, CV_8UC3, Scalar::all(128.0)).unwrap();
    let png = dir.path().join("frame.png");
    imgcodecs::imwrite_def(png.to_str().unwrap(), &img).unwrap();
    expect_code(&png, "input_not_video");
    let jpg = dir.path().join("frame.avi");
    let mut buf = opencv::core::Vector::<u8>::new();
    imgcodecs::imencode_def(".jpg", &img, &mut buf).unwrap();
    std::fs::write(&jpg, buf.to_vec()).unwrap();
    expect_code(&jpg, "input_not_video");
    // A zero-frame video.
    let empty = dir.path().join("empty.avi");
    {
        let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
        let mut w = videoio::VideoWriter::new(
            empty.to_str().unwrap(),
            fourcc,
            10.0,
            Size::new(64, 64),
            true,
        )
        .unwrap();
        assert!(w.is_opened().unwrap());
        w.release().unwrap();
    }
    expect_code(&empty, "input_empty");
    // A truncated video: the first 60 % of a good one.
    let gt = synth::generate(
        &SynthSpec {
            width: 320,
            height: 240,
            frames: 10,
            ..SynthSpec::small()
        },
        &dir.path().join("good"),
    )
    .unwrap();
    let bytes = std::fs::read(&gt.video).unwrap();
    let cut = dir.path().join("cut.avi");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    expect_code(&cut, "input_truncated");
    // Too large.
    let err = analyze_video::<Cpu>(
        &gt.video,
        &ScanOptions {
            max_frames: 3,
            ..ScanOptions::default()
        },
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "input_too_large");
    // A decompression bomb: a few hundred KB whose frames decode to 108 MB
    // each. Refused from the declared size, before any frame is decoded.
    let bomb = dir.path().join("bomb.avi");
    {
        let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
        let mut w = videoio::VideoWriter::new(
            bomb.to_str().unwrap(),
            fourcc,
            10.0,
            Size::new(6000, 6000),
            true,
        )
        .unwrap();
        let black = Mat::new_rows_cols_with_default(6000, 6000, CV_8UC3, Scalar::all(0.0)).unwrap();
        for _ in 0..3 {
            w.write(&black).unwrap();
        }
        w.release().unwrap();
    }
    assert!(
        std::fs::metadata(&bomb).unwrap().len() < 2 << 20,
        "the bomb is small on disk"
    );
    expect_code(&bomb, "input_too_large");
}

/// A video of an empty table (issue 28, item 4): a success with no item,
/// the report says why, and `frames_decoded` is what the decoder returned.
#[test]
fn a_video_with_no_card_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.avi");
    let frames = 7;
    {
        let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
        let mut w = videoio::VideoWriter::new(
            path.to_str().unwrap(),
            fourcc,
            10.0,
            Size::new(160, 120),
            true,
        )
        .unwrap();
        assert!(w.is_opened().unwrap());
        for i in 0..frames {
            // A plain table whose light changes a little from frame to frame.
            let table =
                Mat::new_rows_cols_with_default(120, 160, CV_8UC3, Scalar::all(100.0 + i as f64))
                    .unwrap();
            w.write(&table).unwrap();
        }
        w.release().unwrap();
    }
    let r = analyze_video::<Cpu>(&path, &ScanOptions::default(), &Default::default())
        .unwrap()
        .report;
    assert!(r.item.is_none() && r.scores.is_none(), "{:?}", r.item);
    assert_eq!(
        r.no_item_reason,
        Some(vision::pipeline::NoItemReason::NoOutline)
    );
    assert_eq!(r.frames_decoded, frames);
    assert_eq!(r.frames_processed, frames);
}

#[test]
fn backend_choice_is_resolved_at_the_edge() {
    let engine = vision::backend::ScanEngine::new(BackendChoice::Cpu).unwrap();
    assert_eq!(engine.report().used, "cpu-ndarray");
    let auto = vision::backend::ScanEngine::new(BackendChoice::Auto).unwrap();
    // This machine has no NVIDIA driver: auto must fall back and say why.
    if vision::backend::probe_cuda().is_err() {
        assert_eq!(auto.report().used, "cpu-ndarray");
        assert!(
            auto.report().reason.contains("cpu"),
            "{}",
            auto.report().reason
        );
    }
    // Asking for CUDA where it cannot run is an error, never a quiet CPU run.
    let why_not = if cfg!(feature = "cuda") {
        vision::backend::probe_cuda().err()
    } else {
        Some("built without cuda".into())
    };
    if let Some(why_not) = why_not {
        let err = vision::backend::ScanEngine::new(BackendChoice::Cuda).unwrap_err();
        assert_eq!(err.code(), "backend_unavailable");
        assert!(
            err.to_string().contains(&why_not),
            "{err} should say {why_not}"
        );
        assert!(!err.is_bad_input());
    }
    assert_eq!(
        "auto".parse::<BackendChoice>().unwrap(),
        BackendChoice::Auto
    );
    let _ = VisionError::InputEmpty;
}

/// A scan whose flag is raised stops at the next batch instead of running
/// to the end: the worker relies on it to free a core when a scan passes its
/// time limit or its job is aborted.
#[test]
fn a_cancelled_scan_stops_after_the_batch_in_hand() {
    let dir = tempfile::tempdir().unwrap();
    let gt = synth::generate(
        &SynthSpec {
            frames: 40,
            ..SynthSpec::default()
        },
        dir.path(),
    )
    .unwrap();
    let opts = ScanOptions::default();
    let cancel = CancelFlag::new();
    let mut batches = Vec::new();
    let outcome = analyze_video_with_progress::<Cpu>(
        &gt.video,
        &opts,
        &Default::default(),
        &mut |progress| {
            batches.push(progress.frames_done);
            // Raised from outside while the first batch is measured.
            cancel.cancel();
        },
        &cancel,
    );
    assert!(
        matches!(outcome, Err(VisionError::Cancelled)),
        "{:?}",
        outcome.map(|o| o.report.frames_processed)
    );
    assert_eq!(batches, vec![opts.batch_size], "measured past the cancel");

    // The same file with the flag down runs every batch.
    let mut done = 0;
    let out = analyze_video_with_progress::<Cpu>(
        &gt.video,
        &opts,
        &Default::default(),
        &mut |progress| done = progress.frames_done,
        &CancelFlag::new(),
    )
    .unwrap();
    assert_eq!((done, out.report.frames_processed), (40, 40));
}
