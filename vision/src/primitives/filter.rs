//! Separable linear filters (Gaussian, box, Sobel) and the Laplacian.
//!
//! Each op has a portable tensor version (`*_tensor`, what CUDA and Wgpu
//! run) and a host version over row-major planes (`*_host`, what the
//! NdArray backend runs, see [`crate::host`]); the public functions
//! dispatch through [`ScanBackend`].

use burn_tensor::{backend::Backend, ops::ConvOptions, ops::PadMode, Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::ScanBackend;
use crate::host::with_scratch;
use crate::resident;

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

    /// The border actually applied for pads `(left, right, top, bottom)` on
    /// an `h × w` image: reflect padding in burn must be smaller than the
    /// dim, so tiny images (pyramid tops under 32 px) fall back to replicate.
    /// Host code applies the same rule so both versions agree everywhere.
    pub(crate) fn for_pads(
        self,
        (l, r, t, b): (usize, usize, usize, usize),
        h: usize,
        w: usize,
    ) -> Border {
        match self {
            Border::Reflect101 if l.max(r) >= w || t.max(b) >= h => Border::Replicate,
            o => o,
        }
    }

    /// Source index of position `i` (possibly outside `0..len`), or `None`
    /// where a constant border supplies the value. Pads are `< len` (see
    /// [`Border::for_pads`]), so one reflection is enough.
    pub(crate) fn index(self, i: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        match self {
            Border::Constant(_) => None,
            Border::Replicate => Some(i.clamp(0, n - 1) as usize),
            Border::Reflect101 => {
                Some(if i < 0 { -i } else { 2 * (n - 1) - i }.clamp(0, n - 1) as usize)
            }
        }
    }

    /// Write `row` into `buf` (length `row.len() + l + r`) with `l` / `r`
    /// extrapolated pixels on either side.
    pub(crate) fn pad_row(self, row: &[f32], l: usize, buf: &mut [f32]) {
        let w = row.len();
        buf[l..l + w].copy_from_slice(row);
        let fill = |j: usize| {
            let i = j as isize - l as isize;
            self.index(i, w).map_or_else(|| self.constant(), |s| row[s])
        };
        for j in (0..l).chain(l + w..buf.len()) {
            buf[j] = fill(j);
        }
    }

    fn constant(self) -> f32 {
        match self {
            Border::Constant(v) => v,
            _ => 0.0,
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
    let [_, _, h, w] = x.dims();
    x.pad((l, r, t, b), border.for_pads((l, r, t, b), h, w).mode())
}

/// Correlate every channel with `kx` along x then `ky` along y (OpenCV
/// `sepFilter2D` with an anchor at the kernel centre), borders extrapolated
/// with `border`. Kernels must have odd length.
pub fn sep_filter<B: ScanBackend>(
    x: Tensor<B, 4>,
    kx: &[f32],
    ky: &[f32],
    border: Border,
) -> Tensor<B, 4> {
    B::sep_filter(x, kx, ky, border)
}

/// Portable [`sep_filter`]: two depthwise `conv2d`s on padded tensors.
pub fn sep_filter_tensor<B: ScanBackend>(
    x: Tensor<B, 4>,
    kx: &[f32],
    ky: &[f32],
    border: Border,
) -> Tensor<B, 4> {
    let x = filter_axis(x, kx, true, border);
    filter_axis(x, ky, false, border)
}

/// Host [`sep_filter`] over `x` = planes of `h × w`: a row pass then a
/// column pass (the same order and borders as the tensor version), each
/// parallel over rows. Tap-outer loops keep the inner loop a vectorisable
/// multiply-add over a contiguous row.
pub fn sep_filter_host(
    x: &[f32],
    h: usize,
    w: usize,
    kx: &[f32],
    ky: &[f32],
    border: Border,
) -> Vec<f32> {
    assert!(
        kx.len() % 2 == 1 && ky.len() % 2 == 1,
        "kernel length must be odd"
    );
    let (rx, ry) = (kx.len() / 2, ky.len() / 2);
    let rows = |out: &mut [f32]| {
        if kx.len() == 1 {
            out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * kx[0]);
            return;
        }
        let border = border.for_pads((rx, rx, 0, 0), h, w);
        out.par_chunks_mut(w).zip(x.par_chunks(w)).for_each_init(
            || vec![0f32; w + 2 * rx],
            |buf, (o, row)| {
                border.pad_row(row, rx, buf);
                o.fill(0.0);
                for (t, &k) in kx.iter().enumerate() {
                    for (o, &v) in o.iter_mut().zip(&buf[t..t + w]) {
                        *o += k * v;
                    }
                }
            },
        );
    };
    if ky.len() == 1 {
        let mut out = vec![0f32; x.len()];
        rows(&mut out);
        if ky[0] != 1.0 {
            out.iter_mut().for_each(|v| *v *= ky[0]);
        }
        return out;
    }
    // The row pass goes to a reused scratch buffer: only the result is fresh memory.
    with_scratch::<f32, _>(x.len(), |tmp| {
        rows(tmp);
        let border = border.for_pads((0, 0, ry, ry), h, w);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(w).enumerate().for_each(|(i, o)| {
            let (plane, y) = (i / h, i % h);
            let src = &tmp[plane * h * w..(plane + 1) * h * w];
            for (t, &k) in ky.iter().enumerate() {
                match border.index(y as isize + t as isize - ry as isize, h) {
                    Some(sy) => {
                        for (o, &v) in o.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                            *o += k * v;
                        }
                    }
                    None => {
                        let c = k * border.constant();
                        o.iter_mut().for_each(|o| *o += c);
                    }
                }
            }
        });
        out
    })
}

