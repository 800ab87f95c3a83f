//! Canny edge detector with OpenCV's exact semantics for 8-bit input
//! (`Canny(img, edges, low, high, 3, L2gradient = false)`):
//!
//! - 3×3 Sobel with `BORDER_REPLICATE`, L1 magnitude `|dx| + |dy|`;
//! - non-maximum suppression with OpenCV's fixed-point sector test
//!   (tan 22.5° ≈ 13573 / 2^15) and its asymmetric `>` / `>=` comparisons,
//!   magnitude outside the image = 0;
//! - candidates above `low` are weak, above `high` strong; edges are weak
//!   pixels 8-connected to a strong one (hysteresis).
//!
//! All arithmetic is on small integers held exactly in f32, so the result
//! matches OpenCV bit for bit except where OpenCV's own stripe-parallel
//! scheduling changes ties (it does not for the final edge set).

use burn_tensor::{backend::Backend, module::max_pool2d, ElementConversion, Tensor};
use rayon::prelude::*;

use crate::backend::ScanBackend;
use crate::primitives::{pad2d, sep_filter_tensor, Border};

/// The pipeline's thresholds (DESIGN.md: Canny 15/60).
pub const LOW: f32 = 15.0;
pub const HIGH: f32 = 60.0;

/// 3×3 Sobel taps: derivative and smoothing.
const SOBEL_D: [f32; 3] = [-1.0, 0.0, 1.0];
const SOBEL_S: [f32; 3] = [1.0, 2.0, 1.0];

/// Weak (`m > low` and locally maximal) and strong (`m > high`) edge maps,
/// as 0/1 float tensors `[N, 1, H, W]`.
pub fn canny_candidates<B: ScanBackend>(gray: Tensor<B, 4>, low: f32, high: f32) -> (Tensor<B, 4>, Tensor<B, 4>) {
    B::canny_candidates(gray, low, high)
}

/// Portable [`canny_candidates`]: element-wise tensor ops on shifted copies
/// of the magnitude.
pub fn canny_candidates_tensor<B: Backend>(gray: Tensor<B, 4>, low: f32, high: f32) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [n, c, h, w] = gray.dims();
    let (dx, dy) = (
        sep_filter_tensor(gray.clone(), &SOBEL_D, &SOBEL_S, Border::Replicate),
        sep_filter_tensor(gray, &SOBEL_S, &SOBEL_D, Border::Replicate),
    );
    let ax = dx.clone().abs();
    let ay = dy.clone().abs();
    let mag = ax.clone() + ay.clone();
    let p = pad2d(mag.clone(), (1, 1, 1, 1), Border::Constant(0.0));
    let at = |oy: usize, ox: usize| p.clone().slice([0..n, 0..c, oy..oy + h, ox..ox + w]);
    let (left, right, up, down) = (at(1, 0), at(1, 2), at(0, 1), at(2, 1));
    let (up_left, up_right, down_left, down_right) = (at(0, 0), at(0, 2), at(2, 0), at(2, 2));

    // Sector test: y = |dy| << 15, tg22x = |dx| * 13573, tg67x = tg22x + (|dx| << 16).
    // `y > tg67x` is rewritten as `2^15 (|dy| - 2|dx|) > 13573 |dx|` so that
    // every term stays below 2^24 and is exact in f32.
    let tg22x = ax.clone().mul_scalar(13573.0);
    let horizontal = ay.clone().mul_scalar(32768.0).lower(tg22x.clone());
    let vertical = (ay - ax.mul_scalar(2.0)).mul_scalar(32768.0).greater(tg22x);
    let diagonal = horizontal.clone().bool_or(vertical.clone()).bool_not();
    // OpenCV: s = (dx ^ dy) < 0 ? -1 : 1, compares mag[y-1][x-s] and mag[y+1][x+s].
    let opposite = (dx * dy).lower_elem(0.0);

    let m = mag;
    let keep_h = m.clone().greater(left).bool_and(m.clone().greater_equal(right));
    let keep_v = m.clone().greater(up).bool_and(m.clone().greater_equal(down));
    let keep_same = m.clone().greater(up_left).bool_and(m.clone().greater(down_right));
    let keep_opp = m.clone().greater(up_right).bool_and(m.clone().greater(down_left));
    let keep_d = keep_same.bool_and(opposite.clone().bool_not()).bool_or(keep_opp.bool_and(opposite));
    let is_max = horizontal
        .bool_and(keep_h)
        .bool_or(vertical.bool_and(keep_v))
        .bool_or(diagonal.bool_and(keep_d));

    let weak = is_max.clone().bool_and(m.clone().greater_elem(low.floor()));
    let strong = is_max.bool_and(m.greater_elem(high.floor()));
    (weak.float(), strong.float())
}

/// Host [`canny_candidates`] over planes of `h × w`: the same tests as the
/// tensor version, pixel by pixel (all values are small integers, so the
/// two agree exactly).
pub fn canny_candidates_host(gray: &[f32], h: usize, w: usize, low: f32, high: f32) -> (Vec<f32>, Vec<f32>) {
    let (dx, dy, mag) = sobel_magnitude_host(gray, h, w);
    let (low, high) = (low.floor(), high.floor());
    let mut weak = vec![0f32; gray.len()];
    let mut strong = vec![0f32; gray.len()];
    weak.par_chunks_mut(w).zip(strong.par_chunks_mut(w)).enumerate().for_each(|(k, (weak, strong))| {
        let (plane, y) = (k / h, k % h);
        let base = plane * h * w;
        // Magnitude outside the image is 0.
        let at = |yy: isize, xx: isize| {
            if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                0.0
            } else {
                mag[base + yy as usize * w + xx as usize]
            }
        };
        let y = y as isize;
        for x in 0..w {
            let i = base + y as usize * w + x;
            let m = mag[i];
            if m <= low.min(high) {
                continue;
            }
            let (ax, ay) = (dx[i].abs(), dy[i].abs());
            let xi = x as isize;
            let tg22x = ax * 13573.0;
            let is_max = if ay * 32768.0 < tg22x {
                m > at(y, xi - 1) && m >= at(y, xi + 1)
            } else if (ay - ax * 2.0) * 32768.0 > tg22x {
                m > at(y - 1, xi) && m >= at(y + 1, xi)
            } else if dx[i] * dy[i] < 0.0 {
                m > at(y - 1, xi + 1) && m > at(y + 1, xi - 1)
            } else {
                m > at(y - 1, xi - 1) && m > at(y + 1, xi + 1)
            };
            if is_max {
                weak[x] = if m > low { 1.0 } else { 0.0 };
                strong[x] = if m > high { 1.0 } else { 0.0 };
            }
        }
    });
    (weak, strong)
}

