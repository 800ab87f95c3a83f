//! Farneback dense optical flow (`calcOpticalFlowFarneback`, no flags)
//! as tensor code, following OpenCV's `optflowgf.cpp` step by step:
//!
//! 1. Pyramid: level `k` is the frame blurred with σ = (1/scale − 1)/2
//!    (kernel `round(5σ)|1`, at least 3, so even level 0 gets a 3×3 blur)
//!    then resized bilinearly to `round(size · scale)`.
//! 2. Polynomial expansion (`FarnebackPolyExp`): separable correlations
//!    with g, x·g, x²·g (replicated border) combined with the inverse of the
//!    Gram matrix into 5 coefficients per pixel.
//! 3. `FarnebackUpdateMatrices`: sample the second frame's coefficients at
//!    the displaced position (bilinear), build the 2×2 system per pixel,
//!    damped near the image border.
//! 4. `FarnebackUpdateFlow_Blur`: box-blur the system over `winsize` and
//!    solve. OpenCV interleaves the matrix update with the blur in row
//!    stripes, but a matrix row is only rewritten after every blur window
//!    that reads it has passed, so the whole-image order used here gives
//!    the same result.
//!
//! OpenCV accumulates the blur and solve in f64; the tensor version stays in
//! f32 (burn's float element), which is the main source of its residual
//! difference. Step 2 is a [`ScanBackend`] op, and steps 3–4 together are
//! another (one iteration); the host versions (the NdArray backend's) blur
//! with f64 running sums and solve in f64 like OpenCV.
//!
//! [`farneback_sequence`] runs a batch of consecutive frames, expanding
//! each frame once; [`farneback`] takes explicit pairs.

use burn_tensor::{backend::Backend, ops::ConvOptions, Tensor, TensorData};
use rayon::prelude::*;

use crate::backend::ScanBackend;
use crate::host::with_scratch;
use crate::primitives::{gaussian_blur, pad2d, resize, sep_filter_tensor, Border, Interpolation};
use crate::resident;

/// Parameters of `calcOpticalFlowFarneback`.
#[derive(Clone, Debug, PartialEq)]
pub struct FarnebackParams {
    pub pyr_scale: f64,
    pub levels: usize,
    pub winsize: usize,
    pub iterations: usize,
    pub poly_n: usize,
    pub poly_sigma: f64,
}

impl Default for FarnebackParams {
    /// DESIGN.md: pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2.
    fn default() -> Self {
        Self {
            pyr_scale: 0.5,
            levels: 3,
            winsize: 15,
            iterations: 3,
            poly_n: 5,
            poly_sigma: 1.2,
        }
    }
}

fn cv_round(v: f64) -> usize {
    v.round_ties_even() as usize
}

/// Dense flow from `prev` to `next` (`[N, 1, H, W]`, 0..255) as `[N, 2, H, W]` (dx, dy).
pub fn farneback<B: ScanBackend>(
    prev: Tensor<B, 4>,
    next: Tensor<B, 4>,
    p: &FarnebackParams,
) -> Tensor<B, 4> {
    let n = prev.dims()[0];
    farneback_pairs(Tensor::cat(vec![prev, next], 0), p, |r| {
        (r.clone().narrow(0, 0, n), r.narrow(0, n, n))
    })
}

/// Dense flow between consecutive frames of `frames` (`[N + 1, 1, H, W]`):
/// `[N, 2, H, W]`, the same as `farneback(frames[..N], frames[1..])`, but
/// every frame's pyramid and polynomial expansion is computed once instead
/// of twice (once as `next`, once as `prev`).
pub fn farneback_sequence<B: ScanBackend>(
    frames: Tensor<B, 4>,
    p: &FarnebackParams,
) -> Tensor<B, 4> {
    let n = frames.dims()[0] - 1;
    farneback_pairs(frames, p, |r| {
        (r.clone().narrow(0, 0, n), r.narrow(0, 1, n))
    })
}