fn filter_axis<B: ScanBackend>(
    x: Tensor<B, 4>,
    k: &[f32],
    horizontal: bool,
    border: Border,
) -> Tensor<B, 4> {
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
    let weight = resident::float::<B, 4>(TensorData::new(weights, shape), &device);
    let x = pad2d(x, pad, border);
    // Depthwise: each channel is filtered on its own.
    B::filter_conv2d(x, weight, ConvOptions::new([1, 1], [0, 0], [1, 1], c))
}

/// OpenCV's `getGaussianKernel(ksize, sigma, CV_32F)`: the fixed small
/// kernels when `sigma <= 0` and `ksize <= 7`, otherwise sampled and
/// normalised in f64, then rounded to f32.
pub fn gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f32> {
    const SMALL: [&[f64]; 4] = [
        &[1.0],
        &[0.25, 0.5, 0.25],
        &[0.0625, 0.25, 0.375, 0.25, 0.0625],
        &[
            0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
        ],
    ];
    if sigma <= 0.0 && ksize % 2 == 1 && ksize <= 7 {
        return SMALL[ksize / 2].iter().map(|&v| v as f32).collect();
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        ((ksize as f64 - 1.0) * 0.5 - 1.0) * 0.3 + 0.8
    };
    let scale2x = -0.5 / (sigma * sigma);
    let c = (ksize as f64 - 1.0) * 0.5;
    let raw: Vec<f64> = (0..ksize)
        .map(|i| ((i as f64 - c).powi(2) * scale2x).exp())
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| (v / sum) as f32).collect()
}

/// `GaussianBlur(src, dst, Size(ksize, ksize), sigma, sigma, border)` for float images.
/// `ksize == 0` derives the size from sigma like OpenCV does for f32 images.
pub fn gaussian_blur<B: ScanBackend>(
    x: Tensor<B, 4>,
    ksize: usize,
    sigma: f64,
    border: Border,
) -> Tensor<B, 4> {
    let ksize = if ksize == 0 {
        (((sigma * 4.0 * 2.0 + 1.0).round() as usize) | 1).max(1)
    } else {
        ksize
    };
    let k = gaussian_kernel(ksize, sigma);
    sep_filter(x, &k, &k, border)
}

/// Normalised box filter `blur(src, Size(kw, kh))` with the given border.
pub fn box_filter<B: ScanBackend>(
    x: Tensor<B, 4>,
    kw: usize,
    kh: usize,
    border: Border,
) -> Tensor<B, 4> {
    let kx = vec![1.0 / kw as f32; kw];
    let ky = vec![1.0 / kh as f32; kh];
    sep_filter(x, &kx, &ky, border)
}

/// 3×3 Sobel derivatives `(dx, dy)` (OpenCV `Sobel(.., 1, 0, 3)` and
/// `Sobel(.., 0, 1, 3)`); exact integers for 8-bit input.
pub fn sobel<B: ScanBackend>(x: Tensor<B, 4>, border: Border) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let d = [-1.0, 0.0, 1.0];
    let s = [1.0, 2.0, 1.0];
    (
        sep_filter(x.clone(), &d, &s, border),
        sep_filter(x, &s, &d, border),
    )
}

