//! One golden frame: the item located, rectified, its edges and print
//! frame measured (centering) and its defects found.

use std::time::Instant;

use burn_tensor::{Tensor, TensorData};

use super::{
    debug,
    defects::{find_defects, DefectRules},
    locate::{intersect, locate_item},
    profile::{MeasureImage, Profiles, CHANNELS},
    Defect, ItemLocation, NoItemReason, ScanOptions, Timer,
};
use crate::{
    backend::ScanBackend,
    error::VisionError,
    frames::{stack_gray, to_vec_f32, BgrImage, GrayImage},
    primitives::{apply_homography, homography, remap_bilinear},
};

/// What one golden frame says about the item.
pub(super) struct FrameAnalysis {
    pub(super) item: ItemLocation,
    /// (left share, top share).
    pub(super) centering: (f64, f64),
    pub(super) defects: Vec<Defect>,
    pub(super) mask: GrayImage,
}

/// Room around the located outline in the image the edges are measured
/// on, as a share of the item: where the outline followed the print frame
/// (the item's own edge being faint), the item edge lies one border width
/// (up to 12 % of the item) further out, and must be inside that image.
const MEASURE_MARGIN: f64 = 0.14;

/// Localise the item on one golden frame, rectify it and find defects.
/// `frame` is the gray golden frame and `colour` the same frame in colour
/// (processed-frame pixels both): the item is located in gray, its edges
/// are measured in colour.
pub(super) fn analyze_frame<B: ScanBackend>(
    frame: &GrayImage,
    colour: &BgrImage,
    index: usize,
    opts: &ScanOptions,
    device: &B::Device,
    timer: &mut Timer,
) -> Result<Result<FrameAnalysis, NoItemReason>, VisionError> {
    let t = Instant::now();
    let Some(quad) = locate_item::<B>(frame, opts, device)? else {
        debug(|| format!("frame {index}: item not found"));
        timer.add("localise", t);
        return Ok(Err(NoItemReason::NoOutline));
    };
    timer.add("localise", t);

    let t = Instant::now();
    let dist = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let iw = ((dist(quad[0], quad[1]) + dist(quad[3], quad[2])) / 2.0).round() as usize;
    let ih = ((dist(quad[0], quad[3]) + dist(quad[1], quad[2])) / 2.0).round() as usize;
    if iw < 32 || ih < 32 {
        debug(|| format!("frame {index}: item too small, quad {quad:?}"));
        return Ok(Err(NoItemReason::ItemTooSmall));
    }
    let img = stack_gray::<B>(&[frame], device);
    let measure_img = measurement_image::<B>(frame, colour, device);
    // Rectify with a margin and measure the item's edges from profiles
    // (sub-pixel). The first round refines the corners found at low
    // resolution (their error would otherwise skew the perspective and the
    // centering); the second measures item and print edges for good.
    let margin = MEASURE_MARGIN;
    let (mw, mh) = (
        ((iw as f64) * (1.0 + 2.0 * margin)).round() as usize,
        ((ih as f64) * (1.0 + 2.0 * margin)).round() as usize,
    );
    let ox = iw as f64 * margin;
    let oy = ih as f64 * margin;
    let mut quad = quad;
    let mut h1 = homography(&quad, iw as f64, ih as f64)?;
    let mut measured = None;
    for round in 0..3 {
        let map1: Vec<(f32, f32)> = (0..mh)
            .flat_map(|y| (0..mw).map(move |x| (x as f64 - ox, y as f64 - oy)))
            .map(|(u, v)| apply_homography(&h1, u, v))
            .collect();
        let r1 = to_vec_f32(remap_bilinear(measure_img.clone(), &map1, mw, mh));
        let r1 = MeasureImage {
            data: &r1,
            width: mw,
            height: mh,
        };
        if round == 2 {
            measured = Profiles::measure(&r1, (0.3, 0.7), (ox, oy));
            break;
        }
        let (Some(a), Some(b)) = (
            Profiles::measure(&r1, (0.2, 0.4), (ox, oy)),
            Profiles::measure(&r1, (0.6, 0.8), (ox, oy)),
        ) else {
            break;
        };
        // Item edge lines through the two bands, intersected into corners.
        let (fw, fh) = (mw as f64, mh as f64);
        let left = ([a.card.0, 0.3 * fh], [b.card.0, 0.7 * fh]);
        let right = ([a.card.1, 0.3 * fh], [b.card.1, 0.7 * fh]);
        let top = ([0.3 * fw, a.card.2], [0.7 * fw, b.card.2]);
        let bottom = ([0.3 * fw, a.card.3], [0.7 * fw, b.card.3]);
        let corners = [
            intersect(left, top),
            intersect(right, top),
            intersect(right, bottom),
            intersect(left, bottom),
        ];
        quad = corners.map(|p| {
            let (x, y) = apply_homography(&h1, p[0] - ox, p[1] - oy);
            [x as f64, y as f64]
        });
        h1 = homography(&quad, iw as f64, ih as f64)?;
    }
    let Some(prof) = measured else {
        debug(|| format!("frame {index}: item edges not measurable, quad {quad:?}"));
        timer.add("rectify", t);
        return Ok(Err(NoItemReason::EdgesNotMeasured));
    };
    // Second pass: sample the item exactly inside its measured edges.
    let (cl, cr, ct, cb) = (
        prof.card.0 - ox,
        prof.card.1 - ox,
        prof.card.2 - oy,
        prof.card.3 - oy,
    );
    let (cw, ch) = ((cr - cl).round() as usize, (cb - ct).round() as usize);
    let map2: Vec<(f32, f32)> = (0..ch)
        .flat_map(|y| (0..cw).map(move |x| (x, y)))
        .map(|(x, y)| {
            let u = cl + (x as f64 + 0.5) * (cr - cl) / cw as f64 - 0.5;
            let v = ct + (y as f64 + 0.5) * (cb - ct) / ch as f64 - 0.5;
            apply_homography(&h1, u, v)
        })
        .collect();
    let card = remap_bilinear(img, &map2, cw, ch);
    timer.add("rectify", t);

    let t = Instant::now();
    let print = (
        prof.print.0 - prof.card.0,
        prof.card.1 - prof.print.1,
        prof.print.2 - prof.card.2,
        prof.card.3 - prof.print.3,
    );
    let centering = (print.0 / (print.0 + print.1), print.2 / (print.2 + print.3));
    let (defects, mask) = find_defects::<B>(card, cw, ch, &DefectRules::default())?;
    timer.add("defects", t);

    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    let bbox = [
        xs.clone().fold(f64::MAX, f64::min),
        ys.clone().fold(f64::MAX, f64::min),
        xs.fold(f64::MIN, f64::max),
        ys.fold(f64::MIN, f64::max),
    ];
    Ok(Ok(FrameAnalysis {
        item: ItemLocation {
            frame: index,
            bbox,
            quad,
            size: [cw, ch],
        },
        centering,
        defects,
        mask,
    }))
}

/// The planar `[1, CHANNELS, H, W]` image edges are measured on: the gray
/// frame's luma (the levels everything else sees), and the colour frame's
/// (R - Y) and (B - Y) scaled as BT.601's Cr and Cb. A coloured border on
/// a grey table or around a print of its own luma differs in these only.
fn measurement_image<B: ScanBackend>(
    gray: &GrayImage,
    colour: &BgrImage,
    device: &B::Device,
) -> Tensor<B, 4> {
    let (w, h) = (gray.width, gray.height);
    assert_eq!((colour.width, colour.height), (w, h), "frames of one size");
    let plane = w * h;
    let mut buf = vec![0f32; CHANNELS * plane];
    let (luma, rest) = buf.split_at_mut(plane);
    let (cr, cb) = rest.split_at_mut(plane);
    for (i, px) in colour.data.chunks_exact(3).enumerate() {
        let (b, g, r) = (px[0] as f32, px[1] as f32, px[2] as f32);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        luma[i] = gray.data[i] as f32;
        cr[i] = 0.713 * (r - y);
        cb[i] = 0.564 * (b - y);
    }
    Tensor::from_data(TensorData::new(buf, [1, CHANNELS, h, w]), device)
}
