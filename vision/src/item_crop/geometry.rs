//! Plane geometry for item_crop: hulls, minimum-area rectangles, lines,
//! convex quads. Points are `[x, y]` in pixels (centres at integers).

/// Share of `inner`'s area that lies inside `outer` (both convex).
pub(crate) fn share_inside(inner: &[[f64; 2]; 4], outer: &[[f64; 2]; 4]) -> f64 {
    polygon_area(&clip_convex(inner, outer)) / polygon_area(inner).max(1e-9)
}

/// The part of convex polygon `subject` inside convex polygon `clip`
/// (Sutherland–Hodgman: cut by each of `clip`'s sides in turn).
fn clip_convex(subject: &[[f64; 2]], clip: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let n = clip.len();
    // Inside is on the hand `clip` winds towards.
    let hand = (0..n)
        .map(|i| cross(clip[i], clip[(i + 1) % n], quad_centre(clip)))
        .sum::<f64>()
        .signum();
    let mut out = subject.to_vec();
    for i in 0..n {
        let (a, b) = (clip[i], clip[(i + 1) % n]);
        let side = |p: [f64; 2]| hand * cross(a, b, p);
        let input = std::mem::take(&mut out);
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
        if out.is_empty() {
            break;
        }
    }
    out
}

/// `quad` grown by `margin` along each corner's direction from the centre.
pub(crate) fn grow_quad(quad: &[[f64; 2]; 4], margin: f64) -> [[f64; 2]; 4] {
    let c = quad_centre(quad);
    quad.map(|p| {
        let d = [p[0] - c[0], p[1] - c[1]];
        let len = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-9);
        [p[0] + d[0] / len * margin, p[1] + d[1] / len * margin]
    })
}

/// Distance from `p` to a convex quad (0 inside).
pub(crate) fn quad_distance(q: &[[f64; 2]; 4], p: [f64; 2]) -> f64 {
    if point_in_convex(q, p) {
        return 0.0;
    }
    (0..4)
        .map(|k| {
            let (a, b) = (q[k], q[(k + 1) % 4]);
            let ab = [b[0] - a[0], b[1] - a[1]];
            let t = (dot([p[0] - a[0], p[1] - a[1]], ab) / dot(ab, ab).max(1e-12)).clamp(0.0, 1.0);
            dist(p, [a[0] + t * ab[0], a[1] + t * ab[1]])
        })
        .fold(f64::MAX, f64::min)
}

/// Minimum-area bounding rectangle: centre, unit axes and half extents.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MinRect {
    pub(crate) centre: [f64; 2],
    pub(crate) axes: [[f64; 2]; 2],
    pub(crate) half: [f64; 2],
}

impl MinRect {
    pub(crate) fn area(&self) -> f64 {
        4.0 * self.half[0] * self.half[1]
    }
    /// Short side over long side.
    pub(crate) fn aspect(&self) -> f64 {
        self.half[0].min(self.half[1]) / self.half[0].max(self.half[1])
    }
    /// Coordinates of `p` along the two axes, relative to the centre.
    pub(crate) fn local(&self, p: [f64; 2]) -> [f64; 2] {
        let d = [p[0] - self.centre[0], p[1] - self.centre[1]];
        [dot(d, self.axes[0]), dot(d, self.axes[1])]
    }
    /// The corners, clockwise in image coordinates from (−u, −v).
    pub(crate) fn corners(&self) -> [[f64; 2]; 4] {
        let [a, b] = self.half;
        [
            self.point(-a, -b),
            self.point(a, -b),
            self.point(a, b),
            self.point(-a, b),
        ]
    }
    pub(crate) fn point(&self, u: f64, v: f64) -> [f64; 2] {
        [
            self.centre[0] + u * self.axes[0][0] + v * self.axes[1][0],
            self.centre[1] + u * self.axes[0][1] + v * self.axes[1][1],
        ]
    }
}

