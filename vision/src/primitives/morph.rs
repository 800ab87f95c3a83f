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
//! row-run decomposition, streamed row by row through a whole sequence of
//! ops (e.g. `close`) into the input's buffer, in u8 when the plane is
//! 8-bit; long runs take a van Herk/Gil-Werman running extremum (three
//! comparisons per pixel whatever the length).

use burn_tensor::{backend::Backend, module::max_pool2d, Tensor};
use burn_vision::{create_structuring_element, KernelShape, Size};
use rayon::prelude::*;

use super::filter::{pad2d, Border};
use crate::{backend::ScanBackend, host::with_scratch};

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
    let elem =
        create_structuring_element::<crate::Cpu>(ks, Size::new(kw, kh), None, &Default::default());
    let bits: Vec<bool> = elem
        .into_data()
        .convert::<bool>()
        .to_vec::<bool>()
        .expect("bool kernel");
    let mut runs = Vec::new();
    for i in 0..kh {
        let row = &bits[i * kw..(i + 1) * kw];
        if let Some(j1) = row.iter().position(|&b| b) {
            let j2 = kw - row.iter().rev().position(|&b| b).unwrap();
            debug_assert!(
                row[j1..j2].iter().all(|&b| b),
                "kernel rows must be contiguous"
            );
            runs.push((i, j1, j2));
        }
    }
    runs
}

