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
use crate::host::with_scratch;
use crate::primitives::{pad2d, sep_filter_tensor, Border};

/// The pipeline's thresholds (DESIGN.md: Canny 15/60).
pub const LOW: f32 = 15.0;
pub const HIGH: f32 = 60.0;

/// 3×3 Sobel taps: derivative and smoothing.
const SOBEL_D: [f32; 3] = [-1.0, 0.0, 1.0];
const SOBEL_S: [f32; 3] = [1.0, 2.0, 1.0];

/// Weak (`m > low` and locally maximal) and strong (`m > high`) edge maps,
/// as 0/1 float tensors `[N, 1, H, W]`: element-wise tensor ops on shifted
/// copies of the magnitude.
pub fn canny_candidates_tensor<B: ScanBackend>(
    gray: Tensor<B, 4>,
    low: f32,
    high: f32,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
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
    let keep_h = m
        .clone()
        .greater(left)
        .bool_and(m.clone().greater_equal(right));
    let keep_v = m
        .clone()
        .greater(up)
        .bool_and(m.clone().greater_equal(down));
    let keep_same = m
        .clone()
        .greater(up_left)
        .bool_and(m.clone().greater(down_right));
    let keep_opp = m
        .clone()
        .greater(up_right)
        .bool_and(m.clone().greater(down_left));
    let keep_d = keep_same
        .bool_and(opposite.clone().bool_not())
        .bool_or(keep_opp.bool_and(opposite));
    let is_max = horizontal
        .bool_and(keep_h)
        .bool_or(vertical.bool_and(keep_v))
        .bool_or(diagonal.bool_and(keep_d));

    let weak = is_max.clone().bool_and(m.clone().greater_elem(low.floor()));
    let strong = is_max.bool_and(m.greater_elem(high.floor()));
    (weak.float(), strong.float())
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
        crate::transfers::note_read();
        let count: f32 = e.clone().sum().into_scalar().elem();
        if count == last {
            return e;
        }
        last = count;
    }
}

/// Classes of the host Canny's per-pixel state map.
const WEAK: u8 = 1;
const STRONG: u8 = 2;
const GROWN: u8 = 3;

/// Host [`canny`] over planes of `h × w` (`low <= high`), OpenCV's
/// structure: one pass per row band computes the Sobel rows and magnitude
/// into a three-row ring and classifies each pixel at once (non-maximum
/// suppression and thresholds, no full-size gradient buffers), into a u8
/// state map; then a stack flood fill from the strong pixels. Planes run
/// in parallel, and bands of one plane too when there are few planes.
/// Bit-identical to `hysteresis_tensor(canny_candidates_tensor(..))`.
pub fn canny_host(gray: &[f32], h: usize, w: usize, low: f32, high: f32) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; gray.len()];
    if plane == 0 {
        return out;
    }
    let (low, high) = (low.floor(), high.floor());
    let n = gray.len() / plane;
    // Enough work items for every thread, bands of at least 8 rows.
    let bands = (2 * rayon::current_num_threads())
        .div_ceil(n)
        .min(h.div_ceil(8))
        .max(1);
    let band_rows = h.div_ceil(bands);
    let pw = w + 2;
    out.par_chunks_mut(plane)
        .zip(gray.par_chunks(plane))
        .for_each(|(out, src)| {
            // One pixel of never-weak padding around the frame: neighbours need no bounds checks.
            with_scratch::<u8, _>(pw * (h + 2), |state| {
                state[..pw].fill(0);
                state[(h + 1) * pw..].fill(0);
                state[pw..(h + 1) * pw]
                    .par_chunks_mut(band_rows * pw)
                    .enumerate()
                    .for_each(|(b, rows)| classify_band(src, h, w, b * band_rows, rows, low, high));
                grow_edges(state, pw);
                for (o, s) in out.chunks_exact_mut(w).zip(state[pw..].chunks_exact(pw)) {
                    o.iter_mut()
                        .zip(&s[1..])
                        .for_each(|(o, &s)| *o = f32::from(u8::from(s >= STRONG)));
                }
            })
        });
    out
}

