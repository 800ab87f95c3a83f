//! `cv::resize` with `INTER_LINEAR` and `INTER_AREA` semantics.
//!
//! Both are separable: each output row/column is a weighted sum of a few
//! input rows/columns. The weights and indices are computed on the host
//! exactly like OpenCV computes its tables, and applied on the device as
//! `select` + multiply-add (a K-tap gather), which is cheaper than a dense
//! resampling matmul. The host version ([`resize_host`]) applies the same
//! tables in the same order, so its results are bit-identical.

use burn_tensor::{backend::Backend, Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::ScanBackend;
use crate::host::with_scratch;
use crate::resident;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `INTER_LINEAR` (half-pixel centres, clamped at the border).
    Linear,
    /// `INTER_AREA` (pixel-area averaging; for upscaling OpenCV falls back to
    /// a bilinear variant, we use `Linear`).
    Area,
}

/// Round resampled 8-bit levels like OpenCV's area fast path does (half up).
pub fn round_levels<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    x.add_scalar(0.5).floor()
}

/// Resize `[N, C, H, W]` to `[N, C, out_h, out_w]` (float result; see [`round_levels`]).
pub fn resize<B: ScanBackend>(
    x: Tensor<B, 4>,
    out_w: usize,
    out_h: usize,
    interp: Interpolation,
) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if (w, h) == (out_w, out_h) {
        return x;
    }
    B::resize(x, out_w, out_h, interp)
}

/// Portable [`resize`]: x then y, each a K-tap gather.
pub fn resize_tensor<B: Backend>(
    x: Tensor<B, 4>,
    out_w: usize,
    out_h: usize,
    interp: Interpolation,
) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let x = if w != out_w {
        resample_axis(x, 3, &taps(w, out_w, interp))
    } else {
        x
    };
    if h != out_h {
        resample_axis(x, 2, &taps(h, out_h, interp))
    } else {
        x
    }
}

/// Host [`resize`] over planes of `h × w`: rows then columns, taps summed
/// in table order like [`resize_tensor`].
pub fn resize_host(
    x: &[f32],
    h: usize,
    w: usize,
    out_w: usize,
    out_h: usize,
    interp: Interpolation,
) -> Vec<f32> {
    let planes = x.len() / (h * w);
    if w == out_w {
        return if h == out_h {
            x.to_vec()
        } else {
            resize_columns(x, planes, h, out_w, out_h, interp)
        };
    }
    let taps = taps(w, out_w, interp);
    let horizontal = |out: &mut [f32]| {
        out.par_chunks_mut(out_w)
            .zip(x.par_chunks(w))
            .for_each(|(o, row)| {
                for (j, (idx, wt)) in taps.iter().enumerate() {
                    for ((o, &i), &k) in o.iter_mut().zip(idx).zip(wt) {
                        let term = row[i as usize] * k;
                        *o = if j == 0 { term } else { *o + term };
                    }
                }
            });
    };
    if h == out_h {
        let mut out = vec![0f32; planes * h * out_w];
        horizontal(&mut out);
        return out;
    }
    // The row pass goes to a reused scratch buffer: only the result is fresh memory.
    with_scratch::<f32, _>(planes * h * out_w, |tmp| {
        horizontal(tmp);
        resize_columns(tmp, planes, h, out_w, out_h, interp)
    })
}

/// The column pass of [`resize_host`]: planes of `h × w` to `out_h × w`.
fn resize_columns(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    out_h: usize,
    interp: Interpolation,
) -> Vec<f32> {
    let taps = taps(h, out_h, interp);
    let mut out = vec![0f32; planes * out_h * w];
    out.par_chunks_mut(w).enumerate().for_each(|(k, o)| {
        let (plane, y) = (k / out_h, k % out_h);
        for (j, (idx, wt)) in taps.iter().enumerate() {
            let sy = idx[y] as usize;
            let row = &x[(plane * h + sy) * w..(plane * h + sy + 1) * w];
            let k = wt[y];
            for (o, &v) in o.iter_mut().zip(row) {
                let term = v * k;
                *o = if j == 0 { term } else { *o + term };
            }
        }
    });
    out
}

/// Per-output taps: `taps[k] = (source index, weight)` for every output position.
type Taps = Vec<(Vec<i64>, Vec<f32>)>;

fn taps(src: usize, dst: usize, interp: Interpolation) -> Taps {
    match interp {
        Interpolation::Area if dst < src => area_taps(src, dst),
        _ => linear_taps(src, dst),
    }
}

/// OpenCV `resize` INTER_LINEAR coefficient table (`fx = (dx + 0.5) * scale - 0.5`,
/// clamped to the first/last pixel with weight 0 beyond).
fn linear_taps(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let mut i0 = Vec::with_capacity(dst);
    let mut i1 = Vec::with_capacity(dst);
    let mut w0 = Vec::with_capacity(dst);
    let mut w1 = Vec::with_capacity(dst);
    for dx in 0..dst {
        let mut fx = ((dx as f64 + 0.5) * scale - 0.5) as f32;
        let mut sx = fx.floor() as i64;
        fx -= sx as f32;
        if sx < 0 {
            fx = 0.0;
            sx = 0;
        }
        if sx >= src as i64 - 1 {
            fx = 0.0;
            sx = src as i64 - 1;
        }
        i0.push(sx);
        i1.push((sx + 1).min(src as i64 - 1));
        w0.push(1.0 - fx);
        w1.push(fx);
    }
    vec![(i0, w0), (i1, w1)]
}

/// OpenCV `computeResizeAreaTab`: each output cell averages the source
/// cells it overlaps, partial cells weighted by their overlap.
fn area_taps(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let per_out: Vec<Vec<(i64, f32)>> = (0..dst)
        .map(|dx| {
            let fsx1 = dx as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(src as f64 - fsx1);
            let sx1 = fsx1.ceil() as i64;
            let sx2 = (fsx2.floor() as i64).min(src as i64);
            let mut t = Vec::new();
            if sx1 as f64 - fsx1 > 1e-3 {
                t.push((sx1 - 1, ((sx1 as f64 - fsx1) / cell) as f32));
            }
            for sx in sx1..sx2 {
                t.push((sx, (1.0 / cell) as f32));
            }
            if fsx2 - sx2 as f64 > 1e-3 && (sx2 as usize) < src {
                t.push((sx2, ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32));
            }
            t
        })
        .collect();
    let k = per_out.iter().map(Vec::len).max().unwrap_or(1);
    (0..k)
        .map(|j| {
            // Pad short tap lists with a zero-weight tap on a valid index.
            let idx = per_out
                .iter()
                .map(|t| t.get(j).map_or(t[0].0, |p| p.0))
                .collect();
            let w = per_out
                .iter()
                .map(|t| t.get(j).map_or(0.0, |p| p.1))
                .collect();
            (idx, w)
        })
        .collect()
}

fn resample_axis<B: Backend>(x: Tensor<B, 4>, axis: usize, taps: &Taps) -> Tensor<B, 4> {
    let device = x.device();
    let out = taps[0].0.len();
    let wshape = if axis == 3 {
        [1, 1, 1, out]
    } else {
        [1, 1, out, 1]
    };
    let mut acc: Option<Tensor<B, 4>> = None;
    for (idx, w) in taps {
        let idx = resident::int::<B, 1>(TensorData::new(idx.clone(), [out]), &device);
        let w = resident::float::<B, 4>(TensorData::new(w.clone(), wshape), &device);
        let term = x.clone().select(axis, idx) * w;
        acc = Some(match acc {
            Some(a) => a + term,
            None => term,
        });
    }
    acc.expect("at least one tap")
}
