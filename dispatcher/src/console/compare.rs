//! Two runs of one input side by side (the console's "compare routes"):
//! what each route did and how long it took, and the result fields that
//! differ between them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::scans::ScanView;

/// Result rows compared, at most (the JSON of each scan is one click away).
const MAX_FIELDS: usize = 200;

/// One result field of the two scans.
#[derive(Debug, PartialEq)]
pub struct FieldRow {
    pub path: String,
    /// The field as each scan reports it; `None` where it has no such field.
    pub first: Option<String>,
    pub second: Option<String>,
    /// `second − first` where both are numbers.
    pub delta: Option<f64>,
}

impl FieldRow {
    pub fn differs(&self) -> bool {
        self.first != self.second
    }

    /// A difference in what the scans found, not in how they ran.
    pub fn is_finding_difference(&self) -> bool {
        self.differs() && !is_run_detail(&self.path)
    }
}

/// Arrays up to this long are compared element by element (quads, boxes,
/// defects, golden frames, per-side grades); longer ones (per-frame
/// statistics) by their length.
const MAX_EXPANDED_ARRAY: usize = 16;

/// Fields that say how a run went rather than what it found: they differ
/// between any two runs, so they are shown but not counted as differences.
fn is_run_detail(path: &str) -> bool {
    let last = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .split('[')
        .next()
        .unwrap_or_default();
    path.starts_with("artifacts")
        || path.contains("timings")
        || last.ends_with("_ms")
        || last.starts_with("device_")
        || matches!(
            last,
            "backend" | "cost_usd" | "cached" | "cached_from" | "worker" | "batch_size"
        )
}

/// The result's scalar fields as `(path, value)`, with short arrays
/// expanded (`report.item.quad[2][0]`) so that a moved corner shows.
fn flatten(result: &Value) -> BTreeMap<String, String> {
    fn walk(path: String, value: &Value, out: &mut BTreeMap<String, String>) {
        if out.len() >= MAX_FIELDS {
            return;
        }
        match value {
            Value::Object(fields) => {
                for (name, value) in fields {
                    let path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    walk(path, value, out);
                }
            }
            Value::Array(items) if items.len() <= MAX_EXPANDED_ARRAY => {
                for (index, item) in items.iter().enumerate() {
                    walk(format!("{path}[{index}]"), item, out);
                }
                if items.is_empty() {
                    out.insert(path, "0 items".into());
                }
            }
            Value::Array(items) => {
                out.insert(path, format!("{} items", items.len()));
            }
            Value::Null => {
                out.insert(path, "—".into());
            }
            Value::String(text) => {
                out.insert(path, text.clone());
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(String::new(), result, &mut out);
    out
}

/// Every result field of either scan, in path order, with the numeric
/// difference where both hold a number.
pub fn field_rows(first: Option<&Value>, second: Option<&Value>) -> Vec<FieldRow> {
    let fields = |result: Option<&Value>| result.map(flatten).unwrap_or_default();
    let (a, b) = (fields(first), fields(second));
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .map(|path| {
            let (x, y) = (a.get(path).cloned(), b.get(path).cloned());
            let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<f64>().ok());
            let delta = number(&x).zip(number(&y)).map(|(x, y)| y - x);
            FieldRow {
                path: path.clone(),
                first: x,
                second: y,
                delta,
            }
        })
        .collect()
}

/// How many rows differ in what the scans found (run details left out).
pub fn findings_that_differ(rows: &[FieldRow]) -> usize {
    rows.iter()
        .filter(|row| row.is_finding_difference())
        .count()
}

/// Milliseconds from submission to start, and from start to finish.
pub fn waited_and_ran(scan: &ScanView) -> (Option<f64>, Option<f64>) {
    let ms = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        (to - from).num_milliseconds() as f64
    };
    (
        scan.started_at.map(|started| ms(scan.created_at, started)),
        scan.started_at
            .zip(scan.finished_at)
            .map(|(started, finished)| ms(started, finished)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_pair_fields_and_difference_numbers() {
        let cpu = json!({"backend": "cpu-ndarray", "report": {"scores": {"overall": 8.0}, "item": {"confidence": 0.9}, "total_ms": 900}});
        let gpu = json!({"backend": "cuda", "report": {"scores": {"overall": 8.0}, "item": {"confidence": 0.75}, "total_ms": 300, "device_reads": 40}});
        let rows = field_rows(Some(&cpu), Some(&gpu));
        let row = |path: &str| rows.iter().find(|r| r.path == path).unwrap();
        assert!(!row("report.scores.overall").differs());
        assert_eq!(row("report.scores.overall").delta, Some(0.0));
        let confidence = row("report.item.confidence");
        assert!(confidence.differs());
        assert!((confidence.delta.unwrap() + 0.15).abs() < 1e-9);
        assert_eq!(row("report.device_reads").first, None);
        assert_eq!(row("backend").delta, None);
        // Backend, timings and transfer counts always differ; only the
        // confidence is a different finding.
        assert_eq!(findings_that_differ(&rows), 1);
    }

    #[test]
    fn short_arrays_are_compared_element_by_element_and_artifact_paths_are_not_findings() {
        let first = json!({
            "report": {"item": {"quad": [[10, 20], [110, 20], [110, 160], [10, 160]]}, "frame_stats": vec![json!({"sharpness": 1}); 40]},
            "artifacts": {"golden_frames": ["artifacts/t/a/golden_0.jpg"]},
        });
        let mut second = first.clone();
        second["report"]["item"]["quad"][2][0] = json!(112);
        second["artifacts"]["golden_frames"][0] = json!("artifacts/t/b/golden_0.jpg");
        let rows = field_rows(Some(&first), Some(&second));
        let moved = rows
            .iter()
            .find(|r| r.path == "report.item.quad[2][0]")
            .unwrap();
        assert_eq!(moved.delta, Some(2.0));
        assert!(rows
            .iter()
            .any(|r| r.path == "report.frame_stats" && r.first.as_deref() == Some("40 items")));
        assert_eq!(
            findings_that_differ(&rows),
            1,
            "the corner, not the artifact path"
        );
    }

    #[test]
    fn a_scan_without_a_result_shows_the_other_alone() {
        let rows = field_rows(None, Some(&json!({"kind": "probe"})));
        assert_eq!(
            rows,
            [FieldRow {
                path: "kind".into(),
                first: None,
                second: Some("probe".into()),
                delta: None,
            }]
        );
        assert_eq!(findings_that_differ(&rows), 1);
    }
}
