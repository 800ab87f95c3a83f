//! Item localisation on a golden frame, rectification and the edge
//! profiles that measure the item and print edges (centering).

use super::{
    debug,
    outline::{find_outline, EdgeImage, OutlineRules},
    ScanOptions,
};
use crate::{
    backend::ScanBackend,
    canny::canny,
    error::VisionError,
    frames::{stack_gray, to_vec_f32, GrayImage},
    primitives::{gaussian_blur, resize, round_levels, Border, Interpolation},
};

/// Long enough a short side for the outline search: a 720p frame is
/// searched at half size, where a card's border band (2-4 % of its width)
/// still separates its outline from its print frame.
const DETECT_SHORT_SIDE: usize = 360;

/// The item's outline on one golden frame (processed-frame pixels), from
/// edges on a reduced, smoothed frame: see [`super::outline`]. The edge map
/// is computed by the backend (one read-back per golden frame); the line
/// geometry runs on the host.
pub(super) fn locate_item<B: ScanBackend>(
    frame: &GrayImage,
    opts: &ScanOptions,
    device: &B::Device,
) -> Result<Option<[[f64; 2]; 4]>, VisionError> {
    let f = (frame.width.min(frame.height) / DETECT_SHORT_SIDE).clamp(1, 4);
    let (w, h) = ((frame.width / f).max(8), (frame.height / f).max(8));
    let img = stack_gray::<B>(&[frame], device);
    // Blur first: a textured table would otherwise grow weak edges into the
    // outline's sides.
    let small = round_levels(gaussian_blur(
        resize(img, w, h, Interpolation::Area),
        0,
        2.0,
        Border::Reflect101,
    ));
    let edges: Vec<u8> = to_vec_f32(canny(small.clone(), opts.canny_low, opts.canny_high))
        .iter()
        .map(|&v| if v > 0.5 { 255 } else { 0 })
        .collect();
    let smooth = to_vec_f32(small);
    let input = EdgeImage {
        width: w,
        height: h,
        edges: &edges,
        smooth: &smooth,
    };
    Ok(find_outline(&input, &OutlineRules::default())?.map(|o| o.to_frame(f)))
}

/// Intersection of two lines, each given by two points.
pub(super) fn intersect(l1: ([f64; 2], [f64; 2]), l2: ([f64; 2], [f64; 2])) -> [f64; 2] {
    let (p, r) = (l1.0, [l1.1[0] - l1.0[0], l1.1[1] - l1.0[1]]);
    let (q, s) = (l2.0, [l2.1[0] - l2.0[0], l2.1[1] - l2.0[1]]);
    let cross = r[0] * s[1] - r[1] * s[0];
    if cross.abs() < 1e-12 {
        return p;
    }
    let t = ((q[0] - p[0]) * s[1] - (q[1] - p[1]) * s[0]) / cross;
    [p[0] + t * r[0], p[1] + t * r[1]]
}

/// Item edges and print-frame edges measured on the margin-rectified image.
pub(super) struct Profiles {
    /// Item edges (left, right, top, bottom) in margin-image pixels.
    pub(super) card: (f64, f64, f64, f64),
    /// Print frame edges, same frame.
    pub(super) print: (f64, f64, f64, f64),
}

impl Profiles {
    /// Profiles are medians across a band (fractions of the other axis):
    /// robust to defects crossing it.
    /// `margin` is where the located outline puts the item's edges: this
    /// many pixels in from each side of the margin-rectified image (x, y).
    pub(super) fn measure(
        img: &[f32],
        w: usize,
        h: usize,
        band: (f64, f64),
        margin: (f64, f64),
    ) -> Option<Self> {
        let (b0, b1) = (band.0, band.1);
        let median = |mut v: Vec<f32>| {
            let mid = v.len() / 2;
            *v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1 as f64
        };
        let col = |x: usize| {
            median(
                ((h as f64 * b0) as usize..(h as f64 * b1) as usize)
                    .map(|y| img[y * w + x])
                    .collect(),
            )
        };
        let row = |y: usize| {
            median(
                ((w as f64 * b0) as usize..(w as f64 * b1) as usize)
                    .map(|x| img[y * w + x])
                    .collect(),
            )
        };
        let px: Vec<f64> = (0..w).map(col).collect();
        let py: Vec<f64> = (0..h).map(row).collect();
        let side = |p: &[f64], from_end: bool, expected: f64, name: &str| {
            let found = steps(p, from_end, expected);
            if found.is_none() {
                debug(|| {
                    format!(
                        "band {band:?}: no {name} item/print edges in profile {:?}",
                        p.iter().map(|v| v.round() as i64).collect::<Vec<_>>()
                    )
                });
            }
            found
        };
        let (cl, pl) = side(&px, false, margin.0, "left")?;
        let (cr, pr) = side(&px, true, margin.0, "right")?;
        let (ct, pt) = side(&py, false, margin.1, "top")?;
        let (cb, pb) = side(&py, true, margin.1, "bottom")?;
        Some(Self {
            card: (cl, cr, ct, cb),
            print: (pl, pr, pt, pb),
        })
    }
}

