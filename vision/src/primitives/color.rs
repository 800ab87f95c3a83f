use burn_tensor::{backend::Backend, Tensor};

/// BGR → gray exactly as OpenCV's 8-bit `cvtColor(COLOR_BGR2GRAY)`:
/// fixed-point coefficients with a 14-bit shift and rounding,
/// `(1868 B + 9617 G + 4899 R + 8192) >> 14`.
///
/// Every intermediate is an integer below 2^24, so f32 holds it exactly and
/// the result is bit-identical to OpenCV.
pub fn bgr_to_gray<B: Backend>(bgr: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = bgr.dims();
    assert_eq!(c, 3, "bgr_to_gray expects 3 channels");
    let b = bgr.clone().slice([0..n, 0..1, 0..h, 0..w]);
    let g = bgr.clone().slice([0..n, 1..2, 0..h, 0..w]);
    let r = bgr.slice([0..n, 2..3, 0..h, 0..w]);
    (b.mul_scalar(1868.0) + g.mul_scalar(9617.0) + r.mul_scalar(4899.0))
        .add_scalar(8192.0)
        .div_scalar(16384.0)
        .floor()
}
