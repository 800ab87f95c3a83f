//! Finding the item's outline on a golden frame: four straight edges that
//! close a card-shaped quadrilateral.
//!
//! Why lines and not regions: a card on a textured table or among clutter
//! touches other edges, so the region its outline encloses merges with the
//! background and no connected component stands for the card; its four
//! sides, though, stay long straight edges whatever touches them. Candidate
//! quadrilaterals are built from pairs of nearly parallel lines (OpenCV's
//! probabilistic Hough transform on the Canny map, segments merged into
//! lines), and each is scored by how much of every side an edge backs whose
//! gradient points across that side (texture backs a random line only here
//! and there, and in every direction).
//!
//! All coordinates here are in detection pixels (the frame reduced by an
//! integer factor); [`Outline::to_frame`] maps a result back to
//! processed-frame pixels.

use opencv::{
    core::{self, Mat, Vec4i, Vector, CV_32F},
    imgproc,
    prelude::*,
};

use crate::error::VisionError;

/// A point in detection pixels.
pub(super) type DetectPoint = [f64; 2];

/// A quadrilateral in detection pixels, corners TL, TR, BR, BL.
pub(super) type DetectQuad = [DetectPoint; 4];

/// Thresholds of the outline search, in one place.
#[derive(Clone, Copy, Debug)]
pub(super) struct OutlineRules {
    /// Shortest Hough segment, as a share of the detection image's short side.
    pub min_segment: f64,
    /// Segments closer than this in angle (degrees) and offset (px) are one line.
    pub merge_angle_deg: f64,
    pub merge_offset_px: f64,
    /// Lines kept, longest first.
    pub max_lines: usize,
    /// Opposite sides may differ this much in angle (perspective), degrees.
    pub parallel_deg: f64,
    /// Neighbouring sides must meet at least this steeply, degrees.
    pub corner_deg: f64,
    /// Item area as a share of the frame.
    pub min_area: f64,
    pub max_area: f64,
    /// Short side over long side (a card is 0.71, a comic 0.65; perspective moves both).
    pub min_aspect: f64,
    pub max_aspect: f64,
    /// A sample backs a side when the gradient there is within acos(this) of the side's normal.
    pub min_cos: f64,
    /// Every side must be backed along at least this share of its length (a
    /// thumb or a glare spot can hide two thirds of one side).
    pub min_side_support: f64,
    /// Outlines whose mean support is this close to the best compete on area:
    /// the largest wins (a card's outline encloses its print frame).
    pub support_slack: f64,
}

impl Default for OutlineRules {
    fn default() -> Self {
        Self {
            min_segment: 0.08,
            merge_angle_deg: 3.0,
            merge_offset_px: 3.0,
            max_lines: 30,
            parallel_deg: 20.0,
            corner_deg: 60.0,
            min_area: 0.03,
            max_area: 0.9,
            min_aspect: 0.5,
            max_aspect: 0.92,
            min_cos: 0.9,
            min_side_support: 0.3,
            support_slack: 0.15,
        }
    }
}

/// A line `normal · p = rho` with the total length of the segments on it.
#[derive(Clone, Copy, Debug)]
struct Line {
    normal: [f64; 2],
    rho: f64,
    /// Angle of the normal, radians, in (-pi, pi].
    theta: f64,
    length: f64,
}

impl Line {
    fn through(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        let along = (y2 - y1).atan2(x2 - x1);
        let (mut nx, mut ny) = (-along.sin(), along.cos());
        let mut rho = nx * x1 + ny * y1;
        if rho < 0.0 {
            (nx, ny, rho) = (-nx, -ny, -rho);
        }
        Self {
            normal: [nx, ny],
            rho,
            theta: ny.atan2(nx),
            length: (x2 - x1).hypot(y2 - y1),
        }
    }

    fn meet(&self, other: &Line) -> Option<DetectPoint> {
        let [a, b] = self.normal;
        let [c, d] = other.normal;
        let det = a * d - b * c;
        if det.abs() < 1e-6 {
            return None;
        }
        Some([
            (self.rho * d - b * other.rho) / det,
            (a * other.rho - self.rho * c) / det,
        ])
    }
}

/// Smallest angle between two undirected lines, radians.
fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(std::f64::consts::PI);
    d.min(std::f64::consts::PI - d)
}

