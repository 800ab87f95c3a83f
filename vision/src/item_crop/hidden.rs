//! The side of an item hidden under another one.
//!
//! An item lying partly under another shows three of its sides; where the
//! fourth should be, its outline runs along the top item's edge, and the
//! fitted quad stops there, short of the item's real size (IoU 0.85–0.9 for
//! the generator's overlaps of up to 12 % of a width). A card's border band
//! is the same width all round, so the print area's edge, where it shows
//! along the seam, says where the hidden side is: a band's width outside it.
//! Where the whole band is hidden, the item is given a collectible's usual
//! shape, no larger than the item on top can hide.

use super::geometry::{
    dist, dot, grow_quad, intersect, normal_facing, point_in_convex, step, towards, Line,
};
use super::{neighbour_lines, side_support, wall_hits_within, wall_within};

/// Width over height given an item restored from three sides when nothing
/// in the photo shows how far its hidden side reaches: between a trading
/// card's (63 × 88 mm, 0.716) and a comic's (about 0.65), so that either
/// comes out within about 5 % of its real size.
const ITEM_ASPECT: f64 = 0.68;
/// A line this walled counts as a print area's edge (art running into the
/// edge breaks it in places).
const PRINT_EDGE: f64 = 0.5;
/// The widest border band, as a share of the item's depth across it.
const BAND_MAX: f64 = 0.15;
/// Pixels a fitted outline may lie off its wall: smaller moves are not
/// made, and an item on top may be fitted this far inside its edge.
const SLACK: f64 = 2.0;

/// `quad` with each side that runs along another item (`others`) and has
/// lost its border band under it moved out to where the item's real side
/// lies under that item.
pub(super) fn restore_hidden_sides(
    quad: [[f64; 2]; 4],
    others: &[[[f64; 2]; 4]],
    walls: &[bool],
    w: usize,
    h: usize,
) -> [[f64; 2]; 4] {
    let walls = Walls { walls, w, h };
    (0..4).fold(quad, |quad, k| {
        restore_side(&quad, k, others, &walls).unwrap_or(quad)
    })
}

/// The wall mask and its size, passed on together.
struct Walls<'a> {
    walls: &'a [bool],
    w: usize,
    h: usize,
}

/// Lines across an item parallel to the side opposite side `k` (the
/// reference), at a depth measured from it towards side `k`, their ends on
/// the lines of the two sides between.
struct Across {
    origin: [f64; 2],
    along: [f64; 2],
    out: [f64; 2],
    before: Line,
    after: Line,
}

impl Across {
    fn new(quad: &[[f64; 2]; 4], k: usize) -> Self {
        let (p, origin, end) = (quad[k], quad[(k + 3) % 4], quad[(k + 2) % 4]);
        let (along, _) = towards(origin, end);
        let out = normal_facing(along, [p[0] - origin[0], p[1] - origin[1]]);
        let (before, after) = neighbour_lines(quad, k);
        Self {
            origin,
            along,
            out,
            before,
            after,
        }
    }

    fn depth_of(&self, v: [f64; 2]) -> f64 {
        dot(self.out, [v[0] - self.origin[0], v[1] - self.origin[1]])
    }

    fn side_at(&self, t: f64) -> Option<([f64; 2], [f64; 2])> {
        let line = Line {
            point: step(self.origin, self.out, t),
            direction: self.along,
        };
        Some((intersect(self.before, line)?, intersect(line, self.after)?))
    }

    /// The depth of the print area's edge inward from depth `from`
    /// (`inward` ±1), within `widest` pixels.
    fn print_edge(&self, from: f64, inward: f64, widest: usize, walls: &Walls) -> Option<f64> {
        let at = |d: usize| from + inward * d as f64;
        // Off the side's own edge wall where a line stops lying on wall
        // pixels (not within a pixel of them, as elsewhere: a narrow band's
        // two walls would run together); then the print area's edge where a
        // line next runs within a pixel of a wall (it may be tilted a little
        // against the side), clear of the edge wall.
        let on_wall = |t: f64| {
            self.side_at(t).is_some_and(|(u, v)| {
                let (hits, samples) =
                    wall_hits_within(u, v, 0.1, 0.8, 0, walls.walls, walls.w, walls.h);
                hits as f64 >= PRINT_EDGE * samples as f64
            })
        };
        let near_wall = |t: f64| {
            self.side_at(t).is_some_and(|(u, v)| {
                side_support(u, v, walls.walls, walls.w, walls.h) >= PRINT_EDGE
            })
        };
        let off_edge = (1..=widest).find(|&d| !on_wall(at(d)))?;
        let reached = (off_edge + 2..=widest).find(|&d| near_wall(at(d)))?;
        // The middle of the wall reached, where lines lie on it.
        let on: Vec<usize> = ((reached - 2).max(off_edge)..=reached + 3)
            .skip_while(|&d| !on_wall(at(d)))
            .take_while(|&d| on_wall(at(d)))
            .collect();
        let middle = if on.is_empty() {
            reached as f64 + 1.0
        } else {
            on.iter().sum::<usize>() as f64 / on.len() as f64
        };
        Some(from + inward * middle)
    }
}

