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
    core::{self, Mat, Point2f, Vector},
    imgcodecs, imgproc,
    prelude::*,
    videoio,
};
use serde::{Deserialize, Serialize};

use crate::{
    backend::ScanBackend,
    canny::{self, canny},
    error::VisionError,
    flow::{farneback_sequence, mean_magnitude, FarnebackParams},
    frames::{stack_bgr, stack_gray, stack_gray_from_bgr, to_vec_f32, unstack_bgr, unstack_gray, BgrImage, GrayImage},
    primitives::{close, gaussian_blur, Border, label_mask, laplacian_variance, open, remap_bilinear, resize, round_levels, Component, Interpolation, MorphShape},
    synth::DefectKind,
};

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
    /// Top-hat / black-hat contrast (8-bit levels) for a defect pixel.
    pub defect_contrast: f32,
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
            defect_contrast: 30.0,
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
    pub frames_decoded: usize,
    pub frames_processed: usize,
    pub source_size: [usize; 2],
    pub processed_size: [usize; 2],
    pub fps: f64,
    pub frame_stats: Vec<FrameStats>,
    pub golden_frames: Vec<GoldenFrame>,
    pub item: Option<ItemLocation>,
    pub defects: Vec<Defect>,
    pub scores: Option<Scores>,
    pub timings_ms: Vec<StageTiming>,
    pub total_ms: f64,
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
            None => self.stages.push(StageTiming { stage: stage.into(), ms }),
        }
    }
}

/// Sniff the first bytes: images and unknown formats are rejected before
/// OpenCV sees them (its image-sequence backend happily "plays" a PNG).
fn sniff(path: &Path, opts: &ScanOptions) -> Result<(bool, u64), VisionError> {
    let meta = std::fs::metadata(path).map_err(|e| VisionError::InputNotVideo(format!("cannot read input: {e}")))?;
    let len = meta.len();
    if len > opts.max_bytes {
        return Err(VisionError::InputTooLarge(format!("{len} bytes > {} allowed", opts.max_bytes)));
    }
    if len == 0 {
        return Err(VisionError::InputNotVideo("empty file".into()));
    }
    let mut head = [0u8; 16];
    use std::io::Read;
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| VisionError::InputNotVideo(format!("cannot read input: {e}")))?;
    let head = &head[..n];
    let image_magic: [&[u8]; 6] = [b"\x89PNG", b"\xFF\xD8\xFF", b"GIF8", b"BM", b"II*\0", b"MM\0*"];
    if image_magic.iter().any(|m| head.starts_with(m)) || (head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP")) {
        return Err(VisionError::InputNotVideo("an image file where a video is expected".into()));
    }
    let is_avi = head.starts_with(b"RIFF") && head.get(8..12) == Some(b"AVI ");
    let is_container = is_avi
        || head.get(4..8) == Some(b"ftyp")
        || head.starts_with(b"\x1A\x45\xDF\xA3")
        || head.starts_with(b"OggS")
        || head.starts_with(b"\x00\x00\x01\xBA")
        || head.first() == Some(&0x47);
    if !is_container {
        return Err(VisionError::InputNotVideo("not a known video container".into()));
    }
    if is_avi && n >= 8 {
        // The RIFF chunk size says how long the file must be.
        let riff = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64 + 8;
        if riff > len {
            return Err(VisionError::InputTruncated(format!("AVI declares {riff} bytes, file has {len}")));
        }
    }
    Ok((is_avi, len))
}

/// Streaming decoder: frames are read batch by batch so that memory stays
/// O(batch) whatever the video length.
struct Decoder {
    cap: videoio::VideoCapture,
    declared: f64,
    fps: f64,
    read: usize,
    size: Option<(i32, i32)>,
}

