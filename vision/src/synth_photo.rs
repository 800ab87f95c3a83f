//! Synthetic photos for `item_crop`, with ground truth: 1–6 cards or comics
//! on a varied background (wood, fabric, plain, paper), rotated at any
//! angle, with a little perspective, rounded corners, drop shadows, uneven
//! light, sensor noise and clutter (coins, pens, scribbled text); some
//! photos put items edge to edge or let one overlap another a little.
//!
//! Like [`crate::synth`], every item is drawn once in its own coordinates and
//! warped into the photo with a perspective transform, so the true outline
//! (the ground-truth quadrilateral) is exact: the warp maps the item's pixel
//! *edges* onto the quad, and the blending mask is warped the same way.

use std::path::{Path, PathBuf};

use opencv::{
    core::{self, Mat, Point, Point2f, Rect, Scalar, Size, Vector, CV_32F, CV_8UC1, CV_8UC3},
    imgproc,
    prelude::*,
};
use serde::{Deserialize, Serialize};

use crate::error::VisionError;
use crate::frames::BgrImage;
use crate::item_crop::geometry::{dist, grow_quad, point_in_convex, quad_bbox};
use crate::pipeline::encode_jpeg;
use crate::synth::Rng;

/// What to render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhotoSpec {
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    /// Number of items; `None` = 1–6 picked by the seed (`Some(0)`: an empty table).
    pub items: Option<u32>,
    /// Keystone: the far side of an item shrinks by up to this fraction.
    pub max_perspective: f64,
    pub shadows: bool,
    /// Coins, pens and scribbles on the background.
    pub clutter: bool,
    /// Allow items placed edge to edge or overlapping a little (some seeds only).
    pub allow_contact: bool,
    pub noise_sigma: f64,
    pub jpeg_quality: i32,
}