/// The border band inside side `side` of `quad`: how far in the print
/// area's edge runs.
fn band_inside(quad: &[[f64; 2]; 4], side: usize, walls: &Walls) -> Option<f64> {
    // Depths from `side` towards the side opposite it.
    let opposite = (side + 2) % 4;
    let across = Across::new(quad, opposite);
    let depth = across
        .depth_of(quad[opposite])
        .max(across.depth_of(quad[(opposite + 1) % 4]));
    across.print_edge(0.0, 1.0, (BAND_MAX * depth) as usize, walls)
}

/// Side `k` (from `quad[k]` to `quad[k + 1]`) restored as in
/// [`restore_hidden_sides`], or `None` where it is the item's own edge.
fn restore_side(
    quad: &[[f64; 2]; 4],
    k: usize,
    others: &[[[f64; 2]; 4]],
    walls: &Walls,
) -> Option<[[f64; 2]; 4]> {
    let (p, q) = (quad[k], quad[(k + 1) % 4]);
    // Depths from the opposite side: the item's own edge, and the line its
    // hidden side runs parallel to.
    let across = Across::new(quad, k);
    // A seam at an angle to the item's hidden side leaves one end deeper.
    let (near, far) = (
        across.depth_of(p).min(across.depth_of(q)),
        across.depth_of(p).max(across.depth_of(q)),
    );
    let over = others.iter().find(|o| runs_along(o, p, q, across.out))?;
    let band = band_inside(quad, (k + 2) % 4, walls)?;
    // A band is as wide all round: one of the sides beside must show it too
    // (a side pulled out by clutter, or hidden itself, shows another).
    let agrees = [(k + 1) % 4, (k + 3) % 4]
        .iter()
        .any(|&j| band_inside(quad, j, walls).is_some_and(|b| (b - band).abs() <= SLACK));
    if !agrees {
        return None;
    }
    let target = match across.print_edge(far, -1.0, (BAND_MAX * far) as usize, walls) {
        // The print area's edge shows: the item's edge runs a band outside it.
        Some(edge) => edge + band,
        // All of the band is hidden, and how much of the print area with
        // it the photo does not show: the item is given a collectible's
        // usual shape, unless it already has one (an item whose print
        // area's edge is broken along the seam) or the other item does not
        // show its own band along the seam (it may be the one underneath).
        None => {
            let length = dist(quad[(k + 3) % 4], quad[(k + 2) % 4]);
            let usual_depth = if near < length {
                ITEM_ASPECT * length
            } else {
                length / ITEM_ASPECT
            };
            if near >= 0.97 * usual_depth
                || !shows_band_along(over, [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0], walls)
            {
                return None;
            }
            usual_depth.max(near + band)
        }
    };
    if target <= near + SLACK {
        return None;
    }
    // Each end moves out under the other item (or to a wall, where the
    // item's own corner shows past the seam's end), or in by no more than
    // the seam's tilt (its deep end can run that far past the item's edge).
    let over = grow_quad(over, SLACK);
    let fits = |(u, v): &([f64; 2], [f64; 2])| {
        [(*u, p), (*v, q)].iter().all(|&(new, old)| {
            let moved = across.depth_of(new) - across.depth_of(old);
            if moved > 0.0 {
                point_in_convex(&over, new)
                    || wall_within(
                        walls.walls,
                        walls.w,
                        walls.h,
                        new[0].round() as isize,
                        new[1].round() as isize,
                        2,
                    )
            } else {
                -moved <= far - near + SLACK
            }
        })
    };
    let (u, v) = (0..)
        .map(|d| target - d as f64)
        .take_while(|&t| t > near + SLACK)
        .find_map(|t| across.side_at(t).filter(fits))?;
    let mut restored = *quad;
    restored[k] = u;
    restored[(k + 1) % 4] = v;
    Some(restored)
}

/// Whether side `p`–`q` runs along `other`'s edge: its middle half, moved
/// three pixels `out`, lies in it.
fn runs_along(other: &[[f64; 2]; 4], p: [f64; 2], q: [f64; 2], out: [f64; 2]) -> bool {
    let grown = grow_quad(other, SLACK);
    [0.25, 0.5, 0.75].iter().all(|&s| {
        point_in_convex(
            &grown,
            step(
                [p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])],
                out,
                3.0,
            ),
        )
    })
}