/// Farneback over the frame pairs that `pairs` picks out of the expansion
/// of `frames` at each pyramid level (`[M, 5, h, w]` → first and second
/// frames of each pair).
fn farneback_pairs<B: ScanBackend>(
    frames: Tensor<B, 4>,
    p: &FarnebackParams,
    pairs: impl Fn(Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>),
) -> Tensor<B, 4> {
    let [_, _, h, w] = frames.dims();
    const MIN_SIZE: f64 = 32.0;
    let mut levels = 0;
    let mut scale = 1.0;
    while levels < p.levels {
        scale *= p.pyr_scale;
        if (w as f64) * scale < MIN_SIZE || (h as f64) * scale < MIN_SIZE {
            break;
        }
        levels += 1;
    }

    let mut flow: Option<Tensor<B, 4>> = None;
    for k in (0..=levels).rev() {
        let scale = (0..k).fold(1.0, |s, _| s * p.pyr_scale);
        let sigma = (1.0 / scale - 1.0) * 0.5;
        let smooth = ((sigma * 5.0).round_ties_even() as usize | 1).max(3);
        let (lw, lh) = (cv_round(w as f64 * scale), cv_round(h as f64 * scale));
        let blurred = gaussian_blur(frames.clone(), smooth, sigma, Border::Reflect101);
        let (r0, r1) = pairs(B::poly_expand(
            resize(blurred, lw, lh, Interpolation::Linear),
            p.poly_n,
            p.poly_sigma,
        ));
        let mut f = match flow.take() {
            None => Tensor::<B, 4>::zeros([r0.dims()[0], 2, lh, lw], &r0.device()),
            Some(f) => resize(f, lw, lh, Interpolation::Linear).mul_scalar(1.0 / p.pyr_scale),
        };
        for _ in 0..p.iterations {
            f = B::flow_iteration(r0.clone(), r1.clone(), f, p.winsize);
        }
        flow = Some(f);
    }
    flow.expect("at least one pyramid level")
}

/// Mean flow magnitude per frame pair: `[N]`.
pub fn mean_magnitude<B: Backend>(flow: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, _, _, _] = flow.dims();
    let sq = flow.clone() * flow;
    let mag = sq.sum_dim(1).sqrt();
    // Two short reductions (see `laplacian_variance`).
    mag.mean_dim(3).mean_dim(2).reshape([n])
}

/// The polynomial-expansion filters and inverse Gram entries of
/// `FarnebackPrepareGaussian`, with OpenCV's float/double mix.
struct PolyBasis {
    n: usize,
    g: Vec<f32>,
    xg: Vec<f32>,
    xxg: Vec<f32>,
    ig11: f64,
    ig03: f64,
    ig33: f64,
    ig55: f64,
}

