//! Erode / dilate / open / close with OpenCV semantics (anchor at the
//! kernel centre, border values that never win: `-inf` for dilate, `+inf`
//! for erode).
//!
//! burn-vision 0.21 implements morphology only for backends that implement
//! its `VisionBackend` trait (Flex, LibTorch, CubeCL backends), not for
//! `NdArray`, and the orphan rule stops us implementing it here. So we use
//! burn-vision for the structuring element (identical to
//! `getStructuringElement`) and apply it as portable tensor code:
//! every kernel row is a contiguous run, so a dilation is a max over rows of
//! a 1×run max-pool, shifted vertically. Rect kernels are a single max-pool.
//!
//! The host version ([`morph_host`], the NdArray backend's) uses the same
//! row-run decomposition with a van Herk/Gil-Werman running max per run:
//! three comparisons per pixel whatever the run length.

use burn_tensor::{backend::Backend, module::max_pool2d, Tensor};
use burn_vision::{create_structuring_element, KernelShape, Size};
use rayon::prelude::*;

use super::filter::{pad2d, Border};
use crate::backend::ScanBackend;

/// Structuring element shape (`MORPH_RECT`, `MORPH_ELLIPSE`, `MORPH_CROSS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphShape {
    Rect,
    Ellipse,
    Cross,
}

/// Row runs up to this length take a direct window extremum in
/// [`morph_host`]; longer ones the van Herk/Gil-Werman scans.
const DIRECT_MAX_RUN: usize = 8;

/// The two elementary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphOp {
    Dilate,
    Erode,
}

/// A finite stand-in for -inf so that GPU backends never see inf arithmetic.
const NEG: f32 = -1.0e9;

/// Row runs `(row, start, end)` of the structuring element, end exclusive.
fn kernel_runs(shape: MorphShape, kw: usize, kh: usize) -> Vec<(usize, usize, usize)> {
    let ks = match shape {
        MorphShape::Rect => KernelShape::Rect,
        MorphShape::Ellipse => KernelShape::Ellipse,
        MorphShape::Cross => KernelShape::Cross,
    };
    let elem = create_structuring_element::<crate::Cpu>(ks, Size::new(kw, kh), None, &Default::default());
    let bits: Vec<bool> = elem.into_data().convert::<bool>().to_vec::<bool>().expect("bool kernel");
    let mut runs = Vec::new();
    for i in 0..kh {
        let row = &bits[i * kw..(i + 1) * kw];
        if let Some(j1) = row.iter().position(|&b| b) {
            let j2 = kw - row.iter().rev().position(|&b| b).unwrap();
            debug_assert!(row[j1..j2].iter().all(|&b| b), "kernel rows must be contiguous");
            runs.push((i, j1, j2));
        }
    }
    runs
}

fn dilate_once<B: Backend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (r, cc) = (kh / 2, kw / 2);
    let p = pad2d(x, (cc, kw - 1 - cc, r, kh - 1 - r), Border::Constant(NEG));
    if shape == MorphShape::Rect {
        return max_pool2d(p, [kh, kw], [1, 1], [0, 0], [1, 1], false);
    }
    let mut cache: Vec<((usize, usize), Tensor<B, 4>)> = Vec::new();
    let mut acc: Option<Tensor<B, 4>> = None;
    for (i, j1, j2) in kernel_runs(shape, kw, kh) {
        let hmax = match cache.iter().find(|(k, _)| *k == (j1, j2)) {
            Some((_, t)) => t.clone(),
            None => {
                let cols = p.clone().slice([0..n, 0..c, 0..h + kh - 1, j1..j1 + w + (j2 - j1) - 1]);
                let t = max_pool2d(cols, [1, j2 - j1], [1, 1], [0, 0], [1, 1], false);
                cache.push(((j1, j2), t.clone()));
                t
            }
        };
        let rows = hmax.slice([0..n, 0..c, i..i + h, 0..w]);
        acc = Some(match acc {
            Some(a) => a.max_pair(rows),
            None => rows,
        });
    }
    acc.expect("non-empty kernel")
}

/// Portable single dilation or erosion (erosion is the dual, `-dilate(-x)`).
pub fn morph_tensor<B: Backend>(x: Tensor<B, 4>, op: MorphOp, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    match op {
        MorphOp::Dilate => dilate_once(x, shape, kw, kh),
        MorphOp::Erode => dilate_once(x.neg(), shape, kw, kh).neg(),
    }
}

/// Host single dilation or erosion over planes of `h × w`.
///
/// Per distinct kernel row run `[j1, j2)`, a horizontal running max over
/// windows of `j2 - j1` (van Herk/Gil-Werman: block prefix and suffix
/// maxima); then each output row is the max of the run results of the rows
/// the kernel covers (runs up to `DIRECT_MAX_RUN` long take a plain window
/// extremum instead, which vectorises). Outside the image the identity (`-inf` for max,
/// `+inf` for min) never wins, as in OpenCV.
pub fn morph_host(x: &[f32], h: usize, w: usize, op: MorphOp, shape: MorphShape, kw: usize, kh: usize) -> Vec<f32> {
    // Generic over the extremum (not a fn pointer) so that it inlines and vectorises.
    match op {
        MorphOp::Dilate => morph_runs(x, h, w, shape, kw, kh, f32::NEG_INFINITY, f32::max),
        MorphOp::Erode => morph_runs(x, h, w, shape, kw, kh, f32::INFINITY, f32::min),
    }
}

