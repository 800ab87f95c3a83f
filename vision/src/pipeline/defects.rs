//! Defect candidates inside the rectified item, typed by shape, and the
//! consensus across golden frames.

use burn_tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{locate::Profiles, Defect, FrameAnalysis, ScanOptions};
use crate::{
    backend::ScanBackend,
    frames::{to_vec_f32, GrayImage},
    primitives::{close, label_mask, open, Component, MorphShape},
};

/// The defect kinds a scan reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    Scratch,
    Crease,
    Stain,
    CornerWear,
    EdgeWear,
}

/// Top-hat / black-hat anomalies inside the rectified item, labelled and typed by shape.
pub(super) fn find_defects<B: ScanBackend>(
    card: Tensor<B, 4>,
    cw: usize,
    ch: usize,
    opts: &ScanOptions,
    prof: &Profiles,
    origin: (f64, f64),
) -> (Vec<Defect>, GrayImage) {
    let scale = ItemScale::new(ch);
    let k = (scale.px(15.0).round() as usize | 1).max(5);
    let tophat = card.clone() - open(card.clone(), MorphShape::Ellipse, k, k);
    let blackhat = close(card.clone(), MorphShape::Ellipse, k, k) - card;
    let bright = to_vec_f32(tophat.greater_elem(opts.defect_contrast).float());
    let dark = to_vec_f32(blackhat.greater_elem(opts.defect_contrast).float());
    // Dark pixels within a few pixels of the outline are rectification
    // slivers of background, not defects.
    let m = scale.px(4.0).round().max(2.0) as usize;
    let inside = |i: usize| {
        let (x, y) = (i % cw, i / cw);
        x >= m && y >= m && x + m < cw && y + m < ch
    };
    let bright_bits: Vec<bool> = bright.iter().map(|&v| v > 0.5).collect();
    let dark_bits: Vec<bool> = dark
        .iter()
        .enumerate()
        .map(|(i, &v)| v > 0.5 && inside(i))
        .collect();
    // Print-frame corners in item pixels: opening rounds them off, leaving
    // small bright residues that are not defects.
    let print_corners = {
        let (l, r, t, b) = (
            prof.print.0 - origin.0,
            prof.print.1 - origin.0,
            prof.print.2 - origin.1,
            prof.print.3 - origin.1,
        );
        [(l, t), (r, t), (r, b), (l, b)]
    };
    let mut defects = Vec::new();
    let mut mask = vec![0u8; cw * ch];
    for (bits, is_bright) in [(&bright_bits, true), (&dark_bits, false)] {
        let (labels, comps) = label_mask(bits, cw, ch);
        for c in &comps {
            let Some(d) = classify(c, is_bright, cw, ch, &print_corners, scale) else {
                continue;
            };
            for (i, &l) in labels.iter().enumerate() {
                if l == c.label {
                    mask[i] = 255;
                }
            }
            defects.push(d);
        }
    }
    (defects, GrayImage::new(cw, ch, mask))
}

/// Pixel sizes in the defect rules are tuned on a rectified item of this
/// height (a 720p scan with the item filling 82 % of the frame height) and
/// scale with the actual item: a scan downscaled to `DOWNSCALE_MAX=640`
/// shows every defect at half the length and a quarter of the area.
const TUNED_ITEM_HEIGHT: f64 = 590.0;

#[derive(Clone, Copy, Debug)]
struct ItemScale(f64);

impl ItemScale {
    fn new(item_height: usize) -> Self {
        Self(item_height as f64 / TUNED_ITEM_HEIGHT)
    }
    /// A length tuned at [`TUNED_ITEM_HEIGHT`], in this item's pixels.
    fn px(self, v: f64) -> f64 {
        v * self.0
    }
    /// An area tuned at [`TUNED_ITEM_HEIGHT`], in this item's pixels.
    fn area(self, v: f64) -> f64 {
        v * self.0 * self.0
    }
}