impl PolyBasis {
    fn new(n: usize, sigma: f64) -> Self {
        let sigma = if sigma < f32::EPSILON as f64 {
            n as f64 * 0.3
        } else {
            sigma
        };
        let ni = n as i32;
        let mut g: Vec<f32> = (-ni..=ni)
            .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp() as f32)
            .collect();
        let s: f64 = 1.0 / g.iter().map(|&v| v as f64).sum::<f64>();
        for v in g.iter_mut() {
            *v = (*v as f64 * s) as f32;
        }
        let xg: Vec<f32> = (-ni..=ni)
            .map(|x| x as f32 * g[(x + ni) as usize])
            .collect();
        let xxg: Vec<f32> = (-ni..=ni)
            .map(|x| (x * x) as f32 * g[(x + ni) as usize])
            .collect();
        let (mut g00, mut g11, mut g33, mut g55) = (0f64, 0f64, 0f64, 0f64);
        for y in -ni..=ni {
            for x in -ni..=ni {
                let gg = g[(y + ni) as usize] * g[(x + ni) as usize];
                let (xf, yf) = (x as f32, y as f32);
                g00 += gg as f64;
                g11 += (gg * xf * xf) as f64;
                g33 += (gg * xf * xf * xf * xf) as f64;
                g55 += (gg * xf * xf * yf * yf) as f64;
            }
        }
        // The Gram matrix is diagonal except for the block {1, x², y²}:
        // [[g00, g11, g11], [g11, g33, g55], [g11, g55, g33]].
        let a = [[g00, g11, g11], [g11, g33, g55], [g11, g55, g33]];
        let inv = invert3(a);
        Self {
            n,
            g,
            xg,
            xxg,
            ig11: 1.0 / g11,
            ig03: inv[0][1],
            ig33: inv[1][1],
            ig55: 1.0 / g55,
        }
    }

    /// Filters of `FarnebackPolyExp` as two passes: vertical `wv[i]` (g,
    /// x·g, x²·g along y, `3 × k`) then horizontal `wh[o][i]` from the three
    /// vertical outputs straight into the 5 coefficients (`5 × 3 × k`).
    fn weights(&self) -> (Vec<f32>, Vec<f32>) {
        let k = 2 * self.n + 1;
        let wv: Vec<f32> = [&self.g, &self.xg, &self.xxg]
            .iter()
            .flat_map(|v| v.iter().copied())
            .collect();
        // Horizontal pass straight into the 5 coefficients:
        //   r0 = ig11·(g ⊗ v_xg)           (y)
        //   r1 = ig11·(xg ⊗ v_g)           (x)
        //   r2 = ig03·(g ⊗ v_g) + ig33·(g ⊗ v_xxg)   (yy)
        //   r3 = ig03·(g ⊗ v_g) + ig33·(xxg ⊗ v_g)   (xx)
        //   r4 = ig55·(xg ⊗ v_xg)          (xy)
        let mut wh = vec![0f32; 5 * 3 * k];
        let mut set = |o: usize, i: usize, taps: &[f32], s: f64| {
            for (t, &v) in taps.iter().enumerate() {
                wh[(o * 3 + i) * k + t] += (v as f64 * s) as f32;
            }
        };
        set(0, 1, &self.g, self.ig11);
        set(1, 0, &self.xg, self.ig11);
        set(2, 0, &self.g, self.ig03);
        set(2, 2, &self.g, self.ig33);
        set(3, 0, &self.g, self.ig03);
        set(3, 0, &self.xxg, self.ig33);
        set(4, 1, &self.xg, self.ig55);
        (wv, wh)
    }
}