pub(crate) fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}

pub(crate) fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Andrew's monotone chain; counter-clockwise in a y-up frame.
pub(crate) fn convex_hull(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * p.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f64; 2]>> = if pass == 0 {
            Box::new(p.iter())
        } else {
            Box::new(p.iter().rev())
        };
        for &q in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    hull
}

pub(crate) fn polygon_area(poly: &[[f64; 2]]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1])
        .sum::<f64>()
        .abs()
        / 2.0
}

pub(crate) fn quad_centre(poly: &[[f64; 2]]) -> [f64; 2] {
    let n = poly.len() as f64;
    [
        poly.iter().map(|p| p[0]).sum::<f64>() / n,
        poly.iter().map(|p| p[1]).sum::<f64>() / n,
    ]
}

/// Whether `p` lies inside or on the convex polygon `poly` (either winding):
/// no two sides see it on opposite hands. Hot (per pixel, per quad): no allocation.
pub(crate) fn point_in_convex(poly: &[[f64; 2]], p: [f64; 2]) -> bool {
    let n = poly.len();
    let (mut left, mut right) = (false, false);
    for i in 0..n {
        let s = cross(poly[i], poly[(i + 1) % n], p);
        left |= s > 0.0;
        right |= s < 0.0;
        if left && right {
            return false;
        }
    }
    true
}