fn dilate_once<B: Backend>(
    x: Tensor<B, 4>,
    shape: MorphShape,
    kw: usize,
    kh: usize,
) -> Tensor<B, 4> {
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
                let cols = p
                    .clone()
                    .slice([0..n, 0..c, 0..h + kh - 1, j1..j1 + w + (j2 - j1) - 1]);
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
pub fn morph_tensor<B: Backend>(
    x: Tensor<B, 4>,
    op: MorphOp,
    shape: MorphShape,
    kw: usize,
    kh: usize,
) -> Tensor<B, 4> {
    match op {
        MorphOp::Dilate => dilate_once(x, shape, kw, kh),
        MorphOp::Erode => dilate_once(x.neg(), shape, kw, kh).neg(),
    }
}

/// Host dilations / erosions `ops`, applied one after the other in place
/// over planes of `h × w`.
///
/// Each plane is streamed top to bottom through one row stage per op: a
/// stage keeps, for the last `kh` rows it was given, the horizontal window
/// extremum of every distinct kernel row run `[j1, j2)`, and emits output
/// row `y` (the extremum over the kernel rows of those runs) as soon as the
/// rows below the anchor have arrived. A rect kernel is one run, so this is
/// the separable row-then-column extremum; an ellipse is its few distinct
/// runs. Between the ops there is no full-size intermediate: a sequence
/// like `close` costs a couple of row buffers per stage. Outside the image
/// the identity (`-inf` for max, `+inf` for min) never wins, as in OpenCV.
///
/// The stages read a copy of the input in a per-thread scratch buffer
/// (kept between calls), as u8 when every value is an integer in 0..=255
/// (edge maps, gray images): extrema are exact, so the result is the same
/// (bar `-0.0`, which comes back as `0.0`), with 16 pixels per SSE2
/// compare instead of 4 and a quarter of the memory traffic (0 and 255 are
/// then the identities). With a separate source, row bands of a plane are
/// independent and run in parallel when there are fewer planes than
/// threads.
pub fn morph_host(
    x: &mut [f32],
    h: usize,
    w: usize,
    ops: &[MorphOp],
    shape: MorphShape,
    kw: usize,
    kh: usize,
) {
    if ops.is_empty() || x.is_empty() {
        return;
    }
    let kernel = Kernel::new(shape, kw, kh);
    let as_u8 = with_scratch::<u8, _>(x.len(), |src| {
        let mut exact = true;
        for (s, &v) in src.iter_mut().zip(x.iter()) {
            *s = v as u8;
            exact &= *s as f32 == v;
        }
        if exact {
            morph_bands(src, x, h, w, ops, &kernel);
        }
        exact
    });
    if !as_u8 {
        with_scratch::<f32, _>(x.len(), |src| {
            src.copy_from_slice(x);
            morph_bands(src, x, h, w, ops, &kernel);
        });
    }
}

/// Band heights below this are not worth a task of their own (each band
/// recomputes `ops.len() * (kh - 1)` rows of halo).
const MIN_BAND_ROWS: usize = 64;

/// [`morph_host`] from `src` into `dst` (the same planes), parallel over
/// planes and, when there are fewer planes than threads, over row bands.
/// A band streams its rows plus the rows the op sequence reaches above and
/// below (`ops.len()` times the kernel's reach), treating that window as the
/// image: rows within that halo of a cut are wrong and are not written.
fn morph_bands<T: Level>(
    src: &[T],
    dst: &mut [f32],
    h: usize,
    w: usize,
    ops: &[MorphOp],
    k: &Kernel,
) {
    let planes = dst.len() / (h * w);
    let bands = rayon::current_num_threads()
        .div_ceil(planes)
        .min(h / MIN_BAND_ROWS)
        .max(1);
    let band_rows = h.div_ceil(bands);
    let (up, down) = (ops.len() * (k.kh / 2), ops.len() * (k.kh - 1 - k.kh / 2));
    dst.par_chunks_mut(h * w)
        .zip(src.par_chunks(h * w))
        .for_each(|(dst, src)| {
            dst.par_chunks_mut(band_rows * w)
                .enumerate()
                .for_each(|(b, band)| {
                    let (y0, y1) = (b * band_rows, b * band_rows + band.len() / w);
                    let (a, e) = (y0.saturating_sub(up), (y1 + down).min(h));
                    stream(&src[a * w..e * w], e - a, w, ops, k, |y, row| {
                        if (y0..y1).contains(&(a + y)) {
                            band[(a + y - y0) * w..][..w]
                                .iter_mut()
                                .zip(row)
                                .for_each(|(d, &s)| *d = s.to_f32());
                        }
                    });
                });
        });
}

/// Stream the `h` rows of `src` through one [`RowStage`] per op, handing
/// each row of the result to `sink` (in order).
fn stream<T: Level>(
    src: &[T],
    h: usize,
    w: usize,
    ops: &[MorphOp],
    k: &Kernel,
    mut sink: impl FnMut(usize, &[T]),
) {
    let mut stages: Vec<RowStage<T>> = ops.iter().map(|&op| RowStage::new(op, k, h, w)).collect();
    for (y, row) in src.chunks_exact(w).enumerate() {
        stages[0].push(y, row);
        drain(&mut stages, &mut sink);
    }
}

/// Pixel types the host stages run in (see [`morph_host`]): `LOWEST` and
/// `HIGHEST` are the identities of max and min over the values they hold.
trait Level: Copy + PartialOrd + Send + Sync + 'static {
    const LOWEST: Self;
    const HIGHEST: Self;
    fn to_f32(self) -> f32;
}

impl Level for f32 {
    const LOWEST: Self = f32::NEG_INFINITY;
    const HIGHEST: Self = f32::INFINITY;
    fn to_f32(self) -> f32 {
        self
    }
}

