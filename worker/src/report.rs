//! The human-readable summary `worker analyze` prints.

use std::fmt::Write;

use vision::item_crop::ItemCropReport;
use vision::pipeline::ScanReport;

pub fn summary(report: &ScanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} frames decoded, {} processed at {}×{} on {} in {:.0} ms",
        report.frames_decoded, report.frames_processed, report.processed_size[0], report.processed_size[1], report.backend, report.total_ms
    );
    match &report.scores {
        Some(scores) => {
            let _ = writeln!(out, "grade {:.1}/10  {}", scores.overall, serde_json::to_string(scores).unwrap_or_default());
        }
        None => {
            let _ = writeln!(out, "no item found: no grade");
        }
    }
    let golden: Vec<String> = report.golden_frames.iter().map(|g| g.index.to_string()).collect();
    let _ = writeln!(out, "golden frames: {}", golden.join(", "));
    let _ = writeln!(out, "defects: {}", report.defects.len());
    for defect in &report.defects {
        let _ = writeln!(out, "  {}", serde_json::to_string(defect).unwrap_or_default());
    }
    let _ = writeln!(out, "stage timings:");
    for timing in &report.timings_ms {
        let _ = writeln!(out, "  {:<16} {:>9.1} ms", timing.stage, timing.ms);
    }
    out
}

/// The summary of an `item_crop`: one line per item.
pub fn item_crop_summary(report: &ItemCropReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:?} {}×{} (decoded at 1/{}, worked at {}×{}) on {} in {:.0} ms: {} item(s)",
        report.format,
        report.source_size[0],
        report.source_size[1],
        report.decode_reduction,
        report.working_size[0],
        report.working_size[1],
        report.backend,
        report.total_ms,
        report.items.len()
    );
    for item in &report.items {
        let b = item.bbox;
        let _ = writeln!(
            out,
            "  #{} box [{:.0}, {:.0}, {:.0}, {:.0}]  angle {:.1}°  crop {}×{}  confidence {:.2}",
            item.index, b[0], b[1], b[2], b[3], item.rotated_rect.angle_deg, item.crop_size[0], item.crop_size[1], item.confidence
        );
    }
    let _ = writeln!(out, "stage timings:");
    for timing in &report.timings_ms {
        let _ = writeln!(out, "  {:<16} {:>9.1} ms", timing.stage, timing.ms);
    }
    out
}
