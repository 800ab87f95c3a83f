//! Synthetic scan generator: a trading card with known defects, moved and
//! tilted across N frames with sensor noise, motion blur on chosen frames and
//! a lighting change, written as an MJPG `.avi` plus ground-truth JSON.
//!
//! The card is drawn once in its own canonical coordinates (so ground truth
//! is exact there), then warped into every frame with a perspective
//! transform. The background is a fine random texture: it gives sharp
//! frames a much higher Laplacian variance than blurred ones, as real
//! footage of a textured table does.

use std::path::{Path, PathBuf};

use opencv::{
    core::{self, Mat, Point, Point2f, Scalar, Size, Vector, CV_32F, CV_8UC1, CV_8UC3},
    imgproc,
    prelude::*,
    videoio,
};
use serde::{Deserialize, Serialize};

use crate::error::VisionError;
// The generator draws the kinds the pipeline reports; the type is the pipeline's.
pub use crate::pipeline::DefectKind;

/// What to render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthSpec {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub fps: f64,
    /// Card height as a fraction of the frame height.
    pub card_height_frac: f64,
    pub seed: u64,
    pub scratches: u32,
    pub creases: u32,
    pub stains: u32,
    pub corner_wear: u32,
    pub edge_wear: u32,
    /// True centering: left border / (left + right border), top / (top + bottom).
    pub centering_lr: f64,
    pub centering_tb: f64,
    /// Gaussian sensor noise (8-bit levels).
    pub noise_sigma: f64,
    /// Frames rendered with a strong motion blur (never golden).
    pub blurred_frames: Vec<u32>,
    /// Maximum in-plane rotation, degrees.
    pub max_tilt_deg: f64,
    /// Global gain swings between `1 - lighting` and `1 + lighting`.
    pub lighting: f64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            frames: 24,
            fps: 12.0,
            card_height_frac: 0.82,
            seed: 7,
            scratches: 2,
            creases: 1,
            stains: 2,
            corner_wear: 2,
            edge_wear: 2,
            centering_lr: 0.58,
            centering_tb: 0.46,
            noise_sigma: 2.0,
            blurred_frames: vec![3, 4, 11, 17],
            max_tilt_deg: 4.0,
            lighting: 0.08,
        }
    }
}