impl Level for u8 {
    const LOWEST: Self = 0;
    const HIGHEST: Self = 255;
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// A structuring element as its distinct row runs `[j1, j2)` and, per
/// kernel row `i`, the index of its run.
struct Kernel {
    distinct: Vec<(usize, usize)>,
    rows: Vec<(usize, usize)>,
    kw: usize,
    kh: usize,
}

impl Kernel {
    fn new(shape: MorphShape, kw: usize, kh: usize) -> Self {
        let runs = kernel_runs(shape, kw, kh);
        let mut distinct: Vec<(usize, usize)> = runs.iter().map(|&(_, j1, j2)| (j1, j2)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        Self {
            rows: runs
                .iter()
                .map(|&(i, j1, j2)| (i, distinct.iter().position(|&d| d == (j1, j2)).unwrap()))
                .collect(),
            distinct,
            kw,
            kh,
        }
    }
}

/// One dilation or erosion over a stream of rows (see [`morph_host`]).
struct RowStage<'k, T> {
    op: MorphOp,
    k: &'k Kernel,
    h: usize,
    w: usize,
    /// `kh` slots (row `y` in slot `y % kh`) of `distinct.len()` runs of `w`.
    ring: Vec<T>,
    /// A row with the identity padded in (`w + kw - 1`), and the van
    /// Herk/Gil-Werman prefix/suffix extrema of long runs.
    pad: Vec<T>,
    fwd: Vec<T>,
    bwd: Vec<T>,
    /// The last emitted row, fed to the next stage or the sink.
    out: Vec<T>,
    pushed: usize,
    emitted: usize,
}

impl<'k, T: Level> RowStage<'k, T> {
    fn new(op: MorphOp, k: &'k Kernel, h: usize, w: usize) -> Self {
        let padded = w + k.kw - 1;
        Self {
            op,
            k,
            h,
            w,
            ring: vec![T::LOWEST; k.kh * k.distinct.len() * w],
            pad: vec![T::LOWEST; padded],
            fwd: vec![T::LOWEST; padded],
            bwd: vec![T::LOWEST; padded],
            out: vec![T::LOWEST; w],
            pushed: 0,
            emitted: 0,
        }
    }

    fn identity(&self) -> T {
        match self.op {
            MorphOp::Dilate => T::LOWEST,
            MorphOp::Erode => T::HIGHEST,
        }
    }

    /// Take input row `y` (rows arrive in order).
    fn push(&mut self, y: usize, row: &[T]) {
        debug_assert_eq!(y, self.pushed);
        let (w, slot) = (self.w, self.k.distinct.len() * self.w);
        let (l, id) = (self.k.kw / 2, self.identity());
        self.pad[..l].fill(id);
        self.pad[l..l + w].copy_from_slice(row);
        self.pad[l + w..].fill(id);
        let ring = &mut self.ring[(y % self.k.kh) * slot..][..slot];
        for (&(j1, j2), dst) in self.k.distinct.iter().zip(ring.chunks_exact_mut(w)) {
            let len = j2 - j1;
            if len <= DIRECT_MAX_RUN {
                // Short runs: `len` vectorised passes beat the serial prefix scans.
                dst.copy_from_slice(&self.pad[j1..j1 + w]);
                for t in 1..len {
                    ext_row(self.op, dst, &self.pad[j1 + t..j1 + t + w]);
                }
            } else {
                match self.op {
                    MorphOp::Dilate => {
                        running_ext(&self.pad, len, max, &mut self.fwd, &mut self.bwd)
                    }
                    MorphOp::Erode => {
                        running_ext(&self.pad, len, min, &mut self.fwd, &mut self.bwd)
                    }
                }
                // The window starting at padded index s covers [s, s + len).
                dst.copy_from_slice(&self.bwd[j1..j1 + w]);
                ext_row(self.op, dst, &self.fwd[j1 + len - 1..j1 + len - 1 + w]);
            }
        }
        self.pushed += 1;
    }

    /// The next output row, once every row the kernel reaches below it has
    /// been pushed (or the input has ended).
    fn ready(&self) -> Option<usize> {
        let below = self.k.kh - 1 - self.k.kh / 2;
        (self.emitted < self.h && (self.emitted + below < self.pushed || self.pushed == self.h))
            .then_some(self.emitted)
    }

