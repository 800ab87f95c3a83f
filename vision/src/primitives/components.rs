//! Connected components with stats (`connectedComponentsWithStats`,
//! 8-connectivity).
//!
//! burn-vision's implementation is not reachable for `NdArray` in 0.21 (see
//! `morph.rs`), and the pipeline needs per-component statistics on the host
//! anyway (they decide defect types), so the mask is read back once and
//! labelled with a two-pass union-find. Labels are assigned in raster order
//! of each component's first pixel, like OpenCV's.

use burn_tensor::{backend::Backend, Tensor};

/// One foreground component (OpenCV's `CC_STAT_*` plus centroid and second
/// central moments, which give length, width and orientation).
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub label: u32,
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
    pub area: usize,
    pub cx: f64,
    pub cy: f64,
    /// Central second moments (per pixel): var x, var y, cov xy.
    pub mxx: f64,
    pub myy: f64,
    pub mxy: f64,
}

impl Component {
    /// Principal axis standard deviations (major, minor).
    pub fn axes(&self) -> (f64, f64) {
        let tr = self.mxx + self.myy;
        let det = self.mxx * self.myy - self.mxy * self.mxy;
        let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
        (
            (tr / 2.0 + disc).max(0.0).sqrt(),
            (tr / 2.0 - disc).max(0.0).sqrt(),
        )
    }
    /// Length of the major axis of the equivalent uniform segment (√12·σ).
    pub fn length(&self) -> f64 {
        self.axes().0 * 12f64.sqrt()
    }
    /// Bounding box as `[x0, y0, x1, y1)`.
    pub fn window(&self) -> [usize; 4] {
        [
            self.left,
            self.top,
            self.left + self.width,
            self.top + self.height,
        ]
    }
}

fn find(parent: &mut [u32], mut a: u32) -> u32 {
    while parent[a as usize] != a {
        parent[a as usize] = parent[parent[a as usize] as usize];
        a = parent[a as usize];
    }
    a
}

/// Label a host mask (`true` = foreground) of `w × h`. Returns the label
/// image (0 = background) and the components, label `i` at index `i - 1`.
pub fn label_mask(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, Vec<Component>) {
    let mut labels = vec![0u32; w * h];
    let mut parent: Vec<u32> = vec![0];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !mask[i] {
                continue;
            }
            // Already-visited 8-neighbours: W, NW, N, NE.
            let mut best = 0u32;
            let mut neigh = [0u32; 4];
            if x > 0 {
                neigh[0] = labels[i - 1];
            }
            if y > 0 {
                if x > 0 {
                    neigh[1] = labels[i - w - 1];
                }
                neigh[2] = labels[i - w];
                if x + 1 < w {
                    neigh[3] = labels[i - w + 1];
                }
            }
            // Inside a region every labelled neighbour carries one label:
            // nothing to merge, so no root lookups (the second pass resolves
            // labels to roots anyway).
            let first = neigh.iter().copied().find(|&l| l != 0).unwrap_or(0);
            if first != 0 && neigh.iter().all(|&l| l == 0 || l == first) {
                labels[i] = first;
                continue;
            }
            for &l in &neigh {
                if l != 0 {
                    let r = find(&mut parent, l);
                    best = if best == 0 { r } else { best.min(r) };
                }
            }
            if best == 0 {
                best = parent.len() as u32;
                parent.push(best);
            } else {
                for &l in &neigh {
                    if l != 0 {
                        let r = find(&mut parent, l);
                        if r != best {
                            let (lo, hi) = (r.min(best), r.max(best));
                            parent[hi as usize] = lo;
                            best = lo;
                        }
                    }
                }
            }
            labels[i] = best;
        }
    }
    // Compact labels in raster order of first appearance.
    let mut remap = vec![0u32; parent.len()];
    let mut next = 0u32;
    let mut acc: Vec<[f64; 9]> = Vec::new(); // n, sx, sy, sxx, syy, sxy, minx, miny, maxx/maxy packed below
    let mut bounds: Vec<[usize; 4]> = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if labels[i] == 0 {
                continue;
            }
            let root = find(&mut parent, labels[i]) as usize;
            if remap[root] == 0 {
                next += 1;
                remap[root] = next;
                acc.push([0.0; 9]);
                bounds.push([x, y, x, y]);
            }
            let l = remap[root];
            labels[i] = l;
            let a = &mut acc[l as usize - 1];
            let (fx, fy) = (x as f64, y as f64);
            a[0] += 1.0;
            a[1] += fx;
            a[2] += fy;
            a[3] += fx * fx;
            a[4] += fy * fy;
            a[5] += fx * fy;
            let b = &mut bounds[l as usize - 1];
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
    }
    let comps = acc
        .iter()
        .zip(&bounds)
        .enumerate()
        .map(|(k, (a, b))| {
            let n = a[0];
            let (cx, cy) = (a[1] / n, a[2] / n);
            Component {
                label: k as u32 + 1,
                left: b[0],
                top: b[1],
                width: b[2] - b[0] + 1,
                height: b[3] - b[1] + 1,
                area: n as usize,
                cx,
                cy,
                mxx: a[3] / n - cx * cx,
                myy: a[4] / n - cy * cy,
                mxy: a[5] / n - cx * cy,
            }
        })
        .collect();
    (labels, comps)
}

/// Connected components (8-connectivity) of a `[1, 1, H, W]` mask
/// (foreground = value > 0.5), with stats.
pub fn connected_components_with_stats<B: Backend>(
    mask: Tensor<B, 4>,
) -> (Vec<u32>, Vec<Component>) {
    let [n, c, h, w] = mask.dims();
    assert_eq!((n, c), (1, 1), "one mask at a time");
    let bits: Vec<bool> = crate::frames::to_vec_f32(mask)
        .iter()
        .map(|&v| v > 0.5)
        .collect();
    label_mask(&bits, w, h)
}
