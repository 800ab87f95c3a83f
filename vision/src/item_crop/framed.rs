//! Rectangles framed by four straight walls: a Hough transform of one
//! blob's wall pixels gives its long straight walls, and pairs of nearly
//! parallel ones, crossed by a nearly perpendicular pair, make
//! quadrilaterals whose four sides run along walls.
//!
//! The region rules find an item through a region its walls enclose. A card
//! whose print area and border band both leak out (a faint edge, art running
//! into it) and that lies against or over another card encloses none, but
//! its edge lines still frame it.

use super::geometry::{dist, dot, intersect, polygon_area, Line};
use super::{wall_within_a_pixel, OUTLINED};

/// Normal angles tried, one degree apart.
const ANGLES: usize = 180;
/// Most lines kept per blob, strongest first.
const MAX_LINES: usize = 40;
/// Sides of one item lie within this of parallel (perspective tilts
/// them by a few degrees), and within this of perpendicular to the others
/// (plus the same again: both pairs tilt).
const PARALLEL_DEG: f64 = 5.0;
/// Least share of the middle 80 % of each side that runs along a wall
/// (art running into an edge breaks it in places); the whole outline
/// must be walled as an item's is (`OUTLINED`).
const SIDE_WALLED: f64 = 0.6;

/// Shortest side of a frame, in pixels: a wall counts within a pixel of a
/// line, so a line a few times a wall's width long, at any angle, runs
/// along walls wherever walls are dense.
const MIN_SIDE: f64 = 20.0;
/// Frames whose corners all lie this close (pixels) are one.
const SAME_CORNER: f64 = 4.0;

/// A straight wall: its line and, for each pixel step along it, whether a
/// wall lies within a pixel (as running counts). The same test as
/// `wall_hits`, done once per line so that each side of the thousands of
/// quadrilaterals tried costs O(1) instead of a walk along it.
struct WallLine {
    line: Line,
    /// Normal angle in radians, in `[0, π)`.
    angle: f64,
    /// Step `i` lies at `t = i - reach` along the line from `line.point`.
    reach: f64,
    walled_before: Vec<u32>,
}

impl WallLine {
    fn along(&self, p: [f64; 2]) -> f64 {
        dot(
            [p[0] - self.line.point[0], p[1] - self.line.point[1]],
            self.line.direction,
        )
    }

    /// Share of the middle 80 % of the segment `a`–`b` (on this line) that is walled.
    fn support(&self, a: [f64; 2], b: [f64; 2]) -> f64 {
        let (ta, tb) = (self.along(a), self.along(b));
        let (lo, hi) = (ta.min(tb), ta.max(tb));
        let margin = 0.1 * (hi - lo);
        let last = self.walled_before.len() - 1;
        let index = |t: f64| ((t + self.reach).round().max(0.0) as usize).min(last);
        let (i0, i1) = (index(lo + margin), index(hi - margin));
        if i1 <= i0 {
            return 0.0;
        }
        (self.walled_before[i1] - self.walled_before[i0]) as f64 / (i1 - i0) as f64
    }
}

