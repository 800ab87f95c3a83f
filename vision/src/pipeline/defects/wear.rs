//! Edge and corner wear: the outermost band of the item (its border)
//! whitened, greyed or frayed along part of a side or at a corner. It is
//! measured against the same band elsewhere on that side, so border colour,
//! light falling off across the card and glare cancel, and print art plays
//! no part.

use super::{defect, DefectKind, DefectRules, Found, Item, Mark};

const SIDES: [&str; 4] = ["top", "right", "bottom", "left"];
const CORNERS: [&str; 4] = ["top_left", "top_right", "bottom_right", "bottom_left"];

pub(super) fn find(item: &Item, rules: &DefectRules) -> Vec<Found> {
    let mut found = edges(item, rules);
    found.extend(corners(item, rules));
    found
}

/// Band `[d0, d1)` pixels in from `side`, averaged across its depth: one
/// value per position along the side.
fn band_profile(item: &Item, side: usize, d0: usize, d1: usize) -> Vec<f32> {
    let (w, h) = (item.w, item.h);
    let depth = (d1 - d0).max(1) as f32;
    // Top and bottom run along x; right and left along y.
    let along = if matches!(side, 0 | 2) { w } else { h };
    (0..along)
        .map(|t| {
            (d0..d1)
                .map(|d| match side {
                    0 => item.at(t, d),
                    1 => item.at(w - 1 - d, t),
                    2 => item.at(t, h - 1 - d),
                    _ => item.at(d, t),
                })
                .sum::<f32>()
                / depth
        })
        .collect()
}

/// Each value minus the median of the window of `p.len()` values centred on
/// it (clipped at the ends): what stands out from the rest of the side.
fn deviation(p: &[f32]) -> Vec<f32> {
    let n = p.len();
    let half = (n / 2).max(1);
    (0..n)
        .map(|i| {
            let mut window = p[i.saturating_sub(half)..(i + half + 1).min(n)].to_vec();
            window.sort_by(f32::total_cmp);
            p[i] - window[window.len() / 2]
        })
        .collect()
}

fn band(item: &Item, (a, b): (f64, f64)) -> (usize, usize) {
    let w = item.w as f64;
    // One pixel more in: the outermost row is the rectification's edge.
    let d0 = (a * w).round() as usize + 1;
    let d1 = ((b * w).round() as usize).max(d0 + 2);
    (d0, d1.min(item.w.min(item.h) / 2))
}

fn edges(item: &Item, rules: &DefectRules) -> Vec<Found> {
    let (d0, d1) = band(item, rules.wear_band);
    let (q0, q1) = band(item, rules.wear_deep_band);
    let corner = (rules.wear_corner_zone * item.w as f64).round() as usize;
    let mut found = Vec::new();
    for (side, name) in SIDES.iter().enumerate() {
        let outer = deviation(&band_profile(item, side, d0, d1));
        let deep = deviation(&band_profile(item, side, q0, q1));
        let n = outer.len();
        // Wear is shallow: where the deeper band changes the same way,
        // something lies over the edge (a thumb) or the print reaches it.
        let worn: Vec<bool> = (0..n)
            .map(|t| {
                let (o, q) = (outer[t], deep[t]);
                let covered = q.abs() > 0.5 * rules.wear_contrast && q.signum() == o.signum();
                t >= corner && t + corner < n && o.abs() > rules.wear_contrast && !covered
            })
            .collect();
        let min_run = (rules.wear_min_len * n as f64).ceil() as usize;
        let mut t = 0;
        while t < n {
            if !worn[t] {
                t += 1;
                continue;
            }
            let start = t;
            while t < n && worn[t] {
                t += 1;
            }
            if t - start < min_run {
                continue;
            }
            let (s, e, d) = (start as f64, t as f64, d1 as f64);
            let (w, h) = (item.w as f64, item.h as f64);
            let bbox = match side {
                0 => item.bbox(s, 0.0, e, d),
                1 => item.bbox(w - d, s, w, e),
                2 => item.bbox(s, h - d, e, h),
                _ => item.bbox(0.0, s, d, e),
            };
            let length = e - s;
            found.push(Found {
                // Wear along 15 % of a side is as bad as edge wear gets.
                defect: defect(
                    DefectKind::EdgeWear,
                    bbox,
                    length,
                    length * d,
                    length / (0.15 * n as f64),
                    Some(name),
                ),
                mark: Mark::Area,
            });
        }
    }
    found
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// A corner patch against the outer band beside it along both sides.
fn corners(item: &Item, rules: &DefectRules) -> Vec<Found> {
    let (w, h) = (item.w, item.h);
    let (g, _) = band(item, rules.wear_band);
    let r = ((rules.corner_size * w as f64).round() as usize).max(2);
    let (o0, o1) = (
        (rules.corner_reference.0 * w as f64) as usize,
        (rules.corner_reference.1 * w as f64) as usize,
    );
    if g + r >= w / 2 || o1 >= w.min(h) / 2 {
        return Vec::new();
    }
    let patch = |xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
        median(
            ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
                .map(|(x, y)| item.at(x, y))
                .collect(),
        )
    };
    // x (or y) ranges at the low or the high end of an axis of length `n`.
    let near = |low: bool, n: usize, a: usize, b: usize| {
        if low {
            a..b
        } else {
            n - b..n - a
        }
    };
    let mut found = Vec::new();
    for (i, name) in CORNERS.iter().enumerate() {
        let (left, top) = (i == 0 || i == 3, i < 2);
        let xs = near(left, w, g, g + r);
        let ys = near(top, h, g, g + r);
        let corner = patch(xs.clone(), ys.clone());
        let along_x = patch(near(left, w, o0, o1), ys.clone());
        let along_y = patch(xs.clone(), near(top, h, o0, o1));
        let change = (corner - along_x).abs().min((corner - along_y).abs());
        if change <= rules.corner_contrast {
            continue;
        }
        let (x0, x1) = if left { (0, g + r) } else { (w - g - r, w) };
        let (y0, y1) = if top { (0, g + r) } else { (h - g - r, h) };
        let side = (g + r) as f64;
        found.push(Found {
            // Fully whitened (a change of 100 levels) is as bad as it gets.
            defect: defect(
                DefectKind::CornerWear,
                item.bbox(x0 as f64, y0 as f64, x1 as f64, y1 as f64),
                side,
                side * side,
                change as f64 / 100.0,
                Some(name),
            ),
            mark: Mark::Area,
        });
    }
    found
}
