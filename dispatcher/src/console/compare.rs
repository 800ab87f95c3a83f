//! Two runs of one input side by side (the console's "compare routes"):
//! what each route did and how long it took, and the result fields that
//! differ between them.

use serde_json::Value;

use crate::console::scan_detail::readable_fields;
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
}

/// Fields that say how a run went rather than what it found: they differ
/// between any two runs, so they are shown but not counted as differences.
fn is_run_detail(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    path.contains("timings")
        || last.ends_with("_ms")
        || last.starts_with("device_")
        || matches!(
            last,
            "backend" | "cost_usd" | "cached" | "cached_from" | "worker" | "batch_size"
        )
}

/// Every result field of either scan, in path order, with the numeric
/// difference where both hold a number.
pub fn field_rows(first: Option<&Value>, second: Option<&Value>) -> Vec<FieldRow> {
    let fields = |result: Option<&Value>| {
        result
            .map(|r| readable_fields(r, MAX_FIELDS))
            .unwrap_or_default()
            .into_iter()
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let (a, b) = (fields(first), fields(second));
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
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
        .filter(|row| row.differs() && !is_run_detail(&row.path))
        .count()
}

/// Whether the row is a run detail (timing, backend, cost), for the page.
pub fn row_is_run_detail(row: &FieldRow) -> bool {
    is_run_detail(&row.path)
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
