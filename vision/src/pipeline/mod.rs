//! The `video_scan` pipeline (DESIGN.md "Scan kinds" 1):
//!
//! decode → gray → downscale → per-frame sharpness, edge density, motion →
//! golden frames → item localisation → rectification → defect candidates
//! typed by shape → scores → report + artifacts.
//!
//! Result JSON schema (`ScanReport`, `schema_version` 1): see the field docs
//! below; every number is plain f64, coordinates of defects are normalised
//! to the rectified item (0..1, origin top-left).

use std::{path::Path, time::Instant};

use burn_tensor::Tensor;
use opencv::{
    core::{Mat, Vector},
    imgcodecs,
    prelude::*,
};
use serde::{Deserialize, Serialize};

mod decode;
mod defects;
mod frame;
mod grade;
mod locate;
mod outline;
mod profile;

pub use defects::DefectKind;

use decode::{sniff, Decoder};
use defects::consensus;
use frame::{analyze_frame, FrameAnalysis};
use grade::score;

use crate::{
    backend::ScanBackend,
    cancel::CancelFlag,
    canny::{self, canny},
    error::VisionError,
    flow::{farneback_sequence, mean_magnitude, FarnebackParams},
    frames::{
        stack_bgr, stack_gray_from_bgr, to_vec_f32, unstack_bgr, unstack_gray, BgrImage, GrayImage,
    },
    primitives::{laplacian_variance, resize, round_levels, Interpolation},
    transfers::{Meter, Transfers},
};

/// The version of what `video_scan` returns. Bump it in the same commit as
/// any change that can change a result: the worker's result cache keys on
/// it, and `vision/tests/golden.rs` fails when outputs change without a bump.
/// 2: steps of either polarity (white borders), defects from every golden
/// frame, `no_item_reason`.
/// 3: defects as what they physically are (long thin lines, border wear,
/// isolated blotches) instead of any top-hat / black-hat blob.
/// 4: item and print edges measured in colour (luma and colour differences)
/// as the band of one colour on all four sides, with a wider margin.
pub const PIPELINE_VERSION: u32 = 4;

