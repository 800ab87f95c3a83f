//! Wall masks drawn for tests.

use super::geometry::{dist, point_in_convex};

/// Walls two pixels wide along the outline of `quad`, left out where they
/// lie under the quad `hidden_under`.
pub(super) fn draw(
    walls: &mut [bool],
    w: usize,
    quad: &[[f64; 2]; 4],
    hidden_under: Option<&[[f64; 2]; 4]>,
) {
    for k in 0..4 {
        let (p, q) = (quad[k], quad[(k + 1) % 4]);
        let n = (4.0 * dist(p, q)) as usize;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]));
            if hidden_under.is_some_and(|top| point_in_convex(top, [x, y])) {
                continue;
            }
            let (x, y) = (x.round() as usize, y.round() as usize);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                walls[(y + dy) * w + x + dx] = true;
            }
        }
    }
}