/// `FarnebackPolyExp`: `[N, 1, H, W]` → `[N, 5, H, W]` with OpenCV's channel
/// order (y, x, yy, xx, xy coefficients), replicated border.
pub fn poly_expand_tensor<B: ScanBackend>(
    img: Tensor<B, 4>,
    poly_n: usize,
    poly_sigma: f64,
) -> Tensor<B, 4> {
    let poly = PolyBasis::new(poly_n, poly_sigma);
    let (wv, wh) = poly.weights();
    let device = img.device();
    let (n, k) = (poly.n, 2 * poly.n + 1);
    let wv = resident::float::<B, 4>(TensorData::new(wv, [3, 1, k, 1]), &device);
    let v = B::filter_conv2d(
        pad2d(img, (0, 0, n, n), Border::Replicate),
        wv,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    let wh = resident::float::<B, 4>(TensorData::new(wh, [5, 3, 1, k]), &device);
    B::filter_conv2d(
        pad2d(v, (n, n, 0, 0), Border::Replicate),
        wh,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    )
}

/// Host [`poly_expand_tensor`] over `[N, 1, H, W]` planes, parallel over
/// frames. OpenCV's `FarnebackPolyExp` structure: g and x²·g are even and
/// x·g odd, so each pass adds (or subtracts) the two pixels at distance `t`
/// once and multiplies once per tap pair, half the multiply-adds of the
/// plain correlation. Within 1e-5 relative of the tensor version (the sums
/// are taken in another order).
pub fn poly_expand_host(
    img: &[f32],
    h: usize,
    w: usize,
    poly_n: usize,
    poly_sigma: f64,
) -> Vec<f32> {
    let poly = PolyBasis::new(poly_n, poly_sigma);
    let n = poly.n;
    let (g, xg, xxg) = (&poly.g[n..], &poly.xg[n..], &poly.xxg[n..]);
    let (ig11, ig03, ig33, ig55) = (
        poly.ig11 as f32,
        poly.ig03 as f32,
        poly.ig33 as f32,
        poly.ig55 as f32,
    );
    let plane = h * w;
    let mut out = vec![0f32; img.len() * 5];
    out.par_chunks_mut(5 * plane)
        .zip(img.par_chunks(plane))
        .for_each(|(out, src)| {
            let pw = w + 2 * n;
            // Vertical sums with g, x·g, x²·g, padded by n replicated pixels; then
            // the six horizontal sums OpenCV names b1..b6.
            let mut v = vec![0f32; 3 * pw];
            let mut b = vec![0f32; 6 * w];
            for y in 0..h {
                let (vg, rest) = v.split_at_mut(pw);
                let (vxg, vxxg) = rest.split_at_mut(pw);
                let row = |yy: usize| &src[yy * w..(yy + 1) * w];
                for (x, &c) in row(y).iter().enumerate() {
                    vg[n + x] = c * g[0];
                }
                vxg.fill(0.0);
                vxxg.fill(0.0);
                for t in 1..=n {
                    let (up, down) = (row(y.saturating_sub(t)), row((y + t).min(h - 1)));
                    let it = vg[n..n + w]
                        .iter_mut()
                        .zip(&mut vxg[n..n + w])
                        .zip(&mut vxxg[n..n + w])
                        .zip(up.iter().zip(down));
                    for (((vg, vxg), vxxg), (&u, &d)) in it {
                        let (even, odd) = (d + u, d - u);
                        *vg += g[t] * even;
                        *vxg += xg[t] * odd;
                        *vxxg += xxg[t] * even;
                    }
                }
                for v in [&mut *vg, &mut *vxg, &mut *vxxg] {
                    let (first, last) = (v[n], v[n + w - 1]);
                    v[..n].fill(first);
                    v[n + w..].fill(last);
                }
                let [b1, b2, b3, b4, b5, b6] = split6(&mut b, w);
                for x in 0..w {
                    (b1[x], b2[x], b3[x], b4[x], b5[x], b6[x]) = (
                        vg[n + x] * g[0],
                        0.0,
                        vxg[n + x] * g[0],
                        0.0,
                        vxxg[n + x] * g[0],
                        0.0,
                    );
                }
                for t in 1..=n {
                    for x in 0..w {
                        let (l, r) = (n + x - t, n + x + t);
                        let (eg, og) = (vg[r] + vg[l], vg[r] - vg[l]);
                        b1[x] += g[t] * eg;
                        b2[x] += xg[t] * og;
                        b3[x] += g[t] * (vxg[r] + vxg[l]);
                        b4[x] += xxg[t] * eg;
                        b5[x] += g[t] * (vxxg[r] + vxxg[l]);
                        b6[x] += xg[t] * (vxg[r] - vxg[l]);
                    }
                }
                let [o0, o1, o2, o3, o4] = [0, 1, 2, 3, 4].map(|o| y * w + o * plane);
                for x in 0..w {
                    out[o0 + x] = b3[x] * ig11;
                    out[o1 + x] = b2[x] * ig11;
                    out[o2 + x] = b1[x] * ig03 + b5[x] * ig33;
                    out[o3 + x] = b1[x] * ig03 + b4[x] * ig33;
                    out[o4 + x] = b6[x] * ig55;
                }
            }
        });
    out
}

/// Six rows of `w` out of one buffer.
fn split6(b: &mut [f32], w: usize) -> [&mut [f32]; 6] {
    let mut rows = b.chunks_exact_mut(w);
    [(); 6].map(|_| rows.next().expect("six rows"))
}

fn invert3(a: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (r0, r1) = ([1, 0, 0][j], [2, 2, 1][j]);
            let (c0, c1) = ([1, 0, 0][i], [2, 2, 1][i]);
            let minor = a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0];
            let signed = if (i + j) % 2 == 0 { minor } else { -minor };
            r[i][j] = signed / det;
        }
    }
    r
}