/// Whether `quad`'s side nearest `seam` shows a border band inside it.
fn shows_band_along(quad: &[[f64; 2]; 4], seam: [f64; 2], walls: &Walls) -> bool {
    let middle = |i: usize| {
        [
            (quad[i][0] + quad[(i + 1) % 4][0]) / 2.0,
            (quad[i][1] + quad[(i + 1) % 4][1]) / 2.0,
        ]
    };
    (0..4)
        .min_by(|&i, &j| dist(middle(i), seam).total_cmp(&dist(middle(j), seam)))
        .is_some_and(|side| band_inside(quad, side, walls).is_some())
}

#[cfg(test)]
mod tests {
    use super::super::test_walls::draw;
    use super::*;

    /// An upright rectangle from `(x0, y0)` to `(x1, y1)`.
    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> [[f64; 2]; 4] {
        [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    }

    /// Walls of a card (edge, and print area `band` pixels inside it) under
    /// one lying on top from `top_left` rightwards (also drawn, with its
    /// band); returns them with the quads as fitted (on the walls' middles,
    /// half a pixel right of and below the drawn lines): the card underneath
    /// as far as it shows, and the one on top.
    fn card_under_another(
        card: [[f64; 2]; 4],
        band: f64,
        top_left: f64,
    ) -> (Vec<bool>, [[f64; 2]; 4], [[f64; 2]; 4]) {
        let (w, h) = (220, 180);
        let top = rect(
            top_left,
            card[0][1] - 10.0,
            top_left + 80.0,
            card[2][1] + 10.0,
        );
        let inset =
            |q: [[f64; 2]; 4], d: f64| rect(q[0][0] + d, q[0][1] + d, q[2][0] - d, q[2][1] - d);
        let mut walls = vec![false; w * h];
        draw(&mut walls, w, &top, None);
        draw(&mut walls, w, &inset(top, 6.0), None);
        draw(&mut walls, w, &card, Some(&top));
        draw(&mut walls, w, &inset(card, band), Some(&top));
        let fitted = |q: [[f64; 2]; 4]| q.map(|p| [p[0] + 0.5, p[1] + 0.5]);
        let shown = rect(card[0][0], card[0][1], top_left, card[2][1]);
        (walls, fitted(shown), fitted(top))
    }

    fn right_side_x(quad: &[[f64; 2]; 4]) -> f64 {
        (quad[1][0] + quad[2][0]) / 2.0 - 0.5
    }

    #[test]
    fn a_side_whose_band_shows_in_part_moves_out_a_band_from_the_print_area() {
        // An 80 × 110 card with an 8 px band, its right 4 px under another
        // (given a collectible's usual shape, it would come out 75 wide).
        let (walls, shown, top) = card_under_another(rect(20.0, 40.0, 100.0, 150.0), 8.0, 96.0);
        let restored = restore_hidden_sides(shown, &[top], &walls, 220, 180);
        assert!(
            (right_side_x(&restored) - 100.0).abs() <= 1.0,
            "{restored:?}"
        );
        // The other three sides stay.
        assert!(
            (restored[0][0] - shown[0][0]).abs() < 1e-9
                && (restored[0][1] - shown[0][1]).abs() < 1e-9
                && (restored[2][1] - shown[2][1]).abs() < 1e-9
        );
        // The card on top keeps its outline: its band runs along the seam.
        assert_eq!(restore_hidden_sides(top, &[shown], &walls, 220, 180), top);
    }

    #[test]
    fn a_side_whose_band_is_all_hidden_is_restored_to_a_collectibles_shape() {
        // The same card with its right 10 px hidden: band and print edge.
        let (walls, shown, top) = card_under_another(rect(20.0, 40.0, 95.0, 150.0), 6.0, 85.0);
        let restored = restore_hidden_sides(shown, &[top], &walls, 220, 180);
        // 110 × ITEM_ASPECT = 74.8 wide, against the real 75.
        assert!(
            (right_side_x(&restored) - 95.0).abs() <= 1.5,
            "{restored:?}"
        );
        assert_eq!(restore_hidden_sides(top, &[shown], &walls, 220, 180), top);
        // With no item beside it, a narrow card is left as it is.
        let (walls, shown, _) = card_under_another(rect(20.0, 40.0, 95.0, 150.0), 6.0, 85.0);
        assert_eq!(restore_hidden_sides(shown, &[], &walls, 220, 180), shown);
    }
}