/// `Laplacian(src, dst, CV_32F)` with the default `ksize = 1`:
/// kernel `[0 1 0; 1 -4 1; 0 1 0]`, `BORDER_REFLECT_101`. Exact for 8-bit input.
pub fn laplacian<B: ScanBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    B::laplacian(x)
}

/// Portable [`laplacian`]: one depthwise 3×3 `conv2d`.
pub fn laplacian_tensor<B: ScanBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, c, _, _] = x.dims();
    let device = x.device();
    let k: Vec<f32> = (0..c)
        .flat_map(|_| [0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0])
        .collect();
    let weight = resident::float::<B, 4>(TensorData::new(k, [c, 1, 3, 3]), &device);
    let p = pad2d(x, (1, 1, 1, 1), Border::Reflect101);
    B::filter_conv2d(p, weight, ConvOptions::new([1, 1], [0, 0], [1, 1], c))
}

/// Host [`laplacian`] over planes of `h × w`.
pub fn laplacian_host(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(w).enumerate().for_each_init(
        || vec![0f32; w + 2],
        |buf, (i, o)| {
            let plane = i / h;
            laplacian_row(&x[plane * h * w..(plane + 1) * h * w], h, w, i % h, buf, o);
        },
    );
    out
}

/// Row `y` of the Laplacian of one `h × w` plane into `out`; `buf` (`w + 2`)
/// holds the row with its border.
fn laplacian_row(src: &[f32], h: usize, w: usize, y: usize, buf: &mut [f32], out: &mut [f32]) {
    let border = Border::Reflect101.for_pads((1, 1, 1, 1), h, w);
    let row = |yy: isize| {
        let sy = border.index(yy, h).expect("reflect/replicate border");
        &src[sy * w..(sy + 1) * w]
    };
    let (up, down) = (row(y as isize - 1), row(y as isize + 1));
    border.pad_row(row(y as isize), 1, buf);
    for (x, o) in out.iter_mut().enumerate() {
        *o = up[x] + buf[x] - 4.0 * buf[x + 1] + buf[x + 2] + down[x];
    }
}

/// Per-frame variance of the Laplacian (the usual sharpness measure):
/// `meanStdDev(Laplacian(frame))²`, as a `[N]` tensor. Two-pass (mean
/// first) so that f32 accumulation stays within 1e-3 of OpenCV's f64.
///
/// The means are taken row-wise then column-wise: shorter reductions keep
/// f32 error down, and burn-wgpu 0.21's single long `mean_dim` over
/// `[N, H·W]` returned a wrong value for the last frame of a batch.
pub fn laplacian_variance<B: ScanBackend>(x: Tensor<B, 4>) -> Tensor<B, 1> {
    B::laplacian_variance(x)
}

/// Portable [`laplacian_variance`].
pub fn laplacian_variance_tensor<B: ScanBackend>(x: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, _, _, _] = x.dims();
    let l = laplacian(x);
    let mean = l.clone().mean_dim(3).mean_dim(2);
    let d = l - mean;
    (d.clone() * d).mean_dim(3).mean_dim(2).reshape([n])
}

/// Host [`laplacian_variance`] for `[N, 1, H, W]` planes: the Laplacian
/// row by row into f64 sums of `l` and `l²` (one pass, no full-size
/// buffer). For 8-bit input every term and sum is an integer below 2^53,
/// so the sums are exact and `E[l²] − E[l]²` loses nothing to the
/// two-pass form (OpenCV's `meanStdDev` accumulates in f64 too).
pub fn laplacian_variance_host(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    if plane == 0 {
        return vec![0.0; x.len().checked_div(plane).unwrap_or(0)];
    }
    x.par_chunks(plane)
        .map(|p| {
            let (sum, sq) = (0..h)
                .into_par_iter()
                .map_init(
                    || (vec![0f32; w + 2], vec![0f32; w]),
                    |(buf, l), y| {
                        laplacian_row(p, h, w, y, buf, l);
                        l.iter().fold((0f64, 0f64), |(s, q), &v| {
                            (s + v as f64, q + (v as f64) * (v as f64))
                        })
                    },
                )
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            let n = plane as f64;
            let mean = sum / n;
            (sq / n - mean * mean).max(0.0) as f32
        })
        .collect()
}