/// Sobel, magnitude and classification of rows `y0..` of a plane into
/// `rows` (state map rows, `w + 2` wide with a zero pixel at either end).
#[allow(clippy::too_many_arguments)]
fn classify_band(src: &[f32], h: usize, w: usize, y0: usize, rows: &mut [u8], low: f32, high: f32) {
    let pw = w + 2;
    let mut ring = SobelRing::new(w);
    let mag_row = |ring: &mut SobelRing, y: usize| {
        if y < h {
            ring.compute(src, h, y);
        } else {
            ring.mag[y % 3].fill(0.0);
        }
    };
    let y1 = (y0 + rows.len() / pw).min(h);
    // Rows y0 - 1 (zero magnitude above the image, slot 2) and y0.
    match y0.checked_sub(1) {
        Some(y) => ring.compute(src, h, y),
        None => ring.mag[2].fill(0.0),
    }
    ring.compute(src, h, y0);
    for (y, state) in (y0..y1).zip(rows.chunks_exact_mut(pw)) {
        mag_row(&mut ring, y + 1);
        // Left, centre and right neighbours as slices of exactly `w`, so that
        // the loop has no bounds checks and vectorises.
        let (ul, uc, ur) = shifts(&ring.mag[(y + 2) % 3], w);
        let (ml, mm, mr) = shifts(&ring.mag[y % 3], w);
        let (dl, dc, dr) = shifts(&ring.mag[(y + 1) % 3], w);
        let (dx, dy, out) = (
            &ring.dx[y % 3][..w],
            &ring.dy[y % 3][..w],
            &mut state[1..=w],
        );
        // Branch-free per pixel: every test is computed and the sector's
        // one selected with bit logic.
        for x in 0..w {
            let (mc, gx, gy) = (mm[x], dx[x], dy[x]);
            let (ax, ay) = (gx.abs(), gy.abs());
            // OpenCV's sector test: y = |dy| << 15, tg22x = |dx| * 13573,
            // tg67x = tg22x + (|dx| << 16); `y > tg67x` rewritten so that
            // every term is exact in f32.
            let tg22x = ax * 13573.0;
            let horizontal = ay * 32768.0 < tg22x;
            let vertical = (ay - ax * 2.0) * 32768.0 > tg22x;
            let keep_h = (mc > ml[x]) & (mc >= mr[x]);
            let keep_v = (mc > uc[x]) & (mc >= dc[x]);
            // OpenCV: s = (dx ^ dy) < 0 ? -1 : 1 compares mag[y-1][x-s] and mag[y+1][x+s].
            let opposite = gx * gy < 0.0;
            let keep_same = (mc > ul[x]) & (mc > dr[x]);
            let keep_opp = (mc > ur[x]) & (mc > dl[x]);
            let keep_d = (opposite & keep_opp) | (!opposite & keep_same);
            let is_max = (horizontal & keep_h)
                | (!horizontal & ((vertical & keep_v) | (!vertical & keep_d)));
            out[x] = u8::from(is_max & (mc > low)) + u8::from(is_max & (mc > high));
        }
        (state[0], state[w + 1]) = (0, 0);
    }
}

/// 3×3 Sobel (replicated border) of the last three rows, row `y` in slot
/// `y % 3`: `dx`, `dy` and the L1 magnitude, which has a zero pixel at
/// either end (magnitude outside the image is 0).
struct SobelRing {
    mag: [Vec<f32>; 3],
    dx: [Vec<f32>; 3],
    dy: [Vec<f32>; 3],
    /// Vertical smoothing `a + 2b + c` and difference `c - a` of the
    /// source rows, replicated by one pixel at either end.
    vs: Vec<f32>,
    vd: Vec<f32>,
}