/// Rotating calipers over the hull edges: the rectangle with one side on a
/// hull edge and the least area.
pub(crate) fn min_area_rect(hull: &[[f64; 2]]) -> MinRect {
    let n = hull.len();
    let mut best: Option<(f64, MinRect)> = None;
    for i in 0..n {
        let (p, q) = (hull[i], hull[(i + 1) % n]);
        let len = ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt();
        if len < 1e-9 {
            continue;
        }
        let u = [(q[0] - p[0]) / len, (q[1] - p[1]) / len];
        let v = [-u[1], u[0]];
        let (mut u0, mut u1, mut v0, mut v1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &h in hull {
            let (a, b) = (dot(h, u), dot(h, v));
            u0 = u0.min(a);
            u1 = u1.max(a);
            v0 = v0.min(b);
            v1 = v1.max(b);
        }
        let area = (u1 - u0) * (v1 - v0);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let (cu, cv) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
            let centre = [cu * u[0] + cv * v[0], cu * u[1] + cv * v[1]];
            best = Some((
                area,
                MinRect {
                    centre,
                    axes: [u, v],
                    half: [(u1 - u0) / 2.0, (v1 - v0) / 2.0],
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(MinRect {
        centre: hull[0],
        axes: [[1.0, 0.0], [0.0, 1.0]],
        half: [0.0, 0.0],
    })
}

/// A line through `point` with unit `direction`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line {
    pub(crate) point: [f64; 2],
    pub(crate) direction: [f64; 2],
}

pub(crate) fn intersect(a: Line, b: Line) -> Option<[f64; 2]> {
    let den = a.direction[0] * b.direction[1] - a.direction[1] * b.direction[0];
    if den.abs() < 1e-9 {
        return None;
    }
    let d = [b.point[0] - a.point[0], b.point[1] - a.point[1]];
    let t = (d[0] * b.direction[1] - d[1] * b.direction[0]) / den;
    Some([
        a.point[0] + t * a.direction[0],
        a.point[1] + t * a.direction[1],
    ])
}

/// Total-least-squares line through points (principal axis of their scatter).
pub(crate) fn fit_line(points: &[[f64; 2]]) -> Line {
    let c = quad_centre(points);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for p in points {
        let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    Line {
        point: c,
        direction: [theta.cos(), theta.sin()],
    }
}

/// [`fit_line`], refitted without the points more than 1.5 px off the
/// first fit when those are few (under a fifth): a speck or a stick touching
/// an item's side tilts a least-squares fit to all of them.
pub(crate) fn fit_line_trimmed(points: &[[f64; 2]]) -> Line {
    let line = fit_line(points);
    let off = |p: &[f64; 2]| {
        ((p[0] - line.point[0]) * line.direction[1] - (p[1] - line.point[1]) * line.direction[0])
            .abs()
    };
    let kept: Vec<[f64; 2]> = points.iter().filter(|p| off(p) <= 1.5).copied().collect();
    if kept.len() == points.len() || kept.len() * 5 < points.len() * 4 || kept.len() < 2 {
        return line;
    }
    fit_line(&kept)
}

/// The point `d` along the unit vector `dir` from `p`.
pub(crate) fn step(p: [f64; 2], dir: [f64; 2], d: f64) -> [f64; 2] {
    [p[0] + dir[0] * d, p[1] + dir[1] * d]
}

/// The unit normal of the unit vector `along` on the side `facing` points to.
pub(crate) fn normal_facing(along: [f64; 2], facing: [f64; 2]) -> [f64; 2] {
    let n = [-along[1], along[0]];
    if dot(n, facing) < 0.0 {
        [-n[0], -n[1]]
    } else {
        n
    }
}

/// The unit vector from `a` to `b`, and the distance.
pub(crate) fn towards(a: [f64; 2], b: [f64; 2]) -> ([f64; 2], f64) {
    let len = (b[0] - a[0]).hypot(b[1] - a[1]).max(1e-9);
    ([(b[0] - a[0]) / len, (b[1] - a[1]) / len], len)
}

/// Axis-aligned box `[x0, y0, x1, y1]` of a quad.
pub(crate) fn quad_bbox(quad: &[[f64; 2]; 4]) -> [f64; 4] {
    let (xs, ys) = (quad.map(|p| p[0]), quad.map(|p| p[1]));
    let min = |v: [f64; 4]| v.into_iter().fold(f64::MAX, f64::min);
    let max = |v: [f64; 4]| v.into_iter().fold(f64::MIN, f64::max);
    [min(xs), min(ys), max(xs), max(ys)]
}

/// Clockwise order (image coordinates, y down) starting with the corner
/// whose next side points most nearly along +x.
pub(crate) fn orient(quad: [[f64; 2]; 4]) -> [[f64; 2]; 4] {
    let c = quad_centre(&quad);
    let mut q = quad.to_vec();
    q.sort_by(|a, b| {
        (a[1] - c[1])
            .atan2(a[0] - c[0])
            .total_cmp(&(b[1] - c[1]).atan2(b[0] - c[0]))
    });
    let start = (0..4)
        .max_by(|&i, &j| {
            let score = |k: usize| {
                let (p, r) = (q[k], q[(k + 1) % 4]);
                let (dx, dy) = (r[0] - p[0], r[1] - p[1]);
                dx / (dx * dx + dy * dy).sqrt().max(1e-9)
            };
            score(i).total_cmp(&score(j))
        })
        .unwrap_or(0);
    [
        q[start],
        q[(start + 1) % 4],
        q[(start + 2) % 4],
        q[(start + 3) % 4],
    ]
}

pub(crate) fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_inside_is_the_exact_overlap() {
        let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        let shifted = square.map(|p| [p[0] + 5.0, p[1] + 2.5]);
        assert!((share_inside(&square, &shifted) - 0.375).abs() < 1e-12);
        // Either winding; a quad inside is wholly inside; apart is zero.
        let reversed = [shifted[3], shifted[2], shifted[1], shifted[0]];
        assert!((share_inside(&square, &reversed) - 0.375).abs() < 1e-12);
        let small = [[2.0, 2.0], [4.0, 2.0], [4.0, 4.0], [2.0, 4.0]];
        assert_eq!(share_inside(&small, &square), 1.0);
        assert_eq!(
            share_inside(&square, &square.map(|p| [p[0] + 20.0, p[1]])),
            0.0
        );
    }
}