/// 3×3 Sobel `dx`, `dy` (replicated border) and the L1 magnitude in one
/// pass per row: the same integers as two [`crate::primitives::sep_filter_host`] calls with
/// [`SOBEL_D`] / [`SOBEL_S`], without their four passes and buffers.
fn sobel_magnitude_host(gray: &[f32], h: usize, w: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; gray.len()];
    let mut dy = vec![0f32; gray.len()];
    let mut mag = vec![0f32; gray.len()];
    dx.par_chunks_mut(w).zip(dy.par_chunks_mut(w)).zip(mag.par_chunks_mut(w)).enumerate().for_each_init(
        || [vec![0f32; w + 2], vec![0f32; w + 2], vec![0f32; w + 2]],
        |rows, (k, ((dx, dy), mag))| {
            let (plane, y) = (k / h, k % h);
            let src = &gray[plane * h * w..(plane + 1) * h * w];
            for (r, row) in rows.iter_mut().enumerate() {
                let sy = Border::Replicate.index(y as isize + r as isize - 1, h).expect("replicate");
                Border::Replicate.pad_row(&src[sy * w..(sy + 1) * w], 1, row);
            }
            let [a, b, c] = &*rows;
            for x in 0..w {
                let gx = (a[x + 2] - a[x]) + 2.0 * (b[x + 2] - b[x]) + (c[x + 2] - c[x]);
                let gy = (c[x] + 2.0 * c[x + 1] + c[x + 2]) - (a[x] + 2.0 * a[x + 1] + a[x + 2]);
                dx[x] = gx;
                dy[x] = gy;
                mag[x] = gx.abs() + gy.abs();
            }
        },
    );
    (dx, dy, mag)
}

/// Portable hysteresis: grow the strong set by 3×3 dilation restricted to
/// weak pixels until it stops changing. Runs on the device; the number of
/// rounds is the longest weak chain, so the convergence check (a host
/// read) is done every 8 rounds only.
pub fn hysteresis_tensor<B: Backend>(weak: Tensor<B, 4>, strong: Tensor<B, 4>) -> Tensor<B, 4> {
    let mut e = strong;
    let mut last = -1.0f32;
    loop {
        for _ in 0..8 {
            let p = pad2d(e, (1, 1, 1, 1), Border::Constant(0.0));
            e = max_pool2d(p, [3, 3], [1, 1], [0, 0], [1, 1], false) * weak.clone();
        }
        let count: f32 = e.clone().sum().into_scalar().elem();
        if count == last {
            return e;
        }
        last = count;
    }
}

/// Host hysteresis (stack flood fill), the CPU backend's fast path:
/// strong pixels are edges, and so is every weak pixel 8-connected to one.
/// Parallel over frames.
pub fn hysteresis_host(weak: &[f32], strong: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    const WEAK: u8 = 1;
    const EDGE: u8 = 2;
    let plane = h * w;
    let mut out = vec![0f32; n * plane];
    out.par_chunks_mut(plane).zip(weak.par_chunks(plane).zip(strong.par_chunks(plane))).for_each(|(out, (weak, strong))| {
        // One pixel of never-weak padding around the frame: neighbours need no bounds checks.
        let pw = w + 2;
        let mut state = vec![0u8; pw * (h + 2)];
        for (y, row) in weak.chunks(w).enumerate() {
            for (s, &v) in state[(y + 1) * pw + 1..].iter_mut().zip(row) {
                *s = if v > 0.5 { WEAK } else { 0 };
            }
        }
        let neighbours = [pw + 1, pw, pw - 1, 1].map(|o| o as isize);
        let mut stack = Vec::new();
        for (i, _) in strong.iter().enumerate().filter(|(_, &s)| s > 0.5) {
            let p = (i / w + 1) * pw + i % w + 1;
            if state[p] == EDGE {
                continue;
            }
            state[p] = EDGE;
            stack.push(p);
            while let Some(q) = stack.pop() {
                for o in neighbours {
                    for r in [(q as isize + o) as usize, (q as isize - o) as usize] {
                        if state[r] == WEAK {
                            state[r] = EDGE;
                            stack.push(r);
                        }
                    }
                }
            }
        }
        for (y, row) in out.chunks_mut(w).enumerate() {
            for (o, &s) in row.iter_mut().zip(&state[(y + 1) * pw + 1..]) {
                *o = if s == EDGE { 1.0 } else { 0.0 };
            }
        }
    });
    out
}

/// Canny edges as a 0/1 float tensor `[N, 1, H, W]` (255 in OpenCV).
pub fn canny<B: ScanBackend>(gray: Tensor<B, 4>, low: f32, high: f32) -> Tensor<B, 4> {
    let (weak, strong) = canny_candidates(gray, low, high);
    B::hysteresis(weak, strong)
}