/// A candidate outline with its support.
#[derive(Clone, Copy, Debug)]
pub(super) struct Outline {
    pub quad: DetectQuad,
    pub area: f64,
    /// Mean over the four sides of the share of each side backed by an edge.
    pub support: f64,
}

impl Outline {
    /// Corners in processed-frame pixels (pixel centres scale about the half-pixel offset).
    pub fn to_frame(self, factor: usize) -> [[f64; 2]; 4] {
        self.quad.map(|p| {
            [
                (p[0] + 0.5) * factor as f64 - 0.5,
                (p[1] + 0.5) * factor as f64 - 0.5,
            ]
        })
    }
}

/// The inputs of the search at detection size: the Canny map (0/255) and
/// the smoothed image it came from.
pub(super) struct EdgeImage<'a> {
    pub width: usize,
    pub height: usize,
    pub edges: &'a [u8],
    pub smooth: &'a [f32],
}

/// The item's outline, or `None` when no card-shaped quadrilateral is
/// backed by edges on all four sides.
pub(super) fn find_outline(
    img: &EdgeImage,
    rules: &OutlineRules,
) -> Result<Option<Outline>, VisionError> {
    let (w, h) = (img.width, img.height);
    let edges = Mat::from_slice(img.edges)?
        .reshape(1, h as i32)?
        .try_clone()?;
    let smooth = Mat::from_slice(img.smooth)?
        .reshape(1, h as i32)?
        .try_clone()?;

    let lines = merged_lines(&edges, w.min(h) as f64, rules)?;
    // Samples count within a pixel of an edge; the gradient is smoothed so
    // that its direction is that of the step, not of pixel noise.
    let mut near = Mat::default();
    let kernel = imgproc::get_structuring_element(
        imgproc::MORPH_RECT,
        core::Size::new(3, 3),
        core::Point::new(-1, -1),
    )?;
    imgproc::dilate(
        &edges,
        &mut near,
        &kernel,
        core::Point::new(-1, -1),
        1,
        core::BORDER_CONSTANT,
        imgproc::morphology_default_border_value()?,
    )?;
    let grad = |dx: i32, dy: i32| -> Result<Mat, VisionError> {
        let mut d = Mat::default();
        imgproc::sobel(
            &smooth,
            &mut d,
            CV_32F,
            dx,
            dy,
            3,
            1.0,
            0.0,
            core::BORDER_REFLECT_101,
        )?;
        let mut s = Mat::default();
        imgproc::gaussian_blur_def(&d, &mut s, core::Size::new(0, 0), 1.0)?;
        Ok(s)
    };
    let (gx, gy) = (grad(1, 0)?, grad(0, 1)?);
    let field = Field {
        w,
        h,
        near: near.data_typed::<u8>()?,
        gx: gx.data_typed::<f32>()?,
        gy: gy.data_typed::<f32>()?,
    };

    let frame_area = (w * h) as f64;
    let parallel = rules.parallel_deg.to_radians();
    let corner = rules.corner_deg.to_radians();
    let pairs: Vec<(usize, usize)> = (0..lines.len())
        .flat_map(|i| (i + 1..lines.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| angle_between(lines[i].theta, lines[j].theta) < parallel)
        .collect();
    let mut found: Vec<Outline> = Vec::new();
    for (n, &(a, b)) in pairs.iter().enumerate() {
        for &(c, d) in &pairs[n + 1..] {
            if [c, d].contains(&a)
                || [c, d].contains(&b)
                || angle_between(lines[a].theta, lines[c].theta) < corner
            {
                continue;
            }
            let corners = [(a, c), (c, b), (b, d), (d, a)].map(|(p, q)| lines[p].meet(&lines[q]));
            let [Some(p0), Some(p1), Some(p2), Some(p3)] = corners else {
                continue;
            };
            let quad = clockwise_from_top_left([p0, p1, p2, p3]);
            let Some(outline) = judge(&quad, &field, frame_area, rules) else {
                continue;
            };
            found.push(outline);
        }
    }
    let Some(best) = found.iter().map(|o| o.support).max_by(f64::total_cmp) else {
        return Ok(None);
    };
    Ok(found
        .into_iter()
        .filter(|o| o.support >= best - rules.support_slack)
        .max_by(|a, b| a.area.total_cmp(&b.area)))
}

/// Hough segments merged into lines, longest first.
fn merged_lines(
    edges: &Mat,
    short_side: f64,
    rules: &OutlineRules,
) -> Result<Vec<Line>, VisionError> {
    let mut segments = Vector::<Vec4i>::new();
    imgproc::hough_lines_p(
        edges,
        &mut segments,
        1.0,
        std::f64::consts::PI / 180.0,
        30,
        rules.min_segment * short_side,
        6.0,
    )?;
    let mut lines: Vec<Line> = Vec::new();
    let merge_angle = rules.merge_angle_deg.to_radians();
    for s in segments.iter() {
        let seg = Line::through(s[0] as f64, s[1] as f64, s[2] as f64, s[3] as f64);
        let same = lines.iter_mut().find(|l| {
            let d = (seg.theta - l.theta + std::f64::consts::PI)
                .rem_euclid(2.0 * std::f64::consts::PI)
                - std::f64::consts::PI;
            d.abs() < merge_angle && (seg.rho - l.rho).abs() < rules.merge_offset_px
        });
        match same {
            Some(l) => l.length += seg.length,
            None => lines.push(seg),
        }
    }
    lines.sort_by(|a, b| b.length.total_cmp(&a.length));
    lines.truncate(rules.max_lines);
    Ok(lines)
}

/// Edge presence and gradient at detection size.
struct Field<'a> {
    w: usize,
    h: usize,
    near: &'a [u8],
    gx: &'a [f32],
    gy: &'a [f32],
}

