//! What `worker analyze` prints: a progress line while it runs, then a
//! human-readable summary.

use std::fmt::Write;
use std::time::{Duration, Instant};

use vision::item_crop::ItemCropReport;
use vision::{pipeline::ScanReport, Progress};

/// A progress line on a terminal, rewritten in place (`\r`) at most every
/// `every`; the caller decides whether stderr is a terminal.
pub struct ProgressLine<W: std::io::Write> {
    out: W,
    started: Instant,
    every: Duration,
    last: Option<Instant>,
}

impl<W: std::io::Write> ProgressLine<W> {
    pub fn new(out: W, every: Duration) -> Self {
        Self {
            out,
            started: Instant::now(),
            every,
            last: None,
        }
    }

    pub fn update(&mut self, progress: Progress) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.every) {
            return;
        }
        self.last = Some(now);
        let line = progress_text(progress, now - self.started);
        // Clear to the end of the line: the new text may be shorter.
        let _ = write!(self.out, "\r{line}\x1b[K");
        let _ = self.out.flush();
    }

    /// Leave the line and start a fresh one for what follows.
    pub fn finish(&mut self) {
        if self.last.is_some() {
            let _ = writeln!(self.out);
        }
    }
}

/// `frames 120/300 (40 %), 12.5 frames/s`; without a declared total, just the count.
pub fn progress_text(progress: Progress, elapsed: Duration) -> String {
    let rate = progress.frames_done as f64 / elapsed.as_secs_f64().max(1e-3);
    if let Some(pct) = (100 * progress.frames_done).checked_div(progress.frames_total) {
        let pct = pct.min(100);
        format!(
            "analyzing: frames {}/{} ({pct} %), {rate:.1} frames/s",
            progress.frames_done, progress.frames_total
        )
    } else {
        format!(
            "analyzing: frames {}, {rate:.1} frames/s",
            progress.frames_done
        )
    }
}

pub fn summary(report: &ScanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} frames decoded, {} processed at {}×{} on {} in {:.0} ms",
        report.frames_decoded,
        report.frames_processed,
        report.processed_size[0],
        report.processed_size[1],
        report.backend,
        report.total_ms
    );
    match &report.scores {
        Some(scores) => {
            let _ = writeln!(
                out,
                "grade {:.1}/10  {}",
                scores.overall,
                serde_json::to_string(scores).unwrap_or_default()
            );
        }
        None => {
            let why = report
                .no_item_reason
                .map(|reason| serde_json::to_string(&reason).unwrap_or_default())
                .unwrap_or_default();
            let _ = writeln!(out, "no item found ({}): no grade", why.trim_matches('"'));
        }
    }
    let golden: Vec<String> = report
        .golden_frames
        .iter()
        .map(|g| g.index.to_string())
        .collect();
    let _ = writeln!(out, "golden frames: {}", golden.join(", "));
    let _ = writeln!(
        out,
        "device reads {}, uploads {}",
        report.transfers.device_reads, report.transfers.device_writes
    );
    let _ = writeln!(out, "defects: {}", report.defects.len());
    for defect in &report.defects {
        let _ = writeln!(
            out,
            "  {}",
            serde_json::to_string(defect).unwrap_or_default()
        );
    }
    write_timings(&mut out, &report.timings_ms);
    out
}

fn write_timings(out: &mut String, timings: &[vision::pipeline::StageTiming]) {
    let _ = writeln!(out, "stage timings:");
    for timing in timings {
        let _ = writeln!(out, "  {:<16} {:>9.1} ms", timing.stage, timing.ms);
    }
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
            item.index,
            b[0],
            b[1],
            b[2],
            b[3],
            item.rotated_rect.angle_deg,
            item.crop_size[0],
            item.crop_size[1],
            item.confidence
        );
    }
    write_timings(&mut out, &report.timings_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_shows_count_share_and_rate() {
        let p = Progress {
            frames_done: 120,
            frames_total: 300,
        };
        assert_eq!(
            progress_text(p, Duration::from_secs(10)),
            "analyzing: frames 120/300 (40 %), 12.0 frames/s"
        );
        let unknown = Progress {
            frames_done: 7,
            frames_total: 0,
        };
        assert_eq!(
            progress_text(unknown, Duration::from_secs(2)),
            "analyzing: frames 7, 3.5 frames/s"
        );
    }

    #[test]
    fn progress_line_is_rewritten_in_place_and_throttled() {
        let mut buf = Vec::new();
        {
            let mut line = ProgressLine::new(&mut buf, Duration::from_secs(3600));
            line.update(Progress {
                frames_done: 8,
                frames_total: 16,
            });
            // Within the interval: dropped.
            line.update(Progress {
                frames_done: 16,
                frames_total: 16,
            });
            line.finish();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("\ranalyzing: frames 8/16 (50 %)"),
            "{text:?}"
        );
        assert!(!text.contains("16/16"), "{text:?}");
        assert!(text.ends_with("\x1b[K\n"), "{text:?}");
    }
}