/// The straight walls among the wall pixels in `window` (`[x0, y0, x1, y1)`)
/// for which `in_blob` (of the pixel index) holds: Hough peaks with at least
/// `min_votes`, strongest first.
fn wall_lines(
    walls: &[bool],
    w: usize,
    h: usize,
    window: [usize; 4],
    in_blob: &dyn Fn(usize) -> bool,
    min_votes: u32,
) -> Vec<WallLine> {
    let [x0, y0, x1, y1] = window;
    let centre = [(x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0];
    let reach = ((x1 - x0) as f64).hypot((y1 - y0) as f64) / 2.0 + 2.0;
    let bins = 2 * reach.ceil() as usize + 1;
    let offset = reach.ceil();
    let trig: Vec<(f64, f64)> = (0..ANGLES)
        .map(|a| (a as f64).to_radians())
        .map(|t| (t.cos(), t.sin()))
        .collect();
    let mut votes = vec![0u32; ANGLES * bins];
    for y in y0..y1 {
        for x in x0..x1 {
            let i = y * w + x;
            if !walls[i] || !in_blob(i) {
                continue;
            }
            let (dx, dy) = (x as f64 - centre[0], y as f64 - centre[1]);
            for (a, &(c, s)) in trig.iter().enumerate() {
                let rho = (dx * c + dy * s + offset).round() as usize;
                votes[a * bins + rho] += 1;
            }
        }
    }
    // Local maxima over ±2° and ±3 px (a wall is two or three pixels wide).
    let mut peaks: Vec<(u32, usize, usize)> = Vec::new();
    for a in 0..ANGLES {
        for r in 0..bins {
            let v = votes[a * bins + r];
            if v < min_votes {
                continue;
            }
            let is_peak = (a.saturating_sub(2)..=(a + 2).min(ANGLES - 1)).all(|aa| {
                (r.saturating_sub(3)..=(r + 3).min(bins - 1)).all(|rr| {
                    let u = votes[aa * bins + rr];
                    u < v || (u == v && (aa, rr) >= (a, r))
                })
            });
            if is_peak {
                peaks.push((v, a, r));
            }
        }
    }
    peaks.sort_by_key(|p| std::cmp::Reverse(p.0));
    peaks.truncate(MAX_LINES);
    peaks
        .into_iter()
        .map(|(_, a, r)| {
            // The wall's middle: the vote-weighted mean of the neighbouring offsets.
            let (mut sum, mut weight) = (0.0, 0.0);
            for rr in r.saturating_sub(1)..=(r + 1).min(bins - 1) {
                let v = votes[a * bins + rr] as f64;
                sum += v * rr as f64;
                weight += v;
            }
            let rho = sum / weight.max(1.0) - offset;
            let (c, s) = trig[a];
            let line = Line {
                point: [centre[0] + rho * c, centre[1] + rho * s],
                direction: [-s, c],
            };
            let steps = (2.0 * reach).ceil() as usize + 1;
            let mut walled_before = Vec::with_capacity(steps + 1);
            walled_before.push(0u32);
            for i in 0..steps {
                let t = i as f64 - reach;
                let (x, y) = (
                    line.point[0] + t * line.direction[0],
                    line.point[1] + t * line.direction[1],
                );
                let hit = wall_within_a_pixel(walls, w, h, x.round() as isize, y.round() as isize);
                walled_before.push(walled_before[i] + hit as u32);
            }
            WallLine {
                line,
                angle: (a as f64).to_radians(),
                reach,
                walled_before,
            }
        })
        .collect()
}

/// Angle between two lines' normals, in degrees, folded into `[0, 90]`.
fn angle_between(a: &WallLine, b: &WallLine) -> f64 {
    let d = (a.angle - b.angle).abs().to_degrees() % 180.0;
    d.min(180.0 - d)
}

/// Every quadrilateral in `window` framed by four straight walls: at least
/// `min_area` and `min_aspect`, each side's middle walled (`SIDE_WALLED`),
/// and the whole outline walled (`OUTLINED`). Largest first, without
/// near-copies (every corner within `SAME_CORNER` of a larger frame's: the
/// two or three lines a wide wall gives).
pub(crate) fn framed_quads(
    walls: &[bool],
    w: usize,
    h: usize,
    window: [usize; 4],
    in_blob: &dyn Fn(usize) -> bool,
    min_area: f64,
    min_aspect: f64,
) -> Vec<[[f64; 2]; 4]> {
    let min_side = (min_area * min_aspect).sqrt().max(MIN_SIDE);
    let lines = wall_lines(walls, w, h, window, in_blob, (0.8 * min_side) as u32);
    let apart = |a: &WallLine, b: &WallLine| {
        dot(
            [
                b.line.point[0] - a.line.point[0],
                b.line.point[1] - a.line.point[1],
            ],
            [a.line.direction[1], -a.line.direction[0]],
        )
        .abs()
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for i in 0..lines.len() {
        for j in i + 1..lines.len() {
            if angle_between(&lines[i], &lines[j]) <= PARALLEL_DEG
                && apart(&lines[i], &lines[j]) >= min_side
            {
                pairs.push((i, j));
            }
        }
    }
    let mut frames = Vec::new();
    for (n, &(i, j)) in pairs.iter().enumerate() {
        for &(k, l) in &pairs[n + 1..] {
            if angle_between(&lines[i], &lines[k]) < 90.0 - 2.0 * PARALLEL_DEG {
                continue;
            }
            let corner = |a: usize, b: usize| intersect(lines[a].line, lines[b].line);
            let (Some(c0), Some(c1), Some(c2), Some(c3)) =
                (corner(i, k), corner(j, k), corner(j, l), corner(i, l))
            else {
                continue;
            };
            let quad = [c0, c1, c2, c3];
            let sides = [(k, c0, c1), (j, c1, c2), (l, c2, c3), (i, c3, c0)];
            let lengths = sides.map(|(_, a, b)| dist(a, b));
            // Mean lengths of the two pairs of opposite sides.
            let (across, along) = (
                (lengths[0] + lengths[2]) / 2.0,
                (lengths[1] + lengths[3]) / 2.0,
            );
            if polygon_area(&quad) < min_area || across.min(along) / across.max(along) < min_aspect
            {
                continue;
            }
            let support = sides.map(|(line, a, b)| lines[line].support(a, b));
            if support.iter().any(|&s| s < SIDE_WALLED) {
                continue;
            }
            // The sides' supports weighted by their lengths.
            let walled = support
                .iter()
                .zip(&lengths)
                .map(|(s, l)| s * l)
                .sum::<f64>()
                / lengths.iter().sum::<f64>();
            if walled >= OUTLINED {
                frames.push(quad);
            }
        }
    }
    frames.sort_by(|a, b| polygon_area(b).total_cmp(&polygon_area(a)));
    let mut distinct: Vec<[[f64; 2]; 4]> = Vec::new();
    for quad in frames {
        let copy = |kept: &[[f64; 2]; 4]| {
            quad.iter()
                .all(|&c| kept.iter().any(|&k| dist(c, k) <= SAME_CORNER))
        };
        if !distinct.iter().any(copy) {
            distinct.push(quad);
        }
    }
    distinct
}

#[cfg(test)]
mod tests {
    use super::super::test_walls::draw;
    use super::*;

    #[test]
    fn a_card_on_top_is_framed_and_one_half_hidden_under_it_is_not() {
        // A card under a tilted one that hides most of its right side.
        let (w, h) = (200, 160);
        let under = [[20.0, 40.0], [100.0, 40.0], [100.0, 150.0], [20.0, 150.0]];
        let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
        let top = [[0.0, 0.0], [70.0, 0.0], [70.0, 100.0], [0.0, 100.0]]
            .map(|p| [110.0 + p[0] * c - p[1] * s, 10.0 + p[0] * s + p[1] * c]);
        let mut walls = vec![false; w * h];
        draw(&mut walls, w, &top, None);
        draw(&mut walls, w, &under, Some(&top));
        let frames = framed_quads(&walls, w, h, [0, 0, w, h], &|_| true, 1000.0, 0.5);
        // The wall's middle is half a pixel right of and below the drawn line.
        let near = |frame: &[[f64; 2]; 4], truth: &[[f64; 2]; 4]| {
            truth.iter().all(|&t| {
                frame
                    .iter()
                    .any(|&f| dist(f, [t[0] + 0.5, t[1] + 0.5]) <= 1.5)
            })
        };
        assert!(
            frames.iter().any(|f| near(f, &top)),
            "the card on top: {frames:?}"
        );
        // The card underneath has its right side hidden: no four walls
        // frame it (the leftovers rule finds such cards). Alone, they do.
        assert!(!frames.iter().any(|f| near(f, &under)), "{frames:?}");
        let mut alone = vec![false; w * h];
        draw(&mut alone, w, &under, None);
        let frames = framed_quads(&alone, w, h, [0, 0, w, h], &|_| true, 1000.0, 0.5);
        assert!(frames.iter().any(|f| near(f, &under)), "{frames:?}");
        // Nothing framed where no four walls run.
        let empty = vec![false; w * h];
        assert!(framed_quads(&empty, w, h, [0, 0, w, h], &|_| true, 1000.0, 0.5).is_empty());
    }
}
