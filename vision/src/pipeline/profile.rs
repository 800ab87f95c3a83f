//! The item's edges and its print frame's edges, measured on profiles of
//! the margin-rectified golden frame (centering, and the corner refinement).
//!
//! A profile is the median, across a band of rows (or columns), of each
//! channel of the measurement image: luma and two colour differences
//! ([`MeasureImage`]). A step is the colour distance across
//! [`STEP_SPAN`] samples, so a border that differs from the table or the
//! print in hue only (a green border on a grey mat) still steps, and a
//! neutral card gives the same steps as in gray.
//!
//! Positions here are in margin-image pixels: the rectified item, with
//! `margin` pixels of surround on each side.

use super::debug;

/// Channels of a measurement sample: luma and the two colour differences.
pub(super) const CHANNELS: usize = 3;

/// One profile sample: luma, (R - Y) and (B - Y) scaled as in BT.601's
/// Cr and Cb (without their offset), all in 8-bit levels.
type Sample = [f64; CHANNELS];

/// The planar `[CHANNELS, h, w]` image the profiles are taken from, in
/// margin-image pixels.
pub(super) struct MeasureImage<'a> {
    pub data: &'a [f32],
    pub width: usize,
    pub height: usize,
}

/// Item edges and print-frame edges measured on the margin-rectified image.
pub(super) struct Profiles {
    /// Item edges (left, right, top, bottom) in margin-image pixels.
    pub(super) card: (f64, f64, f64, f64),
    /// Print frame edges, same frame.
    pub(super) print: (f64, f64, f64, f64),
}

/// The smallest step, in 8-bit levels across [`STEP_SPAN`] samples, that
/// counts as an edge: profiles are medians over many rows, so sensor noise
/// and fine texture stay far below it, while the faintest border a person
/// still sees (a grey card on a grey table) is above it.
const MIN_STEP: f64 = 10.0;

/// The print edge is looked for only in the plain band just inside the item
/// edge, so a fainter step suffices there (a dark print on a grey border
/// may differ from it by little more than its own shading).
const MIN_PRINT_STEP: f64 = 8.0;

/// Steps are measured as the change across this many samples: an edge
/// blurred by optics and resampling spreads over 2-3 pixels.
const STEP_SPAN: usize = 3;

/// A card's border band is at most this share of the profile: the print
/// area fills most of the face, so its edge lies within it from the item
/// edge (and, when the outline followed the print frame, the item edge
/// lies within it outside).
const BORDER_MAX: f64 = 0.12;

/// The border is one ink all round, so its colour agrees on the four sides
/// up to what the light does across a hand-held card: a brightness ramp,
/// a shadow or a glare spot moves one side's level by a few tens of levels.
/// Bands further apart than this are not one border (the widest that
/// still paid on the development renders; 45-60 give the same there).
const BORDER_COLOUR_TOL: f64 = 45.0;

impl Profiles {
    /// Profiles are medians across a band (fractions of the other axis):
    /// robust to defects crossing it.
    /// `margin` is where the located outline puts the item's edges: this
    /// many pixels in from each side of the margin-rectified image (x, y).
    ///
    /// The border is first looked for as a plain band of one colour on all
    /// four sides ([`border_bands`]); where no such band agrees, each side
    /// is measured on its own ([`steps`]).
    pub(super) fn measure(
        img: &MeasureImage,
        band: (f64, f64),
        margin: (f64, f64),
    ) -> Option<Self> {
        let (w, h) = (img.width, img.height);
        let (b0, b1) = band;
        let median = |mut v: Vec<f32>| {
            let mid = v.len() / 2;
            *v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1 as f64
        };
        let plane = |c: usize| &img.data[c * w * h..(c + 1) * w * h];
        let col = |x: usize| {
            std::array::from_fn(|c| {
                let p = plane(c);
                median(
                    ((h as f64 * b0) as usize..(h as f64 * b1) as usize)
                        .map(|y| p[y * w + x])
                        .collect(),
                )
            })
        };
        let row = |y: usize| {
            std::array::from_fn(|c| {
                let p = plane(c);
                median(
                    ((w as f64 * b0) as usize..(w as f64 * b1) as usize)
                        .map(|x| p[y * w + x])
                        .collect(),
                )
            })
        };
        let px: Vec<Sample> = (0..w).map(col).collect();
        let py: Vec<Sample> = (0..h).map(row).collect();
        // Each side's profile from the outside in.
        let rev = |p: &[Sample]| p.iter().rev().copied().collect::<Vec<_>>();
        let sides = [
            (px.clone(), margin.0),
            (rev(&px), margin.0),
            (py.clone(), margin.1),
            (rev(&py), margin.1),
        ];
        let found: [(f64, f64); 4] = match border_bands(&sides) {
            Some(b) => b,
            None => {
                let mut out = [(0.0, 0.0); 4];
                for (k, (p, expected)) in sides.iter().enumerate() {
                    out[k] = steps(p, *expected).or_else(|| {
                        debug(|| {
                            format!(
                                "band {band:?}: no item/print edges on side {k} (l, r, t, b), luma {:?}",
                                p.iter().map(|v| v[0].round() as i64).collect::<Vec<_>>()
                            )
                        });
                        None
                    })?;
                }
                out
            }
        };
        // Back from outside-in samples to margin-image pixels.
        let (xe, ye) = ((w - 1) as f64, (h - 1) as f64);
        let [l, r, t, b] = found;
        Some(Self {
            card: (l.0, xe - r.0, t.0, ye - b.0),
            print: (l.1, xe - r.1, t.1, ye - b.1),
        })
    }
}