/// OpenCV damps the system in the 5-pixel frame around the image: the
/// weight at `(x, y)` is `border_factor(x, w) * border_factor(y, h)`.
fn border_factor(i: usize, len: usize) -> f32 {
    const BORDER: [f32; 5] = [0.14, 0.14, 0.4472, 0.8021, 0.9598];
    let mut s = 1.0f32;
    if i < 5 {
        s *= BORDER[i];
    }
    if i + 5 >= len {
        s *= BORDER[len - i - 1];
    }
    s
}

fn border_weights<B: Backend>(w: usize, h: usize, device: &B::Device) -> Tensor<B, 4> {
    let v: Vec<f32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| border_factor(x, w) * border_factor(y, h)))
        .collect();
    resident::float(TensorData::new(v, [1, 1, h, w]), device)
}

fn channel<B: Backend>(t: &Tensor<B, 4>, c: usize) -> Tensor<B, 4> {
    let [n, _, h, w] = t.dims();
    t.clone().slice([0..n, c..c + 1, 0..h, 0..w])
}

/// `FarnebackUpdateMatrices` for the whole image: the five entries
/// (G11, G12, G22, h1, h2) of each pixel's 2×2 system, from the two frames'
/// coefficients `r0`, `r1` (`[N, 5, H, W]`) and the current `flow`.
pub fn update_matrices_tensor<B: Backend>(
    r0: Tensor<B, 4>,
    r1: Tensor<B, 4>,
    flow: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [n, _, h, w] = flow.dims();
    let device = flow.device();
    let border = &border_weights::<B>(w, h, &device);
    let (r0, flow) = (&r0, &flow);
    let dx = channel(flow, 0);
    let dy = channel(flow, 1);
    let gx = resident::float::<B, 1>(
        TensorData::new((0..w).map(|v| v as f32).collect::<Vec<_>>(), [w]),
        &device,
    )
    .reshape([1, 1, 1, w]);
    let gy = resident::float::<B, 1>(
        TensorData::new((0..h).map(|v| v as f32).collect::<Vec<_>>(), [h]),
        &device,
    )
    .reshape([1, 1, h, 1]);
    let fx = dx.clone() + gx;
    let fy = dy.clone() + gy;
    let x1 = fx.clone().floor();
    let y1 = fy.clone().floor();
    let ax = fx - x1.clone();
    let ay = fy - y1.clone();
    let valid = x1
        .clone()
        .greater_equal_elem(0.0)
        .bool_and(x1.clone().lower_elem((w - 1) as f32))
        .bool_and(y1.clone().greater_equal_elem(0.0))
        .bool_and(y1.clone().lower_elem((h - 1) as f32))
        .float();
    let idx = (y1.clamp(0.0, (h - 2) as f32) * (w as f32) + x1.clamp(0.0, (w - 2) as f32))
        .int()
        .reshape([n, 1, h * w])
        .expand([n, 5, h * w]);
    let r1f = r1.reshape([n, 5, h * w]);
    let at = |off: i64| {
        r1f.clone()
            .gather(2, idx.clone().add_scalar(off))
            .reshape([n, 5, h, w])
    };
    let one_ax = ax.clone().neg().add_scalar(1.0);
    let one_ay = ay.clone().neg().add_scalar(1.0);
    let interp = at(0) * (one_ax.clone() * one_ay.clone())
        + at(1) * (ax.clone() * one_ay)
        + at(w as i64) * (one_ax * ay.clone())
        + at(w as i64 + 1) * (ax * ay);

    let c0 = |c: usize| channel(r0, c);
    let c1 = |c: usize| channel(&interp, c);
    let invalid = valid.clone().neg().add_scalar(1.0);
    let r2 = valid.clone() * c1(0);
    let r3 = valid.clone() * c1(1);
    let r4 = valid.clone() * (c0(2) + c1(2)).mul_scalar(0.5) + invalid.clone() * c0(2);
    let r5 = valid.clone() * (c0(3) + c1(3)).mul_scalar(0.5) + invalid.clone() * c0(3);
    let r6 = valid * (c0(4) + c1(4)).mul_scalar(0.25) + invalid * c0(4).mul_scalar(0.5);
    let r2 = (c0(0) - r2).mul_scalar(0.5) + r4.clone() * dy.clone() + r6.clone() * dx.clone();
    let r3 = (c0(1) - r3).mul_scalar(0.5) + r6.clone() * dy + r5.clone() * dx;
    let (r2, r3, r4, r5, r6) = (
        r2 * border.clone(),
        r3 * border.clone(),
        r4 * border.clone(),
        r5 * border.clone(),
        r6 * border.clone(),
    );
    Tensor::cat(
        vec![
            r4.clone() * r4.clone() + r6.clone() * r6.clone(),
            (r4.clone() + r5.clone()) * r6.clone(),
            r5.clone() * r5.clone() + r6.clone() * r6.clone(),
            r4 * r2.clone() + r6.clone() * r3.clone(),
            r6 * r2 + r5 * r3,
        ],
        1,
    )
}

