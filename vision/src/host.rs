//! The CPU worker's backend (`NdArray<f32>`) runs the [`ScanBackend`] ops as
//! plain Rust over the tensors' host memory (the `*_host` functions next to
//! each tensor version), parallel over rows or frames with rayon. The
//! portable tensor versions are correct on NdArray too, but every op is a
//! separate pass (and `max_pool2d`, `conv2d` and gathers are slow there),
//! which made the CPU pipeline 20× slower than OpenCV.

use burn_ndarray::NdArrayTensor;
use burn_tensor::{Tensor, TensorData, TensorPrimitive};
use opencv::core::Mat;

use crate::{
    backend::ScanBackend,
    canny,
    error::VisionError,
    flow,
    frames::{self, to_vec_f32},
    primitives::{self, Border, Interpolation, MorphOp, MorphShape},
    Cpu,
};

/// Run `f` on a tensor's data as a row-major slice: zero-copy when the
/// NdArray storage is contiguous (the usual case, even when shared), a copy
/// otherwise (e.g. a strided `narrow`).
fn on_host<R, const D: usize>(t: Tensor<Cpu, D>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let TensorPrimitive::Float(NdArrayTensor::F32(storage)) = t.clone().into_primitive() {
        let view = storage.view();
        if let Some(data) = view.as_slice() {
            return f(data);
        }
    }
    f(&to_vec_f32(t))
}

/// A host buffer as a tensor (moves the `Vec`, no copy).
fn tensor<const D: usize>(data: Vec<f32>, dims: [usize; D]) -> Tensor<Cpu, D> {
    Tensor::from_data(TensorData::new(data, dims), &Default::default())
}

impl ScanBackend for Cpu {
    const NAME: &'static str = "cpu-ndarray";

    fn bgr_to_gray(bgr: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let [n, c, h, w] = bgr.dims();
        assert_eq!(c, 3, "bgr_to_gray expects 3 channels");
        on_host(bgr, |x| tensor(primitives::bgr_to_gray_host(x, h * w), [n, 1, h, w]))
    }

    fn gray_frames(mats: &[Mat], _device: &Self::Device) -> Result<Tensor<Self, 4>, VisionError> {
        let (data, dims) = frames::gray_from_bgr_host(mats)?;
        Ok(tensor(data, dims))
    }

    fn resize(x: Tensor<Self, 4>, out_w: usize, out_h: usize, interp: Interpolation) -> Tensor<Self, 4> {
        let [n, c, h, w] = x.dims();
        on_host(x, |x| tensor(primitives::resize_host(x, h, w, out_w, out_h, interp), [n, c, out_h, out_w]))
    }

    fn sep_filter(x: Tensor<Self, 4>, kx: &[f32], ky: &[f32], border: Border) -> Tensor<Self, 4> {
        let dims @ [_, _, h, w] = x.dims();
        on_host(x, |x| tensor(primitives::sep_filter_host(x, h, w, kx, ky, border), dims))
    }

    fn laplacian(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims @ [_, _, h, w] = x.dims();
        on_host(x, |x| tensor(primitives::laplacian_host(x, h, w), dims))
    }

    fn laplacian_variance(x: Tensor<Self, 4>) -> Tensor<Self, 1> {
        let [n, c, h, w] = x.dims();
        assert_eq!(c, 1, "laplacian_variance expects one channel");
        on_host(x, |x| tensor(primitives::laplacian_variance_host(x, h, w), [n]))
    }

    fn morph(x: Tensor<Self, 4>, op: MorphOp, shape: MorphShape, kw: usize, kh: usize) -> Tensor<Self, 4> {
        let dims @ [_, _, h, w] = x.dims();
        on_host(x, |x| tensor(primitives::morph_host(x, h, w, op, shape, kw, kh), dims))
    }

    fn remap_bilinear(img: Tensor<Self, 4>, map: &[(f32, f32)], out_w: usize, out_h: usize) -> Tensor<Self, 4> {
        let [n, c, h, w] = img.dims();
        on_host(img, |x| tensor(primitives::remap_bilinear_host(x, h, w, map), [n, c, out_h, out_w]))
    }

    fn canny_candidates(gray: Tensor<Self, 4>, low: f32, high: f32) -> (Tensor<Self, 4>, Tensor<Self, 4>) {
        let dims @ [_, _, h, w] = gray.dims();
        let (weak, strong) = on_host(gray, |g| canny::canny_candidates_host(g, h, w, low, high));
        (tensor(weak, dims), tensor(strong, dims))
    }

    /// A flood fill is one linear pass instead of one dilation per pixel of
    /// the longest chain.
    fn hysteresis(weak: Tensor<Self, 4>, strong: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims @ [n, c, h, w] = weak.dims();
        let out = on_host(weak, |w_| on_host(strong, |s| canny::hysteresis_host(w_, s, n * c, h, w)));
        tensor(out, dims)
    }