#[allow(clippy::too_many_arguments)]
fn morph_runs<F>(x: &[f32], h: usize, w: usize, shape: MorphShape, kw: usize, kh: usize, identity: f32, ext: F) -> Vec<f32>
where
    F: Fn(f32, f32) -> f32 + Copy + Sync,
{
    let (r, cc) = (kh / 2, kw / 2);
    let runs = kernel_runs(shape, kw, kh);
    let mut distinct: Vec<(usize, usize)> = runs.iter().map(|&(_, j1, j2)| (j1, j2)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let border = Border::Constant(identity);
    let padded_len = w + kw - 1;
    let horizontal: Vec<Vec<f32>> = distinct
        .iter()
        .map(|&(j1, j2)| {
            let len = j2 - j1;
            let mut out = vec![0f32; x.len()];
            out.par_chunks_mut(w).zip(x.par_chunks(w)).for_each_init(
                || (vec![0f32; padded_len], vec![0f32; padded_len], vec![0f32; padded_len]),
                |(p, fwd, bwd), (o, row)| {
                    border.pad_row(row, cc, p);
                    if len <= DIRECT_MAX_RUN {
                        // Short runs: `len` vectorised passes beat the serial prefix scans.
                        o.copy_from_slice(&p[j1..j1 + w]);
                        for t in 1..len {
                            for (o, &v) in o.iter_mut().zip(&p[j1 + t..j1 + t + w]) {
                                *o = ext(*o, v);
                            }
                        }
                        return;
                    }
                    running_ext(p, len, ext, fwd, bwd);
                    // Window starting at padded index s covers [s, s + len): max(bwd[s], fwd[s + len - 1]).
                    for (xx, o) in o.iter_mut().enumerate() {
                        let s = xx + j1;
                        *o = ext(bwd[s], fwd[s + len - 1]);
                    }
                },
            );
            out
        })
        .collect();
    let run_src: Vec<(usize, &[f32])> = runs
        .iter()
        .map(|&(i, j1, j2)| (i, horizontal[distinct.iter().position(|&d| d == (j1, j2)).unwrap()].as_slice()))
        .collect();
    let mut out = vec![identity; x.len()];
    out.par_chunks_mut(w).enumerate().for_each(|(k, o)| {
        let (plane, y) = (k / h, k % h);
        for &(i, src) in &run_src {
            let Some(sy) = border.index(y as isize + i as isize - r as isize, h) else { continue };
            let row = &src[(plane * h + sy) * w..(plane * h + sy + 1) * w];
            for (o, &v) in o.iter_mut().zip(row) {
                *o = ext(*o, v);
            }
        }
    });
    out
}

/// Block-wise running extremum for windows of `len`: `fwd[i]` is the
/// extremum from the start of `i`'s block of `len` up to `i`, `bwd[i]` from
/// `i` to the end of its block; any window `[s, s + len)` spans at most two
/// blocks, so its extremum is `ext(bwd[s], fwd[s + len - 1])`.
fn running_ext<F: Fn(f32, f32) -> f32>(p: &[f32], len: usize, ext: F, fwd: &mut [f32], bwd: &mut [f32]) {
    for (block, (f, b)) in p.chunks(len).zip(fwd.chunks_mut(len).zip(bwd.chunks_mut(len))) {
        let mut acc = block[0];
        for (f, &v) in f.iter_mut().zip(block) {
            acc = ext(acc, v);
            *f = acc;
        }
        let mut acc = block[block.len() - 1];
        for (b, &v) in b.iter_mut().zip(block).rev() {
            acc = ext(acc, v);
            *b = acc;
        }
    }
}

fn morph_n<B: ScanBackend>(x: Tensor<B, 4>, op: MorphOp, shape: MorphShape, kw: usize, kh: usize, iterations: usize) -> Tensor<B, 4> {
    (0..iterations).fold(x, |x, _| B::morph(x, op, shape, kw, kh))
}

/// `dilate(src, getStructuringElement(shape, Size(kw, kh)), anchor centre, iterations)`.
pub fn dilate<B: ScanBackend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize, iterations: usize) -> Tensor<B, 4> {
    morph_n(x, MorphOp::Dilate, shape, kw, kh, iterations)
}

/// `erode(...)`: the dual of dilate.
pub fn erode<B: ScanBackend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize, iterations: usize) -> Tensor<B, 4> {
    morph_n(x, MorphOp::Erode, shape, kw, kh, iterations)
}

/// `morphologyEx(MORPH_OPEN)`: erode then dilate.
pub fn open<B: ScanBackend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    dilate(erode(x, shape, kw, kh, 1), shape, kw, kh, 1)
}

/// `morphologyEx(MORPH_CLOSE)`: dilate then erode.
pub fn close<B: ScanBackend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    erode(dilate(x, shape, kw, kh, 1), shape, kw, kh, 1)
}