fn classify(
    c: &Component,
    bright: bool,
    cw: usize,
    ch: usize,
    print_corners: &[(f64, f64); 4],
    scale: ItemScale,
) -> Option<Defect> {
    let area = c.area as f64;
    if area < scale.area(8.0) {
        return None;
    }
    let (major, minor) = c.axes();
    let length = c.length().max(c.width.max(c.height) as f64);
    let (fw, fh) = (cw as f64, ch as f64);
    let bbox = [
        c.left as f64 / fw,
        c.top as f64 / fh,
        (c.left + c.width) as f64 / fw,
        (c.top + c.height) as f64 / fh,
    ];
    let near_print_corner = print_corners
        .iter()
        .any(|&(x, y)| (c.cx - x).abs() < scale.px(8.0) && (c.cy - y).abs() < scale.px(8.0));
    let edge_band = scale.px(6.0).round().max(2.0) as usize;
    let d_left = c.left;
    let d_top = c.top;
    let d_right = cw.saturating_sub(c.left + c.width);
    let d_bottom = ch.saturating_sub(c.top + c.height);
    let touches = [
        d_top <= edge_band,
        d_right <= edge_band,
        d_bottom <= edge_band,
        d_left <= edge_band,
    ];
    let mk = |kind, severity: f64, location: Option<&str>| Defect {
        kind,
        bbox,
        length_px: length,
        area_px: c.area as f64,
        severity: severity.clamp(0.0, 1.0),
        location: location.map(String::from),
        support: 1,
    };
    if bright {
        if near_print_corner && area < scale.area(40.0) {
            return None;
        }
        let corner_zone = 0.08 * fw;
        let near_x = if c.cx < corner_zone {
            Some(0)
        } else if c.cx > fw - corner_zone {
            Some(1)
        } else {
            None
        };
        let near_y = if c.cy < corner_zone {
            Some(0)
        } else if c.cy > fh - corner_zone {
            Some(1)
        } else {
            None
        };
        if touches.iter().any(|&t| t) {
            if let (Some(x), Some(y)) = (near_x, near_y) {
                // Below ~20 px a corner residue is the opening rounding off
                // a sliver of the item's own corner, not wear.
                if area < scale.area(20.0) {
                    return None;
                }
                let name = ["top_left", "top_right", "bottom_left", "bottom_right"][y * 2 + x];
                return Some(mk(
                    DefectKind::CornerWear,
                    area / scale.area(150.0),
                    Some(name),
                ));
            }
            let side = ["top", "right", "bottom", "left"][touches.iter().position(|&t| t).unwrap()];
            let along = if side == "top" || side == "bottom" {
                fw
            } else {
                fh
            };
            return Some(mk(
                DefectKind::EdgeWear,
                length / (0.15 * along),
                Some(side),
            ));
        }
        if length >= scale.px(15.0) {
            return Some(mk(DefectKind::Scratch, length / (0.3 * fw), None));
        }
        return None;
    }
    if major > 3.0 * minor.max(0.5) && length >= scale.px(40.0) {
        return Some(mk(DefectKind::Crease, length / (0.3 * fw), None));
    }
    if area >= scale.area(12.0) {
        return Some(mk(DefectKind::Stain, area / scale.area(200.0), None));
    }
    None
}

/// Keep defects seen in a majority of golden frames (boxes of the same kind
/// that overlap after a small inflation). Every frame's defects are
/// candidates, not only the first frame's: glare or a thumb can hide a
/// defect in any one frame. Each defect is reported once, as seen in the
/// earliest frame that saw it.
pub(super) fn consensus(frames: &[FrameAnalysis]) -> Vec<Defect> {
    let need = frames.len().div_ceil(2);
    let overlaps = |a: &[f64; 4], b: &[f64; 4]| {
        let e = 0.01;
        a[0] - e < b[2] && b[0] - e < a[2] && a[1] - e < b[3] && b[1] - e < a[3]
    };
    let mut out: Vec<Defect> = Vec::new();
    for frame in frames {
        for d in &frame.defects {
            // Already reported from an earlier frame.
            if out
                .iter()
                .any(|o| o.kind == d.kind && overlaps(&o.bbox, &d.bbox))
            {
                continue;
            }
            let support = frames
                .iter()
                .filter(|f| {
                    f.defects
                        .iter()
                        .any(|o| o.kind == d.kind && overlaps(&o.bbox, &d.bbox))
                })
                .count();
            if support >= need {
                out.push(Defect {
                    support,
                    ..d.clone()
                });
            }
        }
    }
    out
}
