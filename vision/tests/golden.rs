//! Golden outputs guard the pipeline versions the result cache keys on: if
//! what a scan returns changes, its `PIPELINE_VERSION` must change in the
//! same commit, or a deployed worker would keep serving the old detector's
//! cached answers. Regenerate after a deliberate change (and a bump) with
//! `UPDATE_GOLDEN=1 cargo test -p scanfleet-vision --test golden`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vision::{
    analyze_video, crop_items, item_crop,
    pipeline::{self, ScanOptions},
    synth::{self, SynthSpec},
    synth_photo::{self, PhotoSpec},
    Cpu, ItemCropOptions,
};

/// In whole units of `step`, so that the golden file speaks of results, not
/// of the last bits of a float.
fn r(v: f64, step: f64) -> i64 {
    (v / step).round() as i64
}

fn video_summary() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        seed: 7,
        frames: 24,
        ..SynthSpec::default()
    };
    let gt = synth::generate(&spec, dir.path()).unwrap();
    let report = analyze_video::<Cpu>(&gt.video, &ScanOptions::default(), &Default::default())
        .unwrap()
        .report;
    json!({
        "golden_frames": report.golden_frames.iter().map(|g| g.index).collect::<Vec<_>>(),
        "item": report.item.as_ref().map(|i| i.quad.iter().map(|p| [r(p[0], 0.5), r(p[1], 0.5)]).collect::<Vec<_>>()),
        "no_item_reason": report.no_item_reason,
        "defects": report.defects.iter().map(|d| json!({
            "kind": d.kind, "location": d.location, "bbox": d.bbox.map(|v| r(v, 0.01)), "support": d.support,
        })).collect::<Vec<_>>(),
        "scores": report.scores.as_ref().map(|s| json!({
            "centering_lr": r(s.centering_lr, 0.01), "centering_tb": r(s.centering_tb, 0.01),
            "corners": s.corners.map(|v| r(v, 0.1)), "edges": s.edges.map(|v| r(v, 0.1)),
            "surface": r(s.surface, 0.1), "overall": r(s.overall, 1.0),
        })),
    })
}

fn item_crop_summary() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let spec = PhotoSpec {
        seed: 3,
        items: Some(3),
        ..PhotoSpec::default()
    };
    let truth = synth_photo::generate(&spec, dir.path()).unwrap();
    let bytes = std::fs::read(&truth.photo).unwrap();
    let report = crop_items::<Cpu>(&bytes, &ItemCropOptions::default(), &Default::default())
        .unwrap()
        .report;
    json!({
        "items": report.items.iter().map(|i| json!({
            "quad": i.quad.iter().map(|p| [r(p[0], 1.0), r(p[1], 1.0)]).collect::<Vec<_>>(),
            "confidence": r(i.confidence, 0.01),
        })).collect::<Vec<_>>(),
    })
}

fn golden_path(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{kind}.json"))
}

fn check(kind: &str, version: u32, summary: Value) {
    let path = golden_path(kind);
    let now = json!({ "pipeline_version": version, "summary": summary });
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let stored_version = stored["pipeline_version"].as_u64().unwrap() as u32;
    if stored["summary"] != now["summary"] {
        assert_ne!(
            stored_version, version,
            "{kind}: results changed but PIPELINE_VERSION is still {version}: bump it (cached results would be served), \
             then regenerate with UPDATE_GOLDEN=1.\nstored: {}\nnow:    {}",
            stored["summary"], now["summary"]
        );
    }
    assert_eq!(stored_version, version, "{kind}: PIPELINE_VERSION is {version}, {path:?} holds {stored_version}'s outputs: regenerate with UPDATE_GOLDEN=1");
}

#[test]
fn video_scan_outputs_match_their_pipeline_version() {
    check("video_scan", pipeline::PIPELINE_VERSION, video_summary());
}

#[test]
fn item_crop_outputs_match_their_pipeline_version() {
    check(
        "item_crop",
        item_crop::PIPELINE_VERSION,
        item_crop_summary(),
    );
}