impl Default for PhotoSpec {
    fn default() -> Self {
        Self {
            width: 800,
            height: 600,
            seed: 1,
            items: None,
            max_perspective: 0.08,
            shadows: true,
            clutter: true,
            allow_contact: true,
            noise_sigma: 2.5,
            jpeg_quality: 92,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Card,
    Comic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackgroundKind {
    Wood,
    Fabric,
    Plain,
    Paper,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtItem {
    pub kind: ItemKind,
    /// Outline corners TL, TR, BR, BL of the item's own frame, in photo
    /// pixels (pixel centres at integers).
    pub quad: [[f64; 2]; 4],
    /// Axis-aligned box of the quad `[x0, y0, x1, y1]`.
    pub bbox: [f64; 4],
    /// Mean lengths of the item's width and height sides in the photo.
    pub size: [f64; 2],
    /// Share of the item not hidden under items drawn after it.
    pub visible_fraction: f64,
    /// Placed edge to edge with, or overlapping, another item.
    pub in_contact: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoTruth {
    pub spec: PhotoSpec,
    pub background: BackgroundKind,
    pub items: Vec<GtItem>,
    /// Where [`generate`] wrote the photo (empty for [`render`]).
    pub photo: PathBuf,
}

fn internal(e: impl std::fmt::Display) -> VisionError {
    VisionError::Internal(e.to_string())
}

/// BGR colour with the given luminance (roughly), hue from the RNG.
fn colour(rng: &mut Rng, luma: f64) -> [f64; 3] {
    let tint = [
        rng.range(-40.0, 40.0),
        rng.range(-40.0, 40.0),
        rng.range(-40.0, 40.0),
    ];
    let mean = (tint[0] * 0.114 + tint[1] * 0.587 + tint[2] * 0.299).clamp(-40.0, 40.0);
    tint.map(|t| (luma + t - mean).clamp(0.0, 255.0))
}

fn luma(c: [f64; 3]) -> f64 {
    0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
}

fn scalar(c: [f64; 3]) -> Scalar {
    Scalar::new(c[0], c[1], c[2], 0.0)
}

/// Background as interleaved BGR f32, plus its mean luminance.
fn background(
    kind: BackgroundKind,
    w: usize,
    h: usize,
    rng: &mut Rng,
) -> Result<(Vec<f32>, f64), VisionError> {
    let base_luma = match kind {
        BackgroundKind::Wood => rng.range(70.0, 130.0),
        BackgroundKind::Fabric => rng.range(30.0, 110.0),
        BackgroundKind::Plain => rng.range(20.0, 230.0),
        BackgroundKind::Paper => rng.range(190.0, 235.0),
    };
    let base = match kind {
        BackgroundKind::Wood => {
            [base_luma * 0.55, base_luma * 0.9, base_luma * 1.3].map(|v| v.min(255.0))
        }
        _ => colour(rng, base_luma),
    };
    let mut out = vec![0f32; w * h * 3];
    let (freq, phase, warp) = (
        rng.range(0.04, 0.12),
        rng.range(0.0, 6.0),
        rng.range(5.0, 25.0),
    );
    let (gx, gy) = (rng.range(-0.15, 0.15), rng.range(-0.15, 0.15));
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 / w as f64 - 0.5, y as f64 / h as f64 - 0.5);
            let pattern = match kind {
                // Grain: stripes along x, bent by a slow wave.
                BackgroundKind::Wood => {
                    0.12 * ((y as f64 + warp * (x as f64 * 0.01 + phase).sin()) * freq).sin()
                        + 0.05 * (y as f64 * freq * 3.1).sin()
                }
                BackgroundKind::Fabric => 0.0,
                BackgroundKind::Plain => gx * fx + gy * fy,
                BackgroundKind::Paper => 0.3 * (gx * fx + gy * fy),
            };
            for c in 0..3 {
                out[(y * w + x) * 3 + c] = (base[c] * (1.0 + pattern)) as f32;
            }
        }
    }
    // Fine texture (weave, paper fibre, wood pores): per-pixel noise, lightly blurred.
    let texture = match kind {
        BackgroundKind::Fabric => 14.0,
        BackgroundKind::Wood => 6.0,
        BackgroundKind::Plain => 2.0,
        BackgroundKind::Paper => 4.0,
    };
    let noise: Vec<f32> = (0..w * h).map(|_| (rng.gauss() * texture) as f32).collect();
    let noise = blur_plane(&noise, h, 0.8)?;
    for (i, n) in noise.iter().enumerate() {
        for c in 0..3 {
            out[i * 3 + c] += n;
        }
    }
    Ok((out, luma(base)))
}

fn blur_plane(v: &[f32], h: usize, sigma: f64) -> Result<Vec<f32>, VisionError> {
    let m = Mat::from_slice(v)?.reshape(1, h as i32)?.try_clone()?;
    let mut out = Mat::default();
    imgproc::gaussian_blur_def(&m, &mut out, Size::new(0, 0), sigma)?;
    Ok(out.data_typed::<f32>()?.to_vec())
}

/// An item drawn in its own coordinates: BGR image and 0/255 mask (rounded corners).
fn render_item(
    kind: ItemKind,
    iw: i32,
    ih: i32,
    border: [f64; 3],
    rng: &mut Rng,
) -> Result<(Mat, Mat), VisionError> {
    let mut img = Mat::new_rows_cols_with_default(ih, iw, CV_8UC3, scalar(border))?;
    let bw = match kind {
        ItemKind::Card => (iw as f64 * rng.range(0.045, 0.07)).round() as i32,
        ItemKind::Comic => (iw as f64 * rng.range(0.035, 0.05)).round() as i32,
    }
    .max(4);
    let print = Rect::new(bw, bw, iw - 2 * bw, ih - 2 * bw);
    let bl = luma(border);
    // The print area contrasts with the border (else there is no border to speak of).
    let print_luma = if bl > 128.0 {
        rng.range(40.0, bl - 50.0)
    } else {
        rng.range(bl + 50.0, 230.0)
    };
    imgproc::rectangle(
        &mut img,
        print,
        scalar(colour(rng, print_luma)),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    let px = |rng: &mut Rng| print.x + (rng.f() * print.width as f64) as i32;
    let py = |rng: &mut Rng, lo: f64, hi: f64| {
        print.y + (rng.range(lo, hi) * print.height as f64) as i32
    };
    if kind == ItemKind::Comic {
        // Title band across the top of the cover.
        let band = Rect::new(
            print.x,
            print.y,
            print.width,
            (print.height as f64 * rng.range(0.12, 0.2)) as i32,
        );
        let band_luma = rng.range(30.0, 220.0);
        imgproc::rectangle(
            &mut img,
            band,
            scalar(colour(rng, band_luma)),
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    // Art: a few shapes, some of them reaching the print frame.
    for _ in 0..3 + rng.below(4) {
        let shape_luma = rng.range(20.0, 240.0);
        let c = scalar(colour(rng, shape_luma));
        let centre = Point::new(px(rng), py(rng, 0.15, 0.7));
        if rng.f() < 0.5 {
            let r = (print.width as f64 * rng.range(0.08, 0.3)) as i32;
            imgproc::circle(&mut img, centre, r, c, -1, imgproc::LINE_AA, 0)?;
        } else {
            let size = Size::new(
                (print.width as f64 * rng.range(0.1, 0.4)) as i32,
                (print.height as f64 * rng.range(0.05, 0.2)) as i32,
            );
            imgproc::ellipse(
                &mut img,
                centre,
                size,
                rng.range(0.0, 180.0),
                0.0,
                360.0,
                c,
                -1,
                imgproc::LINE_AA,
                0,
            )?;
        }
    }
    // Text lines in the lower part (cards) — thin dark or light bars.
    let text = scalar(if print_luma > 128.0 {
        [30.0; 3]
    } else {
        [230.0; 3]
    });
    for k in 0..rng.below(4) as i32 {
        let y = print.y + (print.height as f64 * (0.75 + 0.05 * k as f64)) as i32;
        let x1 = print.x + (print.width as f64 * rng.range(0.5, 0.9)) as i32;
        imgproc::line(
            &mut img,
            Point::new(print.x + 6, y),
            Point::new(x1, y),
            text,
            1,
            imgproc::LINE_8,
            0,
        )?;
    }
    let mut smooth = Mat::default();
    imgproc::gaussian_blur_def(&img, &mut smooth, Size::new(3, 3), 0.7)?;
    let mut img = smooth;
    // The cut edge of card stock reads as a thin darker line in photos.
    if rng.f() < 0.6 {
        let edge = scalar(border.map(|v| v * 0.6));
        imgproc::rectangle(
            &mut img,
            Rect::new(0, 0, iw, ih),
            edge,
            1,
            imgproc::LINE_8,
            0,
        )?;
    }
    let mut mask = Mat::new_rows_cols_with_default(ih, iw, CV_8UC1, Scalar::all(255.0))?;
    if kind == ItemKind::Card {
        let r = (iw as f64 * 0.035).round() as i32;
        for (cx, cy) in [
            (r, r),
            (iw - 1 - r, r),
            (iw - 1 - r, ih - 1 - r),
            (r, ih - 1 - r),
        ] {
            let corner = Rect::new(
                if cx < iw / 2 { 0 } else { cx },
                if cy < ih / 2 { 0 } else { cy },
                r + 1,
                r + 1,
            );
            imgproc::rectangle(&mut mask, corner, Scalar::all(0.0), -1, imgproc::LINE_8, 0)?;
            imgproc::circle(
                &mut mask,
                Point::new(cx, cy),
                r,
                Scalar::all(255.0),
                -1,
                imgproc::LINE_AA,
                0,
            )?;
        }
    }
    Ok((img, mask))
}

/// Corners of an item of size `iw × ih` centred at `c`, rotated by `angle`,
/// with the side `keystone_side` shrunk by `persp`.
fn item_quad(
    c: [f64; 2],
    iw: f64,
    ih: f64,
    angle: f64,
    persp: f64,
    keystone_side: usize,
) -> [[f64; 2]; 4] {
    let mut local = [
        [-iw / 2.0, -ih / 2.0],
        [iw / 2.0, -ih / 2.0],
        [iw / 2.0, ih / 2.0],
        [-iw / 2.0, ih / 2.0],
    ];
    // Shrink the two corners of one side towards its midpoint.
    let (a, b) = (keystone_side, (keystone_side + 1) % 4);
    let mid = [
        (local[a][0] + local[b][0]) / 2.0,
        (local[a][1] + local[b][1]) / 2.0,
    ];
    for k in [a, b] {
        local[k] = [
            mid[0] + (local[k][0] - mid[0]) * (1.0 - persp),
            mid[1] + (local[k][1] - mid[1]) * (1.0 - persp),
        ];
    }
    let (s, co) = angle.sin_cos();
    local.map(|p| [c[0] + p[0] * co - p[1] * s, c[1] + p[0] * s + p[1] * co])
}

/// Pixels of the photo whose centre lies inside `q` grown by `margin` about its centre.
fn raster(q: &[[f64; 2]; 4], margin: f64, w: usize, h: usize) -> Vec<usize> {
    let grown = grow_quad(q, margin);
    let [bx0, by0, bx1, by1] = quad_bbox(&grown);
    let (x0, x1) = (
        bx0.floor().max(0.0) as usize,
        (bx1.ceil() as usize).min(w - 1),
    );
    let (y0, y1) = (
        by0.floor().max(0.0) as usize,
        (by1.ceil() as usize).min(h - 1),
    );
    let mut out = Vec::new();
    for y in y0..=y1 {
        for x in x0..=x1 {
            if point_in_convex(&grown, [x as f64, y as f64]) {
                out.push(y * w + x);
            }
        }
    }
    out
}

struct Placed {
    kind: ItemKind,
    quad: [[f64; 2]; 4],
    size: [f64; 2],
    angle: f64,
    in_contact: bool,
}

/// Lay out the items: random positions that keep clear of each other and of
/// the photo's edge, except that with `allow_contact` some items are put
/// edge to edge with, or overlapping, the previous one.
fn place(spec: &PhotoSpec, n: usize, rng: &mut Rng) -> Vec<Placed> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let (fw, fh) = (w as f64, h as f64);
    let contact_photo = spec.allow_contact && n >= 2 && rng.f() < 0.35;
    let size_frac = match n {
        1 => (0.4, 0.75),
        2 => (0.35, 0.6),
        3 | 4 => (0.3, 0.42),
        _ => (0.25, 0.33),
    };
    let mut taken = vec![false; w * h];
    let mut placed: Vec<Placed> = Vec::new();
    'items: for i in 0..n {
        let kind = if rng.f() < 0.7 {
            ItemKind::Card
        } else {
            ItemKind::Comic
        };
        let aspect = if kind == ItemKind::Card {
            63.0 / 88.0
        } else {
            rng.range(0.64, 0.68)
        };
        for attempt in 0..400 {
            let ih =
                fh * rng.range(size_frac.0, size_frac.1) * if attempt > 200 { 0.8 } else { 1.0 };
            let iw = ih * aspect;
            let persp = rng.range(0.0, spec.max_perspective);
            let keystone = rng.below(4) as usize;
            let contact = contact_photo && i > 0 && rng.f() < 0.7;
            let (centre, angle) = if contact {
                // Next to the previous item along its own x axis: flush (0–1 px
                // gap) at the same angle, or overlapping by up to 12 % of the width
                // at a slightly different angle.
                let prev = &placed[i - 1];
                let overlap = rng.f() < 0.4;
                let gap = if overlap {
                    -rng.range(0.04, 0.12) * iw
                } else {
                    rng.range(0.0, 1.0)
                };
                let side = if rng.f() < 0.5 { 1.0 } else { -1.0 };
                let reach = side * (prev.size[0] / 2.0 + iw / 2.0 + gap);
                let pc = [
                    prev.quad.iter().map(|p| p[0]).sum::<f64>() / 4.0,
                    prev.quad.iter().map(|p| p[1]).sum::<f64>() / 4.0,
                ];
                let angle = prev.angle + if overlap { rng.range(-0.2, 0.2) } else { 0.0 };
                (
                    [
                        pc[0] + reach * prev.angle.cos(),
                        pc[1] + reach * prev.angle.sin(),
                    ],
                    angle,
                )
            } else {
                (
                    [rng.range(0.0, fw), rng.range(0.0, fh)],
                    rng.range(-std::f64::consts::PI, std::f64::consts::PI),
                )
            };
            // Contact items stay upright-rectangular so that their seam is a
            // straight shared edge.
            let quad = item_quad(
                centre,
                iw,
                ih,
                angle,
                if contact { 0.0 } else { persp },
                keystone,
            );
            let margin = 10.0;
            if quad.iter().any(|p| {
                p[0] < margin
                    || p[1] < margin
                    || p[0] > fw - 1.0 - margin
                    || p[1] > fh - 1.0 - margin
            }) {
                continue;
            }
            let pixels = raster(&quad, if contact { 0.0 } else { 8.0 }, w, h);
            let clash = pixels.iter().filter(|&&p| taken[p]).count();
            let allowed = if contact { pixels.len() / 6 } else { 0 };
            if clash > allowed {
                continue;
            }
            for &p in &raster(&quad, 8.0, w, h) {
                taken[p] = true;
            }
            let size = [
                (dist(quad[0], quad[1]) + dist(quad[3], quad[2])) / 2.0,
                (dist(quad[0], quad[3]) + dist(quad[1], quad[2])) / 2.0,
            ];
            if contact {
                placed[i - 1].in_contact = true;
            }
            placed.push(Placed {
                kind,
                quad,
                size,
                angle,
                in_contact: contact,
            });
            continue 'items;
        }
    }
    placed
}

/// Render a photo in memory: JPEG bytes and ground truth.
pub fn render(spec: &PhotoSpec) -> Result<(Vec<u8>, PhotoTruth), VisionError> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let mut rng = Rng(spec.seed ^ 0x1738_c0de);
    let bg_kind = [
        BackgroundKind::Wood,
        BackgroundKind::Fabric,
        BackgroundKind::Plain,
        BackgroundKind::Paper,
    ][rng.below(4) as usize];
    let (mut photo, bg_luma) = background(bg_kind, w, h, &mut rng)?;
    let n = match spec.items {
        None => 1 + rng.below(6) as usize,
        Some(n) => n as usize,
    };
    let placed = place(spec, n, &mut rng);

    // Clutter first: items lie on top of it.
    if spec.clutter {
        let mut layer =
            Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0))?;
        let mut alpha =
            Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC1, Scalar::all(0.0))?;
        for _ in 0..rng.below(6) {
            let clutter_luma = rng.range(40.0, 220.0);
            let c = scalar(colour(&mut rng, clutter_luma));
            let p = Point::new(
                rng.range(0.0, w as f64) as i32,
                rng.range(0.0, h as f64) as i32,
            );
            match rng.below(3) {
                0 => {
                    let r = rng.range(8.0, 22.0) as i32;
                    imgproc::circle(&mut layer, p, r, c, -1, imgproc::LINE_AA, 0)?;
                    imgproc::circle(
                        &mut alpha,
                        p,
                        r,
                        Scalar::all(255.0),
                        -1,
                        imgproc::LINE_AA,
                        0,
                    )?;
                }
                1 => {
                    let (len, a) = (rng.range(60.0, 200.0), rng.range(0.0, std::f64::consts::PI));
                    let q = Point::new(p.x + (len * a.cos()) as i32, p.y + (len * a.sin()) as i32);
                    let t = rng.range(3.0, 8.0) as i32;
                    imgproc::line(&mut layer, p, q, c, t, imgproc::LINE_AA, 0)?;
                    imgproc::line(&mut alpha, p, q, Scalar::all(255.0), t, imgproc::LINE_AA, 0)?;
                }
                _ => {
                    let words = ["receipt", "TODO", "$4.99", "near mint", "#1"];
                    let word = words[rng.below(words.len() as u64) as usize];
                    let scale = rng.range(0.5, 1.0);
                    imgproc::put_text(
                        &mut layer,
                        word,
                        p,
                        imgproc::FONT_HERSHEY_SIMPLEX,
                        scale,
                        c,
                        1,
                        imgproc::LINE_AA,
                        false,
                    )?;
                    imgproc::put_text(
                        &mut alpha,
                        word,
                        p,
                        imgproc::FONT_HERSHEY_SIMPLEX,
                        scale,
                        Scalar::all(255.0),
                        1,
                        imgproc::LINE_AA,
                        false,
                    )?;
                }
            }
        }
        composite(&mut photo, &layer, &alpha)?;
    }

    if spec.shadows && !placed.is_empty() {
        // One light for the photo: every shadow falls the same way.
        let (dx, dy) = (rng.range(-8.0, 8.0), rng.range(2.0, 9.0));
        let mut shadow =
            Mat::new_rows_cols_with_default(h as i32, w as i32, CV_32F, Scalar::all(0.0))?;
        for item in &placed {
            let pts: Vector<Point> = item
                .quad
                .iter()
                .map(|p| Point::new((p[0] + dx).round() as i32, (p[1] + dy).round() as i32))
                .collect();
            imgproc::fill_convex_poly(&mut shadow, &pts, Scalar::all(1.0), imgproc::LINE_AA, 0)?;
        }
        let sigma = rng.range(3.0, 7.0);
        let strength = rng.range(0.2, 0.45) as f32;
        let mut soft = Mat::default();
        imgproc::gaussian_blur_def(&shadow, &mut soft, Size::new(0, 0), sigma)?;
        for (i, s) in soft.data_typed::<f32>()?.iter().enumerate() {
            for c in 0..3 {
                photo[i * 3 + c] *= 1.0 - strength * s.min(1.0);
            }
        }
    }

    // Items, in order (later ones on top); `owner` tracks who is visible where.
    let mut owner = vec![usize::MAX; w * h];
    let mut borders: Vec<[f64; 3]> = Vec::new();
    for (index, item) in placed.iter().enumerate() {
        // The border contrasts with the background and with the previous
        // item's border (so that a seam between touching items shows).
        let mut border = colour(&mut rng, 128.0);
        for _ in 0..100 {
            let l = rng.range(15.0, 245.0);
            let far_from_prev = borders.last().is_none_or(|b| (luma(*b) - l).abs() > 35.0);
            if (l - bg_luma).abs() > 45.0 && far_from_prev {
                border = colour(&mut rng, l);
                break;
            }
        }
        borders.push(border);
        // Canonical resolution: about the item's size in the photo.
        let cw = item.size[0].ceil().max(8.0) as i32;
        let ch = item.size[1].ceil().max(8.0) as i32;
        let (img, mask) = render_item(item.kind, cw, ch, border, &mut rng)?;
        let src: Vector<Point2f> = [
            (-0.5, -0.5),
            (cw as f64 - 0.5, -0.5),
            (cw as f64 - 0.5, ch as f64 - 0.5),
            (-0.5, ch as f64 - 0.5),
        ]
        .iter()
        .map(|&(x, y)| Point2f::new(x as f32, y as f32))
        .collect();
        let dst: Vector<Point2f> = item
            .quad
            .iter()
            .map(|p| Point2f::new(p[0] as f32, p[1] as f32))
            .collect();
        let m = imgproc::get_perspective_transform(&src, &dst, core::DECOMP_LU)?;
        let size = Size::new(w as i32, h as i32);
        let (mut warped, mut wmask) = (Mat::default(), Mat::default());
        imgproc::warp_perspective(
            &img,
            &mut warped,
            &m,
            size,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        imgproc::warp_perspective(
            &mask,
            &mut wmask,
            &m,
            size,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        composite(&mut photo, &warped, &wmask)?;
        for p in raster(&item.quad, 0.0, w, h) {
            owner[p] = index;
        }
    }

    // Uneven light, sensor noise, 8 bits.
    let (lx, ly, lv) = (
        rng.range(-0.2, 0.2),
        rng.range(-0.2, 0.2),
        rng.range(0.0, 0.25),
    );
    let mut bytes = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 / w as f64 - 0.5, y as f64 / h as f64 - 0.5);
            let gain = 1.0 + lx * fx + ly * fy - lv * (fx * fx + fy * fy);
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                bytes[i] = (photo[i] as f64 * gain + rng.gauss() * spec.noise_sigma)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
    let jpeg = encode_jpeg(
        &BgrImage {
            width: w,
            height: h,
            data: bytes,
        }
        .to_mat()?,
        spec.jpeg_quality,
    )?;

    let items = placed
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let own = raster(&item.quad, 0.0, w, h);
            let visible = own.iter().filter(|&&p| owner[p] == index).count();
            GtItem {
                kind: item.kind,
                quad: item.quad,
                bbox: quad_bbox(&item.quad),
                size: item.size,
                visible_fraction: visible as f64 / own.len().max(1) as f64,
                in_contact: item.in_contact,
            }
        })
        .collect();
    Ok((
        jpeg,
        PhotoTruth {
            spec: spec.clone(),
            background: bg_kind,
            items,
            photo: PathBuf::new(),
        },
    ))
}

