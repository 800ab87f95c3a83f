//! The scan viewer for `video_scan` results: golden frames with the item's
//! quad drawn over the frame it was measured on, the rectified item (the
//! defect mask) with each defect's box, and the per-frame sharpness and
//! motion curves with the golden frames marked. Drawn as SVG over the
//! artifacts (attributes only: no inline style, so the CSP holds).
//!
//! Coordinates come straight from the worker's report: the quad in
//! processed-frame pixels (the golden JPEGs' size), defect boxes normalised
//! to the rectified item.

use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::artifacts::Artifact;

/// The parts of a `video_scan` report the viewer draws.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub processed_size: [f64; 2],
    #[serde(default)]
    pub frame_stats: Vec<FrameStat>,
    #[serde(default)]
    pub golden_frames: Vec<Golden>,
    pub item: Option<Item>,
    #[serde(default)]
    pub defects: Vec<DefectBox>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FrameStat {
    pub index: usize,
    pub sharpness: f64,
    pub motion: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Golden {
    pub index: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    pub frame: usize,
    pub quad: [[f64; 2]; 4],
    pub size: [f64; 2],
}

#[derive(Debug, Clone, Deserialize)]
pub struct DefectBox {
    pub kind: String,
    pub bbox: [f64; 4],
    pub severity: f64,
    pub location: Option<String>,
}

impl Report {
    /// The report of a `video_scan` result; `None` for other kinds or a
    /// result without one (nothing is drawn then).
    pub fn of(result: &serde_json::Value) -> Option<Report> {
        if result["kind"] != "video_scan" {
            return None;
        }
        let report: Report = serde_json::from_value(result["report"].clone()).ok()?;
        (report.processed_size[0] > 0.0 && report.processed_size[1] > 0.0).then_some(report)
    }
}

/// SVG `points` of a quad.
pub fn quad_points(quad: &[[f64; 2]; 4]) -> String {
    quad.iter()
        .map(|[x, y]| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A defect box in rectified-item pixels: `[x, y, width, height]`.
pub fn defect_rect(defect: &DefectBox, item_size: [f64; 2]) -> [f64; 4] {
    let [x0, y0, x1, y1] = defect.bbox.map(|v| v.clamp(0.0, 1.0));
    let [w, h] = item_size;
    [
        x0 * w,
        y0 * h,
        ((x1 - x0) * w).max(1.0),
        ((y1 - y0) * h).max(1.0),
    ]
}

/// Points of a curve over `values` in a `width` × `height` box (top = max).
pub fn curve_points(values: &[(usize, f64)], last_frame: usize, width: f64, height: f64) -> String {
    let max = values
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let span = last_frame.max(1) as f64;
    values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(frame, value)| {
            let x = *frame as f64 / span * width;
            let y = if max > 0.0 {
                height - value / max * height
            } else {
                height
            };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn artifact_url(scan_id: Uuid, index: usize) -> String {
    format!("/ui/scans/{scan_id}/artifacts/{index}")
}

/// The viewer's sections for one scan.
pub fn render(scan_id: Uuid, report: &Report, images: &[Artifact]) -> Markup {
    let [width, height] = report.processed_size;
    let view_box = format!("0 0 {width} {height}");
    let mask = images.iter().position(|a| a.is_defect_mask);
    let last_frame = report
        .frame_stats
        .iter()
        .map(|s| s.index)
        .max()
        .unwrap_or(0);
    let sharpness: Vec<(usize, f64)> = report
        .frame_stats
        .iter()
        .map(|s| (s.index, s.sharpness))
        .collect();
    let motion: Vec<(usize, f64)> = report
        .frame_stats
        .iter()
        .map(|s| (s.index, s.motion))
        .collect();
    html! {
        section.card #viewer {
            h2 { "Scan viewer" }
            @if report.item.is_none() {
                p.muted { "No item was located, so there is no outline to draw." }
            }
            div.viewer-frames {
                @for (index, image) in images.iter().enumerate() {
                    @if let Some(frame) = image.frame {
                        figure.viewer-frame data-frame=(frame) {
                            svg.viewer viewBox=(view_box) preserveAspectRatio="xMidYMid meet" role="img" aria-label=(image.label) {
                                image href=(artifact_url(scan_id, index)) x="0" y="0" width=(width) height=(height) {}
                                @if let Some(item) = report.item.as_ref().filter(|item| item.frame as u64 == frame) {
                                    polygon.quad points=(quad_points(&item.quad)) vector-effect="non-scaling-stroke" {
                                        title { "item outline measured on frame " (item.frame) }
                                    }
                                }
                            }
                            figcaption { (image.label) }
                        }
                    }
                }
            }
            @if let Some(item) = &report.item {
                h2 { "Rectified item and defects" }
                div.viewer-rectified {
                    svg.viewer #rectified viewBox={ "0 0 " (item.size[0]) " " (item.size[1]) } role="img" aria-label="Rectified item with defect boxes" {
                        @if let Some(mask) = mask {
                            image href=(artifact_url(scan_id, mask)) x="0" y="0" width=(item.size[0]) height=(item.size[1]) {}
                        }
                        rect.item-outline x="0" y="0" width=(item.size[0]) height=(item.size[1]) vector-effect="non-scaling-stroke" {}
                        @for (n, defect) in report.defects.iter().enumerate() {
                            @let [x, y, w, h] = defect_rect(defect, item.size);
                            rect.defect data-defect=(n) data-kind=(defect.kind)
                                x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{w:.1}")) height=(format!("{h:.1}"))
                                vector-effect="non-scaling-stroke" {
                                title { "#" (n + 1) " " (defect.kind) ", severity " (format!("{:.2}", defect.severity)) }
                            }
                        }
                    }
                    @if report.defects.is_empty() {
                        p.muted { "No defects found." }
                    } @else {
                        table {
                            thead { tr { th { "#" } th { "kind" } th.num { "severity" } th { "location" } th { "box (of the item)" } } }
                            tbody {
                                @for (n, defect) in report.defects.iter().enumerate() {
                                    tr {
                                        td { (n + 1) }
                                        td { (defect.kind) }
                                        td.num { (format!("{:.2}", defect.severity)) }
                                        td { (defect.location.as_deref().unwrap_or("—")) }
                                        td.mono { (format!("{:.3}, {:.3} – {:.3}, {:.3}", defect.bbox[0], defect.bbox[1], defect.bbox[2], defect.bbox[3])) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !report.frame_stats.is_empty() {
                h2 { "Sharpness and motion per frame" }
                svg.curves viewBox="0 0 1000 160" preserveAspectRatio="none" role="img" aria-label="Sharpness and motion per frame, golden frames marked" {
                    @for golden in &report.golden_frames {
                        @let x = golden.index as f64 / last_frame.max(1) as f64 * 1000.0;
                        line.golden-mark x1=(format!("{x:.1}")) x2=(format!("{x:.1}")) y1="0" y2="150" vector-effect="non-scaling-stroke" {
                            title { "golden frame " (golden.index) }
                        }
                    }
                    polyline.sharpness points=(curve_points(&sharpness, last_frame, 1000.0, 150.0)) vector-effect="non-scaling-stroke" {}
                    polyline.motion points=(curve_points(&motion, last_frame, 1000.0, 150.0)) vector-effect="non-scaling-stroke" {}
                }
                p.muted.legend {
                    span.key-sharpness { "sharpness" } " · " span.key-motion { "motion" } " · " span.key-golden { "golden frames" }
                    " (each curve scaled to its own maximum; frames 0–" (last_frame) ")"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_report() {
        assert_eq!(
            quad_points(&[[10.0, 20.0], [110.0, 22.5], [108.0, 180.0], [9.0, 178.0]]),
            "10.0,20.0 110.0,22.5 108.0,180.0 9.0,178.0"
        );
        let defect = DefectBox {
            kind: "scratch".into(),
            bbox: [0.1, 0.5, 0.3, 0.75],
            severity: 0.4,
            location: None,
        };
        assert_eq!(
            defect_rect(&defect, [200.0, 400.0]),
            [20.0, 200.0, 40.0, 100.0]
        );
        assert_eq!(
            curve_points(&[(0, 0.0), (5, 2.0), (10, 4.0)], 10, 100.0, 50.0),
            "0.0,50.0 50.0,25.0 100.0,0.0"
        );
    }

    #[test]
    fn only_video_scan_reports_are_drawn() {
        assert!(Report::of(&serde_json::json!({"kind": "probe"})).is_none());
        let result = serde_json::json!({"kind": "video_scan", "report": {
            "processed_size": [640, 360], "frame_stats": [], "golden_frames": [],
            "item": null, "defects": [], "other": "ignored"}});
        let report = Report::of(&result).unwrap();
        assert_eq!(report.processed_size, [640.0, 360.0]);
        assert!(report.item.is_none());
    }
}