    /// Emit row `y` into `self.out`: the extremum over kernel rows of their
    /// run's horizontal extremum at source row `y + i - kh / 2` (rows
    /// outside the image are skipped: the identity never wins).
    fn emit(&mut self, y: usize) {
        let (w, slot) = (self.w, self.k.distinct.len() * self.w);
        let id = self.identity();
        self.out.fill(id);
        for &(i, d) in &self.k.rows {
            let Some(sy) = (y + i).checked_sub(self.k.kh / 2).filter(|&sy| sy < self.h) else {
                continue;
            };
            ext_row(
                self.op,
                &mut self.out,
                &self.ring[(sy % self.k.kh) * slot + d * w..][..w],
            );
        }
        self.emitted += 1;
    }
}

/// Emit every row the first stage can, feeding each to the next stage as it
/// comes (a stage's ring only holds the rows it still needs), and the last
/// stage's rows to `sink`.
fn drain<T: Level>(stages: &mut [RowStage<T>], sink: &mut impl FnMut(usize, &[T])) {
    let (first, rest) = stages.split_first_mut().expect("at least one stage");
    while let Some(y) = first.ready() {
        first.emit(y);
        match rest.first_mut() {
            None => sink(y, &first.out),
            Some(next) => {
                next.push(y, &first.out);
                drain(rest, sink);
            }
        }
    }
}

/// `NaN`-ignorant extrema: plain compares, which compile to single
/// `maxps` / `minps` (`f32::max` adds NaN handling around them) and
/// `pmaxub` / `pminub`. Images hold no NaN.
fn max<T: Level>(a: T, b: T) -> T {
    if b > a {
        b
    } else {
        a
    }
}

fn min<T: Level>(a: T, b: T) -> T {
    if b < a {
        b
    } else {
        a
    }
}

/// `acc[x] = ext(acc[x], src[x])` over a row.
fn ext_row<T: Level>(op: MorphOp, acc: &mut [T], src: &[T]) {
    match op {
        MorphOp::Dilate => acc.iter_mut().zip(src).for_each(|(a, &s)| *a = max(*a, s)),
        MorphOp::Erode => acc.iter_mut().zip(src).for_each(|(a, &s)| *a = min(*a, s)),
    }
}

/// Block-wise running extremum for windows of `len`: `fwd[i]` is the
/// extremum from the start of `i`'s block of `len` up to `i`, `bwd[i]` from
/// `i` to the end of its block; any window `[s, s + len)` spans at most two
/// blocks, so its extremum is `ext(bwd[s], fwd[s + len - 1])`.
fn running_ext<T: Level, F: Fn(T, T) -> T>(
    p: &[T],
    len: usize,
    ext: F,
    fwd: &mut [T],
    bwd: &mut [T],
) {
    for (block, (f, b)) in p
        .chunks(len)
        .zip(fwd.chunks_mut(len).zip(bwd.chunks_mut(len)))
    {
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

/// `dilate(src, getStructuringElement(shape, Size(kw, kh)), anchor centre, iterations)`.
pub fn dilate<B: ScanBackend>(
    x: Tensor<B, 4>,
    shape: MorphShape,
    kw: usize,
    kh: usize,
    iterations: usize,
) -> Tensor<B, 4> {
    B::morph(x, &vec![MorphOp::Dilate; iterations], shape, kw, kh)
}

/// `erode(...)`: the dual of dilate.
pub fn erode<B: ScanBackend>(
    x: Tensor<B, 4>,
    shape: MorphShape,
    kw: usize,
    kh: usize,
    iterations: usize,
) -> Tensor<B, 4> {
    B::morph(x, &vec![MorphOp::Erode; iterations], shape, kw, kh)
}

/// `morphologyEx(MORPH_OPEN)`: erode then dilate.
pub fn open<B: ScanBackend>(
    x: Tensor<B, 4>,
    shape: MorphShape,
    kw: usize,
    kh: usize,
) -> Tensor<B, 4> {
    B::morph(x, &[MorphOp::Erode, MorphOp::Dilate], shape, kw, kh)
}

/// `morphologyEx(MORPH_CLOSE)`: dilate then erode.
pub fn close<B: ScanBackend>(
    x: Tensor<B, 4>,
    shape: MorphShape,
    kw: usize,
    kh: usize,
) -> Tensor<B, 4> {
    B::morph(x, &[MorphOp::Dilate, MorphOp::Erode], shape, kw, kh)
}
