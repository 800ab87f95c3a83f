//! The human-readable summary `worker analyze` prints.

use std::fmt::Write;

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