impl SynthSpec {
    /// A small scan for slow backends (the Wgpu equivalence test).
    pub fn small() -> Self {
        Self {
            width: 320,
            height: 240,
            frames: 4,
            blurred_frames: vec![1],
            scratches: 1,
            creases: 1,
            stains: 1,
            corner_wear: 1,
            edge_wear: 1,
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtDefect {
    pub kind: DefectKind,
    /// Bounding box in card coordinates normalised to 0..1: `[x0, y0, x1, y1]`.
    pub bbox: [f64; 4],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub spec: SynthSpec,
    pub video: PathBuf,
    /// Card size in pixels in its canonical (unwarped) rendering.
    pub card_size: [u32; 2],
    pub defects: Vec<GtDefect>,
    pub centering_lr: f64,
    pub centering_tb: f64,
    pub blurred_frames: Vec<u32>,
    /// Per frame, the card corners in frame pixels (TL, TR, BR, BL).
    pub card_quads: Vec<[[f64; 2]; 4]>,
}

/// SplitMix64: tiny deterministic RNG for the scan and photo generators
/// (they must not depend on a crate's stream staying stable across versions).
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.f()
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn gauss(&mut self) -> f64 {
        // Box–Muller.
        let (u, v) = (self.f().max(1e-12), self.f());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn bgr(v: f64) -> Scalar {
    Scalar::new(v, v, v, 0.0)
}

/// A rendered card: BGR image, defects as pixel boxes, print borders.
type RenderedCard = (Mat, Vec<(DefectKind, [f64; 4])>, [f64; 4]);

/// Render the card in canonical coordinates; returns (BGR image, defects in pixels, borders).
fn render_card(spec: &SynthSpec, rng: &mut Rng) -> Result<RenderedCard, VisionError> {
    let ch = (spec.height as f64 * spec.card_height_frac).round() as i32;
    let cw = (ch as f64 * 63.0 / 88.0).round() as i32;
    let mut card =
        Mat::new_rows_cols_with_default(ch, cw, CV_8UC3, Scalar::new(95.0, 105.0, 115.0, 0.0))?;
    // Print area: total border 16% of the width / 12% of the height, split by the centering.
    let (mh, mv) = (0.16 * cw as f64, 0.12 * ch as f64);
    let (l, r) = (mh * spec.centering_lr, mh * (1.0 - spec.centering_lr));
    let (t, b) = (mv * spec.centering_tb, mv * (1.0 - spec.centering_tb));
    let print = core::Rect::new(
        l.round() as i32,
        t.round() as i32,
        (cw as f64 - l - r).round() as i32,
        (ch as f64 - t - b).round() as i32,
    );
    imgproc::rectangle(
        &mut card,
        print,
        Scalar::new(205.0, 185.0, 165.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    // A large soft shape in the art (wide enough not to look like a defect).
    let art_c = Point::new(print.x + print.width / 2, print.y + print.height / 3);
    imgproc::circle(
        &mut card,
        art_c,
        print.width / 4,
        Scalar::new(150.0, 170.0, 190.0, 0.0),
        -1,
        imgproc::LINE_AA,
        0,
    )?;
    let mut smooth = Mat::default();
    imgproc::gaussian_blur_def(&card, &mut smooth, Size::new(5, 5), 1.2)?;
    let mut card = smooth;
    // Exact border widths after rounding, for ground truth.
    let borders = [
        print.x as f64,
        (cw - print.x - print.width) as f64,
        print.y as f64,
        (ch - print.y - print.height) as f64,
    ];

    let mut defects: Vec<(DefectKind, [f64; 4])> = Vec::new();
    let free = |bb: &[f64; 4], defects: &[(DefectKind, [f64; 4])]| {
        defects.iter().all(|(_, o)| {
            bb[2] + 20.0 < o[0] || o[2] + 20.0 < bb[0] || bb[3] + 20.0 < o[1] || o[3] + 20.0 < bb[1]
        })
    };
    let inner = |rng: &mut Rng, pad: f64| {
        (
            rng.range(print.x as f64 + pad, (print.x + print.width) as f64 - pad),
            rng.range(print.y as f64 + pad, (print.y + print.height) as f64 - pad),
        )
    };
    let lines = [
        (DefectKind::Scratch, spec.scratches, 60.0, 120.0, 245.0, 2),
        (DefectKind::Crease, spec.creases, 130.0, 200.0, 55.0, 3),
    ];
    for (kind, count, lmin, lmax, value, thick) in lines {
        let mut placed = 0;
        for _ in 0..500 {
            if placed == count {
                break;
            }
            let len = rng.range(lmin, lmax).min(print.width as f64 * 0.7);
            let ang = rng.range(0.0, std::f64::consts::PI);
            let (cx, cy) = inner(rng, len / 2.0 + 8.0);
            let (dx, dy) = (ang.cos() * len / 2.0, ang.sin() * len / 2.0);
            let bb = [
                cx - dx.abs() - 2.0,
                cy - dy.abs() - 2.0,
                cx + dx.abs() + 2.0,
                cy + dy.abs() + 2.0,
            ];
            if !free(&bb, &defects) {
                continue;
            }
            let p1 = Point::new((cx - dx).round() as i32, (cy - dy).round() as i32);
            let p2 = Point::new((cx + dx).round() as i32, (cy + dy).round() as i32);
            imgproc::line(&mut card, p1, p2, bgr(value), thick, imgproc::LINE_8, 0)?;
            defects.push((kind, bb));
            placed += 1;
        }
    }
    let mut placed = 0;
    for _ in 0..500 {
        if placed == spec.stains {
            break;
        }
        let (ax, ay) = (rng.range(4.0, 6.0), rng.range(3.0, 5.0));
        let (cx, cy) = inner(rng, 12.0);
        let bb = [cx - ax - 1.0, cy - ay - 1.0, cx + ax + 1.0, cy + ay + 1.0];
        if !free(&bb, &defects) {
            continue;
        }
        imgproc::ellipse(
            &mut card,
            Point::new(cx.round() as i32, cy.round() as i32),
            Size::new(ax.round() as i32, ay.round() as i32),
            rng.range(0.0, 180.0),
            0.0,
            360.0,
            Scalar::new(40.0, 60.0, 85.0, 0.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
        defects.push((DefectKind::Stain, bb));
        placed += 1;
    }
    // Corner wear: a whitened quarter disc at distinct corners.
    let corners = [
        (0.0, 0.0),
        (cw as f64, 0.0),
        (cw as f64, ch as f64),
        (0.0, ch as f64),
    ];
    let first = (rng.next() % 4) as usize;
    for i in 0..spec.corner_wear.min(4) as usize {
        let (x, y) = corners[(first + i) % 4];
        let rad = rng.range(7.0, 10.0);
        imgproc::circle(
            &mut card,
            Point::new(x as i32, y as i32),
            rad.round() as i32,
            bgr(235.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
        let bb = [
            (x - rad).max(0.0),
            (y - rad).max(0.0),
            (x + rad).min(cw as f64),
            (y + rad).min(ch as f64),
        ];
        defects.push((DefectKind::CornerWear, bb));
    }
    // Edge wear: whitened chips along an edge, away from the corners.
    let mut placed = 0;
    for _ in 0..500 {
        if placed == spec.edge_wear {
            break;
        }
        let edge = rng.next() % 4;
        let len = rng.range(25.0, 45.0);
        let depth = rng.range(3.0, 4.5);
        let along =
            |size: i32, rng: &mut Rng| rng.range(0.2 * size as f64, 0.8 * size as f64 - len);
        let bb = match edge {
            0 => {
                let x = along(cw, rng);
                [x, 0.0, x + len, depth]
            }
            1 => {
                let y = along(ch, rng);
                [cw as f64 - depth, y, cw as f64, y + len]
            }
            2 => {
                let x = along(cw, rng);
                [x, ch as f64 - depth, x + len, ch as f64]
            }
            _ => {
                let y = along(ch, rng);
                [0.0, y, depth, y + len]
            }
        };
        if !free(&bb, &defects) {
            continue;
        }
        let rect = core::Rect::new(
            bb[0].round() as i32,
            bb[1].round() as i32,
            (bb[2] - bb[0]).round() as i32,
            (bb[3] - bb[1]).round() as i32,
        );
        imgproc::rectangle(&mut card, rect, bgr(230.0), -1, imgproc::LINE_8, 0)?;
        defects.push((DefectKind::EdgeWear, bb));
        placed += 1;
    }
    Ok((card, defects, borders))
}

fn background(spec: &SynthSpec) -> Result<Mat, VisionError> {
    let (w, h) = (spec.width as i32, spec.height as i32);
    let mut noise = Mat::new_rows_cols_with_default(h, w, CV_32F, Scalar::all(0.0))?;
    core::set_rng_seed(spec.seed as i32 ^ 0x5eed)?;
    core::randn(&mut noise, &Scalar::all(0.0), &Scalar::all(30.0))?;
    let mut smooth = Mat::default();
    imgproc::gaussian_blur_def(&noise, &mut smooth, Size::new(3, 3), 0.8)?;
    let mut g8 = Mat::default();
    smooth.convert_to(&mut g8, core::CV_8U, 1.0, 45.0)?;
    let mut bg = Mat::default();
    imgproc::cvt_color_def(&g8, &mut bg, imgproc::COLOR_GRAY2BGR)?;
    Ok(bg)
}

/// Render the scan into `out_dir/scan.avi` and `out_dir/ground_truth.json`.
pub fn generate(spec: &SynthSpec, out_dir: &Path) -> Result<GroundTruth, VisionError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| VisionError::Internal(format!("create {out_dir:?}: {e}")))?;
    let mut rng = Rng(spec.seed);
    let (card, defects_px, borders) = render_card(spec, &mut rng)?;
    let (cw, ch) = (card.cols() as f64, card.rows() as f64);
    let bg = background(spec)?;
    let (fw, fh) = (spec.width as f64, spec.height as f64);
    let video = out_dir.join("scan.avi");
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let mut writer = videoio::VideoWriter::new(
        video.to_str().unwrap_or_default(),
        fourcc,
        spec.fps,
        Size::new(spec.width as i32, spec.height as i32),
        true,
    )?;
    if !writer.is_opened()? {
        return Err(VisionError::Internal(format!(
            "VideoWriter could not open {video:?}"
        )));
    }
    let card_mask =
        Mat::new_rows_cols_with_default(ch as i32, cw as i32, CV_8UC1, Scalar::all(255.0))?;
    let mut quads = Vec::new();
    let n = spec.frames.max(1) as f64;
    for t in 0..spec.frames {
        let phase = t as f64 / n * std::f64::consts::TAU;
        let (cx, cy) = (
            fw / 2.0 + 0.03 * fw * phase.sin(),
            fh / 2.0 + 0.01 * fh * (2.0 * phase).sin(),
        );
        let theta = spec.max_tilt_deg.to_radians() * (phase + 0.7).sin();
        // Tilt towards the camera: the far edge shrinks a little.
        let persp = 0.03 * (phase * 1.3).cos();
        let local = [
            (-cw / 2.0 * (1.0 - persp), -ch / 2.0),
            (cw / 2.0 * (1.0 - persp), -ch / 2.0),
            (cw / 2.0, ch / 2.0),
            (-cw / 2.0, ch / 2.0),
        ];
        let quad: [[f64; 2]; 4] = local.map(|(x, y)| {
            [
                cx + x * theta.cos() - y * theta.sin(),
                cy + x * theta.sin() + y * theta.cos(),
            ]
        });
        quads.push(quad);
        let src: Vector<Point2f> = [(0.0, 0.0), (cw, 0.0), (cw, ch), (0.0, ch)]
            .iter()
            .map(|&(x, y)| Point2f::new(x as f32, y as f32))
            .collect();
        let dst: Vector<Point2f> = quad
            .iter()
            .map(|p| Point2f::new(p[0] as f32, p[1] as f32))
            .collect();
        let m = imgproc::get_perspective_transform(&src, &dst, core::DECOMP_LU)?;
        let size = Size::new(spec.width as i32, spec.height as i32);
        let mut warped = Mat::default();
        imgproc::warp_perspective(
            &card,
            &mut warped,
            &m,
            size,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        let mut mask = Mat::default();
        imgproc::warp_perspective(
            &card_mask,
            &mut mask,
            &m,
            size,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        let frame = bg.try_clone()?;
        // Alpha-blend with the anti-aliased mask so the card edge is smooth.
        let mut mask_f = Mat::default();
        mask.convert_to(&mut mask_f, CV_32F, 1.0 / 255.0, 0.0)?;
        let mut mask3 = Mat::default();
        imgproc::cvt_color_def(&mask_f, &mut mask3, imgproc::COLOR_GRAY2BGR)?;
        let (mut wf, mut bf) = (Mat::default(), Mat::default());
        warped.convert_to(&mut wf, CV_32F, 1.0, 0.0)?;
        frame.convert_to(&mut bf, CV_32F, 1.0, 0.0)?;
        let mut inv = Mat::default();
        core::subtract(&Scalar::all(1.0), &mask3, &mut inv, &core::no_array(), -1)?;
        let (mut a, mut b, mut sum) = (Mat::default(), Mat::default(), Mat::default());
        core::multiply(&wf, &mask3, &mut a, 1.0, -1)?;
        core::multiply(&bf, &inv, &mut b, 1.0, -1)?;
        core::add(&a, &b, &mut sum, &core::no_array(), -1)?;
        // Lighting: global gain plus a gentle left-to-right gradient.
        let gain = 1.0 + spec.lighting * (phase * 0.9).sin();
        let mut lit = Mat::default();
        sum.convert_to(&mut lit, CV_32F, gain, 0.0)?;
        if spec.blurred_frames.contains(&t) {
            let k = 15;
            let kernel =
                Mat::new_rows_cols_with_default(1, k, CV_32F, Scalar::all(1.0 / k as f64))?;
            let mut blurred = Mat::default();
            imgproc::filter_2d(
                &lit,
                &mut blurred,
                -1,
                &kernel,
                Point::new(-1, -1),
                0.0,
                core::BORDER_REFLECT_101,
            )?;
            lit = blurred;
        }
        let mut noise = Mat::new_rows_cols_with_default(
            spec.height as i32,
            spec.width as i32,
            CV_32F,
            Scalar::all(0.0),
        )?;
        let mut noise3 = Mat::default();
        core::randn(
            &mut noise,
            &Scalar::all(0.0),
            &Scalar::all(spec.noise_sigma),
        )?;
        imgproc::cvt_color_def(&noise, &mut noise3, imgproc::COLOR_GRAY2BGR)?;
        let mut noisy = Mat::default();
        core::add(&lit, &noise3, &mut noisy, &core::no_array(), -1)?;
        let mut out = Mat::default();
        noisy.convert_to(&mut out, core::CV_8U, 1.0, 0.0)?;
        writer.write(&out)?;
    }
    writer.release()?;

    let defects = defects_px
        .iter()
        .map(|(kind, bb)| GtDefect {
            kind: *kind,
            bbox: [bb[0] / cw, bb[1] / ch, bb[2] / cw, bb[3] / ch],
        })
        .collect();
    let gt = GroundTruth {
        spec: spec.clone(),
        video: video.clone(),
        card_size: [cw as u32, ch as u32],
        defects,
        centering_lr: borders[0] / (borders[0] + borders[1]),
        centering_tb: borders[2] / (borders[2] + borders[3]),
        blurred_frames: spec.blurred_frames.clone(),
        card_quads: quads,
    };
    let json = serde_json::to_vec_pretty(&gt).map_err(|e| VisionError::Internal(e.to_string()))?;
    std::fs::write(out_dir.join("ground_truth.json"), json)
        .map_err(|e| VisionError::Internal(e.to_string()))?;
    Ok(gt)
}
