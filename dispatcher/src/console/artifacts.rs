//! A scan's artifacts (golden frames, defect mask, item crops) as the
//! console serves them: listed from the worker's result, addressed by their
//! position in that list (never by a path from the URL), and only under the
//! scan's tenant's prefix in the blob store.

use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub label: String,
    /// The video frame of a golden-frame image.
    pub frame: Option<u64>,
    pub is_defect_mask: bool,
    pub path: String,
    pub content_type: &'static str,
}

fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        _ => None,
    }
}

/// The images a result lists, in a stable order. Paths outside
/// `artifacts/<tenant>/` (which a worker never writes) and files that are
/// not images are left out.
pub fn listed(result: &Value, tenant_id: Uuid) -> Vec<Artifact> {
    let prefix = format!("artifacts/{tenant_id}/");
    let artifacts = &result["artifacts"];
    let mut found: Vec<(String, Option<u64>, bool, &Value)> = Vec::new();
    if let Some(frames) = artifacts["golden_frames"].as_array() {
        for frame in frames {
            let index = frame["frame"].as_u64();
            let label = match index {
                Some(index) => format!("golden frame {index}"),
                None => "golden frame".to_string(),
            };
            found.push((label, index, false, &frame["path"]));
        }
    }
    found.push((
        "defect mask".to_string(),
        None,
        true,
        &artifacts["defect_mask"],
    ));
    if let Some(crops) = artifacts["crops"].as_array() {
        for crop in crops {
            let label = match crop["item"].as_u64() {
                Some(index) => format!("item {index} crop"),
                None => "item crop".to_string(),
            };
            found.push((label, None, false, &crop["path"]));
        }
    }
    found
        .into_iter()
        .filter_map(|(label, frame, is_defect_mask, path)| {
            let path = path.as_str()?;
            let safe = path.starts_with(&prefix)
                && !path.split('/').any(|part| part.is_empty() || part == "..");
            Some(Artifact {
                label,
                frame,
                is_defect_mask,
                path: path.to_string(),
                content_type: content_type(path).filter(|_| safe)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tenants_images_are_listed_in_order() {
        let tenant = Uuid::now_v7();
        let other = Uuid::now_v7();
        let result = serde_json::json!({
            "artifacts": {
                "golden_frames": [
                    {"frame": 4, "path": format!("artifacts/{tenant}/s/golden_00004.jpg")},
                    {"frame": 9, "path": format!("artifacts/{other}/s/golden_00009.jpg")},
                    {"frame": 12, "path": format!("artifacts/{tenant}/../x/golden.jpg")},
                ],
                "defect_mask": format!("artifacts/{tenant}/s/defect_mask.png"),
                "crops": [{"item": 0, "path": format!("artifacts/{tenant}/s/crop_00.txt")}],
            }
        });
        let listed = listed(&result, tenant);
        let labels: Vec<&str> = listed.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["golden frame 4", "defect mask"]);
        assert_eq!(listed[0].content_type, "image/jpeg");
        assert_eq!(listed[1].content_type, "image/png");
        assert!(super::listed(&serde_json::json!({"kind": "probe"}), tenant).is_empty());
    }
}