    fn poly_expand(img: Tensor<Self, 4>, poly_n: usize, poly_sigma: f64) -> Tensor<Self, 4> {
        let [n, c, h, w] = img.dims();
        assert_eq!(c, 1, "poly_expand expects one channel");
        on_host(img, |x| tensor(flow::poly_expand_host(x, h, w, poly_n, poly_sigma), [n, 5, h, w]))
    }

    fn flow_update_matrices(r0: Tensor<Self, 4>, r1: Tensor<Self, 4>, f: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims @ [_, _, h, w] = r0.dims();
        let out = on_host(r0, |a| on_host(r1, |b| on_host(f, |f| flow::update_matrices_host(a, b, f, h, w))));
        tensor(out, dims)
    }

    fn flow_update(m: Tensor<Self, 4>, winsize: usize) -> Tensor<Self, 4> {
        let [n, _, h, w] = m.dims();
        on_host(m, |m| tensor(flow::update_flow_host(m, h, w, winsize), [n, 2, h, w]))
    }
}

/// Each host op against its portable tensor version, both on NdArray, on
/// random inputs (odd sizes, every border mode, tiny images).
#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
        }
        fn level(&mut self) -> f32 {
            (self.next() * 256.0).floor().min(255.0)
        }
    }

    fn random<const D: usize>(dims: [usize; D], seed: u64, mut f: impl FnMut(&mut Rng) -> f32) -> Tensor<Cpu, D> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        tensor((0..dims.iter().product()).map(|_| f(&mut rng)).collect(), dims)
    }

    /// A smooth-ish 8-bit image: blocks of random levels plus noise, so that
    /// edge and flow code sees structure rather than pure noise.
    fn image(dims: [usize; 4], seed: u64) -> Tensor<Cpu, 4> {
        let blocks = random([dims[0], dims[1], dims[2].div_ceil(6), dims[3].div_ceil(6)], seed, Rng::level);
        let up = primitives::resize_tensor(blocks, dims[3], dims[2], Interpolation::Linear);
        (up + random(dims, seed + 1, |r| r.next() * 20.0)).clamp(0.0, 255.0).floor()
    }

    fn same<const D: usize>(what: &str, host: Tensor<Cpu, D>, portable: Tensor<Cpu, D>, tol: f32) {
        assert_eq!(host.dims(), portable.dims(), "{what}: shape");
        let (a, b) = (to_vec_f32(host), to_vec_f32(portable));
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: max abs diff {worst} (scale {scale}, tolerance {tol})");
    }

    const SIZES: [[usize; 4]; 3] = [[2, 1, 37, 53], [1, 2, 6, 9], [3, 1, 2, 5]];

    #[test]
    fn gray_is_identical() {
        let bgr = random([2, 3, 13, 17], 1, Rng::level);
        same("gray", Cpu::bgr_to_gray(bgr.clone()), primitives::bgr_to_gray_tensor(bgr), 0.0);
    }

    #[test]
    fn resize_is_identical() {
        let x = image([2, 2, 37, 53], 2);
        for (w, h, interp) in [(20, 15, Interpolation::Area), (26, 18, Interpolation::Area), (53, 12, Interpolation::Area), (70, 40, Interpolation::Linear), (11, 9, Interpolation::Linear), (80, 50, Interpolation::Area)] {
            same(&format!("resize {w}x{h} {interp:?}"), Cpu::resize(x.clone(), w, h, interp), primitives::resize_tensor(x.clone(), w, h, interp), 0.0);
        }
    }

    #[test]
    fn sep_filter_matches() {
        let g5 = primitives::gaussian_kernel(5, 1.2);
        let g19 = primitives::gaussian_kernel(19, 3.5);
        let d = [-1.0, 0.0, 1.0];
        for (i, dims) in SIZES.into_iter().enumerate() {
            let x = random(dims, 3 + i as u64, |r| r.next() * 255.0);
            for border in [Border::Reflect101, Border::Replicate, Border::Constant(3.0)] {
                for (kx, ky) in [(&g5[..], &g5[..]), (&g19[..], &d[..]), (&[2.0][..], &g5[..]), (&d[..], &[1.0][..])] {
                    let what = format!("sep_filter {dims:?} {border:?} {}x{}", kx.len(), ky.len());
                    same(&what, Cpu::sep_filter(x.clone(), kx, ky, border), primitives::sep_filter_tensor(x.clone(), kx, ky, border), 1e-6);
                }
            }
        }
    }

    #[test]
    fn laplacian_is_identical_and_variance_matches() {
        for (i, dims) in SIZES.into_iter().enumerate() {
            let x = image(dims, 4 + i as u64);
            same("laplacian", Cpu::laplacian(x.clone()), primitives::laplacian_tensor(x.clone()), 0.0);
            if dims[1] == 1 {
                let portable = primitives::laplacian_variance_tensor::<Cpu>(x.clone());
                same("laplacian variance", Cpu::laplacian_variance(x), portable, 1e-5);
            }
        }
    }

    #[test]
    fn morphology_is_identical() {
        let shapes = [(MorphShape::Rect, 5, 5), (MorphShape::Rect, 3, 7), (MorphShape::Ellipse, 7, 7), (MorphShape::Ellipse, 15, 15), (MorphShape::Cross, 5, 5), (MorphShape::Ellipse, 9, 5)];
        for (i, dims) in SIZES.into_iter().enumerate() {
            let gray = image(dims, 5 + i as u64);
            let binary = random(dims, 6 + i as u64, |r| if r.next() > 0.8 { 1.0 } else { 0.0 });
            for x in [gray, binary] {
                for (shape, kw, kh) in shapes {
                    for op in [MorphOp::Dilate, MorphOp::Erode] {
                        let what = format!("{op:?} {shape:?} {kw}x{kh} on {dims:?}");
                        same(&what, Cpu::morph(x.clone(), op, shape, kw, kh), primitives::morph_tensor(x.clone(), op, shape, kw, kh), 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn hysteresis_is_identical() {
        let weak = random([2, 1, 29, 41], 13, |r| if r.next() > 0.4 { 1.0 } else { 0.0 });
        let strong = weak.clone() * random([2, 1, 29, 41], 14, |r| if r.next() > 0.97 { 1.0 } else { 0.0 });
        same("hysteresis", Cpu::hysteresis(weak.clone(), strong.clone()), canny::hysteresis_tensor(weak, strong), 0.0);
    }

    #[test]
    fn gray_frames_match_bgr_to_gray() {
        use opencv::prelude::*;
        let bgr = random([2, 3, 7, 11], 15, Rng::level);
        let v = to_vec_f32(bgr.clone());
        let plane = 7 * 11;
        let mats: Vec<Mat> = (0..2)
            .map(|f| {
                let px: Vec<u8> = (0..plane).flat_map(|i| (0..3).map(move |c| (f, i, c))).map(|(f, i, c)| v[(f * 3 + c) * plane + i] as u8).collect();
                Mat::from_slice(&px).unwrap().reshape(3, 7).unwrap().try_clone().unwrap()
            })
            .collect();
        let host = Cpu::gray_frames(&mats, &Default::default()).unwrap();
        same("gray frames", host, primitives::bgr_to_gray_tensor(bgr), 0.0);
    }

    #[test]
    fn remap_is_identical() {
        let img = image([1, 3, 21, 30], 7);
        let mut rng = Rng(99);
        // Mostly inside, some straddling or beyond every border.
        let map: Vec<(f32, f32)> = (0..17 * 23).map(|_| (rng.next() * 36.0 - 3.0, rng.next() * 27.0 - 3.0)).collect();
        same("remap", Cpu::remap_bilinear(img.clone(), &map, 23, 17), primitives::remap_bilinear_tensor(img, &map, 23, 17), 0.0);
    }

    #[test]
    fn canny_candidates_are_identical() {
        for (i, dims) in SIZES.into_iter().enumerate() {
            let x = image([dims[0], 1, dims[2], dims[3]], 8 + i as u64);
            for (low, high) in [(15.0, 60.0), (40.5, 20.0)] {
                let (hw, hs) = Cpu::canny_candidates(x.clone(), low, high);
                let (tw, ts) = canny::canny_candidates_tensor(x.clone(), low, high);
                same("canny weak", hw, tw, 0.0);
                same("canny strong", hs, ts, 0.0);
            }
        }
    }

    #[test]
    fn farneback_steps_match() {
        let (n, h, w) = (2, 24, 31);
        let img = image([n, 1, h, w], 9);
        same("poly_expand", Cpu::poly_expand(img.clone(), 5, 1.2), flow::poly_expand_tensor(img.clone(), 5, 1.2), 1e-5);

        let r0 = flow::poly_expand_tensor(img.clone(), 5, 1.2);
        let r1 = flow::poly_expand_tensor(image([n, 1, h, w], 10), 5, 1.2);
        // Displacements up to ±4 px reach past every border (the invalid branch).
        let f = random([n, 2, h, w], 11, |r| r.next() * 8.0 - 4.0);
        let host = Cpu::flow_update_matrices(r0.clone(), r1.clone(), f.clone());
        same("update_matrices", host, flow::update_matrices_tensor(r0, r1, f), 1e-6);

        // Well-conditioned systems: G11, G22 dominant, small G12.
        let m = random([n, 5, h, w], 12, |r| r.next());
        let m = Tensor::cat(
            vec![
                m.clone().narrow(1, 0, 1).add_scalar(1.0),
                m.clone().narrow(1, 1, 1).mul_scalar(0.2),
                m.clone().narrow(1, 2, 1).add_scalar(1.0),
                m.narrow(1, 3, 2).sub_scalar(0.5),
            ],
            1,
        );
        for winsize in [15, 5] {
            same(&format!("update_flow {winsize}"), Cpu::flow_update(m.clone(), winsize), flow::update_flow_tensor(m.clone(), winsize), 1e-5);
        }
    }
}
