//! Item localisation on a golden frame: the outline search's inputs at
//! detection size (the edges themselves are measured in [`super::profile`]).

use super::{
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
