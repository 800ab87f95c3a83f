use burn_tensor::{backend::Backend, Tensor};
use rayon::prelude::*;

use crate::backend::ScanBackend;

/// BGR → gray exactly as OpenCV 4's 8-bit `cvtColor(COLOR_BGR2GRAY)`:
/// 15-bit fixed-point coefficients with rounding,
/// `(3735 B + 19235 G + 9798 R + 16384) >> 15`.
///
/// Every intermediate is an integer below 2^24, so f32 holds it exactly and
/// the result is bit-identical to OpenCV.
pub fn bgr_to_gray<B: ScanBackend>(bgr: Tensor<B, 4>) -> Tensor<B, 4> {
    B::bgr_to_gray(bgr)
}

/// Portable [`bgr_to_gray`].
pub fn bgr_to_gray_tensor<B: Backend>(bgr: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = bgr.dims();
    assert_eq!(c, 3, "bgr_to_gray expects 3 channels");
    let b = bgr.clone().slice([0..n, 0..1, 0..h, 0..w]);
    let g = bgr.clone().slice([0..n, 1..2, 0..h, 0..w]);
    let r = bgr.slice([0..n, 2..3, 0..h, 0..w]);
    (b.mul_scalar(3735.0) + g.mul_scalar(19235.0) + r.mul_scalar(9798.0))
        .add_scalar(16384.0)
        .div_scalar(32768.0)
        .floor()
}

/// Host [`bgr_to_gray`] for `[N, 3, H, W]` planes (`plane` = H·W).
pub fn bgr_to_gray_host(bgr: &[f32], plane: usize) -> Vec<f32> {
    let mut out = vec![0f32; bgr.len() / 3];
    out.par_chunks_mut(plane)
        .zip(bgr.par_chunks(3 * plane))
        .for_each(|(o, f)| {
            let (b, rest) = f.split_at(plane);
            let (g, r) = rest.split_at(plane);
            for (((o, &b), &g), &r) in o.iter_mut().zip(b).zip(g).zip(r) {
                *o = ((b * 3735.0 + g * 19235.0 + r * 9798.0 + 16384.0) / 32768.0).floor();
            }
        });
    out
}
