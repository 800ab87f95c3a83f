//! Bilinear remapping through a host-computed coordinate map (OpenCV
//! `remap(..., INTER_LINEAR, BORDER_CONSTANT, 0)`). The pipeline uses it to
//! rectify the item with a perspective transform.

use burn_tensor::{backend::Backend, Int, Tensor, TensorData};
use opencv::{
    core::{self, Point2f, Vector},
    imgproc,
    prelude::*,
};
use rayon::prelude::*;

use crate::{backend::ScanBackend, error::VisionError, transfers};

/// Homography (row-major 3×3) taking rectangle coordinates `(0,0)..(w,h)`
/// onto `quad` (corners TL, TR, BR, BL): what both scan kinds rectify with.
pub fn homography(quad: &[[f64; 2]; 4], w: f64, h: f64) -> Result<[f64; 9], VisionError> {
    let src: Vector<Point2f> = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
        .iter()
        .map(|&(x, y)| Point2f::new(x as f32, y as f32))
        .collect();
    let dst: Vector<Point2f> = quad
        .iter()
        .map(|p| Point2f::new(p[0] as f32, p[1] as f32))
        .collect();
    let m = imgproc::get_perspective_transform(&src, &dst, core::DECOMP_LU)?;
    let mut out = [0.0; 9];
    for (i, o) in out.iter_mut().enumerate() {
        *o = *m.at_2d::<f64>((i / 3) as i32, (i % 3) as i32)?;
    }
    Ok(out)
}

/// `(u, v)` through homography `h`: a point of a remap coordinate map.
pub fn apply_homography(h: &[f64; 9], u: f64, v: f64) -> (f32, f32) {
    let d = h[6] * u + h[7] * v + h[8];
    (
        ((h[0] * u + h[1] * v + h[2]) / d) as f32,
        ((h[3] * u + h[4] * v + h[5]) / d) as f32,
    )
}

/// Sample `img` (`[1, C, H, W]`) at `map[i] = (x, y)` for every output pixel
/// in row-major order of an `out_w × out_h` image; outside pixels read 0.
pub fn remap_bilinear<B: ScanBackend>(
    img: Tensor<B, 4>,
    map: &[(f32, f32)],
    out_w: usize,
    out_h: usize,
) -> Tensor<B, 4> {
    let [n, _, _, _] = img.dims();
    assert_eq!(n, 1, "remap one image at a time");
    assert_eq!(map.len(), out_w * out_h);
    B::remap_bilinear(img, map, out_w, out_h)
}

/// The four bilinear taps per output pixel: flat source index and weight,
/// index 0 and weight 0 for corners outside the image.
type Taps = (Vec<[i64; 4]>, Vec<[f32; 4]>);

fn bilinear_taps(map: &[(f32, f32)], w: usize, h: usize) -> Taps {
    let mut idx = vec![[0i64; 4]; map.len()];
    let mut wt = vec![[0f32; 4]; map.len()];
    for (i, &(x, y)) in map.iter().enumerate() {
        let (x0, y0) = (x.floor(), y.floor());
        let (ax, ay) = (x - x0, y - y0);
        let corners = [
            (0, 0, (1.0 - ax) * (1.0 - ay)),
            (1, 0, ax * (1.0 - ay)),
            (0, 1, (1.0 - ax) * ay),
            (1, 1, ax * ay),
        ];
        for (k, &(dx, dy, weight)) in corners.iter().enumerate() {
            let (xx, yy) = (x0 as i64 + dx, y0 as i64 + dy);
            if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                idx[i][k] = yy * w as i64 + xx;
                wt[i][k] = weight;
            }
        }
    }
    (idx, wt)
}

/// Portable [`remap_bilinear`]: four gathers.
pub fn remap_bilinear_tensor<B: Backend>(
    img: Tensor<B, 4>,
    map: &[(f32, f32)],
    out_w: usize,
    out_h: usize,
) -> Tensor<B, 4> {
    let [_, c, h, w] = img.dims();
    let device = img.device();
    let len = map.len();
    let (idx, wt) = bilinear_taps(map, w, h);
    let flat = img.reshape([1, c, h * w]);
    // All four taps' indices and weights go up as one table each (tap-major),
    // two uploads per remap instead of eight; each tap is a row sliced on
    // the device, summed in the same order as before.
    transfers::note_upload();
    let all_ix = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            (0..4)
                .flat_map(|k| idx.iter().map(move |t| t[k]))
                .collect::<Vec<_>>(),
            [4, len],
        ),
        &device,
    );
    let all_wt = transfers::upload::<B, 2>(
        TensorData::new(
            (0..4)
                .flat_map(|k| wt.iter().map(move |t| t[k]))
                .collect::<Vec<_>>(),
            [4, len],
        ),
        &device,
    );
    let mut acc: Option<Tensor<B, 3>> = None;
    for k in 0..4 {
        let ix = all_ix
            .clone()
            .slice([k..k + 1, 0..len])
            .reshape([1, 1, len])
            .expand([1, c, len]);
        let wk = all_wt
            .clone()
            .slice([k..k + 1, 0..len])
            .reshape([1, 1, len]);
        let term = flat.clone().gather(2, ix) * wk;
        acc = Some(match acc {
            Some(a) => a + term,
            None => term,
        });
    }
    acc.expect("four taps").reshape([1, c, out_h, out_w])
}

/// Host [`remap_bilinear`] over the `C` planes of one `h × w` image; taps
/// summed in the same order as the tensor version.
pub fn remap_bilinear_host(img: &[f32], h: usize, w: usize, map: &[(f32, f32)]) -> Vec<f32> {
    let (idx, wt) = bilinear_taps(map, w, h);
    let len = map.len();
    let mut out = vec![0f32; img.len() / (h * w) * len];
    out.par_chunks_mut(len)
        .zip(img.par_chunks(h * w))
        .for_each(|(o, src)| {
            for ((o, i), k) in o.iter_mut().zip(&idx).zip(&wt) {
                let t = |j: usize| src[i[j] as usize] * k[j];
                *o = t(0) + t(1) + t(2) + t(3);
            }
        });
    out
}