fn distance(a: &Sample, b: &Sample) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// `step[i]`: the colour change from sample i-1 to sample i+STEP_SPAN-1,
/// centred between samples i and i+1 (position i+0.5) for a span of 3.
fn step_profile(p: &[Sample]) -> Vec<f64> {
    (0..p.len().saturating_sub(STEP_SPAN))
        .map(|i| {
            if i == 0 {
                0.0
            } else {
                distance(&p[i + STEP_SPAN - 1], &p[i - 1])
            }
        })
        .collect()
}

fn is_peak(step: &[f64], i: usize) -> bool {
    i > 0 && i + 1 < step.len() && step[i] >= step[i - 1] && step[i] >= step[i + 1]
}

/// Sub-pixel position of the step peak at `i`: a parabola through it and
/// its neighbours.
fn refine(step: &[f64], i: usize) -> f64 {
    let (a, b, c) = (step[i - 1], step[i], step[i + 1]);
    let den = a - 2.0 * b + c;
    let off = if den.abs() > 1e-9 {
        (0.5 * (a - c) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    i as f64 + 0.5 + off
}

/// How far from the outline's position an item edge may be found: the
/// outline is found at reduced size, so its sides are a few pixels off.
fn tolerance(n: usize) -> f64 {
    (0.02 * n as f64).max(4.0)
}

/// The border as a plain band of one colour on all four sides: on each
/// side (profile from the outside in, with the outline's item edge), the
/// candidates are the stretches between two consecutive steps that start
/// with a clear step near the outline or up to a border's width outside it
/// (the outline may have followed the print frame when the item's own edge
/// is faint) and are no wider than a border. One candidate per side is
/// chosen so that the four colours agree best; table texture, clutter and
/// print art do not repeat one colour in the same place on all four sides.
/// Returns (item edge, print edge) per side in outside-in samples, or
/// `None` when no choice agrees.
fn border_bands(sides: &[(Vec<Sample>, f64); 4]) -> Option<[(f64, f64); 4]> {
    struct Band {
        item: usize,
        print: usize,
        colour: Sample,
    }
    let mut cands: Vec<(Vec<Band>, Vec<f64>)> = Vec::with_capacity(4);
    for (p, expected) in sides {
        let n = p.len();
        let step = step_profile(p);
        let peaks: Vec<usize> = (1..step.len())
            .filter(|&i| is_peak(&step, i) && step[i] >= MIN_PRINT_STEP)
            .collect();
        let widest = BORDER_MAX * n as f64;
        let (lo, hi) = (expected - widest, expected + tolerance(n));
        let bands: Vec<Band> = peaks
            .windows(2)
            .filter(|pair| {
                let (a, b) = (pair[0], pair[1]);
                (lo..=hi).contains(&(a as f64 + 0.5))
                    && ((b - a) as f64) <= widest
                    && step[a] >= MIN_STEP
                    // At least two samples between the two steps.
                    && b > a + STEP_SPAN
            })
            .map(|pair| {
                let (a, b) = (pair[0], pair[1]);
                let inside = &p[a + STEP_SPAN - 1..b];
                let colour = std::array::from_fn(|c| {
                    let mut v: Vec<f64> = inside.iter().map(|s| s[c]).collect();
                    let mid = v.len() / 2;
                    *v.select_nth_unstable_by(mid, |x, y| x.total_cmp(y)).1
                });
                Band {
                    item: a,
                    print: b,
                    colour,
                }
            })
            .collect();
        if bands.is_empty() {
            return None;
        }
        cands.push((bands, step));
    }
    // Each candidate's colour in turn as the border's: the nearest band on
    // every side, and how far the furthest of them is.
    let mut best: Option<(f64, [usize; 4])> = None;
    for (bands, _) in &cands {
        for reference in bands {
            let mut pick = [0usize; 4];
            let mut worst = 0.0f64;
            for (k, (side, _)) in cands.iter().enumerate() {
                let (j, d) = side
                    .iter()
                    .map(|b| distance(&b.colour, &reference.colour))
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("non-empty");
                pick[k] = j;
                worst = worst.max(d);
            }
            if best.is_none_or(|(w, _)| worst < w) {
                best = Some((worst, pick));
            }
        }
    }
    let (worst, pick) = best?;
    if worst > BORDER_COLOUR_TOL {
        return None;
    }
    Some(std::array::from_fn(|k| {
        let (bands, step) = &cands[k];
        let b = &bands[pick[k]];
        (refine(step, b.item), refine(step, b.print))
    }))
}

/// On one side (profile from the outside in), the item edge and the print
/// edge, each located at sub-pixel precision by a parabola through its
/// step peak; `expected` is where the located outline puts the item edge.
///
/// - The item edge is the first clear step within a few pixels of where the
///   outline put it. Steps count in either direction (a white border on a
///   grey table rises into a darker print, a black border falls from the
///   table) and a faint one counts. Where no step is clear there (a black
///   border on its own shadow), the outline's position stands. Where no
///   print edge lies inside the step found, the outline followed the print
///   edge (the item's own edge being faint): that step is the print edge
///   and the item edge is the nearest clear step outside it.
/// - The print edge is the first clear step inside it, within
///   [`BORDER_MAX`] of the profile: the border band between the two is
///   plain, while the art inside the print area may hold stronger edges
///   than the print edge.
pub(super) fn steps(p: &[Sample], expected: f64) -> Option<(f64, f64)> {
    let n = p.len();
    if n < 16 {
        return None;
    }
    let step = step_profile(p);
    let peak = |i: usize| is_peak(&step, i);
    let strongest = |lo: usize, hi: usize| {
        (lo..hi.min(step.len()))
            .map(|i| step[i])
            .fold(0.0, f64::max)
    };
    let first_clear = |lo: usize, hi: usize, rel: f64, min: f64| {
        let floor = (rel * strongest(lo, hi)).max(min);
        (lo..hi.min(step.len())).find(|&i| peak(i) && step[i] >= floor)
    };
    let tol = tolerance(n);
    let (lo, hi) = (
        (expected - tol).max(1.0) as usize,
        (expected + tol).ceil() as usize,
    );
    let band = (BORDER_MAX * n as f64) as usize;
    let print_inside = |card: f64| {
        let from = card.ceil() as usize + STEP_SPAN;
        first_clear(from, from + band, 1.0 / 8.0, MIN_PRINT_STEP).map(|i| refine(&step, i))
    };
    Some(match first_clear(lo, hi + 1, 1.0 / 8.0, MIN_STEP) {
        Some(i) => match print_inside(refine(&step, i)) {
            Some(print) => (refine(&step, i), print),
            // No print edge inside: the step found is the print edge and
            // the item edge is the nearest clear step outside it.
            None => {
                let outer = (lo.saturating_sub(band).max(1)..i.saturating_sub(STEP_SPAN))
                    .rev()
                    .find(|&j| peak(j) && step[j] >= (step[i] / 8.0).max(MIN_STEP))?;
                (refine(&step, outer), refine(&step, i))
            }
        },
        None => (expected, print_inside(expected)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile from the outside in, as stretches of one sample each.
    fn profile(stretches: &[(usize, Sample)]) -> Vec<Sample> {
        stretches
            .iter()
            .flat_map(|&(len, s)| std::iter::repeat_n(s, len))
            .collect()
    }

    #[test]
    fn a_border_differing_only_in_hue_steps() {
        // Grey table, green border of the same luma, dark print.
        let p = profile(&[
            (30, [120.0, 0.0, 0.0]),
            (15, [120.0, -15.0, -56.0]),
            (60, [60.0, 0.0, 0.0]),
        ]);
        let (card, print) = steps(&p, 30.0).expect("edges");
        assert!((card - 29.5).abs() < 1.0, "{card}");
        assert!((print - 44.5).abs() < 1.0, "{print}");
    }

    /// The outline followed the print frame (a black border barely darker
    /// than the table), and the art holds a plain stretch inside: the
    /// border is the band of one colour on all four sides, outside it.
    #[test]
    fn the_border_is_the_band_that_agrees_on_all_four_sides() {
        let side = |art: f64| {
            profile(&[
                (20, [50.0, 0.0, 0.0]),
                (12, [33.0, 0.0, 0.0]),
                (10, [art, 0.0, 0.0]),
                (8, [200.0, 0.0, 0.0]),
                (60, [180.0, 0.0, 0.0]),
            ])
        };
        let sides = [
            (side(90.0), 32.0),
            (side(120.0), 32.0),
            (side(150.0), 32.0),
            (side(240.0), 32.0),
        ];
        let got = border_bands(&sides).expect("border");
        for (card, print) in got {
            assert!((card - 19.5).abs() < 1.0, "{got:?}");
            assert!((print - 31.5).abs() < 1.0, "{got:?}");
        }
    }

    #[test]
    fn no_band_when_the_sides_disagree() {
        let side = |border: f64| {
            profile(&[
                (20, [128.0, 0.0, 0.0]),
                (12, [border, 0.0, 0.0]),
                (60, [200.0, 0.0, 0.0]),
            ])
        };
        let sides = [
            (side(20.0), 20.0),
            (side(60.0), 20.0),
            (side(100.0), 20.0),
            (side(250.0), 20.0),
        ];
        assert!(border_bands(&sides).is_none());
    }
}
