//! Scratches (thin bright lines) and creases (thin dark lines): long,
//! straight and thin marks. Printed art has bright and dark detail
//! everywhere, but rarely one thin straight stroke a sixth of the item long
//! standing alone; the print's own frame lines, parallel to the outline and
//! near it, are left out.

use opencv::{
    core::{Mat, Vec4i, Vector},
    imgproc,
    prelude::*,
};

use super::{defect, DefectKind, DefectRules, Found, Item, Mark};
use crate::error::VisionError;

/// Lines of `kind` in `response` (the item's top-hat for scratches,
/// black-hat for creases), one per straight mark.
pub(super) fn find(
    item: &Item,
    response: &[f32],
    kind: DefectKind,
    rules: &DefectRules,
) -> Result<Vec<Found>, VisionError> {
    let (w, h) = (item.w, item.h);
    let min_len = match kind {
        DefectKind::Crease => rules.crease_min_len,
        _ => rules.scratch_min_len,
    } * w as f64;
    let margin = (rules.line_margin * w as f64).round() as usize;
    let bits: Vec<u8> = response
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (x, y) = (i % w, i / w);
            let inside = x >= margin && y >= margin && x + margin < w && y + margin < h;
            if inside && v > rules.line_contrast {
                255
            } else {
                0
            }
        })
        .collect();
    let bits = Mat::from_slice(&bits)?.reshape(1, h as i32)?.try_clone()?;
    let mut segments = Vector::<Vec4i>::new();
    imgproc::hough_lines_p(
        &bits,
        &mut segments,
        1.0,
        std::f64::consts::PI / 180.0,
        (rules.line_votes * min_len) as i32,
        min_len,
        item.scale.px(rules.line_gap_px),
    )?;
    let mut lines: Vec<Segment> = segments
        .iter()
        .map(|s| Segment {
            a: [s[0] as f64, s[1] as f64],
            b: [s[2] as f64, s[3] as f64],
        })
        .filter(|s| s.is_thin(item, response, rules) && !s.is_frame_line(item, rules))
        .collect();
    // Longest first; Hough returns one mark as several overlapping segments.
    lines.sort_by(|p, q| q.length().total_cmp(&p.length()));
    let mut kept: Vec<Segment> = Vec::new();
    for s in lines {
        if !kept.iter().any(|k| k.same_mark(&s, item)) {
            kept.push(s);
        }
    }
    Ok(kept
        .into_iter()
        .map(|s| {
            let length = s.length();
            let bbox = item.bbox(
                s.a[0].min(s.b[0]),
                s.a[1].min(s.b[1]),
                s.a[0].max(s.b[0]),
                s.a[1].max(s.b[1]),
            );
            Found {
                // A line of 30 % of the item's width is as bad as a line gets.
                defect: defect(
                    kind,
                    bbox,
                    length,
                    length * item.scale.px(rules.line_side_px),
                    length / (0.3 * w as f64),
                    None,
                ),
                mark: Mark::Segment(s.a, s.b),
            }
        })
        .collect())
}

/// A Hough segment in item pixels.
#[derive(Clone, Copy, Debug)]
struct Segment {
    a: [f64; 2],
    b: [f64; 2],
}

impl Segment {
    fn length(&self) -> f64 {
        (self.b[0] - self.a[0]).hypot(self.b[1] - self.a[1])
    }

    /// Direction in degrees, 0..180.
    fn angle_deg(&self) -> f64 {
        (self.b[1] - self.a[1])
            .atan2(self.b[0] - self.a[0])
            .to_degrees()
            .rem_euclid(180.0)
    }

    /// Median of `response` along the segment shifted `offset` pixels along its normal.
    fn median_along(&self, item: &Item, response: &[f32], offset: f64) -> f32 {
        let len = self.length();
        let n = len.max(2.0) as usize;
        let (nx, ny) = (
            -(self.b[1] - self.a[1]) / len,
            (self.b[0] - self.a[0]) / len,
        );
        let mut v: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / (n - 1) as f64;
                let x = self.a[0] + t * (self.b[0] - self.a[0]) + nx * offset;
                let y = self.a[1] + t * (self.b[1] - self.a[1]) + ny * offset;
                let x = (x.round().max(0.0) as usize).min(item.w - 1);
                let y = (y.round().max(0.0) as usize).min(item.h - 1);
                response[y * item.w + x]
            })
            .collect();
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    }

    /// A line, not the edge of a wider bright or dark region: the response
    /// falls off on both sides.
    fn is_thin(&self, item: &Item, response: &[f32], rules: &DefectRules) -> bool {
        let on = self.median_along(item, response, 0.0);
        let side = item.scale.px(rules.line_side_px);
        let beside = self
            .median_along(item, response, side)
            .max(self.median_along(item, response, -side));
        beside <= rules.line_side_ratio * on
    }

    /// Parallel to the item's sides and near them: a frame line of the print.
    fn is_frame_line(&self, item: &Item, rules: &DefectRules) -> bool {
        let angle = self.angle_deg();
        let off_axis = angle.min((angle - 90.0).abs()).min(180.0 - angle);
        if off_axis >= rules.frame_axis_deg {
            return false;
        }
        let horizontal = !(45.0..=135.0).contains(&angle);
        let pos = if horizontal {
            (self.a[1] + self.b[1]) / 2.0 / item.h as f64
        } else {
            (self.a[0] + self.b[0]) / 2.0 / item.w as f64
        };
        pos < rules.frame_zone || pos > 1.0 - rules.frame_zone
    }

    /// Overlapping boxes and nearly the same direction: the same mark.
    fn same_mark(&self, other: &Segment, item: &Item) -> bool {
        let pad = 0.01 * item.w.max(item.h) as f64;
        let bx = |s: &Segment| {
            [
                s.a[0].min(s.b[0]) - pad,
                s.a[1].min(s.b[1]) - pad,
                s.a[0].max(s.b[0]) + pad,
                s.a[1].max(s.b[1]) + pad,
            ]
        };
        let (p, q) = (bx(self), bx(other));
        let overlap = p[0] < q[2] && q[0] < p[2] && p[1] < q[3] && q[1] < p[3];
        let turn = (self.angle_deg() - other.angle_deg() + 90.0).rem_euclid(180.0) - 90.0;
        overlap && turn.abs() < 10.0
    }
}