/// Intersection over union of two axis-aligned boxes `[x0, y0, x1, y1]`.
pub fn box_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Score found items against the truth: greedy one-to-one matching by box
/// IoU (pairs under 0.3 never match), as (truth index, found index, IoU).
pub fn match_items(
    truth: &[GtItem],
    found: &[crate::item_crop::CroppedItem],
) -> Vec<(usize, usize, f64)> {
    let mut pairs: Vec<(usize, usize, f64)> = truth
        .iter()
        .enumerate()
        .flat_map(|(t, g)| {
            found
                .iter()
                .enumerate()
                .map(move |(f, d)| (t, f, box_iou(g.bbox, d.bbox)))
        })
        .filter(|p| p.2 > 0.3)
        .collect();
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2));
    let (mut used_t, mut used_f) = (vec![false; truth.len()], vec![false; found.len()]);
    let mut out = Vec::new();
    for (t, f, v) in pairs {
        if !used_t[t] && !used_f[f] {
            used_t[t] = true;
            used_f[f] = true;
            out.push((t, f, v));
        }
    }
    out
}

/// Alpha-blend an 8-bit BGR layer into the f32 photo through an 8-bit mask.
fn composite(photo: &mut [f32], layer: &Mat, alpha: &Mat) -> Result<(), VisionError> {
    let (l, a) = (layer.data_bytes()?, alpha.data_bytes()?);
    debug_assert_eq!(a.len() * 3, photo.len());
    for (i, &m) in a.iter().enumerate() {
        if m == 0 {
            continue;
        }
        let k = m as f32 / 255.0;
        for c in 0..3 {
            let p = &mut photo[i * 3 + c];
            *p = *p * (1.0 - k) + l[i * 3 + c] as f32 * k;
        }
    }
    Ok(())
}

/// Render into `out_dir/photo.jpg` and `out_dir/ground_truth.json`.
pub fn generate(spec: &PhotoSpec, out_dir: &Path) -> Result<PhotoTruth, VisionError> {
    std::fs::create_dir_all(out_dir).map_err(|e| internal(format!("create {out_dir:?}: {e}")))?;
    let (jpeg, mut truth) = render(spec)?;
    truth.photo = out_dir.join("photo.jpg");
    std::fs::write(&truth.photo, jpeg).map_err(internal)?;
    let json = serde_json::to_vec_pretty(&truth).map_err(internal)?;
    std::fs::write(out_dir.join("ground_truth.json"), json).map_err(internal)?;
    Ok(truth)
}