/// Corners sorted by angle round their centre, starting from the one with
/// the smallest x + y.
fn clockwise_from_top_left(mut q: DetectQuad) -> DetectQuad {
    let cx = q.iter().map(|p| p[0]).sum::<f64>() / 4.0;
    let cy = q.iter().map(|p| p[1]).sum::<f64>() / 4.0;
    q.sort_by(|a, b| {
        (a[1] - cy)
            .atan2(a[0] - cx)
            .total_cmp(&(b[1] - cy).atan2(b[0] - cx))
    });
    let first = (0..4)
        .min_by(|&i, &j| (q[i][0] + q[i][1]).total_cmp(&(q[j][0] + q[j][1])))
        .unwrap_or(0);
    q.rotate_left(first);
    q
}

/// Shoelace area; positive for any convex quad in either orientation.
fn area(q: &DetectQuad) -> f64 {
    (0..4)
        .map(|k| q[k][0] * q[(k + 1) % 4][1] - q[(k + 1) % 4][0] * q[k][1])
        .sum::<f64>()
        .abs()
        / 2.0
}

fn is_convex(q: &DetectQuad) -> bool {
    let cross = |k: usize| {
        let (a, b, c) = (q[k], q[(k + 1) % 4], q[(k + 2) % 4]);
        (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
    };
    let signs: Vec<f64> = (0..4).map(cross).collect();
    signs.iter().all(|&s| s > 0.0) || signs.iter().all(|&s| s < 0.0)
}

/// The quad as an outline if it is card-shaped, inside the frame and backed
/// on every side.
fn judge(q: &DetectQuad, f: &Field, frame_area: f64, rules: &OutlineRules) -> Option<Outline> {
    if !is_convex(q) {
        return None;
    }
    let a = area(q);
    if a < rules.min_area * frame_area || a > rules.max_area * frame_area {
        return None;
    }
    // An item cut by the frame cannot be graded: its outline must be inside.
    let inside = |p: &DetectPoint| {
        p[0] >= 2.0 && p[1] >= 2.0 && p[0] <= f.w as f64 - 3.0 && p[1] <= f.h as f64 - 3.0
    };
    if !q.iter().all(inside) {
        return None;
    }
    let side = |k: usize| (q[(k + 1) % 4][0] - q[k][0]).hypot(q[(k + 1) % 4][1] - q[k][1]);
    let (across, down) = (side(0) + side(2), side(1) + side(3));
    let aspect = across.min(down) / across.max(down);
    if !(rules.min_aspect..=rules.max_aspect).contains(&aspect) {
        return None;
    }
    let mut total = 0.0;
    for k in 0..4 {
        let s = side_support(q[k], q[(k + 1) % 4], f, rules.min_cos);
        if s < rules.min_side_support {
            return None;
        }
        total += s;
    }
    Some(Outline {
        quad: *q,
        area: a,
        support: total / 4.0,
    })
}

/// Share of the samples along `a`–`b` (one per pixel) that lie within a
/// pixel of an edge whose gradient points across the side.
fn side_support(a: DetectPoint, b: DetectPoint, f: &Field, min_cos: f64) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = dx.hypot(dy).max(1e-9);
    let (nx, ny) = (-dy / len, dx / len);
    let n = (dx.abs().max(dy.abs()) as usize) + 1;
    let mut hits = 0;
    for i in 0..n {
        let t = i as f64 / (n - 1).max(1) as f64;
        let (x, y) = ((a[0] + dx * t).round(), (a[1] + dy * t).round());
        if x < 0.0 || y < 0.0 || x >= f.w as f64 || y >= f.h as f64 {
            continue;
        }
        let idx = y as usize * f.w + x as usize;
        if f.near[idx] == 0 {
            continue;
        }
        let (gx, gy) = (f.gx[idx] as f64, f.gy[idx] as f64);
        let mag = gx.hypot(gy);
        if mag > 1e-9 && (gx * nx + gy * ny).abs() / mag > min_cos {
            hits += 1;
        }
    }
    hits as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_come_clockwise_from_the_top_left() {
        let q = clockwise_from_top_left([[10.0, 90.0], [80.0, 12.0], [12.0, 10.0], [78.0, 88.0]]);
        assert_eq!(q, [[12.0, 10.0], [80.0, 12.0], [78.0, 88.0], [10.0, 90.0]]);
    }

    #[test]
    fn lines_meet_where_they_cross() {
        let a = Line::through(0.0, 5.0, 10.0, 5.0);
        let b = Line::through(3.0, 0.0, 3.0, 10.0);
        let p = a.meet(&b).unwrap();
        assert!(
            (p[0] - 3.0).abs() < 1e-9 && (p[1] - 5.0).abs() < 1e-9,
            "{p:?}"
        );
        assert!(a.meet(&Line::through(0.0, 7.0, 10.0, 7.0)).is_none());
    }

    /// A card among round clutter: the outline is its border, not the print
    /// frame inside it (also card-shaped and better backed), nor the clutter.
    #[test]
    fn a_card_is_found_by_its_border_not_its_print_frame() {
        let (w, h) = (320usize, 180usize);
        let mut img = Mat::new_rows_cols_with_default(
            h as i32,
            w as i32,
            core::CV_8UC1,
            core::Scalar::all(90.0),
        )
        .unwrap();
        for (i, x) in (10..w as i32).step_by(60).enumerate() {
            imgproc::circle(
                &mut img,
                core::Point::new(x, 20 + 50 * (i as i32 % 3)),
                14,
                core::Scalar::all(170.0),
                -1,
                imgproc::LINE_8,
                0,
            )
            .unwrap();
        }
        let card = [
            core::Point::new(120, 30),
            core::Point::new(210, 34),
            core::Point::new(205, 160),
            core::Point::new(116, 156),
        ];
        let print = [
            core::Point::new(128, 39),
            core::Point::new(202, 42),
            core::Point::new(198, 150),
            core::Point::new(124, 147),
        ];
        imgproc::fill_poly_def(
            &mut img,
            &Vector::<Vector<core::Point>>::from(vec![Vector::from(card.to_vec())]),
            core::Scalar::all(235.0),
        )
        .unwrap();
        imgproc::fill_poly_def(
            &mut img,
            &Vector::<Vector<core::Point>>::from(vec![Vector::from(print.to_vec())]),
            core::Scalar::all(60.0),
        )
        .unwrap();
        let mut smooth = Mat::default();
        imgproc::gaussian_blur_def(&img, &mut smooth, core::Size::new(0, 0), 1.0).unwrap();
        let mut edges = Mat::default();
        imgproc::canny(&smooth, &mut edges, 15.0, 60.0, 3, false).unwrap();
        let smooth_f: Vec<f32> = smooth
            .data_typed::<u8>()
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect();
        let input = EdgeImage {
            width: w,
            height: h,
            edges: edges.data_typed::<u8>().unwrap(),
            smooth: &smooth_f,
        };
        let found = find_outline(&input, &OutlineRules::default())
            .unwrap()
            .expect("outline");
        for (got, want) in found.quad.iter().zip(card) {
            assert!(
                (got[0] - want.x as f64).abs() < 2.5 && (got[1] - want.y as f64).abs() < 2.5,
                "{:?} vs {card:?}",
                found.quad
            );
        }
    }
}