impl SobelRing {
    fn new(w: usize) -> Self {
        let row = |len| [vec![0f32; len], vec![0f32; len], vec![0f32; len]];
        Self {
            mag: row(w + 2),
            dx: row(w),
            dy: row(w),
            vs: vec![0f32; w + 2],
            vd: vec![0f32; w + 2],
        }
    }

    /// The same integers as two [`crate::primitives::sep_filter_host`]
    /// calls with [`SOBEL_D`] / [`SOBEL_S`], vertical pass first.
    fn compute(&mut self, src: &[f32], h: usize, y: usize) {
        let w = self.vs.len() - 2;
        let row = |yy: usize| &src[yy * w..(yy + 1) * w];
        let (a, b, c) = (row(y.saturating_sub(1)), row(y), row((y + 1).min(h - 1)));
        let (vs, vd) = (&mut self.vs, &mut self.vd);
        for (((s, d), (&a, &b)), &c) in vs[1..=w]
            .iter_mut()
            .zip(&mut vd[1..=w])
            .zip(a.iter().zip(b))
            .zip(c)
        {
            *s = a + 2.0 * b + c;
            *d = c - a;
        }
        (vs[0], vs[w + 1], vd[0], vd[w + 1]) = (vs[1], vs[w], vd[1], vd[w]);
        let slot = y % 3;
        let (m, dx, dy) = (
            &mut self.mag[slot][1..=w],
            &mut self.dx[slot],
            &mut self.dy[slot],
        );
        for x in 0..w {
            let gx = vs[x + 2] - vs[x];
            let gy = vd[x] + 2.0 * vd[x + 1] + vd[x + 2];
            dx[x] = gx;
            dy[x] = gy;
            m[x] = gx.abs() + gy.abs();
        }
    }
}

/// A padded row's left, centre and right neighbours of its `w` pixels.
fn shifts(r: &[f32], w: usize) -> (&[f32], &[f32], &[f32]) {
    (&r[..w], &r[1..=w], &r[2..w + 2])
}

/// Hysteresis on a padded state map: every weak pixel 8-connected to a
/// strong one becomes an edge (`GROWN`); strong pixels stay `STRONG`.
fn grow_edges(state: &mut [u8], pw: usize) {
    let neighbours = [pw + 1, pw, pw - 1, 1];
    let mut stack: Vec<usize> = Vec::new();
    // Seeds are sparse: skip eight pixels at a time when none has the
    // STRONG bit (GROWN = 3 has it too, and is checked pixel by pixel).
    const STRONG_BITS: u64 = u64::from_ne_bytes([STRONG; 8]);
    for base in (0..state.len()).step_by(8) {
        let chunk = &state[base..(base + 8).min(state.len())];
        if chunk.len() == 8
            && u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) & STRONG_BITS == 0
        {
            continue;
        }
        for p in base..base + chunk.len() {
            if state[p] == STRONG {
                grow_from(state, p, &neighbours, &mut stack);
            }
        }
    }
}

/// Flood fill from one strong pixel through weak ones.
fn grow_from(state: &mut [u8], p: usize, neighbours: &[usize; 4], stack: &mut Vec<usize>) {
    stack.push(p);
    while let Some(q) = stack.pop() {
        for &o in neighbours {
            for r in [q + o, q - o] {
                if state[r] == WEAK {
                    state[r] = GROWN;
                    stack.push(r);
                }
            }
        }
    }
}

/// Canny edges as a 0/1 float tensor `[N, 1, H, W]` (255 in OpenCV).
/// Like OpenCV, swapped thresholds are put in order.
pub fn canny<B: ScanBackend>(gray: Tensor<B, 4>, low: f32, high: f32) -> Tensor<B, 4> {
    B::canny(gray, low.min(high), low.max(high))
}

/// Portable [`canny`]: [`canny_candidates_tensor`] then [`hysteresis_tensor`].
pub fn canny_tensor<B: ScanBackend>(gray: Tensor<B, 4>, low: f32, high: f32) -> Tensor<B, 4> {
    let (weak, strong) = canny_candidates_tensor(gray, low, high);
    hysteresis_tensor(weak, strong)
}
