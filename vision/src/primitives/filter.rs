//! Separable linear filters (Gaussian, box, Sobel) and the Laplacian.

use burn_tensor::{backend::Backend, module::conv2d, ops::ConvOptions, ops::PadMode, Tensor, TensorData};

/// Border extrapolation, named after OpenCV's `BORDER_*`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Border {
    /// `BORDER_REFLECT_101` (OpenCV's default for filters): `gfedcb|abcdefgh|gfedcba`.
    Reflect101,
    /// `BORDER_REPLICATE`: `aaaaaa|abcdefgh|hhhhhhh`.
    Replicate,
    /// `BORDER_CONSTANT` with the given value.
    Constant(f32),
}

impl Border {
    fn mode(self) -> PadMode {
        match self {
            Border::Reflect101 => PadMode::Reflect,
            Border::Replicate => PadMode::Edge,
            Border::Constant(v) => PadMode::Constant(v),
        }
    }
}

/// Pad the two spatial dims: `(left, right, top, bottom)`.
pub(crate) fn pad2d<B: Backend>(
    x: Tensor<B, 4>,
    (l, r, t, b): (usize, usize, usize, usize),
    border: Border,
) -> Tensor<B, 4> {
    if l + r + t + b == 0 {
        return x;
    }
    // Reflect padding in burn must be smaller than the dim; fall back to
    // replicate for tiny images (only hit by pyramid tops under 32 px).
    let [_, _, h, w] = x.dims();
    let border = match border {
        Border::Reflect101 if l.max(r) >= w || t.max(b) >= h => Border::Replicate,
        o => o,
    };
    x.pad((l, r, t, b), border.mode())
}

/// Correlate every channel with `kx` along x then `ky` along y (OpenCV
/// `sepFilter2D` with an anchor at the kernel centre), borders extrapolated
/// with `border`. Kernels must have odd length.
pub fn sep_filter<B: Backend>(x: Tensor<B, 4>, kx: &[f32], ky: &[f32], border: Border) -> Tensor<B, 4> {
    let x = filter_axis(x, kx, true, border);
    filter_axis(x, ky, false, border)
}

fn filter_axis<B: Backend>(x: Tensor<B, 4>, k: &[f32], horizontal: bool, border: Border) -> Tensor<B, 4> {
    assert!(k.len() % 2 == 1, "kernel length must be odd");
    if k.len() == 1 {
        return if k[0] == 1.0 { x } else { x.mul_scalar(k[0]) };
    }
    let [_, c, _, _] = x.dims();
    let r = k.len() / 2;
    let device = x.device();
    let (pad, shape) = if horizontal {
        ((r, r, 0, 0), [c, 1, 1, k.len()])
    } else {
        ((0, 0, r, r), [c, 1, k.len(), 1])
    };
    let weights: Vec<f32> = (0..c).flat_map(|_| k.iter().copied()).collect();
    let weight = Tensor::<B, 4>::from_data(TensorData::new(weights, shape), &device);
    let x = pad2d(x, pad, border);
    // Depthwise: each channel is filtered on its own.
    conv2d(x, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], c))
}

/// OpenCV's `getGaussianKernel(ksize, sigma, CV_32F)`: the fixed small
/// kernels when `sigma <= 0` and `ksize <= 7`, otherwise sampled and
/// normalised in f64, then rounded to f32.
pub fn gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f32> {
    const SMALL: [&[f64]; 4] = [
        &[1.0],
        &[0.25, 0.5, 0.25],
        &[0.0625, 0.25, 0.375, 0.25, 0.0625],
        &[0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
    ];
    if sigma <= 0.0 && ksize % 2 == 1 && ksize <= 7 {
        return SMALL[ksize / 2].iter().map(|&v| v as f32).collect();
    }
    let sigma = if sigma > 0.0 { sigma } else { ((ksize as f64 - 1.0) * 0.5 - 1.0) * 0.3 + 0.8 };
    let scale2x = -0.5 / (sigma * sigma);
    let c = (ksize as f64 - 1.0) * 0.5;
    let raw: Vec<f64> = (0..ksize).map(|i| ((i as f64 - c).powi(2) * scale2x).exp()).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| (v / sum) as f32).collect()
}

/// `GaussianBlur(src, dst, Size(ksize, ksize), sigma, sigma, border)` for float images.
/// `ksize == 0` derives the size from sigma like OpenCV does for f32 images.
pub fn gaussian_blur<B: Backend>(x: Tensor<B, 4>, ksize: usize, sigma: f64, border: Border) -> Tensor<B, 4> {
    let ksize = if ksize == 0 { (((sigma * 4.0 * 2.0 + 1.0).round() as usize) | 1).max(1) } else { ksize };
    let k = gaussian_kernel(ksize, sigma);
    sep_filter(x, &k, &k, border)
}

/// Normalised box filter `blur(src, Size(kw, kh))` with the given border.
pub fn box_filter<B: Backend>(x: Tensor<B, 4>, kw: usize, kh: usize, border: Border) -> Tensor<B, 4> {
    let kx = vec![1.0 / kw as f32; kw];
    let ky = vec![1.0 / kh as f32; kh];
    sep_filter(x, &kx, &ky, border)
}

/// 3×3 Sobel derivatives `(dx, dy)` (OpenCV `Sobel(.., 1, 0, 3)` and
/// `Sobel(.., 0, 1, 3)`); exact integers for 8-bit input.
pub fn sobel<B: Backend>(x: Tensor<B, 4>, border: Border) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let d = [-1.0, 0.0, 1.0];
    let s = [1.0, 2.0, 1.0];
    (sep_filter(x.clone(), &d, &s, border), sep_filter(x, &s, &d, border))
}

/// `Laplacian(src, dst, CV_32F)` with the default `ksize = 1`:
/// kernel `[0 1 0; 1 -4 1; 0 1 0]`, `BORDER_REFLECT_101`. Exact for 8-bit input.
pub fn laplacian<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, c, _, _] = x.dims();
    let device = x.device();
    let k: Vec<f32> = (0..c).flat_map(|_| [0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0]).collect();
    let weight = Tensor::<B, 4>::from_data(TensorData::new(k, [c, 1, 3, 3]), &device);
    let p = pad2d(x, (1, 1, 1, 1), Border::Reflect101);
    conv2d(p, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], c))
}

/// Per-frame variance of the Laplacian (the usual sharpness measure):
/// `meanStdDev(Laplacian(frame))²`, as a `[N]` tensor. Two-pass (mean
/// first) so that f32 accumulation stays within 1e-3 of OpenCV's f64.
///
/// The means are taken row-wise then column-wise: shorter reductions keep
/// f32 error down, and burn-wgpu 0.21's single long `mean_dim` over
/// `[N, H·W]` returned a wrong value for the last frame of a batch.
pub fn laplacian_variance<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, _, _, _] = x.dims();
    let l = laplacian(x);
    let mean = l.clone().mean_dim(3).mean_dim(2);
    let d = l - mean;
    (d.clone() * d).mean_dim(3).mean_dim(2).reshape([n])
}