/// Host [`update_matrices_tensor`] for one frame (`r0`, `r1`: 5 planes of
/// `h × w`, `flow`: 2) into `m` (5 planes); the same f32 operations in the
/// same order.
pub fn update_matrices_host(
    r0: &[f32],
    r1: &[f32],
    flow: &[f32],
    h: usize,
    w: usize,
    m: &mut [f32],
) {
    let plane = h * w;
    let border_x: Vec<f32> = (0..w).map(|x| border_factor(x, w)).collect();
    for y in 0..h {
        let border_y = border_factor(y, h);
        for (x, &border_x) in border_x.iter().enumerate() {
            let i = y * w + x;
            let (dx, dy) = (flow[i], flow[plane + i]);
            let (fx, fy) = (dx + x as f32, dy + y as f32);
            // `floor(f) in [0, len - 1)` is `f in [0, len - 1)` (false for
            // NaN too); inside it the floor is a truncation, which unlike
            // `f32::floor` needs no libm call on baseline x86-64.
            let valid = fx >= 0.0 && fx < (w - 1) as f32 && fy >= 0.0 && fy < (h - 1) as f32;
            let c0 = |c: usize| r0[c * plane + i];
            let (r2, r3, r4, r5, r6) = if valid {
                let (x1, y1) = (fx as usize, fy as usize);
                let (ax, ay) = (fx - x1 as f32, fy - y1 as f32);
                let j = y1 * w + x1;
                let (one_ax, one_ay) = (1.0 - ax, 1.0 - ay);
                let c1 = |c: usize| {
                    let r = &r1[c * plane..];
                    r[j] * (one_ax * one_ay)
                        + r[j + 1] * (ax * one_ay)
                        + r[j + w] * (one_ax * ay)
                        + r[j + w + 1] * (ax * ay)
                };
                (
                    c1(0),
                    c1(1),
                    (c0(2) + c1(2)) * 0.5,
                    (c0(3) + c1(3)) * 0.5,
                    (c0(4) + c1(4)) * 0.25,
                )
            } else {
                (0.0, 0.0, c0(2), c0(3), c0(4) * 0.5)
            };
            let r2 = (c0(0) - r2) * 0.5 + r4 * dy + r6 * dx;
            let r3 = (c0(1) - r3) * 0.5 + r6 * dy + r5 * dx;
            let b = border_x * border_y;
            let (r2, r3, r4, r5, r6) = (r2 * b, r3 * b, r4 * b, r5 * b, r6 * b);
            m[i] = r4 * r4 + r6 * r6;
            m[plane + i] = (r4 + r5) * r6;
            m[2 * plane + i] = r5 * r5 + r6 * r6;
            m[3 * plane + i] = r4 * r2 + r6 * r3;
            m[4 * plane + i] = r6 * r2 + r5 * r3;
        }
    }
}

