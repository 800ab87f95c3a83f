//! Defects of the rectified item, and the consensus across golden frames.
//!
//! Each kind is looked for as what it physically is, not as "any small
//! bright or dark thing", because a real card's print is full of small
//! bright and dark things (photos, text, fur):
//! - scratches and creases are long, thin, straight marks across the print
//!   ([`lines`]): a top-hat (bright) or black-hat (dark) line that the
//!   probabilistic Hough transform finds as one segment, thin on both sides;
//! - edge and corner wear change the outermost band of the item, which is
//!   border, against the rest of that border ([`wear`]);
//! - stains are isolated, compact dark blotches on a quiet surround
//!   ([`stains`]).
//!
//! The rules were tuned on the development part of the independent video
//! renders (`bench/vision/eval/video/`, `defect_lab.py`), not on
//! `vision::synth`; the note in `bench/vision/eval/video/RESULTS.md` gives
//! per-kind recall and precision on both parts.

mod lines;
mod stains;
mod wear;

use burn_tensor::Tensor;
use opencv::{
    core::{Mat, Point, Rect, Scalar, CV_8UC1},
    imgproc,
};
use serde::{Deserialize, Serialize};

use super::{Defect, FrameAnalysis};
use crate::{
    backend::ScanBackend,
    error::VisionError,
    frames::{to_vec_f32, GrayImage},
    primitives::{close, open, MorphShape},
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

/// Every threshold of the defect detectors. Lengths are shares of the
/// item's width unless they say otherwise; `*_px` values are pixels of an
/// item [`TUNED_ITEM_HEIGHT`] tall and scale with the actual item.
#[derive(Clone, Debug)]
pub(super) struct DefectRules {
    /// Top-hat / black-hat level (8-bit) of a line pixel.
    pub line_contrast: f32,
    /// Structuring element of the top-hat / black-hat, in px.
    pub line_kernel_px: f64,
    /// Lines are not looked for this close to the item's outline.
    pub line_margin: f64,
    /// Shortest scratch and crease.
    pub scratch_min_len: f64,
    pub crease_min_len: f64,
    /// Hough votes per pixel of the shortest line.
    pub line_votes: f64,
    /// Largest gap inside one line, px.
    pub line_gap_px: f64,
    /// A line is thin: its response this far to either side (px) is at most
    /// `line_side_ratio` of its response on the line.
    pub line_side_px: f64,
    pub line_side_ratio: f32,
    /// Lines within this many degrees of the item's axes and within
    /// `frame_zone` of its outline are the print's own frame lines.
    pub frame_axis_deg: f64,
    pub frame_zone: f64,
    /// Outer band of the item where wear shows, and the deeper band that
    /// tells wear (shallow) from something lying over the edge (a thumb).
    pub wear_band: (f64, f64),
    pub wear_deep_band: (f64, f64),
    /// Edge wear is not looked for this close to a corner (corner wear is).
    pub wear_corner_zone: f64,
    /// Level change (8-bit) of the outer band against the rest of the side.
    pub wear_contrast: f32,
    /// Shortest worn stretch, as a share of the side.
    pub wear_min_len: f64,
    /// Corner patch side, and where along the sides its reference lies.
    pub corner_size: f64,
    pub corner_reference: (f64, f64),
    /// Level change (8-bit) of a worn corner against its reference.
    pub corner_contrast: f32,
    /// Stains are looked for on the item downscaled to this width (px).
    pub stain_width_px: f64,
    /// Black-hat element, as a share of that width.
    pub stain_kernel: f64,
    pub stain_contrast: f32,
    pub stain_margin: f64,
    /// Equivalent radius range, as shares of the width; blotches down to
    /// `stain_small_radius` count where the surround is very quiet (its
    /// standard deviation at most `stain_small_texture` × the depth).
    pub stain_radius: (f64, f64),
    pub stain_small_radius: f64,
    pub stain_small_texture: f32,
    /// Bounding-box aspect (short/long) and fill at least this.
    pub stain_roundness: f64,
    pub stain_fill: f64,
    /// At most this share of the surround responds half as strongly, and
    /// the surround's standard deviation is at most `stain_texture` × the
    /// stain's depth: a stain is only told from print on a quiet surround.
    pub stain_busy: f64,
    pub stain_texture: f32,
}

impl Default for DefectRules {
    fn default() -> Self {
        Self {
            line_contrast: 20.0,
            line_kernel_px: 15.0,
            line_margin: 0.03,
            scratch_min_len: 0.15,
            crease_min_len: 0.3,
            line_votes: 0.5,
            line_gap_px: 4.0,
            line_side_px: 4.0,
            line_side_ratio: 0.5,
            frame_axis_deg: 2.0,
            frame_zone: 0.15,
            wear_band: (0.0, 0.012),
            wear_deep_band: (0.03, 0.045),
            wear_corner_zone: 0.07,
            wear_contrast: 16.0,
            wear_min_len: 0.04,
            corner_size: 0.015,
            corner_reference: (0.10, 0.20),
            corner_contrast: 35.0,
            stain_width_px: 160.0,
            stain_kernel: 0.16,
            stain_contrast: 20.0,
            stain_margin: 0.06,
            stain_radius: (0.02, 0.08),
            stain_small_radius: 0.01,
            stain_small_texture: 0.1,
            stain_roundness: 0.5,
            stain_fill: 0.5,
            stain_busy: 0.15,
            stain_texture: 1.0,
        }
    }
}

/// Pixel sizes in the rules are given for a rectified item of this height
/// (a 720p scan with the item filling 82 % of the frame height) and scale
/// with the actual item.
const TUNED_ITEM_HEIGHT: f64 = 590.0;

#[derive(Clone, Copy, Debug)]
struct ItemScale(f64);

impl ItemScale {
    fn new(item_height: usize) -> Self {
        Self(item_height as f64 / TUNED_ITEM_HEIGHT)
    }
    /// A length given at [`TUNED_ITEM_HEIGHT`], in this item's pixels.
    fn px(self, v: f64) -> f64 {
        v * self.0
    }
}

/// The rectified item (`[1, 1, h, w]`, 8-bit levels) as the detectors see it.
struct Item<'a> {
    w: usize,
    h: usize,
    px: &'a [f32],
    scale: ItemScale,
}