impl Decoder {
    fn open(path: &Path) -> Result<Self, VisionError> {
        let name = path.to_str().ok_or_else(|| VisionError::InputNotVideo("path is not UTF-8".into()))?;
        let cap = videoio::VideoCapture::from_file(name, videoio::CAP_ANY)
            .map_err(|e| VisionError::InputTruncated(format!("container could not be opened: {e}")))?;
        if !cap.is_opened()? {
            return Err(VisionError::InputTruncated("container header present but no stream could be opened".into()));
        }
        let declared = cap.get(videoio::CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
        let fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
        Ok(Self { cap, declared, fps, read: 0, size: None })
    }

    /// Up to `n` more BGR frames; empty at the end of the stream.
    fn next_batch(&mut self, n: usize, opts: &ScanOptions) -> Result<Vec<Mat>, VisionError> {
        if self.read == 0 {
            self.refuse_oversized_frames(opts)?;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut m = Mat::default();
            if !self.cap.read(&mut m).unwrap_or(false) || m.empty() {
                break;
            }
            self.read += 1;
            if self.read > opts.max_frames {
                return Err(VisionError::InputTooLarge(format!("more than {} frames", opts.max_frames)));
            }
            if (m.rows() as usize) * (m.cols() as usize) > opts.max_pixels {
                return Err(VisionError::InputTooLarge(format!("{}x{} frames", m.cols(), m.rows())));
            }
            match self.size {
                None => self.size = Some((m.cols(), m.rows())),
                Some(s) if s != (m.cols(), m.rows()) => {
                    return Err(VisionError::InputNotVideo("frame size changes mid-stream".into()));
                }
                _ => {}
            }
            let m = match m.channels() {
                3 => m,
                1 => {
                    let mut c = Mat::default();
                    imgproc::cvt_color_def(&m, &mut c, imgproc::COLOR_GRAY2BGR)?;
                    c
                }
                4 => {
                    let mut c = Mat::default();
                    imgproc::cvt_color_def(&m, &mut c, imgproc::COLOR_BGRA2BGR)?;
                    c
                }
                ch => return Err(VisionError::InputNotVideo(format!("{ch}-channel frames"))),
            };
            out.push(m);
        }
        Ok(out)
    }

    /// A decompression bomb (a small file whose frames decode to gigabytes)
    /// is refused from the container's declared frame size, before the first
    /// frame is decoded; the per-frame check in `next_batch` still catches a
    /// container that lies.
    fn refuse_oversized_frames(&self, opts: &ScanOptions) -> Result<(), VisionError> {
        let width = self.cap.get(videoio::CAP_PROP_FRAME_WIDTH).unwrap_or(0.0);
        let height = self.cap.get(videoio::CAP_PROP_FRAME_HEIGHT).unwrap_or(0.0);
        if width * height > opts.max_pixels as f64 {
            return Err(VisionError::InputTooLarge(format!(
                "frames of {width}x{height} declared; at most {} pixels per frame",
                opts.max_pixels
            )));
        }
        Ok(())
    }

    /// At the end of the stream: empty and truncated containers are bad input.
    fn finish(&self) -> Result<(), VisionError> {
        if self.read == 0 {
            return Err(VisionError::InputEmpty);
        }
        // A container that declares more frames than decode was cut short.
        if self.declared >= 2.0 && (self.read as f64) < self.declared * 0.9 - 1.0 {
            return Err(VisionError::InputTruncated(format!("decoded {} of {} declared frames", self.read, self.declared)));
        }
        Ok(())
    }
}

/// Gray, downscaled, 8-bit-rounded device frames: the one preprocessing path
/// used both for the measurements and for the golden frames.
fn preprocess<B: ScanBackend>(chunk: &[Mat], pw: usize, ph: usize, device: &B::Device) -> Result<Tensor<B, 4>, VisionError> {
    let gray = stack_gray_from_bgr::<B>(chunk, device)?;
    let [_, _, h, w] = gray.dims();
    // Gray levels are already integers: only a resize needs rounding.
    Ok(if (w, h) == (pw, ph) { gray } else { round_levels(resize(gray, pw, ph, Interpolation::Area)) })
}

fn processed_size(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (((w as f64 * s).round() as usize).max(1), ((h as f64 * s).round() as usize).max(1))
}

/// Run one `video_scan` on backend `B`.
pub fn analyze_video<B: ScanBackend>(path: &Path, opts: &ScanOptions, device: &B::Device) -> Result<VideoScanOutput, VisionError> {
    analyze_video_with_progress::<B>(path, opts, device, &mut |_| {})
}

/// [`analyze_video`], calling `progress` after every batch of frames.
pub fn analyze_video_with_progress<B: ScanBackend>(
    path: &Path,
    opts: &ScanOptions,
    device: &B::Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<VideoScanOutput, VisionError> {
    let start = Instant::now();
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
            let mags = to_vec_f32(mean_magnitude(farneback_sequence(seq, &FarnebackParams::default())));
            for (j, m) in mags.iter().enumerate() {
                // Flow is measured at flow resolution; report processed-frame pixels.
                motion[j + offset] = *m as f64 * pw as f64 / fw as f64;
            }
        }
        prev_small = Some(small.narrow(0, k - 1, 1));
        timer.add("flow", t);

        for j in 0..k {
            stats.push(FrameStats { index: base + j, sharpness: sharp[j] as f64, edge_density: density[j] as f64, motion: motion[j] });
        }
        progress(Progress { frames_done: stats.len(), frames_total: decoder.declared.max(0.0) as usize });
        let t = Instant::now();
        chunk = decoder.next_batch(bs, opts)?;
        timer.add("decode", t);
    }
    decoder.finish()?;
    let n = stats.len();
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
        let chunk = decoder.next_batch(bs, opts)?;
        if chunk.is_empty() {
            return Err(VisionError::Internal("video changed between passes".into()));
        }
        let idx: Vec<usize> = golden.iter().map(|g| g.index).filter(|i| (base..base + chunk.len()).contains(i)).collect();
        if !idx.is_empty() {
            let wanted: Vec<Mat> = idx.iter().map(|&i| chunk[i - base].clone()).collect();
            let grays = unstack_gray(preprocess::<B>(&wanted, pw, ph, device)?);
            // The stored golden frames are the colour frames, downscaled the same way.
            let colors = unstack_bgr(round_levels(resize(stack_bgr::<B>(&wanted, device)?, pw, ph, Interpolation::Area)));
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
    for g in &golden {
        let frame = gray_frames[g.index].as_ref().expect("golden frame decoded");
        if let Some(a) = analyze_frame::<B>(frame, g.index, opts, device, &mut timer)? {
            per_frame.push(a);
        }
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
        let frame = color_frames[g.index].as_ref().expect("golden frame decoded");
        golden_jpegs.push((g.index, encode_jpeg(&frame.to_mat()?, opts.jpeg_quality)?));
    }
    timer.add("artifacts", t);

    let report = ScanReport {
        schema_version: 1,
        backend: B::NAME.into(),
        frames_decoded: n,
        frames_processed: n,
        source_size: [sw, sh],
        processed_size: [pw, ph],
        fps: decoder.fps,
        frame_stats: stats,
        golden_frames: golden,
        item,
        defects,
        scores,
        timings_ms: timer.stages,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    Ok(VideoScanOutput { report, artifacts: Artifacts { golden_jpegs, defect_mask_png: mask_png } })
}

/// `SCANFLEET_VISION_DEBUG=1` prints why a golden frame was skipped.
fn debug(msg: impl FnOnce() -> String) {
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
        .map(|s| GoldenFrame { index: s.index, sharpness: s.sharpness, motion: s.motion, score: (s.sharpness / p90).min(1.5) / (1.0 + s.motion / m_ref) })
        .collect();
    if cands.is_empty() {
        let s = stats.iter().max_by(|a, b| a.sharpness.total_cmp(&b.sharpness)).expect("frames");
        return vec![GoldenFrame { index: s.index, sharpness: s.sharpness, motion: s.motion, score: 1.0 }];
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

struct FrameAnalysis {
    item: ItemLocation,
    /// (left share, top share).
    centering: (f64, f64),
    defects: Vec<Defect>,
    mask: GrayImage,
}

/// Localise the item on one golden frame, rectify it and find defects.
fn analyze_frame<B: ScanBackend>(
    frame: &GrayImage,
    index: usize,
    opts: &ScanOptions,
    device: &B::Device,
    timer: &mut Timer,
) -> Result<Option<FrameAnalysis>, VisionError> {
    let t = Instant::now();
    let Some(quad) = locate_item::<B>(frame, opts, device) else {
        debug(|| format!("frame {index}: item not found"));
        timer.add("localise", t);
        return Ok(None);
    };
    timer.add("localise", t);

    let t = Instant::now();
    let dist = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let iw = ((dist(quad[0], quad[1]) + dist(quad[3], quad[2])) / 2.0).round() as usize;
    let ih = ((dist(quad[0], quad[3]) + dist(quad[1], quad[2])) / 2.0).round() as usize;
    if iw < 32 || ih < 32 {
        debug(|| format!("frame {index}: item too small, quad {quad:?}"));
        return Ok(None);
    }
    let img = stack_gray::<B>(&[frame], device);
    // Rectify with an 8 % margin and measure the item's edges from profiles
    // (sub-pixel). The first round refines the corners found at low
    // resolution (their error would otherwise skew the perspective and the
    // centering); the second measures item and print edges for good.
    let margin = 0.08;
    let (mw, mh) = (((iw as f64) * (1.0 + 2.0 * margin)).round() as usize, ((ih as f64) * (1.0 + 2.0 * margin)).round() as usize);
    let ox = iw as f64 * margin;
    let oy = ih as f64 * margin;
    let mut quad = quad;
    let mut h1 = homography(&quad, iw as f64, ih as f64)?;
    let mut measured = None;
    for round in 0..3 {
        let map1: Vec<(f32, f32)> = (0..mh)
            .flat_map(|y| (0..mw).map(move |x| (x as f64 - ox, y as f64 - oy)))
            .map(|(u, v)| apply_h(&h1, u, v))
            .collect();
        let r1 = to_vec_f32(remap_bilinear(img.clone(), &map1, mw, mh));
        if round == 2 {
            measured = Profiles::measure(&r1, mw, mh, (0.3, 0.7));
            break;
        }
        let (Some(a), Some(b)) = (Profiles::measure(&r1, mw, mh, (0.2, 0.4)), Profiles::measure(&r1, mw, mh, (0.6, 0.8))) else {
            break;
        };
        // Item edge lines through the two bands, intersected into corners.
        let (fw, fh) = (mw as f64, mh as f64);
        let left = ([a.card.0, 0.3 * fh], [b.card.0, 0.7 * fh]);
        let right = ([a.card.1, 0.3 * fh], [b.card.1, 0.7 * fh]);
        let top = ([0.3 * fw, a.card.2], [0.7 * fw, b.card.2]);
        let bottom = ([0.3 * fw, a.card.3], [0.7 * fw, b.card.3]);
        let corners = [intersect(left, top), intersect(right, top), intersect(right, bottom), intersect(left, bottom)];
        quad = corners.map(|p| {
            let (x, y) = apply_h(&h1, p[0] - ox, p[1] - oy);
            [x as f64, y as f64]
        });
        h1 = homography(&quad, iw as f64, ih as f64)?;
    }
    let Some(prof) = measured else {
        debug(|| format!("frame {index}: item edges not measurable, quad {quad:?}"));
        timer.add("rectify", t);
        return Ok(None);
    };
    // Second pass: sample the item exactly inside its measured edges.
    let (cl, cr, ct, cb) = (prof.card.0 - ox, prof.card.1 - ox, prof.card.2 - oy, prof.card.3 - oy);
    let (cw, ch) = ((cr - cl).round() as usize, (cb - ct).round() as usize);
    let map2: Vec<(f32, f32)> = (0..ch)
        .flat_map(|y| (0..cw).map(move |x| (x, y)))
        .map(|(x, y)| {
            let u = cl + (x as f64 + 0.5) * (cr - cl) / cw as f64 - 0.5;
            let v = ct + (y as f64 + 0.5) * (cb - ct) / ch as f64 - 0.5;
            apply_h(&h1, u, v)
        })
        .collect();
    let card = remap_bilinear(img, &map2, cw, ch);
    timer.add("rectify", t);

    let t = Instant::now();
    let print = (prof.print.0 - prof.card.0, prof.card.1 - prof.print.1, prof.print.2 - prof.card.2, prof.card.3 - prof.print.3);
    let centering = (print.0 / (print.0 + print.1), print.2 / (print.2 + print.3));
    let (defects, mask) = find_defects::<B>(card, cw, ch, opts, &prof, (cl + ox, ct + oy));
    timer.add("defects", t);

    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    let bbox = [xs.clone().fold(f64::MAX, f64::min), ys.clone().fold(f64::MAX, f64::min), xs.fold(f64::MIN, f64::max), ys.fold(f64::MIN, f64::max)];
    Ok(Some(FrameAnalysis { item: ItemLocation { frame: index, bbox, quad, size: [cw, ch] }, centering, defects, mask }))
}

/// Edges + morphological close + connected components on a reduced
/// frame (fine background texture averages away, the item outline stays);
/// the item is the largest component not touching the frame border. Its
/// corners are the extreme points along the diagonals.
fn locate_item<B: ScanBackend>(frame: &GrayImage, opts: &ScanOptions, device: &B::Device) -> Option<[[f64; 2]; 4]> {
    // Work at roughly 180 px on the short side (4x reduced for 720p).
    let f = (frame.width.min(frame.height) / 180).clamp(1, 4);
    let (w, h) = ((frame.width / f).max(8), (frame.height / f).max(8));
    let img = stack_gray::<B>(&[frame], device);
    // Blur first: a textured table would otherwise grow weak edges into the
    // outline and merge it with the background.
    let small = round_levels(gaussian_blur(resize(img, w, h, Interpolation::Area), 0, 2.0, Border::Reflect101));
    let edges = canny(small, opts.canny_low, opts.canny_high);
    let closed = close(edges, MorphShape::Rect, 5, 5);
    let bits: Vec<bool> = to_vec_f32(closed).iter().map(|&v| v > 0.5).collect();
    let (labels, comps) = label_mask(&bits, w, h);
    let best = comps
        .iter()
        .filter(|c| c.left > 0 && c.top > 0 && c.left + c.width < w && c.top + c.height < h)
        .filter(|c| c.width * c.height * 20 >= w * h)
        .max_by_key(|c| c.width * c.height)?;
    let mut ext = [(f64::MAX, [0.0; 2]), (f64::MIN, [0.0; 2]), (f64::MIN, [0.0; 2]), (f64::MAX, [0.0; 2])];
    for (i, &l) in labels.iter().enumerate() {
        if l != best.label {
            continue;
        }
        let (x, y) = ((i % w) as f64, (i / w) as f64);
        let p = [x, y];
        if x + y < ext[0].0 {
            ext[0] = (x + y, p);
        }
        if x - y > ext[1].0 {
            ext[1] = (x - y, p);
        }
        if x + y > ext[2].0 {
            ext[2] = (x + y, p);
        }
        if x - y < ext[3].0 {
            ext[3] = (x - y, p);
        }
    }
    // Back to full resolution: pixel centres scale about the half-pixel offset.
    Some(ext.map(|(_, p)| [(p[0] + 0.5) * f as f64 - 0.5, (p[1] + 0.5) * f as f64 - 0.5]))
}

/// Homography mapping item coordinates `(0,0)..(w,h)` onto `quad`.
fn homography(quad: &[[f64; 2]; 4], w: f64, h: f64) -> Result<[f64; 9], VisionError> {
    let src: Vector<Point2f> = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)].iter().map(|&(x, y)| Point2f::new(x as f32, y as f32)).collect();
    let dst: Vector<Point2f> = quad.iter().map(|p| Point2f::new(p[0] as f32, p[1] as f32)).collect();
    let m = imgproc::get_perspective_transform(&src, &dst, core::DECOMP_LU)?;
    let mut out = [0.0; 9];
    for (i, o) in out.iter_mut().enumerate() {
        *o = *m.at_2d::<f64>((i / 3) as i32, (i % 3) as i32)?;
    }
    Ok(out)
}

/// Intersection of two lines, each given by two points.
fn intersect(l1: ([f64; 2], [f64; 2]), l2: ([f64; 2], [f64; 2])) -> [f64; 2] {
    let (p, r) = (l1.0, [l1.1[0] - l1.0[0], l1.1[1] - l1.0[1]]);
    let (q, s) = (l2.0, [l2.1[0] - l2.0[0], l2.1[1] - l2.0[1]]);
    let cross = r[0] * s[1] - r[1] * s[0];
    if cross.abs() < 1e-12 {
        return p;
    }
    let t = ((q[0] - p[0]) * s[1] - (q[1] - p[1]) * s[0]) / cross;
    [p[0] + t * r[0], p[1] + t * r[1]]
}

fn apply_h(h: &[f64; 9], u: f64, v: f64) -> (f32, f32) {
    let d = h[6] * u + h[7] * v + h[8];
    (((h[0] * u + h[1] * v + h[2]) / d) as f32, ((h[3] * u + h[4] * v + h[5]) / d) as f32)
}

/// Item edges and print-frame edges measured on the margin-rectified image.
struct Profiles {
    /// Item edges (left, right, top, bottom) in margin-image pixels.
    card: (f64, f64, f64, f64),
    /// Print frame edges, same frame.
    print: (f64, f64, f64, f64),
}

impl Profiles {
    /// Profiles are medians across a band (fractions of the other axis):
    /// robust to defects crossing it.
    fn measure(img: &[f32], w: usize, h: usize, band: (f64, f64)) -> Option<Self> {
        let (b0, b1) = (band.0, band.1);
        let median = |mut v: Vec<f32>| {
            let mid = v.len() / 2;
            *v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1 as f64
        };
        let col = |x: usize| median(((h as f64 * b0) as usize..(h as f64 * b1) as usize).map(|y| img[y * w + x]).collect());
        let row = |y: usize| median(((w as f64 * b0) as usize..(w as f64 * b1) as usize).map(|x| img[y * w + x]).collect());
        let px: Vec<f64> = (0..w).map(col).collect();
        let py: Vec<f64> = (0..h).map(row).collect();
        let side = |p: &[f64], from_end: bool, name: &str| {
            let found = steps(p, from_end);
            if found.is_none() {
                debug(|| format!("band {band:?}: no {name} item/print edges in profile {:?}", p.iter().map(|v| v.round() as i64).collect::<Vec<_>>()));
            }
            found
        };
        let (cl, pl) = side(&px, false, "left")?;
        let (cr, pr) = side(&px, true, "right")?;
        let (ct, pt) = side(&py, false, "top")?;
        let (cb, pb) = side(&py, true, "bottom")?;
        Some(Self { card: (cl, cr, ct, cb), print: (pl, pr, pt, pb) })
    }
}

/// On one side of a profile, the item edge (the outermost strong rise
/// within the outer 20 %) and the print edge (the strongest rise further
/// in, within 35 %), each located at sub-pixel precision by a parabola
/// through the gradient peak. `from_end` scans from the far side.
fn steps(p: &[f64], from_end: bool) -> Option<(f64, f64)> {
    let n = p.len();
    let at = |i: usize| if from_end { p[n - 1 - i] } else { p[i] };
    // Central-difference gradient in the scan direction, positions i+0.5 between samples.
    let grad: Vec<f64> = (0..n - 1).map(|i| at(i + 1) - at(i)).collect();
    let strongest = |lo: usize, hi: usize| -> Option<usize> {
        let hi = hi.min(grad.len() - 1);
        if lo + 2 > hi {
            return None;
        }
        let i = (lo + 1..hi).max_by(|&a, &b| grad[a].total_cmp(&grad[b]))?;
        (grad[i] > 2.0).then_some(i)
    };
    let refine = |i: usize| {
        let (a, b, c) = (grad[i - 1], grad[i], grad[i + 1]);
        let den = a - 2.0 * b + c;
        let off = if den.abs() > 1e-9 { (0.5 * (a - c) / den).clamp(-0.5, 0.5) } else { 0.0 };
        i as f64 + 0.5 + off
    };
    // Not simply the strongest rise: whether the item or the print step is
    // steeper per pixel depends on the resolution (at DOWNSCALE_MAX=640 the
    // print edge often is), so take the first gradient peak from the
    // outside that reaches half the strongest one.
    let top = strongest(0, n * 20 / 100)?;
    let card = (1..=top).find(|&i| grad[i] >= 0.5 * grad[top] && grad[i] >= grad[i - 1] && grad[i] >= grad[i + 1])?;
    let card = refine(card);
    let print = refine(strongest(card.ceil() as usize + 3, n * 35 / 100)?);
    let conv = |s: f64| if from_end { (n - 1) as f64 - s } else { s };
    Some((conv(card), conv(print)))
}

/// Top-hat / black-hat anomalies inside the rectified item, labelled and typed by shape.
fn find_defects<B: ScanBackend>(
    card: Tensor<B, 4>,
    cw: usize,
    ch: usize,
    opts: &ScanOptions,
    prof: &Profiles,
    origin: (f64, f64),
) -> (Vec<Defect>, GrayImage) {
    let scale = ItemScale::new(ch);
    let k = (scale.px(15.0).round() as usize | 1).max(5);
    let tophat = card.clone() - open(card.clone(), MorphShape::Ellipse, k, k);
    let blackhat = close(card.clone(), MorphShape::Ellipse, k, k) - card;
    let bright = to_vec_f32(tophat.greater_elem(opts.defect_contrast).float());
    let dark = to_vec_f32(blackhat.greater_elem(opts.defect_contrast).float());
    // Dark pixels within a few pixels of the outline are rectification
    // slivers of background, not defects.
    let m = scale.px(4.0).round().max(2.0) as usize;
    let inside = |i: usize| {
        let (x, y) = (i % cw, i / cw);
        x >= m && y >= m && x + m < cw && y + m < ch
    };
    let bright_bits: Vec<bool> = bright.iter().map(|&v| v > 0.5).collect();
    let dark_bits: Vec<bool> = dark.iter().enumerate().map(|(i, &v)| v > 0.5 && inside(i)).collect();
    // Print-frame corners in item pixels: opening rounds them off, leaving
    // small bright residues that are not defects.
    let print_corners = {
        let (l, r, t, b) = (prof.print.0 - origin.0, prof.print.1 - origin.0, prof.print.2 - origin.1, prof.print.3 - origin.1);
        [(l, t), (r, t), (r, b), (l, b)]
    };
    let mut defects = Vec::new();
    let mut mask = vec![0u8; cw * ch];
    for (bits, is_bright) in [(&bright_bits, true), (&dark_bits, false)] {
        let (labels, comps) = label_mask(bits, cw, ch);
        for c in &comps {
            let Some(d) = classify(c, is_bright, cw, ch, &print_corners, scale) else { continue };
            for (i, &l) in labels.iter().enumerate() {
                if l == c.label {
                    mask[i] = 255;
                }
            }
            defects.push(d);
        }
    }
    (defects, GrayImage::new(cw, ch, mask))
}

/// Pixel sizes in the defect rules are tuned on a rectified item of this
/// height (a 720p scan with the item filling 82 % of the frame height) and
/// scale with the actual item: a scan downscaled to `DOWNSCALE_MAX=640`
/// shows every defect at half the length and a quarter of the area.
const TUNED_ITEM_HEIGHT: f64 = 590.0;

#[derive(Clone, Copy, Debug)]
struct ItemScale(f64);

impl ItemScale {
    fn new(item_height: usize) -> Self {
        Self(item_height as f64 / TUNED_ITEM_HEIGHT)
    }
    /// A length tuned at [`TUNED_ITEM_HEIGHT`], in this item's pixels.
    fn px(self, v: f64) -> f64 {
        v * self.0
    }
    /// An area tuned at [`TUNED_ITEM_HEIGHT`], in this item's pixels.
    fn area(self, v: f64) -> f64 {
        v * self.0 * self.0
    }
}

fn classify(c: &Component, bright: bool, cw: usize, ch: usize, print_corners: &[(f64, f64); 4], scale: ItemScale) -> Option<Defect> {
    let area = c.area as f64;
    if area < scale.area(8.0) {
        return None;
    }
    let (major, minor) = c.axes();
    let length = c.length().max(c.width.max(c.height) as f64);
    let (fw, fh) = (cw as f64, ch as f64);
    let bbox = [c.left as f64 / fw, c.top as f64 / fh, (c.left + c.width) as f64 / fw, (c.top + c.height) as f64 / fh];
    let near_print_corner = print_corners.iter().any(|&(x, y)| (c.cx - x).abs() < scale.px(8.0) && (c.cy - y).abs() < scale.px(8.0));
    let edge_band = scale.px(6.0).round().max(2.0) as usize;
    let d_left = c.left;
    let d_top = c.top;
    let d_right = cw.saturating_sub(c.left + c.width);
    let d_bottom = ch.saturating_sub(c.top + c.height);
    let touches = [d_top <= edge_band, d_right <= edge_band, d_bottom <= edge_band, d_left <= edge_band];
    let mk = |kind, severity: f64, location: Option<&str>| Defect {
        kind,
        bbox,
        length_px: length,
        area_px: c.area as f64,
        severity: severity.clamp(0.0, 1.0),
        location: location.map(String::from),
        support: 1,
    };
    if bright {
        if near_print_corner && area < scale.area(40.0) {
            return None;
        }
        let corner_zone = 0.08 * fw;
        let near_x = if c.cx < corner_zone { Some(0) } else if c.cx > fw - corner_zone { Some(1) } else { None };
        let near_y = if c.cy < corner_zone { Some(0) } else if c.cy > fh - corner_zone { Some(1) } else { None };
        if touches.iter().any(|&t| t) {
            if let (Some(x), Some(y)) = (near_x, near_y) {
                // Below ~20 px a corner residue is the opening rounding off
                // a sliver of the item's own corner, not wear.
                if area < scale.area(20.0) {
                    return None;
                }
                let name = ["top_left", "top_right", "bottom_left", "bottom_right"][y * 2 + x];
                return Some(mk(DefectKind::CornerWear, area / scale.area(150.0), Some(name)));
            }
            let side = ["top", "right", "bottom", "left"][touches.iter().position(|&t| t).unwrap()];
            let along = if side == "top" || side == "bottom" { fw } else { fh };
            return Some(mk(DefectKind::EdgeWear, length / (0.15 * along), Some(side)));
        }
        if length >= scale.px(15.0) {
            return Some(mk(DefectKind::Scratch, length / (0.3 * fw), None));
        }
        return None;
    }
    if major > 3.0 * minor.max(0.5) && length >= scale.px(40.0) {
        return Some(mk(DefectKind::Crease, length / (0.3 * fw), None));
    }
    if area >= scale.area(12.0) {
        return Some(mk(DefectKind::Stain, area / scale.area(200.0), None));
    }
    None
}

/// Keep defects seen in a majority of golden frames (boxes of the same kind
/// that overlap after a small inflation), reported as seen in the first.
fn consensus(frames: &[FrameAnalysis]) -> Vec<Defect> {
    let need = frames.len().div_ceil(2);
    let overlaps = |a: &[f64; 4], b: &[f64; 4]| {
        let e = 0.01;
        a[0] - e < b[2] && b[0] - e < a[2] && a[1] - e < b[3] && b[1] - e < a[3]
    };
    let mut out = Vec::new();
    for d in &frames[0].defects {
        let support = frames.iter().filter(|f| f.defects.iter().any(|o| o.kind == d.kind && overlaps(&o.bbox, &d.bbox))).count();
        if support >= need {
            out.push(Defect { support, ..d.clone() });
        }
    }
    out
}

fn grade(penalty: f64) -> f64 {
    (10.0 - 9.0 * penalty.clamp(0.0, 1.0)).clamp(1.0, 10.0)
}

fn score(lr: f64, tb: f64, defects: &[Defect]) -> Scores {
    let off = (lr - 0.5).abs().max((tb - 0.5).abs());
    // 55/45 or better is a 10; 90/10 or worse is a 1.
    let centering = grade(((off - 0.05) / 0.35).max(0.0));
    let sum = |f: &dyn Fn(&Defect) -> bool| defects.iter().filter(|d| f(d)).map(|d| d.severity).sum::<f64>();
    let corner_names = ["top_left", "top_right", "bottom_right", "bottom_left"];
    let corners = corner_names.map(|n| grade(sum(&|d| d.kind == DefectKind::CornerWear && d.location.as_deref() == Some(n))));
    let edge_names = ["top", "right", "bottom", "left"];
    let edges = edge_names.map(|n| grade(sum(&|d| d.kind == DefectKind::EdgeWear && d.location.as_deref() == Some(n))));
    let surface = grade(0.5 * sum(&|d| matches!(d.kind, DefectKind::Scratch | DefectKind::Crease | DefectKind::Stain)));
    let avg = |v: &[f64; 4]| v.iter().sum::<f64>() / 4.0;
    let min4 = |v: &[f64; 4]| v.iter().copied().fold(10.0, f64::min);
    let weighted = 0.25 * centering + 0.25 * avg(&corners) + 0.2 * avg(&edges) + 0.3 * surface;
    // A grade is capped by its weakest sub-grade (a crease caps a card).
    let cap = centering.min(min4(&corners)).min(min4(&edges)).min(surface) + 1.5;
    let overall = weighted.min(cap).round().clamp(1.0, 10.0);
    let ratio = |s: f64| format!("{:.0}/{:.0}", s * 100.0, 100.0 - s * 100.0);
    Scores { centering_lr: lr, centering_tb: tb, centering_lr_ratio: ratio(lr), centering_tb_ratio: ratio(tb), centering, corners, edges, surface, overall }
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