/// `FarnebackUpdateFlow_Blur`: box-blur the per-pixel systems (`[N, 5, H, W]`,
/// replicated border) and solve them into `[N, 2, H, W]` flow.
pub fn update_flow_tensor<B: ScanBackend>(m: Tensor<B, 4>, winsize: usize) -> Tensor<B, 4> {
    let k = vec![1.0 / winsize as f32; winsize];
    let b = sep_filter_tensor(m, &k, &k, Border::Replicate);
    let g11 = channel(&b, 0);
    let g12 = channel(&b, 1);
    let g22 = channel(&b, 2);
    let h1 = channel(&b, 3);
    let h2 = channel(&b, 4);
    let idet = (g11.clone() * g22.clone() - g12.clone() * g12.clone())
        .add_scalar(1e-3)
        .recip();
    let fx = (g11 * h2.clone() - g12.clone() * h1.clone()) * idet.clone();
    let fy = (g22 * h1 - g12 * h2) * idet;
    Tensor::cat(vec![fx, fy], 1)
}

/// Host [`update_flow_tensor`] for one frame (`m`: 5 planes of `h × w`)
/// into `flow` (2 planes): window sums by f64 running sums (O(1) per pixel
/// whatever `winsize`), solved in f64 as each row's sums are ready, so no
/// plane of sums is ever stored.
pub fn update_flow_host(m: &[f32], h: usize, w: usize, winsize: usize, flow: &mut [f32]) {
    let plane = h * w;
    let r = winsize / 2;
    let clamp = |i: isize, len: usize| i.clamp(0, len as isize - 1) as usize;
    let row = |c: usize, y: usize| &m[c * plane + y * w..][..w];
    // Per channel, column sums over the window of rows, slid down the
    // image; padded with r replicated columns on the left and r + 1 on the
    // right (the last slide step reads one past the window).
    let pw = w + 2 * r + 1;
    let mut col = vec![0f64; 5 * pw];
    for (c, col) in col.chunks_exact_mut(pw).enumerate() {
        for t in -(r as isize)..=r as isize {
            col[r..r + w]
                .iter_mut()
                .zip(row(c, clamp(t, h)))
                .for_each(|(s, &v)| *s += v as f64);
        }
    }
    let norm = 1.0 / (winsize * winsize) as f64;
    let (fx, fy) = flow.split_at_mut(plane);
    for y in 0..h {
        let mut acc = [0f64; 5];
        for (acc, col) in acc.iter_mut().zip(col.chunks_exact_mut(pw)) {
            let (first, last) = (col[r], col[r + w - 1]);
            col[..r].fill(first);
            col[r + w..].fill(last);
            *acc = col[..winsize].iter().sum();
        }
        for x in 0..w {
            let [g11, g12, g22, h1, h2] = acc.map(|s| s * norm);
            let idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3);
            fx[y * w + x] = ((g11 * h2 - g12 * h1) * idet) as f32;
            fy[y * w + x] = ((g22 * h1 - g12 * h2) * idet) as f32;
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc += col[c * pw + x + winsize] - col[c * pw + x];
            }
        }
        let (add, sub) = (
            clamp(y as isize + r as isize + 1, h),
            clamp(y as isize - r as isize, h),
        );
        for (c, col) in col.chunks_exact_mut(pw).enumerate() {
            for ((s, &a), &b) in col[r..r + w].iter_mut().zip(row(c, add)).zip(row(c, sub)) {
                *s += a as f64 - b as f64;
            }
        }
    }
}

/// Host [`ScanBackend::flow_iteration`] over `[N, 5, H, W]` coefficients
/// and `[N, 2, H, W]` flow, which is updated in place; parallel over
/// frames, the per-pixel systems in a per-thread scratch plane.
pub fn flow_iteration_host(
    r0: &[f32],
    r1: &[f32],
    flow: &mut [f32],
    h: usize,
    w: usize,
    winsize: usize,
) {
    let plane = h * w;
    if plane == 0 {
        return;
    }
    flow.par_chunks_mut(2 * plane)
        .zip(r0.par_chunks(5 * plane).zip(r1.par_chunks(5 * plane)))
        .for_each(|(f, (r0, r1))| {
            with_scratch::<f32, _>(5 * plane, |m| {
                update_matrices_host(r0, r1, f, h, w, m);
                update_flow_host(m, h, w, winsize, f);
            })
        });
}