impl Item<'_> {
    fn at(&self, x: usize, y: usize) -> f32 {
        self.px[y * self.w + x]
    }
    /// Normalised `[x0, y0, x1, y1]` of a pixel box.
    fn bbox(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> [f64; 4] {
        let (w, h) = (self.w as f64, self.h as f64);
        [
            (x0 / w).clamp(0.0, 1.0),
            (y0 / h).clamp(0.0, 1.0),
            (x1 / w).clamp(0.0, 1.0),
            (y1 / h).clamp(0.0, 1.0),
        ]
    }
}

/// How a defect is drawn into the mask.
enum Mark {
    /// A line between two points, item pixels.
    Segment([f64; 2], [f64; 2]),
    /// Its bounding box, filled.
    Area,
}

/// A defect and its mark.
struct Found {
    defect: Defect,
    mark: Mark,
}

fn defect(
    kind: DefectKind,
    bbox: [f64; 4],
    length_px: f64,
    area_px: f64,
    severity: f64,
    location: Option<&str>,
) -> Defect {
    Defect {
        kind,
        bbox,
        length_px,
        area_px,
        severity: severity.clamp(0.0, 1.0),
        location: location.map(String::from),
        support: 1,
    }
}

/// The defects of one rectified item and their mask (255 where a defect lies).
pub(super) fn find_defects<B: ScanBackend>(
    card: Tensor<B, 4>,
    cw: usize,
    ch: usize,
    rules: &DefectRules,
) -> Result<(Vec<Defect>, GrayImage), VisionError> {
    let scale = ItemScale::new(ch);
    let k = (scale.px(rules.line_kernel_px).round() as usize | 1).max(5);
    let tophat = card.clone() - open(card.clone(), MorphShape::Ellipse, k, k);
    let blackhat = close(card.clone(), MorphShape::Ellipse, k, k) - card.clone();
    let px = to_vec_f32(card);
    let item = Item {
        w: cw,
        h: ch,
        px: &px,
        scale,
    };
    let mut found = Vec::new();
    found.extend(lines::find(
        &item,
        &to_vec_f32(tophat),
        DefectKind::Scratch,
        rules,
    )?);
    found.extend(lines::find(
        &item,
        &to_vec_f32(blackhat),
        DefectKind::Crease,
        rules,
    )?);
    found.extend(wear::find(&item, rules));
    found.extend(stains::find(&item, rules)?);
    let mask = draw_mask(&found, cw, ch, scale)?;
    Ok((found.into_iter().map(|f| f.defect).collect(), mask))
}

/// The defect mask artifact: lines drawn along scratches and creases, boxes
/// filled for wear and stains.
fn draw_mask(
    found: &[Found],
    w: usize,
    h: usize,
    scale: ItemScale,
) -> Result<GrayImage, VisionError> {
    let mut mask = Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC1, Scalar::all(0.0))?;
    let white = Scalar::all(255.0);
    for f in found {
        match f.mark {
            Mark::Segment(a, b) => imgproc::line(
                &mut mask,
                Point::new(a[0].round() as i32, a[1].round() as i32),
                Point::new(b[0].round() as i32, b[1].round() as i32),
                white,
                scale.px(3.0).round().max(1.0) as i32,
                imgproc::LINE_8,
                0,
            )?,
            Mark::Area => {
                let [x0, y0, x1, y1] = f.defect.bbox;
                let (x0, y0) = ((x0 * w as f64) as i32, (y0 * h as f64) as i32);
                let (x1, y1) = ((x1 * w as f64).ceil() as i32, (y1 * h as f64).ceil() as i32);
                let rect = Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1));
                imgproc::rectangle(&mut mask, rect, white, -1, imgproc::LINE_8, 0)?;
            }
        }
    }
    GrayImage::from_mat(&mask)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ItemLocation;

    fn frame(defects: Vec<Defect>) -> FrameAnalysis {
        FrameAnalysis {
            item: ItemLocation {
                frame: 0,
                bbox: [0.0, 0.0, 10.0, 10.0],
                quad: [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]],
                size: [10, 10],
            },
            centering: (0.5, 0.5),
            defects,
            mask: GrayImage::new(1, 1, vec![0]),
        }
    }

    fn scratch(x: f64) -> Defect {
        Defect {
            kind: DefectKind::Scratch,
            bbox: [x, 0.2, x + 0.1, 0.6],
            length_px: 40.0,
            area_px: 40.0,
            severity: 0.5,
            location: None,
            support: 1,
        }
    }

    /// Glare hides a scratch in the first golden frame; the other two see
    /// it, so it is kept. One seen in a single frame of three is not.
    #[test]
    fn consensus_counts_defects_of_every_golden_frame() {
        let frames = [
            frame(vec![scratch(0.7)]),
            frame(vec![scratch(0.3)]),
            frame(vec![scratch(0.31)]),
        ];
        let kept = consensus(&frames);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].bbox, scratch(0.3).bbox);
        assert_eq!(kept[0].support, 2);
    }
}
