//! Sub-grades and the overall grade from centering and defects.

use super::{Defect, DefectKind, Scores};

fn grade(penalty: f64) -> f64 {
    (10.0 - 9.0 * penalty.clamp(0.0, 1.0)).clamp(1.0, 10.0)
}

pub(super) fn score(lr: f64, tb: f64, defects: &[Defect]) -> Scores {
    let off = (lr - 0.5).abs().max((tb - 0.5).abs());
    // 55/45 or better is a 10; 90/10 or worse is a 1.
    let centering = grade(((off - 0.05) / 0.35).max(0.0));
    let sum = |f: &dyn Fn(&Defect) -> bool| {
        defects
            .iter()
            .filter(|d| f(d))
            .map(|d| d.severity)
            .sum::<f64>()
    };
    let corner_names = ["top_left", "top_right", "bottom_right", "bottom_left"];
    let corners = corner_names.map(|n| {
        grade(sum(&|d| {
            d.kind == DefectKind::CornerWear && d.location.as_deref() == Some(n)
        }))
    });
    let edge_names = ["top", "right", "bottom", "left"];
    let edges = edge_names.map(|n| {
        grade(sum(&|d| {
            d.kind == DefectKind::EdgeWear && d.location.as_deref() == Some(n)
        }))
    });
    let surface = grade(
        0.5 * sum(&|d| {
            matches!(
                d.kind,
                DefectKind::Scratch | DefectKind::Crease | DefectKind::Stain
            )
        }),
    );
    let avg = |v: &[f64; 4]| v.iter().sum::<f64>() / 4.0;
    let min4 = |v: &[f64; 4]| v.iter().copied().fold(10.0, f64::min);
    let weighted = 0.25 * centering + 0.25 * avg(&corners) + 0.2 * avg(&edges) + 0.3 * surface;
    // A grade is capped by its weakest sub-grade (a crease caps a card).
    let cap = centering.min(min4(&corners)).min(min4(&edges)).min(surface) + 1.5;
    let overall = weighted.min(cap).round().clamp(1.0, 10.0);
    let ratio = |s: f64| format!("{:.0}/{:.0}", s * 100.0, 100.0 - s * 100.0);
    Scores {
        centering_lr: lr,
        centering_tb: tb,
        centering_lr_ratio: ratio(lr),
        centering_tb_ratio: ratio(tb),
        centering,
        corners,
        edges,
        surface,
        overall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defect(kind: DefectKind, severity: f64, location: Option<&str>) -> Defect {
        Defect {
            kind,
            bbox: [0.4, 0.4, 0.5, 0.5],
            length_px: 10.0,
            area_px: 10.0,
            severity,
            location: location.map(String::from),
            support: 2,
        }
    }

    #[test]
    fn a_centred_card_without_defects_grades_ten_everywhere() {
        let s = score(0.5, 0.5, &[]);
        assert_eq!(
            (s.centering, s.corners, s.edges, s.surface, s.overall),
            (10.0, [10.0; 4], [10.0; 4], 10.0, 10.0)
        );
    }

    #[test]
    fn each_defect_kind_lowers_its_own_sub_grade_only() {
        let base = score(0.5, 0.5, &[]);
        let cases = [
            (
                defect(DefectKind::CornerWear, 0.5, Some("bottom_right")),
                "corner 2",
            ),
            (defect(DefectKind::EdgeWear, 0.5, Some("left")), "edge 3"),
            (defect(DefectKind::Scratch, 0.5, None), "surface"),
            (defect(DefectKind::Crease, 0.5, None), "surface"),
            (defect(DefectKind::Stain, 0.5, None), "surface"),
        ];
        for (d, which) in cases {
            let s = score(0.5, 0.5, std::slice::from_ref(&d));
            let lowered: Vec<String> = (0..4)
                .filter(|&i| s.corners[i] < base.corners[i])
                .map(|i| format!("corner {i}"))
                .chain(
                    (0..4)
                        .filter(|&i| s.edges[i] < base.edges[i])
                        .map(|i| format!("edge {i}")),
                )
                .chain((s.surface < base.surface).then(|| "surface".to_string()))
                .chain((s.centering < base.centering).then(|| "centering".to_string()))
                .collect();
            assert_eq!(lowered, vec![which.to_string()], "{:?}", d.kind);
            assert!(
                s.overall < base.overall,
                "{:?} at severity 0.5 leaves the overall grade at {}",
                d.kind,
                s.overall
            );
        }
    }

    #[test]
    fn sub_grades_fall_as_severity_rises() {
        for kind in [
            DefectKind::CornerWear,
            DefectKind::EdgeWear,
            DefectKind::Scratch,
            DefectKind::Crease,
            DefectKind::Stain,
        ] {
            let location = match kind {
                DefectKind::CornerWear => Some("top_left"),
                DefectKind::EdgeWear => Some("top"),
                _ => None,
            };
            let grades: Vec<(f64, f64)> = [0.1, 0.3, 0.6, 1.0]
                .iter()
                .map(|&sev| {
                    let s = score(0.5, 0.5, &[defect(kind, sev, location)]);
                    (s.corners[0].min(s.edges[0]).min(s.surface), s.overall)
                })
                .collect();
            for pair in grades.windows(2) {
                assert!(pair[1].0 < pair[0].0, "{kind:?}: sub-grade {grades:?}");
                assert!(pair[1].1 <= pair[0].1, "{kind:?}: overall {grades:?}");
            }
        }
    }

    #[test]
    fn centering_follows_the_worse_axis_and_the_ratio_bands() {
        assert!(
            score(0.55, 0.45, &[]).centering > 9.999,
            "55/45 is still a 10"
        );
        assert!(score(0.9, 0.5, &[]).centering < 1.001, "90/10 is a 1");
        let (a, b, c) = (
            score(0.6, 0.5, &[]).centering,
            score(0.7, 0.5, &[]).centering,
            score(0.5, 0.8, &[]).centering,
        );
        assert!(10.0 > a && a > b && b > c && c > 1.0, "{a} {b} {c}");
        let s = score(0.62, 0.41, &[]);
        assert_eq!(
            (s.centering_lr_ratio.as_str(), s.centering_tb_ratio.as_str()),
            ("62/38", "41/59")
        );
    }
}
