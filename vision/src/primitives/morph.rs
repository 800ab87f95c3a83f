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

use burn_tensor::{backend::Backend, module::max_pool2d, Tensor};
use burn_vision::{create_structuring_element, KernelShape, Size};

use super::filter::{pad2d, Border};

/// Structuring element shape (`MORPH_RECT`, `MORPH_ELLIPSE`, `MORPH_CROSS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MorphShape {
    Rect,
    Ellipse,
    Cross,
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

/// `dilate(src, getStructuringElement(shape, Size(kw, kh)), anchor centre, iterations)`.
pub fn dilate<B: Backend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize, iterations: usize) -> Tensor<B, 4> {
    (0..iterations).fold(x, |x, _| dilate_once(x, shape, kw, kh))
}

/// `erode(...)`: the dual of dilate, `-dilate(-x)`.
pub fn erode<B: Backend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize, iterations: usize) -> Tensor<B, 4> {
    dilate(x.neg(), shape, kw, kh, iterations).neg()
}

/// `morphologyEx(MORPH_OPEN)`: erode then dilate.
pub fn open<B: Backend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    dilate(erode(x, shape, kw, kh, 1), shape, kw, kh, 1)
}

/// `morphologyEx(MORPH_CLOSE)`: dilate then erode.
pub fn close<B: Backend>(x: Tensor<B, 4>, shape: MorphShape, kw: usize, kh: usize) -> Tensor<B, 4> {
    erode(dilate(x, shape, kw, kh, 1), shape, kw, kh, 1)
}