/// The smallest step, in 8-bit levels across [`STEP_SPAN`] samples, that
/// counts as an edge: profiles are medians over many rows, so sensor noise
/// and fine texture stay far below it, while the faintest border a person
/// still sees (a grey card on a grey table) is above it.
const MIN_STEP: f64 = 10.0;

/// The print edge is looked for only in the plain band just inside the item
/// edge, so a fainter step suffices there (a dark print on a grey border
/// may differ from it by little more than its own shading).
const MIN_PRINT_STEP: f64 = 8.0;

/// Steps are measured as the change across this many samples: an edge
/// blurred by optics and resampling spreads over 2-3 pixels.
const STEP_SPAN: usize = 3;

/// On one side of a profile, the item edge and the print edge, each
/// located at sub-pixel precision by a parabola through its step peak.
/// `from_end` scans from the far side; `expected` is where the located
/// outline puts the item edge, in samples from that side.
///
/// - The item edge is the first clear step within a few pixels of where the
///   outline put it. Steps count in either direction (a white border on a
///   grey table rises into a darker print, a black border falls from the
///   table) and a faint one counts. Where no step is clear there (a black
///   border on its own shadow), the outline's position stands. Where no
///   print edge lies inside the step found, the outline followed the print
///   edge (the item's own edge being faint): that step is the print edge
///   and the item edge is the nearest clear step outside it.
/// - The print edge is the first clear step inside it, within 12 % of the
///   profile: the border band between the two is plain, while the art
///   inside the print area may hold stronger edges than the print edge.
pub(super) fn steps(p: &[f64], from_end: bool, expected: f64) -> Option<(f64, f64)> {
    let n = p.len();
    if n < 16 {
        return None;
    }
    let at = |i: usize| if from_end { p[n - 1 - i] } else { p[i] };
    // step[i]: the change from sample i-1 to sample i+STEP_SPAN-1, centred
    // between samples i and i+1 (position i+0.5) for a span of 3.
    let step: Vec<f64> = (0..n - STEP_SPAN)
        .map(|i| {
            if i == 0 {
                0.0
            } else {
                (at(i + STEP_SPAN - 1) - at(i - 1)).abs()
            }
        })
        .collect();
    let peak =
        |i: usize| i > 0 && i + 1 < step.len() && step[i] >= step[i - 1] && step[i] >= step[i + 1];
    let strongest = |lo: usize, hi: usize| {
        (lo..hi.min(step.len()))
            .map(|i| step[i])
            .fold(0.0, f64::max)
    };
    let first_clear = |lo: usize, hi: usize, rel: f64, min: f64| {
        let floor = (rel * strongest(lo, hi)).max(min);
        (lo..hi.min(step.len())).find(|&i| peak(i) && step[i] >= floor)
    };
    let refine = |i: usize| {
        let (a, b, c) = (step[i - 1], step[i], step[i + 1]);
        let den = a - 2.0 * b + c;
        let off = if den.abs() > 1e-9 {
            (0.5 * (a - c) / den).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        i as f64 + 0.5 + off
    };
    // The outline is found at reduced size: its sides are a few pixels off.
    // Where the item's own edge is faint, the outline may have followed the
    // print edge instead, so the item edge may also lie further out.
    let tol = (0.02 * n as f64).max(4.0);
    let (lo, hi) = (
        (expected - tol).max(1.0) as usize,
        (expected + tol).ceil() as usize,
    );
    let band = n * 12 / 100;
    let print_inside = |card: f64| {
        let from = card.ceil() as usize + STEP_SPAN;
        first_clear(from, from + band, 1.0 / 8.0, MIN_PRINT_STEP).map(refine)
    };
    let (card, print) = match first_clear(lo, hi + 1, 1.0 / 8.0, MIN_STEP) {
        Some(i) => match print_inside(refine(i)) {
            Some(print) => (refine(i), print),
            // No print edge inside: the step found is the print edge and
            // the item edge is the nearest clear step outside it.
            None => {
                let outer = (lo.saturating_sub(band).max(1)..i.saturating_sub(STEP_SPAN))
                    .rev()
                    .find(|&j| peak(j) && step[j] >= (step[i] / 8.0).max(MIN_STEP))?;
                (refine(outer), refine(i))
            }
        },
        None => (expected, print_inside(expected)?),
    };
    let conv = |s: f64| if from_end { (n - 1) as f64 - s } else { s };
    Some((conv(card), conv(print)))
}