/// Per-scan knobs; defaults follow DESIGN.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanOptions {
    /// Long side of the processed frames (`DOWNSCALE_MAX`).
    pub downscale_max: usize,
    /// Frames per device batch.
    pub batch_size: usize,
    /// Long side at which optical flow is computed (motion only needs a coarse field).
    pub flow_max_side: usize,
    /// Number of golden frames to pick.
    pub golden_count: usize,
    pub max_bytes: u64,
    pub max_frames: usize,
    pub max_pixels: usize,
    /// Canny thresholds (15/60).
    pub canny_low: f32,
    pub canny_high: f32,
    pub jpeg_quality: i32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            downscale_max: 1280,
            batch_size: 8,
            flow_max_side: 320,
            golden_count: 3,
            max_bytes: 2 << 30,
            max_frames: 3600,
            max_pixels: 4096 * 2304,
            canny_low: canny::LOW,
            canny_high: canny::HIGH,
            jpeg_quality: 90,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameStats {
    pub index: usize,
    /// Variance of the Laplacian.
    pub sharpness: f64,
    /// Fraction of Canny edge pixels.
    pub edge_density: f64,
    /// Mean optical-flow magnitude to the previous frame, in processed-frame pixels.
    pub motion: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoldenFrame {
    pub index: usize,
    pub sharpness: f64,
    pub motion: f64,
    pub score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemLocation {
    /// Golden frame the location was measured on.
    pub frame: usize,
    /// Axis-aligned box in processed-frame pixels `[x0, y0, x1, y1]`.
    pub bbox: [f64; 4],
    /// Corners TL, TR, BR, BL in processed-frame pixels.
    pub quad: [[f64; 2]; 4],
    /// Size of the rectified item in pixels `[w, h]`.
    pub size: [usize; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defect {
    pub kind: DefectKind,
    /// `[x0, y0, x1, y1]` normalised to the rectified item.
    pub bbox: [f64; 4],
    /// Major-axis length in rectified-item pixels.
    pub length_px: f64,
    pub area_px: f64,
    /// 0 (cosmetic) .. 1 (severe).
    pub severity: f64,
    /// `top_left` .. `bottom_left` for corner wear, `top`/`right`/`bottom`/`left` for edge wear.
    pub location: Option<String>,
    /// Golden frames in which the defect was seen.
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Left border / (left + right), 0.5 = perfectly centred.
    pub centering_lr: f64,
    /// Top border / (top + bottom).
    pub centering_tb: f64,
    /// Display form, e.g. "58/42".
    pub centering_lr_ratio: String,
    pub centering_tb_ratio: String,
    pub centering: f64,
    /// TL, TR, BR, BL, 1..10.
    pub corners: [f64; 4],
    /// Top, right, bottom, left, 1..10.
    pub edges: [f64; 4],
    pub surface: f64,
    /// Overall grade 1..10 (integer-valued).
    pub overall: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub schema_version: u32,
    pub backend: String,
    /// Frames the decoder returned.
    pub frames_decoded: usize,
    /// Frames measured (sharpness, edges, motion); today every decoded frame.
    pub frames_processed: usize,
    pub source_size: [usize; 2],
    pub processed_size: [usize; 2],
    pub fps: f64,
    pub frame_stats: Vec<FrameStats>,
    pub golden_frames: Vec<GoldenFrame>,
    pub item: Option<ItemLocation>,
    /// Why `item` is null: the furthest any golden frame got.
    pub no_item_reason: Option<NoItemReason>,
    pub defects: Vec<Defect>,
    pub scores: Option<Scores>,
    pub timings_ms: Vec<StageTiming>,
    pub total_ms: f64,
    /// `device_reads` and `device_writes` of this scan: on a GPU each read
    /// is a synchronisation, so they say how device-resident it ran.
    #[serde(flatten, default)]
    pub transfers: Transfers,
}

/// Why no item was found, from the golden frame that got furthest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoItemReason {
    /// No closed outline of an item's size stands apart from the background.
    NoOutline,
    /// An outline, but smaller than 32 px on a side at the processed size.
    ItemTooSmall,
    /// An outline, but no item edge and print edge step could be measured
    /// on every side (a border the same shade as its print, or as the background).
    EdgesNotMeasured,
}

/// Binary artifacts for the blob store (not part of the JSON).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Artifacts {
    /// (frame index, JPEG bytes) per golden frame: the decoded colour frame
    /// at the processed size.
    pub golden_jpegs: Vec<(usize, Vec<u8>)>,
    /// Rectified-item-sized 8-bit mask, 255 = defect pixel.
    pub defect_mask_png: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VideoScanOutput {
    pub report: ScanReport,
    pub artifacts: Artifacts,
}

/// How far a scan is, reported after every batch of measured frames (the
/// bulk of the work; golden-frame analysis after it is short).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Frames measured so far.
    pub frames_done: usize,
    /// Frames the container declares; 0 when it does not say. An estimate:
    /// the stream may hold a few more or fewer.
    pub frames_total: usize,
}

/// Per-stage wall time; a stage timed more than once (per batch, or over
/// several scans) adds up.
#[derive(Default)]
pub struct Timer {
    pub stages: Vec<StageTiming>,
}

impl Timer {
    pub(crate) fn add(&mut self, stage: &str, since: Instant) {
        self.add_ms(stage, since.elapsed().as_secs_f64() * 1e3);
    }

    pub fn add_ms(&mut self, stage: &str, ms: f64) {
        match self.stages.iter_mut().find(|s| s.stage == stage) {
            Some(s) => s.ms += ms,
            None => self.stages.push(StageTiming {
                stage: stage.into(),
                ms,
            }),
        }
    }
}
/// Gray, downscaled, 8-bit-rounded device frames: the one preprocessing path
/// used both for the measurements and for the golden frames.
fn preprocess<B: ScanBackend>(
    chunk: &[Mat],
    pw: usize,
    ph: usize,
    device: &B::Device,
) -> Result<Tensor<B, 4>, VisionError> {
    let gray = stack_gray_from_bgr::<B>(chunk, device)?;
    let [_, _, h, w] = gray.dims();
    // Gray levels are already integers: only a resize needs rounding.
    Ok(if (w, h) == (pw, ph) {
        gray
    } else {
        round_levels(resize(gray, pw, ph, Interpolation::Area))
    })
}

fn processed_size(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    )
}
/// Run one `video_scan` on backend `B`.
pub fn analyze_video<B: ScanBackend>(
    path: &Path,
    opts: &ScanOptions,
    device: &B::Device,
) -> Result<VideoScanOutput, VisionError> {
    analyze_video_with_progress::<B>(path, opts, device, &mut |_| {}, &CancelFlag::new())
}

/// [`analyze_video`], calling `progress` after every batch of frames and
/// stopping with [`VisionError::Cancelled`] at the first check after
/// `cancel` is raised (after every batch of frames, and before each golden
/// frame's analysis).
pub fn analyze_video_with_progress<B: ScanBackend>(
    path: &Path,
    opts: &ScanOptions,
    device: &B::Device,
    progress: &mut dyn FnMut(Progress),
    cancel: &CancelFlag,
) -> Result<VideoScanOutput, VisionError> {
    let start = Instant::now();
    let meter = Meter::start();
    let mut timer = Timer::default();

    let t = Instant::now();
    sniff(path, opts)?;
    let mut decoder = Decoder::open(path)?;
    let bs = opts.batch_size.max(1);
    let mut chunk = decoder.next_batch(bs, opts)?;
    timer.add("decode", t);
    if chunk.is_empty() {
        decoder.finish()?;
    }
    let (sw, sh) = (chunk[0].cols() as usize, chunk[0].rows() as usize);
    let (pw, ph) = processed_size(sw, sh, opts.downscale_max);
    let (fw, fh) = processed_size(pw, ph, opts.flow_max_side);

    // Per-frame measurements, batch by batch. The last flow-resolution frame
    // of a batch is kept so that motion is continuous across batches.
    let mut stats: Vec<FrameStats> = Vec::new();
    let mut prev_small: Option<Tensor<B, 4>> = None;
    while !chunk.is_empty() {
        let base = stats.len();
        let t = Instant::now();
        let gray = preprocess::<B>(&chunk, pw, ph, device)?;
        timer.add("gray_resize", t);

        let t = Instant::now();
        let sharp = to_vec_f32(laplacian_variance(gray.clone()));
        timer.add("sharpness", t);

        let t = Instant::now();
        let edges = canny(gray.clone(), opts.canny_low, opts.canny_high);
        let density = to_vec_f32(edges.mean_dims(&[1, 2, 3]));
        timer.add("edges", t);

        let t = Instant::now();
        let small = resize(gray, fw, fh, Interpolation::Area);
        let k = chunk.len();
        // The batch with its predecessor (if any): flow between consecutive
        // frames; `offset` is the first frame of the batch that has one.
        let (seq, offset) = match prev_small.take() {
            Some(p) => (Tensor::cat(vec![p, small.clone()], 0), 0),
            None => (small.clone(), 1),
        };
        let mut motion = vec![0.0f64; k];
        if seq.dims()[0] > 1 {
            let mags = to_vec_f32(mean_magnitude(farneback_sequence(
                seq,
                &FarnebackParams::default(),
            )));
            for (j, m) in mags.iter().enumerate() {
                // Flow is measured at flow resolution; report processed-frame pixels.
                motion[j + offset] = *m as f64 * pw as f64 / fw as f64;
            }
        }
        prev_small = Some(small.narrow(0, k - 1, 1));
        timer.add("flow", t);

        for j in 0..k {
            stats.push(FrameStats {
                index: base + j,
                sharpness: sharp[j] as f64,
                edge_density: density[j] as f64,
                motion: motion[j],
            });
        }
        progress(Progress {
            frames_done: stats.len(),
            frames_total: decoder.declared.max(0.0) as usize,
        });
        cancel.check()?;
        let t = Instant::now();
        chunk = decoder.next_batch(bs, opts)?;
        timer.add("decode", t);
    }
    decoder.finish()?;
    let n = stats.len();
    let (frames_decoded, fps) = (decoder.read, decoder.fps);
    // The first frame has no predecessor: give it its successor's motion.
    if n > 1 {
        stats[0].motion = stats[1].motion;
    }

    let t = Instant::now();
    let golden = pick_golden(&stats, opts.golden_count);
    timer.add("golden", t);

    // Second pass over the file for the golden frames only: decoding is
    // cheap next to the analysis, and it keeps memory independent of length.
    let t = Instant::now();
    let mut gray_frames: Vec<Option<GrayImage>> = vec![None; n];
    let mut color_frames: Vec<Option<BgrImage>> = vec![None; n];
    let mut decoder = Decoder::open(path)?;
    let mut base = 0;
    let last = golden.iter().map(|g| g.index).max().unwrap_or(0);
    while base <= last {
        cancel.check()?;
        let chunk = decoder.next_batch(bs, opts)?;
        if chunk.is_empty() {
            return Err(VisionError::Internal("video changed between passes".into()));
        }
        let idx: Vec<usize> = golden
            .iter()
            .map(|g| g.index)
            .filter(|i| (base..base + chunk.len()).contains(i))
            .collect();
        if !idx.is_empty() {
            let wanted: Vec<Mat> = idx.iter().map(|&i| chunk[i - base].clone()).collect();
            let grays = unstack_gray(preprocess::<B>(&wanted, pw, ph, device)?);
            // The stored golden frames are the colour frames, downscaled the same way.
            let colors = unstack_bgr(round_levels(resize(
                stack_bgr::<B>(&wanted, device)?,
                pw,
                ph,
                Interpolation::Area,
            )));
            for ((i, gray), color) in idx.into_iter().zip(grays).zip(colors) {
                gray_frames[i] = Some(gray);
                color_frames[i] = Some(color);
            }
        }
        base += chunk.len();
    }
    timer.add("golden_decode", t);

    // Localise, rectify and inspect each golden frame; keep defects seen in
    // a majority of them.
    let mut per_frame: Vec<FrameAnalysis> = Vec::new();
    let mut no_item_reason: Option<NoItemReason> = None;
    for g in &golden {
        cancel.check()?;
        let frame = gray_frames[g.index].as_ref().expect("golden frame decoded");
        let colour = color_frames[g.index]
            .as_ref()
            .expect("golden frame decoded");
        match analyze_frame::<B>(frame, colour, g.index, opts, device, &mut timer)? {
            Ok(a) => per_frame.push(a),
            Err(reason) => no_item_reason = no_item_reason.max(Some(reason)),
        }
    }
    if !per_frame.is_empty() {
        no_item_reason = None;
    }
    let t = Instant::now();
    let (item, defects, scores, mask_png) = if per_frame.is_empty() {
        (None, Vec::new(), None, Vec::new())
    } else {
        let defects = consensus(&per_frame);
        let best = &per_frame[0];
        let lr = median(per_frame.iter().map(|a| a.centering.0).collect());
        let tb = median(per_frame.iter().map(|a| a.centering.1).collect());
        let scores = score(lr, tb, &defects);
        let mask_png = encode_png(&best.mask)?;
        (Some(best.item.clone()), defects, Some(scores), mask_png)
    };
    timer.add("score", t);

    let t = Instant::now();
    let mut golden_jpegs = Vec::new();
    for g in &golden {
        let frame = color_frames[g.index]
            .as_ref()
            .expect("golden frame decoded");
        golden_jpegs.push((g.index, encode_jpeg(&frame.to_mat()?, opts.jpeg_quality)?));
    }
    timer.add("artifacts", t);

    let report = ScanReport {
        schema_version: 1,
        backend: B::NAME.into(),
        frames_decoded,
        frames_processed: n,
        source_size: [sw, sh],
        processed_size: [pw, ph],
        fps,
        frame_stats: stats,
        golden_frames: golden,
        item,
        no_item_reason,
        defects,
        scores,
        timings_ms: timer.stages,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        transfers: meter.taken(),
    };
    Ok(VideoScanOutput {
        report,
        artifacts: Artifacts {
            golden_jpegs,
            defect_mask_png: mask_png,
        },
    })
}
/// `SCANFLEET_VISION_DEBUG=1` prints why a golden frame was skipped.
pub(super) fn debug(msg: impl FnOnce() -> String) {
    if std::env::var_os("SCANFLEET_VISION_DEBUG").is_some() {
        eprintln!("vision: {}", msg());
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
/// Golden frames: sharp (within 60 % of the 90th-percentile sharpness),
/// still (score falls with motion) and spread out (at least N/(2K) apart).
pub fn pick_golden(stats: &[FrameStats], k: usize) -> Vec<GoldenFrame> {
    let n = stats.len();
    let mut sharp: Vec<f64> = stats.iter().map(|s| s.sharpness).collect();
    sharp.sort_by(|a, b| a.total_cmp(b));
    let p90 = sharp[((n as f64 * 0.9) as usize).min(n - 1)].max(1e-9);
    let motions: Vec<f64> = stats.iter().map(|s| s.motion).collect();
    let m_ref = median(motions).max(0.05);
    let mut cands: Vec<GoldenFrame> = stats
        .iter()
        .filter(|s| s.sharpness >= 0.6 * p90)
        .map(|s| GoldenFrame {
            index: s.index,
            sharpness: s.sharpness,
            motion: s.motion,
            score: (s.sharpness / p90).min(1.5) / (1.0 + s.motion / m_ref),
        })
        .collect();
    if cands.is_empty() {
        let s = stats
            .iter()
            .max_by(|a, b| a.sharpness.total_cmp(&b.sharpness))
            .expect("frames");
        return vec![GoldenFrame {
            index: s.index,
            sharpness: s.sharpness,
            motion: s.motion,
            score: 1.0,
        }];
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let gap = (n / (2 * k.max(1))).max(1);
    let mut picked: Vec<GoldenFrame> = Vec::new();
    for c in cands {
        if picked.len() == k {
            break;
        }
        if picked.iter().all(|p| p.index.abs_diff(c.index) >= gap) {
            picked.push(c);
        }
    }
    picked
}
fn encode_png(img: &GrayImage) -> Result<Vec<u8>, VisionError> {
    encode(".png", &img.to_mat()?, &[])
}

pub(crate) fn encode_jpeg(img: &Mat, quality: i32) -> Result<Vec<u8>, VisionError> {
    encode(".jpg", img, &[imgcodecs::IMWRITE_JPEG_QUALITY, quality])
}

fn encode(ext: &str, img: &Mat, params: &[i32]) -> Result<Vec<u8>, VisionError> {
    let mut buf = Vector::<u8>::new();
    imgcodecs::imencode(ext, img, &mut buf, &params.iter().copied().collect())?;
    Ok(buf.to_vec())
}
