//! The `item_crop` scan (DESIGN.md "Scan kinds" 2, seed 000): find every
//! card or comic in a photo and return a box, a quadrilateral, a confidence
//! and a perspective-corrected crop per item — with no detector weights.
//!
//! Pipeline (tensor stages run on any [`ScanBackend`]):
//!
//! 1. decode on the host ([`crate::photo`]): header first, JPEG DCT
//!    reduction for huge photos, downscale to the working size;
//! 2. gray → area-resize to the detection size → Gaussian blur → Canny →
//!    close 3×3 (bridge one-pixel gaps) → dilate 2×2 (turn the 8-connected
//!    edge lines into 4-connected walls, so that 8-connected regions cannot
//!    leak diagonally through them);
//! 3. label the regions *enclosed* by the walls (components of the
//!    non-wall mask). The background touches the image border and is
//!    dropped; so are small and non-rectangular regions. An item's outermost
//!    region (its border band, or the whole item) has the item's outline as
//!    convex hull, whatever art is printed inside; regions nested in an
//!    accepted item are its art and are dropped. Items that touch or overlap
//!    stay separate wherever the seam between them is an edge, because each
//!    item's border band is its own region. Where that is not enough (gaps
//!    in a seam, print areas broken up by art, clutter stuck to an item),
//!    more rules apply: a blob outlined by walls all round is one item,
//!    whatever pieces of print area it holds; a blob's only core stands for its
//!    blob with strips narrower than a border band (clutter) opened off,
//!    where walls outline that; the rest of a blob, once its items are
//!    taken out, is another item when it is solid (or outlined by walls
//!    nearly all round), item-shaped (counting what lies under the items on
//!    top of it) and was cut from them along a wall, with gaps of up to two
//!    pixels in its walls sealed (and a found item's rim opened off it where
//!    that spoils its shape); a straight wall crossing a whole part (or a
//!    leftover that is not item-shaped) splits it when both halves are
//!    item-shaped; a quadrilateral framed by four straight walls (Hough
//!    lines, [`framed`]) is an item where no part walled all round is, and
//!    takes the place of a part that is not walled and holds two frames
//!    (two items taken for one); and an item lying mostly inside a larger
//!    one is dropped;
//! 4. host geometry per item: convex hull → minimum-area rectangle → one
//!    line fitted to the boundary points along each side (perspective makes
//!    the sides non-parallel; refitted without the few points off it, a
//!    speck touching the side) → corners as line intersections; a side
//!    with little wall along it (clutter stuck to it pulled it out or
//!    tilted it) moves in onto the item's edge;
//! 5. crop: bilinear remap of the working BGR image through the homography
//!    from the upright crop rectangle to the quadrilateral.

use std::time::Instant;

/// The version of what `item_crop` returns. Bump it in the same commit as
/// any change that can change a result: the worker's result cache keys on
/// it, and `vision/tests/golden.rs` fails when outputs change without a bump.
pub const PIPELINE_VERSION: u32 = 1;

use burn_tensor::Tensor;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    backend::ScanBackend,
    canny::canny,
    error::VisionError,
    frames::{stack_bgr, to_vec_f32, unstack_bgr},
    photo::{decode_photo, working_size, DecodeLimits, PhotoFormat},
    pipeline::{encode_jpeg, StageTiming, Timer},
    primitives::{
        apply_homography, bgr_to_gray, close, dilate, gaussian_blur, homography, label_mask,
        morph_host, remap_bilinear, resize, round_levels, Border, Interpolation, MorphOp,
        MorphShape,
    },
    transfers::{Meter, Transfers},
};

mod framed;
pub(crate) mod geometry;
mod hidden;
#[cfg(test)]
mod test_walls;

use geometry::{
    convex_hull, dist, dot, fit_line_trimmed, grow_quad, intersect, min_area_rect, normal_facing,
    orient, point_in_convex, polygon_area, quad_bbox, quad_centre, quad_distance, share_inside,
    step, towards, Line, MinRect,
};

/// Per-scan knobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemCropOptions {
    /// Long side of the working image, in which crops are cut (`DOWNSCALE_MAX`).
    pub downscale_max: usize,
    /// Long side at which items are detected (outlines need no more; a
    /// smaller image also averages away background texture).
    pub detect_max_side: usize,
    pub max_decoded_pixels: usize,
    pub max_bytes: usize,
    /// Blur before Canny, in detection pixels.
    pub blur_sigma: f64,
    pub canny_low: f32,
    pub canny_high: f32,
    /// Smallest item, as a fraction of the photo's area.
    pub min_item_area_frac: f64,
    /// Smallest short/long side ratio (cards are 0.72, comics about 0.65,
    /// tarot cards 0.57; a strip of an item cut off by its art is less).
    pub min_aspect: f64,
    /// Smallest convex-hull area / rectangle area of an item's region.
    pub min_rectangularity: f64,
    pub jpeg_quality: i32,
}

impl Default for ItemCropOptions {
    fn default() -> Self {
        Self {
            downscale_max: 1280,
            detect_max_side: 800,
            max_decoded_pixels: DecodeLimits::default().max_decoded_pixels,
            max_bytes: DecodeLimits::default().max_bytes,
            blur_sigma: 1.2,
            canny_low: 20.0,
            canny_high: 50.0,
            min_item_area_frac: 0.004,
            min_aspect: 0.5,
            min_rectangularity: 0.88,
            jpeg_quality: 90,
        }
    }
}

/// A rotated rectangle: centre, size along its own axes, and the angle of
/// its width axis (the TL→TR side) from the image x axis, in degrees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotatedRect {
    pub center: [f64; 2],
    pub size: [f64; 2],
    pub angle_deg: f64,
}

/// One item found in the photo. Coordinates are in source-image pixels
/// (pixel centres at integers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CroppedItem {
    pub index: usize,
    /// Axis-aligned box `[x0, y0, x1, y1]`.
    pub bbox: [f64; 4],
    /// Corners TL, TR, BR, BL, clockwise; TL→TR is the side nearest to
    /// horizontal, so the crop comes out the way the item lies in the photo.
    pub quad: [[f64; 2]; 4],
    pub rotated_rect: RotatedRect,
    /// 0..1: the share of the outline backed by an edge, times how
    /// rectangular the item's region is.
    pub confidence: f64,
    /// Crop size `[w, h]` in working-image pixels.
    pub crop_size: [usize; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemCropReport {
    pub schema_version: u32,
    pub backend: String,
    pub format: PhotoFormat,
    pub source_size: [usize; 2],
    /// JPEG DCT reduction used while decoding (1 = full size).
    pub decode_reduction: usize,
    pub working_size: [usize; 2],
    pub detect_size: [usize; 2],
    pub items: Vec<CroppedItem>,
    pub timings_ms: Vec<StageTiming>,
    pub total_ms: f64,
    /// `device_reads` and `device_writes` of this scan.
    #[serde(flatten, default)]
    pub transfers: Transfers,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ItemCropOutput {
    pub report: ItemCropReport,
    /// One JPEG per item, in `report.items` order.
    pub crops: Vec<Vec<u8>>,
}

/// Below this many pixels on the short side there is no room for an item
/// (and the filters' borders would be larger than the image).
const MIN_WORKING_SIDE: usize = 16;

/// Run one `item_crop` on backend `B`.
pub fn crop_items<B: ScanBackend>(
    bytes: &[u8],
    opts: &ItemCropOptions,
    device: &B::Device,
) -> Result<ItemCropOutput, VisionError> {
    let start = Instant::now();
    let meter = Meter::start();
    let mut timer = Timer::default();

    let t = Instant::now();
    let limits = DecodeLimits {
        downscale_max: opts.downscale_max,
        max_decoded_pixels: opts.max_decoded_pixels,
        max_bytes: opts.max_bytes,
    };
    let photo = decode_photo(bytes, &limits)?;
    timer.add("decode", t);
    let (ww, wh) = (photo.working.cols() as usize, photo.working.rows() as usize);
    let (dw, dh) = working_size(ww, wh, opts.detect_max_side);

    let mut items = Vec::new();
    let mut crops = Vec::new();
    if ww.min(wh) >= MIN_WORKING_SIDE {
        let t = Instant::now();
        let bgr = stack_bgr::<B>(std::slice::from_ref(&photo.working), device)?;
        let walls = edge_walls(bgr.clone(), dw, dh, opts);
        timer.add("edges", t);

        let t = Instant::now();
        let found = find_items(&walls, dw, dh, opts);
        timer.add("regions", t);

        let t = Instant::now();
        // Detection → working pixels (pixel centres scale about the half-pixel offset).
        let (sx, sy) = (ww as f64 / dw as f64, wh as f64 / dh as f64);
        let to_working = |p: [f64; 2]| [(p[0] + 0.5) * sx - 0.5, (p[1] + 0.5) * sy - 0.5];
        let (kx, ky) = photo.scale;
        let to_source = |p: [f64; 2]| [(p[0] + 0.5) * kx - 0.5, (p[1] + 0.5) * ky - 0.5];
        for (index, item) in found.iter().enumerate() {
            let quad_w = item.quad.map(to_working);
            let (crop, cw, ch) = rectify::<B>(bgr.clone(), &quad_w)?;
            let image = unstack_bgr(crop).pop().expect("one crop");
            crops.push(encode_jpeg(&image.to_mat()?, opts.jpeg_quality)?);
            items.push(describe(
                index,
                quad_w.map(to_source),
                item.confidence,
                [cw, ch],
            ));
        }
        timer.add("crop", t);
    }

    let report = ItemCropReport {
        schema_version: 1,
        backend: B::NAME.into(),
        format: photo.header.format,
        source_size: [photo.header.width, photo.header.height],
        decode_reduction: photo.reduction,
        working_size: [ww, wh],
        detect_size: [dw, dh],
        items,
        timings_ms: timer.stages,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        transfers: meter.taken(),
    };
    Ok(ItemCropOutput { report, crops })
}

/// Stage 2 on the device: the wall mask at detection size, read back once.
pub fn edge_walls<B: ScanBackend>(
    bgr: Tensor<B, 4>,
    dw: usize,
    dh: usize,
    opts: &ItemCropOptions,
) -> Vec<bool> {
    let gray = round_levels(resize(bgr_to_gray(bgr), dw, dh, Interpolation::Area));
    let smooth = gaussian_blur(gray, 0, opts.blur_sigma, Border::Reflect101);
    let edges = canny(smooth, opts.canny_low, opts.canny_high);
    let walls = dilate(
        close(edges, MorphShape::Rect, 3, 3),
        MorphShape::Rect,
        2,
        2,
        1,
    );
    to_vec_f32(walls).iter().map(|&v| v > 0.5).collect()
}

/// An item in detection pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundItem {
    /// TL, TR, BR, BL of the outline (continuous coordinates, pixel centres at integers).
    pub quad: [[f64; 2]; 4],
    pub confidence: f64,
}

/// Where the outline lies relative to the boundary pixel centres of a
/// shape, in pixels outwards. The wall is the Canny line (on either side of
/// the true step) plus one pixel towards +x/+y from the 2×2 dilation, so:
/// - an enclosed region's last pixel is on average 1.5 px inside the
///   outline (2 px on the left/top sides, 1 px on the right/bottom ones);
/// - a blob (walls included)'s last pixel is on average 0.5 px outside it
///   (0 px on the left/top, 1 px on the right/bottom).
///
/// Lines fitted to the boundary move out by the mean and the quad then
/// shifts by [`WALL_SHIFT`] to undo the +x/+y asymmetry.
const REGION_OFFSET: f64 = 1.5;
const BLOB_OFFSET: f64 = -0.5;
const WALL_SHIFT: f64 = -0.5;

/// A shape that passed the item filters.
#[derive(Clone, Debug)]
struct Shape {
    rect: MinRect,
    rectangularity: f64,
    /// Share of the rectangle the region's own pixels cover: an item's
    /// border band alone (a ring) covers little, its print area most.
    solidity: f64,
    quad: [[f64; 2]; 4],
}

impl Shape {
    /// Whether this (a blob or part of one) is plausibly the outline of the
    /// item `core` belongs to: around it and not much larger (a print area
    /// is 75–90 % of its item; a core can be a piece of the border band).
    fn fits_around(&self, core: &Shape) -> bool {
        point_in_convex(&self.quad, core.rect.centre) && self.rect.area() <= 1.7 * core.rect.area()
    }
}

/// Hull → minimum-area rectangle → filters → quad, for one shape's boundary pixels.
fn fit_shape(region: &Region, offset: f64, min_area: f64, opts: &ItemCropOptions) -> Option<Shape> {
    fit_shape_under(region, offset, min_area, opts, &[])
}

/// [`fit_shape`] for a shape that may lie partly under items on top of it
/// (`over`): the part of its rectangle they cover counts as the shape's
/// own, as an item with a corner hidden under another is still a rectangle.
fn fit_shape_under(
    region: &Region,
    offset: f64,
    min_area: f64,
    opts: &ItemCropOptions,
    over: &[[[f64; 2]; 4]],
) -> Option<Shape> {
    let boundary = &region.boundary;
    let hull = convex_hull(boundary);
    if hull.len() < 3 {
        return None;
    }
    let rect = min_area_rect(&hull);
    let (long, short) = (
        rect.half[0].max(rect.half[1]) * 2.0,
        rect.half[0].min(rect.half[1]) * 2.0,
    );
    let hidden = hidden_under(&rect, &hull, over);
    let rectangularity = (polygon_area(&hull) + hidden) / (long * short).max(1e-9);
    if long * short < min_area
        || rect.aspect() < opts.min_aspect
        || rectangularity < opts.min_rectangularity
    {
        return None;
    }
    let quad = fit_quad(&rect, boundary, offset);
    Some(Shape {
        solidity: (region.pixels as f64 + hidden) / rect.area().max(1.0),
        rect,
        rectangularity,
        quad,
    })
}

/// Area of `rect` outside `hull` that lies under one of the quads `over`,
/// counted on a one-pixel grid.
fn hidden_under(rect: &MinRect, hull: &[[f64; 2]], over: &[[[f64; 2]; 4]]) -> f64 {
    if over.is_empty() {
        return 0.0;
    }
    let [a, b] = rect.half;
    let mut hidden = 0usize;
    for v in 0..(2.0 * b).ceil() as usize {
        for u in 0..(2.0 * a).ceil() as usize {
            let p = rect.point(u as f64 + 0.5 - a, v as f64 + 0.5 - b);
            // The quads first: four sides against the hull's many.
            hidden +=
                (over.iter().any(|q| point_in_convex(q, p)) && !point_in_convex(hull, p)) as usize;
        }
    }
    hidden as f64
}

/// One group of pixels: its boundary pixels' centres and its size.
#[derive(Clone, Debug, Default)]
struct Region {
    boundary: Vec<[f64; 2]>,
    pixels: usize,
}

impl Region {
    /// Boundary found in a window whose top left is `origin`, moved to image coordinates.
    fn moved_to(mut self, origin: [usize; 2]) -> Self {
        self.boundary
            .iter_mut()
            .for_each(|p| *p = [p[0] + origin[0] as f64, p[1] + origin[1] as f64]);
        self
    }
}

/// Image coordinates of the pixels of group `g` in `group`, a window `bw`
/// wide whose top left is `origin`.
fn group_pixels(group: &[usize], g: usize, bw: usize, origin: [usize; 2]) -> Vec<(usize, usize)> {
    (0..group.len())
        .filter(|&i| group[i] == g)
        .map(|i| (origin[0] + i % bw, origin[1] + i / bw))
        .collect()
}

/// The boundary pixels (a 4-neighbour differs, or lies outside the image)
/// and size of every group in `group` (`usize::MAX` = none).
fn boundaries(group: &[usize], groups: usize, w: usize, h: usize) -> Vec<Region> {
    boundaries_in(group, groups, w, h, [0, 0, w, h])
}

/// [`boundaries`] when every grouped pixel lies in `window` (`[x0, y0, x1, y1)`):
/// only the window is scanned.
fn boundaries_in(
    group: &[usize],
    groups: usize,
    w: usize,
    h: usize,
    window: [usize; 4],
) -> Vec<Region> {
    let mut out = vec![Region::default(); groups];
    for y in window[1]..window[3] {
        for x in window[0]..window[2] {
            let g = group[y * w + x];
            if g == usize::MAX {
                continue;
            }
            out[g].pixels += 1;
            let differs = |xx: isize, yy: isize| {
                xx < 0
                    || yy < 0
                    || xx as usize >= w
                    || yy as usize >= h
                    || group[yy as usize * w + xx as usize] != g
            };
            let (xi, yi) = (x as isize, y as isize);
            if differs(xi - 1, yi)
                || differs(xi + 1, yi)
                || differs(xi, yi - 1)
                || differs(xi, yi + 1)
            {
                out[g].boundary.push([x as f64, y as f64]);
            }
        }
    }
    out
}

/// Stages 3 and 4 on the host: walls → items.
///
/// The background is every region that touches the image border; each
/// connected blob of the rest (walls included) is one item, or several
/// items that touch or overlap. Enclosed regions that are themselves
/// item-like ("cores": an item's border band or print area) tell them
/// apart: a blob holding two or more large disjoint cores is split between
/// them, each pixel going to the nearest core. The split is kept only if
/// every part is item-shaped.
pub fn find_items(walls: &[bool], w: usize, h: usize, opts: &ItemCropOptions) -> Vec<FoundItem> {
    let open: Vec<bool> = walls.iter().map(|&v| !v).collect();
    let (labels, comps) = label_mask(&open, w, h);
    let min_area = opts.min_item_area_frac * (w * h) as f64;
    let mut background = vec![false; comps.len() + 1];
    for c in &comps {
        background[c.label as usize] = touches_border(c, w, h);
    }

    // Cores: enclosed regions big enough to be an item's band or print area.
    let mut core_slot = vec![usize::MAX; comps.len() + 1];
    let mut n_regions = 0;
    for c in comps.iter().filter(|c| {
        !background[c.label as usize] && ((c.width * c.height) as f64) >= min_area * 0.5
    }) {
        core_slot[c.label as usize] = n_regions;
        n_regions += 1;
    }
    let region_of: Vec<usize> = labels
        .iter()
        .map(|&l| {
            if l == 0 {
                usize::MAX
            } else {
                core_slot[l as usize]
            }
        })
        .collect();
    let mut cores: Vec<Shape> = boundaries(&region_of, n_regions, w, h)
        .iter()
        .filter_map(|b| fit_shape(b, REGION_OFFSET, min_area, opts))
        .collect();
    // Outermost first; a core inside another is that item's art. But a ring
    // (border bands, little of its rectangle covered) can be the bands of
    // two touching items run together through a gap in the seam: when it
    // holds two or more cores of an item's size (print areas, each well
    // under the ring's area), those stand for the items instead.
    cores.sort_by(|a, b| b.rect.area().total_cmp(&a.rect.area()));
    let mut outer: Vec<Shape> = Vec::new();
    let mut in_ring: Vec<Vec<Shape>> = Vec::new();
    for core in cores {
        match outer
            .iter()
            .position(|o| point_in_convex(&o.quad, core.rect.centre))
        {
            None => {
                outer.push(core);
                in_ring.push(Vec::new());
            }
            Some(i) => {
                let ring = &outer[i];
                let apart = in_ring[i]
                    .iter()
                    .all(|c| !point_in_convex(&c.quad, core.rect.centre));
                if ring.solidity < 0.5
                    && core.rect.area() < 0.55 * ring.rect.area()
                    && core.rect.area() > 0.2 * ring.rect.area()
                    && apart
                {
                    in_ring[i].push(core);
                }
            }
        }
    }
    let outer: Vec<Shape> = outer
        .into_iter()
        .zip(in_ring)
        .flat_map(|(ring, inner)| if inner.len() >= 2 { inner } else { vec![ring] })
        .collect();

    let near_wall = within_a_pixel(walls, w, h);

    // Blobs: everything that is not background.
    let solid: Vec<bool> = labels
        .iter()
        .map(|&l| l == 0 || !background[l as usize])
        .collect();
    // The same where the background may not pass through a gap of up to two
    // pixels in a wall: a card whose border band (or print area) leaks out
    // through a break in its edge line is still solid there. Only the
    // leftovers search uses them: everywhere else the gaps let out the
    // shadows and clutter that lie close to an item's edge.
    let (sealed_labels, sealed_blobs) = label_mask(&sealed_solid(&near_wall, w, h), w, h);
    let (blob_labels, blobs) = label_mask(&solid, w, h);
    let mut items = Vec::new();
    // Every blob's items, with the cores each holds.
    let mut parts_found: Vec<Part> = Vec::new();
    for blob in blobs
        .iter()
        .filter(|b| ((b.width * b.height) as f64) >= min_area * 0.5)
    {
        let inside: Vec<&Shape> = outer
            .iter()
            .filter(|c| {
                let (cx, cy) = (
                    c.rect.centre[0].round() as usize,
                    c.rect.centre[1].round() as usize,
                );
                cx < w && cy < h && blob_labels[cy * w + cx] == blob.label
            })
            .collect();
        // Cores big enough to be a whole item's band or print area (art
        // regions are smaller; the nesting test already removed most):
        // big next to the blob or, in a blob of many items, next to its
        // largest core.
        let largest = inside.iter().map(|c| c.rect.area()).fold(0.0, f64::max);
        let floor = (0.12 * blob.area as f64).min(0.35 * largest);
        let big: Vec<&Shape> = inside
            .into_iter()
            .filter(|c| c.rect.area() >= floor)
            .collect();
        let whole_blob = || {
            let group: Vec<usize> = blob_labels
                .iter()
                .map(|&l| if l == blob.label { 0 } else { usize::MAX })
                .collect();
            boundaries_in(&group, 1, w, h, blob.window())
                .iter()
                .find_map(|b| fit_shape(b, BLOB_OFFSET, min_area, opts))
        };
        let sealed_label = (blob.top..blob.top + blob.height)
            .flat_map(|y| (blob.left..blob.left + blob.width).map(move |x| y * w + x))
            .find(|&i| blob_labels[i] == blob.label)
            .map_or(0, |i| sealed_labels[i]);
        let Some(sealed) = sealed_blobs.iter().find(|b| b.label == sealed_label) else {
            continue;
        };
        let scan = BlobScan {
            blob_labels: &blob_labels,
            blob,
            sealed_labels: &sealed_labels,
            sealed,
            walls,
            near_wall: &near_wall,
            w,
            h,
            min_area,
            opts,
        };
        let split = if big.len() >= 2 {
            split_blob(&blob_labels, blob, &big, &near_wall, w, h, min_area, opts)
        } else {
            None
        };
        // Where a core stands alone, a print area grows to the item's outline.
        let outline = |core: &Shape| outline_from_core(core, &near_wall, w, h, 3);
        // Three sides that agree make an outline to trust; where a core stands
        // for its item regardless, two are still better than the core alone
        // (a piece of print area grows to the item's edge on those sides).
        let alone = |core: &Shape| {
            outline(core)
                .or_else(|| outline_from_core(core, &near_wall, w, h, 2))
                .unwrap_or_else(|| core.clone())
        };
        // Clutter stuck to an item widens its part beyond the outline its
        // print area shows — but then the part's outline is not all wall:
        // one that is, is the item's, and the core only a piece of its
        // print area.
        let unless_cluttered = |part: Shape, core: &Shape| match outline(core) {
            Some(o)
                if part.rect.area() > 1.12 * o.rect.area()
                    && edge_support(&part.quad, walls, w, h) < WALLED =>
            {
                o
            }
            _ => part,
        };
        // The item of a blob's only core: the blob with strips narrower
        // than a border band opened off (a stick of clutter stuck to the
        // item), where walls outline that, it fits around the core and reaches at least
        // as far as the core's outline (the blob falls short of the item's
        // edge where the border band leaks out into the background); else
        // the core's outline.
        let trimmed_blob = || {
            let mask: Vec<bool> = (blob.top..blob.top + blob.height)
                .flat_map(|y| (blob.left..blob.left + blob.width).map(move |x| y * w + x))
                .map(|i| blob_labels[i] == blob.label)
                .collect();
            let (piece, _) =
                without_strips(&mask, blob.width, blob.height, [blob.left, blob.top], STRIP)?;
            fit_shape(&piece, BLOB_OFFSET, min_area, opts)
                .filter(|s| edge_support(&s.quad, walls, w, h) >= OUTLINED)
        };
        let only_core_item = |core: &Shape| {
            let outlined = alone(core);
            trimmed_blob()
                .filter(|t| t.fits_around(core) && t.rect.area() >= outlined.rect.area())
                .unwrap_or(outlined)
        };
        let parts: Vec<Shape> = if let Some(split) = split {
            // Each core's part gives the outline (walls included); where a
            // part is spoilt (clutter stuck to it), the core alone stands in.
            split
                .into_iter()
                .zip(&big)
                .map(|(part, core)| {
                    part.filter(|p| p.fits_around(core))
                        .map_or_else(|| alone(core), |p| unless_cluttered(p, core))
                })
                .collect()
        } else {
            match (whole_blob(), big.first()) {
                // Not one item: each core stands for its own (the leftovers
                // below pick up items that have none) — unless the blob is
                // solid, nothing is left beside the core and either the core
                // shows no outline of its own or walls run all round the
                // blob: then the core is only a piece of the item's print
                // area (cut off by its art; an art line parallel to the
                // item's edge can fake an outline) and the blob is the item.
                (Some(part), Some(core)) if !part.fits_around(core) => {
                    let own: Vec<Shape> = if big.len() == 1 {
                        vec![only_core_item(core)]
                    } else {
                        big.iter().map(|c| alone(c)).collect()
                    };
                    let walled = || edge_support(&part.quad, walls, w, h) >= WALLED;
                    if big.len() == 1
                        && part.solidity >= 0.8
                        && (outline(core).is_none() || walled())
                        && scan.leftovers(&own).is_empty()
                    {
                        vec![part]
                    } else {
                        own
                    }
                }
                (Some(part), Some(core)) => vec![unless_cluttered(part, core)],
                (Some(part), None) => vec![part],
                (None, Some(core)) if big.len() == 1 => vec![only_core_item(core)],
                (None, Some(_)) => big.iter().map(|c| alone(c)).collect(),
                // No core, and the blob is no rectangle: an item whose print
                // area leaks out through its art, with clutter stuck to it.
                (None, None) => trimmed_blob().into_iter().collect(),
            }
        };
        let mut parts = parts;
        let leftovers = scan.leftovers(&parts);
        parts.extend(leftovers);
        let parts: Vec<Shape> = parts.into_iter().flat_map(|p| scan.split(p, 3)).collect();
        let parts = scan.rejoin_halves(parts);
        let parts = scan.with_framed(parts);
        for part in parts {
            let own_cores: Vec<[[f64; 2]; 4]> = big
                .iter()
                .filter(|c| point_in_convex(&part.quad, c.rect.centre))
                .map(|c| c.quad)
                .collect();
            parts_found.push((part, own_cores, blob.label));
        }
    }
    rejoin_across_blobs(&mut parts_found, walls, w, h, opts.min_aspect);
    // Items no region stands for: their print area and border band both
    // leak out through gaps in their edge, and their walls fall apart into
    // pieces too small to be a blob. Four straight walls still frame them
    // all round, clear of every item found.
    let found: Vec<[[f64; 2]; 4]> = parts_found
        .iter()
        .map(|(p, ..)| grow_quad(&p.quad, 3.0))
        .collect();
    let free = |i: usize| {
        !found
            .iter()
            .any(|q| point_in_convex(q, [(i % w) as f64, (i / w) as f64]))
    };
    for q in framed::framed_quads(walls, w, h, [0, 0, w, h], &free, min_area, opts.min_aspect) {
        let clear = parts_found
            .iter()
            .all(|(p, ..)| share_inside(&q, &p.quad) < 0.1 && share_inside(&p.quad, &q) < 0.1);
        if clear {
            parts_found.push((item_of_frame(q, &near_wall, w, h), Vec::new(), 0));
        }
    }
    // Each outline is refined against every other item in the photo: an
    // item lying on one in another blob (walled off from it all round)
    // hides that one's edge just the same.
    let quads: Vec<[[f64; 2]; 4]> = parts_found.iter().map(|(p, ..)| p.quad).collect();
    for (i, (part, own_cores, _)) in parts_found.iter().enumerate() {
        let others: Vec<[[f64; 2]; 4]> = quads
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, q)| *q)
            .collect();
        let outline = snap_in_weak_sides(part.quad, &others, own_cores, walls, w, h);
        let outline = grow_along_walled_sides(outline, &others, walls, w, h);
        let outline = hidden::restore_hidden_sides(outline, &others, walls, w, h);
        let support = edge_support(&outline, walls, w, h);
        let quad = orient(outline.map(|p| [p[0] + WALL_SHIFT, p[1] + WALL_SHIFT]));
        items.push(FoundItem {
            quad,
            confidence: (support * part.rectangularity.min(1.0)).clamp(0.0, 1.0),
        });
    }
    drop_nested(&mut items);
    // Reading order: top to bottom, then left to right, by centre.
    items.sort_by(|a, b| {
        let ca = quad_centre(&a.quad);
        let cb = quad_centre(&b.quad);
        (ca[1] + ca[0] * 0.25).total_cmp(&(cb[1] + cb[0] * 0.25))
    });
    items
}

/// An item part: its shape, the cores it holds and its blob's label.
type Part = (Shape, Vec<[[f64; 2]; 4]>, u32);

/// An item whose border band its art breaks on two opposite sides falls
/// apart into two blobs, each a half that walls do not outline
/// (`OUTLINED`: its inner side runs through the open); together the halves
/// fill an item whose outline walls do. `parts` holds each part with its
/// cores and its blob's label.
fn rejoin_across_blobs(parts: &mut Vec<Part>, walls: &[bool], w: usize, h: usize, min_aspect: f64) {
    let outlined = |s: &Shape| edge_support(&s.quad, walls, w, h) >= OUTLINED;
    'again: loop {
        for i in 0..parts.len() {
            for j in i + 1..parts.len() {
                let (a, b) = (&parts[i], &parts[j]);
                if a.2 == b.2 || outlined(&a.0) || outlined(&b.0) {
                    continue;
                }
                if let Some(whole) = union_of(&a.0, &b.0, min_aspect, walls, w, h).filter(outlined)
                {
                    let (_, cores, _) = parts.swap_remove(j);
                    parts[i].0 = whole;
                    parts[i].1.extend(cores);
                    continue 'again;
                }
            }
        }
        return;
    }
}

fn touches_border(c: &crate::primitives::Component, w: usize, h: usize) -> bool {
    c.left == 0 || c.top == 0 || c.left + c.width == w || c.top + c.height == h
}

/// Pixels not reached from the image border without crossing `near_wall`
/// (the walls grown by a pixel, which seals gaps of up to two pixels), once
/// the background is grown back by that pixel.
fn sealed_solid(near_wall: &[bool], w: usize, h: usize) -> Vec<bool> {
    let open: Vec<bool> = near_wall.iter().map(|&v| !v).collect();
    let (labels, comps) = label_mask(&open, w, h);
    let mut outside = vec![false; comps.len() + 1];
    for c in &comps {
        outside[c.label as usize] = touches_border(c, w, h);
    }
    let background: Vec<bool> = labels
        .iter()
        .map(|&l| l != 0 && outside[l as usize])
        .collect();
    within_a_pixel(&background, w, h)
        .into_iter()
        .map(|v| !v)
        .collect()
}

/// One blob (an item, or items that touch or overlap) and what the item
/// search inside it needs.
struct BlobScan<'a> {
    blob_labels: &'a [u32],
    blob: &'a crate::primitives::Component,
    /// The blob with gaps in its walls sealed (see [`sealed_solid`]), which holds it.
    sealed_labels: &'a [u32],
    sealed: &'a crate::primitives::Component,
    walls: &'a [bool],
    /// Within a pixel of a wall (the Canny line may sit on either side of the step).
    near_wall: &'a [bool],
    w: usize,
    h: usize,
    min_area: f64,
    opts: &'a ItemCropOptions,
}

/// Share of an outline that must run along walls for a blob to count as
/// one item's outline whatever its cores say.
const WALLED: f64 = 0.95;

/// Share of an outline that must run along walls for a leftover that is
/// not solid, or one trimmed of strips, to count as an item (a gap in an
/// edge line can be wider than the sealing's two pixels).
const OUTLINED: f64 = 0.85;

/// The same for each of two items a trimmed leftover parts into: one may
/// lie partly under the other, where it has no edge.
const HALF_OUTLINED: f64 = 0.7;

/// Least wall support of the rectangle of two pieces of one item that its
/// art cut apart, where neither is walled all round: the pieces' fitted
/// quads stick out a little past the item's edge here and there.
const HALVES_OUTLINED: f64 = 0.75;

/// Share of a seam's length that must run along a wall (art touching an
/// item's edge breaks the wall there; at 0.85 art lines split items).
const SEAM_COVERAGE: f64 = 0.90;
/// Width of the strips [`without_strips`] removes, in detection
/// pixels: about a border band's width (4–7 % of an item's, 5–15 pixels
/// for the items of a photo at the 800-pixel detection size).
const STRIP: usize = 9;
/// Width of the strips opened off a leftover to free it from the rest of
/// a found item's border band (up to about 10 % of an item's width, 20
/// detection pixels).
const WIDE_STRIP: usize = 21;
/// Seams tried per part, best covered first (parallel neighbours of a
/// seam that failed are tried too, so this bounds the work).
const SEAM_TRIES: usize = 24;
/// Least short/long side ratio of a half a seam parts off: above the
/// slimmest item's (`ItemCropOptions::min_aspect`), as a strip that art
/// cuts off across an item's end is slim too, and a half has the whole
/// seam for an outline, walled whether it is an item's edge or an art line.
const HALF_ASPECT: f64 = 0.55;
/// How far past a found item's grown quad an item lying on top of it may
/// reach: the quad's growth (3 px) and a wall's width.
const CUT_SLACK: usize = 6;

impl BlobScan<'_> {
    /// Items left in the blob once `found` are taken out (each grown by the
    /// width of a wall): a card whose print area and border band are both
    /// broken up by its art, so that no core stands for it, lying against
    /// one that was found. A leftover must be solid (most of its rectangle
    /// covered: a ring or an L of walls is not an item) as well as
    /// item-shaped, and where it was cut from a found item the cut must run
    /// along a wall (else it is the rest of that item, or an item lying on
    /// top of it: [`Self::lying_on_top`]).
    fn leftovers(&self, found: &[Shape]) -> Vec<Shape> {
        let (w, h, blob) = (self.w, self.h, self.sealed);
        let mut taken: Vec<[[f64; 2]; 4]> = found.iter().map(|s| grow_quad(&s.quad, 3.0)).collect();
        let mut out = Vec::new();
        // Each round can free another item (a column of touching cards).
        // The search runs in the blob's box (`bw` × `bh` from its top left).
        let (bw, bh) = (blob.width, blob.height);
        for _ in 0..8 {
            let mut rest = vec![false; bw * bh];
            let mut count = 0usize;
            for y in blob.top..blob.top + bh {
                for x in blob.left..blob.left + bw {
                    let p = [x as f64, y as f64];
                    if self.owns(y * w + x) && !taken.iter().any(|q| point_in_convex(q, p)) {
                        rest[(y - blob.top) * bw + x - blob.left] = true;
                        count += 1;
                    }
                }
            }
            if (count as f64) < self.min_area {
                break;
            }
            let (labels, comps) = label_mask(&rest, bw, bh);
            let mut slot = vec![usize::MAX; comps.len() + 1];
            let mut n = 0;
            for c in comps.iter().filter(|c| c.area as f64 >= self.min_area) {
                slot[c.label as usize] = n;
                n += 1;
            }
            let group: Vec<usize> = labels.iter().map(|&l| slot[l as usize]).collect();
            // Boundary pixels on a cut lie just outside a taken quad.
            let cut_zone: Vec<[[f64; 2]; 4]> = taken.iter().map(|q| grow_quad(q, 1.5)).collect();
            let origin = [blob.left, blob.top];
            let regions: Vec<Region> = boundaries(&group, n, bw, bh)
                .into_iter()
                .map(|r| r.moved_to(origin))
                .collect();
            let mut new: Vec<Shape> = Vec::new();
            for (g, r) in regions.iter().enumerate() {
                let cut: Vec<&[f64; 2]> = r
                    .boundary
                    .iter()
                    .filter(|p| cut_zone.iter().any(|q| point_in_convex(q, **p)))
                    .collect();
                let on_wall = cut
                    .iter()
                    .filter(|p| self.near_wall[p[1] as usize * w + p[0] as usize])
                    .count();
                let support = |s: &Shape| edge_support(&s.quad, self.walls, w, h);
                let apart = |s: &Shape| taken.iter().all(|q| share_inside(&s.quad, q) < 0.25);
                // The largest piece of the leftover once strips narrower
                // than `strip` are opened off it, and its pixels.
                let opened = |strip: usize| {
                    without_strips(
                        &group.iter().map(|&v| v == g).collect::<Vec<bool>>(),
                        bw,
                        bh,
                        origin,
                        strip,
                    )
                };
                let walled_item = |piece: &Region| {
                    fit_shape_under(piece, BLOB_OFFSET, self.min_area, self.opts, &taken)
                        .filter(|s| s.solidity >= 0.6 && support(s) >= OUTLINED)
                };
                // An item beside a found one whose quad fell short of its
                // edge (taken from its print area): the rest of that one's
                // border band runs into this one's region.
                let beside_short_item = || {
                    opened(WIDE_STRIP)
                        .and_then(|(piece, _)| walled_item(&piece))
                        .filter(apart)
                };
                if (on_wall as f64) < 0.5 * cut.len() as f64 {
                    new.extend(self.lying_on_top(r, &taken).or_else(beside_short_item));
                    continue;
                }
                // The same once a found item's rim is trimmed off.
                let trimmed = || -> Vec<Shape> {
                    let Some((piece, pixels)) = opened(STRIP) else {
                        return vec![];
                    };
                    if let Some(s) = walled_item(&piece) {
                        return vec![s];
                    }
                    // Two items stuck together, as below; what the
                    // trimming leaves of a messy blob can part into two
                    // strips, which walls do not outline.
                    let rect = min_area_rect(&convex_hull(&piece.boundary));
                    let halves = self
                        .halves(&pixels, &rect, blob.window(), &taken, true)
                        .filter(|pair| pair.iter().all(|s| support(s) >= HALF_OUTLINED));
                    halves.into_iter().flatten().collect()
                };
                match fit_shape_under(r, BLOB_OFFSET, self.min_area, self.opts, &taken) {
                    // Solid; or, an outline of walls nearly all round that
                    // is not a found item's rim: a card whose border band and
                    // print area both leak out through gaps in their walls.
                    // Failing that, the same with a found item's rim trimmed off.
                    Some(s) => {
                        // A leftover holding a found item is that item's rim
                        // (its quad came from its print area) run together
                        // with an item beside it: trimmed off, the rest.
                        let holds_found =
                            |s: &Shape| found.iter().any(|f| share_inside(&f.quad, &s.quad) > 0.5);
                        if holds_found(&s) {
                            let rest = [STRIP, WIDE_STRIP].into_iter().find_map(|strip| {
                                opened(strip)
                                    .and_then(|(piece, _)| walled_item(&piece))
                                    .filter(|p| !holds_found(p))
                            });
                            if let Some(rest) = rest {
                                new.push(rest);
                                continue;
                            }
                        }
                        if s.solidity >= 0.6 || (support(&s) >= OUTLINED && apart(&s)) {
                            new.push(s);
                        } else {
                            new.extend(trimmed());
                        }
                    }
                    // Two items stuck together (one over the other, neither
                    // with a core of its own): a straight seam may part them.
                    None => {
                        let pixels = group_pixels(&group, g, bw, origin);
                        let rect = min_area_rect(&convex_hull(&r.boundary));
                        match self.halves(&pixels, &rect, blob.window(), &taken, true) {
                            Some(halves) => new.extend(halves),
                            None => new.extend(trimmed()),
                        }
                    }
                }
            }
            if new.is_empty() {
                break;
            }
            taken.extend(new.iter().map(|s| grow_quad(&s.quad, 3.0)));
            out.extend(new);
        }
        out
    }

    /// A leftover `r` cut from a found item where no wall runs is the rest
    /// of that item — or an item lying on top of it, whose edge runs just
    /// inside the found item's (grown) quad while the found item's edge
    /// is hidden under it. Such a leftover is solid and item-shaped, and
    /// once each weak side moves out by up to `CUT_SLACK` onto a walled
    /// line, its outline is walled (`OUTLINED`) and holds no found item.
    fn lying_on_top(&self, r: &Region, taken: &[[[f64; 2]; 4]]) -> Option<Shape> {
        let (w, h) = (self.w, self.h);
        let mut s = fit_shape_under(r, BLOB_OFFSET, self.min_area, self.opts, taken)
            .filter(|s| s.solidity >= 0.6)?;
        let centre = quad_centre(&s.quad);
        for k in 0..4 {
            let (p, q) = (s.quad[k], s.quad[(k + 1) % 4]);
            if side_support(p, q, self.walls, w, h) >= WEAK_SIDE {
                continue;
            }
            let along = towards(p, q).0;
            let outward = normal_facing(along, [p[0] - centre[0], p[1] - centre[1]]);
            let moved = (1..=CUT_SLACK).find_map(|d| {
                walled_side_on(
                    &s.quad,
                    k,
                    Line {
                        point: step(p, outward, d as f64),
                        direction: along,
                    },
                    self.walls,
                    w,
                    h,
                )
            });
            if let Some((a, b)) = moved {
                s.quad[k] = a;
                s.quad[(k + 1) % 4] = b;
            }
        }
        s.rect = min_area_rect(&s.quad);
        let quad = s.quad;
        (edge_support(&quad, self.walls, w, h) >= OUTLINED
            && taken.iter().all(|t| share_inside(t, &quad) < 0.5))
        .then_some(s)
    }

    /// `parts` with the items framed by straight walls (see [`framed`])
    /// that the region rules missed. Frames are taken largest first, one
    /// per item (a frame inside a larger one is its print area or art). A
    /// frame that overlaps a part walled all round (`OUTLINED`) is that
    /// part. A part that is not walled all round and holds two frames is
    /// two items taken for one: the frames replace it; one that holds a
    /// single frame is that frame's item, the frame a piece of it — unless
    /// the frame is walled all round (`WALLED`): then the frame is the item,
    /// the part that item with the rim of another run into it through a
    /// gap in their seam. A part inside a frame is a piece of that frame's
    /// item (its print area) and gives way to it, unless a seam parts the
    /// frame into two items (two items lined up frame both); several parts
    /// inside one give way to it only where it is walled all round (a print
    /// area cut into pieces by art, each grown to a piece of the item). A
    /// frame that is a print area grows to its item's edge as a core does.
    /// What the frames free is searched for leftovers again.
    fn with_framed(&self, parts: Vec<Shape>) -> Vec<Shape> {
        let (w, h) = (self.w, self.h);
        // Parts all walled, with no room for another item beside them:
        // nothing for a frame to add or replace (and the search is costly).
        let walled: Vec<bool> = parts
            .iter()
            .map(|p| edge_support(&p.quad, self.walls, w, h) >= OUTLINED)
            .collect();
        if !parts.is_empty()
            && walled.iter().all(|&ok| ok)
            && (self.uncovered(&parts) as f64) < self.min_area
        {
            return parts;
        }
        let in_blob = |i: usize| self.blob_labels[i] == self.blob.label;
        let frames = framed::framed_quads(
            self.walls,
            w,
            h,
            self.blob.window(),
            &in_blob,
            self.min_area,
            self.opts.min_aspect,
        );
        let inside = |a: &[[f64; 2]; 4], b: &[[f64; 2]; 4]| share_inside(a, b) > 0.5;
        // One frame per item, to count the items a part holds.
        let mut distinct: Vec<&[[f64; 2]; 4]> = Vec::new();
        for frame in &frames {
            if distinct
                .iter()
                .all(|f| !inside(frame, f) && !inside(f, frame))
            {
                distinct.push(frame);
            }
        }
        // Each part, and whether it is walled all round.
        let mut found: Vec<(Shape, bool)> = parts.into_iter().zip(walled).collect();
        let mut added = false;
        for q in &frames {
            if found
                .iter()
                .any(|(p, walled)| *walled && (inside(q, &p.quad) || inside(&p.quad, q)))
            {
                continue;
            }
            let loose = |i: &usize| !found[*i].1;
            // A part smaller than a frame walled all round does not hold
            // it: it is a piece of the frame's item (the rule for pieces
            // below decides).
            let walled_frame = edge_support(q, self.walls, w, h) >= WALLED;
            let holds = |i: usize| {
                inside(q, &found[i].0.quad)
                    && !(walled_frame && polygon_area(&found[i].0.quad) < polygon_area(q))
            };
            let holders: Vec<usize> = (0..found.len())
                .filter(loose)
                .filter(|&i| holds(i))
                .collect();
            // A frame walled all round stands for the item of a loose part
            // holding no other frame: the part is that item with the rim
            // of one lying under it run into it through a gap in the seam.
            if !walled_frame
                && holders.iter().any(|&i| {
                    distinct
                        .iter()
                        .filter(|f| inside(f, &found[i].0.quad))
                        .count()
                        < 2
                })
            {
                continue;
            }
            let pieces: Vec<usize> = (0..found.len())
                .filter(loose)
                .filter(|&i| inside(&found[i].0.quad, q))
                .collect();
            if (pieces.len() > 1 && !walled_frame) || self.splits(q) {
                continue;
            }
            found = found
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !holders.contains(i) && !pieces.contains(i))
                .map(|(_, f)| f)
                .collect();
            found.push((item_of_frame(*q, self.near_wall, w, h), true));
            added = true;
        }
        let mut parts: Vec<Shape> = found.into_iter().map(|(p, _)| p).collect();
        if added {
            let more = self.leftovers(&parts);
            parts.extend(more);
        }
        parts
    }

    /// Whether pixel `i` belongs to the blob, counting background sealed in
    /// by it (a print area that leaks out through a gap of a pixel or two in
    /// its item's edge); other blobs do not.
    fn owns(&self, i: usize) -> bool {
        match self.blob_labels[i] {
            0 => self.sealed_labels[i] == self.sealed.label,
            l => l == self.blob.label,
        }
    }

    /// How many of the blob's pixels lie outside every part.
    fn uncovered(&self, parts: &[Shape]) -> usize {
        let b = self.blob;
        (b.top..b.top + b.height)
            .flat_map(|y| (b.left..b.left + b.width).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                self.blob_labels[y * self.w + x] == b.label
                    && !parts
                        .iter()
                        .any(|p| point_in_convex(&p.quad, [x as f64, y as f64]))
            })
            .count()
    }

    /// Whether a seam parts the pixels inside `quad` (of any blob) into two
    /// item-shaped halves, as in [`Self::split`]: a frame closed by the
    /// lines of two items lined up, one of them in another blob.
    fn splits(&self, quad: &[[f64; 2]; 4]) -> bool {
        let (pixels, window) = self.pixels_inside(quad, |_| true);
        self.halves(&pixels, &min_area_rect(quad), window, &[], true)
            .is_some()
    }

    /// The image pixels inside `quad` whose index `keep` accepts, and the
    /// window (`[x0, y0, x1, y1)`) of the quad's box that holds them.
    fn pixels_inside(
        &self,
        quad: &[[f64; 2]; 4],
        keep: impl Fn(usize) -> bool,
    ) -> (Vec<(usize, usize)>, [usize; 4]) {
        let [bx0, by0, bx1, by1] = quad_bbox(quad);
        let (x0, x1) = (
            bx0.floor().max(0.0) as usize,
            (bx1.ceil().max(0.0) as usize).min(self.w - 1),
        );
        let (y0, y1) = (
            by0.floor().max(0.0) as usize,
            (by1.ceil().max(0.0) as usize).min(self.h - 1),
        );
        let pixels = (y0..=y1)
            .flat_map(|y| (x0..=x1).map(move |x| (x, y)))
            .filter(|&(x, y)| keep(y * self.w + x) && point_in_convex(quad, [x as f64, y as f64]))
            .collect();
        (pixels, [x0, y0, x1 + 1, y1 + 1])
    }

    /// `part`, or its pieces when a seam splits it into item-shaped halves
    /// (each split again, down to `depth` levels: a row of cards).
    ///
    /// Items laid edge to edge (or one over another) whose cores did not
    /// tell them apart make one part, but the edge between them is a
    /// straight wall that crosses the whole part. Art edges stop at the
    /// print frame, so they leave the border band uncrossed, and a print
    /// frame or a title band cuts off a strip that is not item-shaped.
    fn split(&self, part: Shape, depth: usize) -> Vec<Shape> {
        if depth == 0 {
            return vec![part];
        }
        let grown = grow_quad(&part.quad, 2.0);
        // Two items overlapping at an angle make no outline walled all round:
        // a part that is walled all round is not split into a wedge and the rest.
        let wedges = edge_support(&part.quad, self.walls, self.w, self.h) < WALLED;
        let (pixels, window) =
            self.pixels_inside(&grown, |i| self.blob_labels[i] == self.blob.label);
        // Where items' print areas leak out into the background, their
        // halves are item-shaped only with the background they seal in
        // counted; then the halves must be outlined too, as an art line
        // across a print area also parts it into two solid pieces. Where
        // the part seals in no background, that is the search just done.
        let sealed_in = || {
            let (sealed_pixels, window) = self.pixels_inside(&grown, |i| self.owns(i));
            if sealed_pixels.len() == pixels.len() {
                return None;
            }
            let outlined =
                |s: &Shape| edge_support(&s.quad, self.walls, self.w, self.h) >= OUTLINED;
            self.halves(&sealed_pixels, &part.rect, window, &[], wedges)
                .filter(|pair| pair.iter().all(outlined))
        };
        match self
            .halves(&pixels, &part.rect, window, &[], wedges)
            .or_else(sealed_in)
        {
            Some([a, b]) => self
                .split(a, depth - 1)
                .into_iter()
                .chain(self.split(b, depth - 1))
                .collect(),
            None => vec![part],
        }
    }

    /// Two parts that are halves of one item, cut apart by its art (each
    /// half keeps a core of its own): together they fill a rectangle
    /// (within 15 %; where a band of art cut them apart, both take it in)
    /// whose outline is walled (`OUTLINED`), and no seam
    /// crosses it, as one would between two items laid edge to edge.
    fn rejoin_halves(&self, mut parts: Vec<Shape>) -> Vec<Shape> {
        'again: loop {
            // How well walls outline each part.
            let support: Vec<f64> = parts
                .iter()
                .map(|p| edge_support(&p.quad, self.walls, self.w, self.h))
                .collect();
            for i in 0..parts.len() {
                for j in i + 1..parts.len() {
                    // Halves cut apart by art run into the cut with ragged
                    // sides, and their rectangle is rougher for it; an item
                    // walled all round is not a half. The item's outline is
                    // the halves' outer sides, walled no worse than they are
                    // on average (two items lined up, out of line, make a
                    // worse one).
                    let outlined = if support[i].max(support[j]) < WALLED {
                        HALVES_OUTLINED
                    } else {
                        OUTLINED
                    };
                    let outlined = outlined.max((support[i] + support[j]) / 2.0);
                    let Some(whole) = union_of(
                        &parts[i],
                        &parts[j],
                        self.opts.min_aspect,
                        self.walls,
                        self.w,
                        self.h,
                    )
                    .filter(|u| edge_support(&u.quad, self.walls, self.w, self.h) >= outlined) else {
                        continue;
                    };
                    if self.split(whole.clone(), 1).len() == 1 {
                        parts.swap_remove(j);
                        parts[i] = whole;
                        continue 'again;
                    }
                }
            }
            return parts;
        }
    }

    /// The two item-shaped halves that the best-covered straight seam across
    /// `pixels` (whose rectangle is `rect`, all inside `window`) parts them
    /// into, if any seam does; `over` as for [`fit_shape_under`]. With
    /// `wedges`, a half may be a wedge of an item lying under the other.
    fn halves(
        &self,
        pixels: &[(usize, usize)],
        rect: &MinRect,
        window: [usize; 4],
        over: &[[[f64; 2]; 4]],
        wedges: bool,
    ) -> Option<[Shape; 2]> {
        let (w, h) = (self.w, self.h);
        let mut mask = vec![false; w * h];
        for &(x, y) in pixels {
            mask[y * w + x] = true;
        }
        // A seam crosses background the blob seals in as well (a print area
        // leaking out through a gap in its frame): art edges that cross
        // such a print area from band to band are no seam, as walls do not
        // run across it.
        let corners = rect.corners();
        for y in window[1]..window[3] {
            for x in window[0]..window[2] {
                let i = y * w + x;
                if self.blob_labels[i] == 0
                    && self.owns(i)
                    && point_in_convex(&corners, [x as f64, y as f64])
                {
                    mask[i] = true;
                }
            }
        }
        let c = rect.centre;
        let rotate = |v: [f64; 2], th: f64| {
            [
                v[0] * th.cos() - v[1] * th.sin(),
                v[0] * th.sin() + v[1] * th.cos(),
            ]
        };
        // (coverage, a point on the seam, its normal)
        let mut seams: Vec<(f64, [f64; 2], [f64; 2])> = Vec::new();
        for axis in 0..2 {
            let (n0, d0, half_n, half_d) = (
                rect.axes[axis],
                rect.axes[1 - axis],
                rect.half[axis],
                rect.half[1 - axis],
            );
            // Overlapping items lie up to about 12° apart.
            for step in -8..=8 {
                let th = (step as f64 * 1.5).to_radians();
                let (n, d) = (rotate(n0, th), rotate(d0, th));
                let reach = half_d + half_n * th.sin().abs() + 3.0;
                let most_uncovered = (1.0 - SEAM_COVERAGE) * ((2.0 * reach).floor() + 2.0);
                let mut s = -0.6 * half_n;
                while s <= 0.6 * half_n {
                    let o = [c[0] + s * n[0], c[1] + s * n[1]];
                    let (mut inside, mut covered) = (0usize, 0usize);
                    let mut t = -reach;
                    while t <= reach {
                        // Past this many uncovered pixels the seam cannot
                        // reach `SEAM_COVERAGE`, however many lie inside.
                        if (inside - covered) as f64 > most_uncovered {
                            break;
                        }
                        // Nearest pixel: floor(v + 0.5) by truncation, as v + 0.5 ≥ 0
                        // here (`round` is a libm call in this hot loop).
                        let (x, y) = (o[0] + t * d[0] + 0.5, o[1] + t * d[1] + 0.5);
                        if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h {
                            let i = y as usize * w + x as usize;
                            if mask[i] {
                                inside += 1;
                                covered += self.near_wall[i] as usize;
                            }
                        }
                        t += 1.0;
                    }
                    // The seam must cross the part: at least 60 % of its side.
                    if inside as f64 >= 1.2 * half_d {
                        let coverage = covered as f64 / inside as f64;
                        if coverage >= SEAM_COVERAGE {
                            seams.push((coverage, o, n));
                        }
                    }
                    s += 1.0;
                }
            }
        }
        seams.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Every try assigns the same pixels, so one buffer serves them all.
        let mut group = vec![usize::MAX; w * h];
        for &(_, o, n) in seams.iter().take(SEAM_TRIES) {
            for &(x, y) in pixels {
                group[y * w + x] = (dot([x as f64 - o[0], y as f64 - o[1]], n) > 0.0) as usize;
            }
            let regions = boundaries_in(&group, 2, w, h, window);
            let fit = |r: &Region, over: &[[[f64; 2]; 4]]| {
                let big_enough = r.pixels as f64 >= 0.2 * pixels.len() as f64;
                fit_shape_under(r, BLOB_OFFSET, self.min_area, self.opts, over)
                    .filter(|s| big_enough && s.solidity >= 0.6 && s.rect.aspect() >= HALF_ASPECT)
            };
            let halves: Vec<Option<Shape>> = regions.iter().map(|r| fit(r, over)).collect();
            match &halves[..] {
                [Some(a), Some(b)] => return Some([a.clone(), b.clone()]),
                // Items that overlap at an angle: the one underneath shows
                // a wedge cut off along the seam, and is item-shaped only
                // counting what lies under the other. It shows most of
                // itself (a strip cut off an item by its art, such as a
                // title band, is much smaller than the rest).
                [Some(a), None] | [None, Some(a)] if wedges => {
                    let under = if halves[0].is_none() {
                        &regions[0]
                    } else {
                        &regions[1]
                    };
                    let over_too: Vec<[[f64; 2]; 4]> = over
                        .iter()
                        .copied()
                        .chain([grow_quad(&a.quad, 2.0)])
                        .collect();
                    if let Some(b) =
                        fit(under, &over_too).filter(|b| b.rect.area() >= 0.5 * a.rect.area())
                    {
                        return Some([a.clone(), b]);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The item that two parts are halves of, if they are: together they fill
/// a rectangle (within 15 %) of an item's shape. Its outline is that
/// rectangle or the quadrilateral round both (perspective takes an item off
/// its rectangle), whichever runs along more wall.
fn union_of(
    a: &Shape,
    b: &Shape,
    min_aspect: f64,
    walls: &[bool],
    w: usize,
    h: usize,
) -> Option<Shape> {
    let corners: Vec<[f64; 2]> = a.quad.iter().chain(&b.quad).copied().collect();
    let hull = convex_hull(&corners);
    let rect = min_area_rect(&hull);
    let (area_a, area_b) = (polygon_area(&a.quad), polygon_area(&b.quad));
    let filled = (area_a + area_b - area_a * share_inside(&a.quad, &b.quad)) / rect.area().max(1.0);
    if !(0.85..=1.15).contains(&filled) || rect.aspect() < min_aspect {
        return None;
    }
    // The hull's outline, a point a pixel, for the sides' line fits.
    let outline: Vec<[f64; 2]> = hull
        .iter()
        .zip(hull.iter().cycle().skip(1))
        .flat_map(|(&p, &q)| {
            let n = dist(p, q).ceil().max(1.0) as usize;
            (0..n).map(move |k| {
                let t = k as f64 / n as f64;
                [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
            })
        })
        .collect();
    let (fitted, rectangle) = (fit_quad(&rect, &outline, 0.0), rect.corners());
    let quad = if edge_support(&rectangle, walls, w, h) > edge_support(&fitted, walls, w, h) {
        rectangle
    } else {
        fitted
    };
    Some(Shape {
        rect,
        rectangularity: filled,
        solidity: filled,
        quad,
    })
}

/// The largest piece of `mask` (`bw` × `bh`, its top left at
/// `origin`) once strips narrower than `strip` (a border band) are opened away,
/// and its pixels: a card with, stuck to it, the rim of a found item
/// whose quad (from its print area) fell short of its edge, or a stick of
/// clutter.
fn without_strips(
    mask: &[bool],
    bw: usize,
    bh: usize,
    origin: [usize; 2],
    strip: usize,
) -> Option<(Region, Vec<(usize, usize)>)> {
    let mut plane: Vec<f32> = mask.iter().map(|&v| v as u8 as f32).collect();
    morph_host(
        &mut plane,
        bh,
        bw,
        &[MorphOp::Erode, MorphOp::Dilate],
        MorphShape::Rect,
        strip,
        strip,
    );
    let opened: Vec<bool> = plane.iter().map(|&v| v > 0.5).collect();
    let (labels, comps) = label_mask(&opened, bw, bh);
    let biggest = comps.iter().max_by_key(|c| c.area)?;
    let group: Vec<usize> = labels
        .iter()
        .map(|&l| if l == biggest.label { 0 } else { usize::MAX })
        .collect();
    let region = boundaries_in(&group, 1, bw, bh, biggest.window())
        .pop()?
        .moved_to(origin);
    Some((region, group_pixels(&group, 0, bw, origin)))
}

/// The item a frame (four straight walls, [`framed`]) stands for: the
/// frame, grown to the item's edge where it is a print area, as a core is.
fn item_of_frame(quad: [[f64; 2]; 4], near_wall: &[bool], w: usize, h: usize) -> Shape {
    let rect = min_area_rect(&quad);
    let frame = Shape {
        rectangularity: polygon_area(&quad) / rect.area().max(1.0),
        solidity: 1.0,
        rect,
        quad,
    };
    outline_from_core(&frame, near_wall, w, h, 3).unwrap_or(frame)
}

/// The outline of the item a core belongs to, when the walls show it. A ring core (the item's
/// border band) already has it as its hull. A print area is inside the
/// border band: each side moves out, off the print frame's wall and across
/// the band, to the next wall running along most of it (the item's edge).
/// At least `agree` sides must find that edge at about the same width.
fn outline_from_core(
    core: &Shape,
    near_wall: &[bool],
    w: usize,
    h: usize,
    agree: usize,
) -> Option<Shape> {
    if core.solidity < 0.5 {
        return Some(core.clone());
    }
    let q = core.quad;
    let centre = quad_centre(&q);
    let max_band = 0.15 * 2.0 * core.rect.half[0].min(core.rect.half[1]) + 4.0;
    /// One side of the core, and how far out the item's edge is.
    struct Side {
        mid: [f64; 2],
        dir: [f64; 2],
        normal: [f64; 2],
        edge: Option<f64>,
    }
    let sides: Vec<Side> = (0..4)
        .map(|k| {
            let (p, r) = (q[k], q[(k + 1) % 4]);
            let len = dist(p, r).max(1e-9);
            let dir = [(r[0] - p[0]) / len, (r[1] - p[1]) / len];
            let mid = [(p[0] + r[0]) / 2.0, (p[1] + r[1]) / 2.0];
            let mut n = [dir[1], -dir[0]];
            if dot(n, [mid[0] - centre[0], mid[1] - centre[1]]) < 0.0 {
                n = [-n[0], -n[1]];
            }
            // Share of the side's middle 70 % near a wall, `d` pixels out.
            let coverage = |d: f64| {
                let steps = (0.7 * len).ceil().max(1.0) as usize;
                let hits = (0..steps)
                    .filter(|&i| {
                        let t = 0.15 + 0.7 * (i as f64 + 0.5) / steps as f64;
                        let (x, y) = (
                            (p[0] + t * (r[0] - p[0]) + d * n[0]).round(),
                            (p[1] + t * (r[1] - p[1]) + d * n[1]).round(),
                        );
                        x >= 0.0
                            && y >= 0.0
                            && (x as usize) < w
                            && (y as usize) < h
                            && near_wall[y as usize * w + x as usize]
                    })
                    .count();
                hits as f64 / steps as f64
            };
            let (mut d, mut off_frame, mut edge) = (0.0, false, None);
            while d <= max_band {
                let v = coverage(d);
                if !off_frame {
                    off_frame = v < 0.3;
                } else if v >= 0.6 {
                    edge = Some(d);
                    break;
                }
                d += 0.5;
            }
            Side {
                mid,
                dir,
                normal: n,
                edge,
            }
        })
        .collect();
    // A border band is about as wide on every side: sides that agree with
    // the median width keep theirs, the others take it. A core whose sides
    // mostly disagree may not be a print area (a piece of one, cut off by
    // its art): no outline.
    let mut widths: Vec<f64> = sides.iter().filter_map(|s| s.edge).collect();
    widths.sort_by(f64::total_cmp);
    let median = *widths.get(widths.len() / 2)?;
    if widths
        .iter()
        .filter(|&&d| (d - median).abs() <= 2.5)
        .count()
        < agree
    {
        return None;
    }
    let lines: Vec<Line> = sides
        .iter()
        .map(
            |&Side {
                 mid,
                 dir,
                 normal: n,
                 edge,
             }| {
                let d = edge.filter(|d| (d - median).abs() <= 2.5).unwrap_or(median);
                // The wall is found a pixel before the Canny line, which lies on
                // the step; the blob fits' offset puts the outline there.
                let shift = d + 1.0 - BLOB_OFFSET;
                Line {
                    point: [mid[0] + shift * n[0], mid[1] + shift * n[1]],
                    direction: dir,
                }
            },
        )
        .collect();
    let mut quad = q;
    for k in 0..4 {
        // Corner k joins side k-1 and side k.
        if let Some(p) = intersect(lines[(k + 3) % 4], lines[k]) {
            quad[k] = p;
        }
    }
    let rect = min_area_rect(&convex_hull(&quad));
    Some(Shape {
        rect,
        rectangularity: core.rectangularity,
        solidity: 1.0,
        quad,
    })
}

/// Drop every item that lies mostly (over half its area) inside a larger
/// one: an item's print area found beside its whole outline. Overlapping
/// items share far less (the generator overlaps them by at most 12 %).
/// But first drop every item that is two or more others taken for one:
/// it holds them, apart from each other, they fill most of it and their
/// outlines run along walls better than its own (a print area's pieces
/// cut apart by art fill less of their item, and its outline is walled).
/// Where its own outline is poorly walled (two overlapping items whose
/// union leaves empty corners in its rectangle), they need fill less.
fn drop_nested(items: &mut Vec<FoundItem>) {
    let holds_many = |outer: &FoundItem| {
        let mut held: Vec<&FoundItem> = Vec::new();
        for i in items.iter().filter(|i| {
            i.confidence > outer.confidence
                && polygon_area(&i.quad) < polygon_area(&outer.quad)
                && share_inside(&i.quad, &outer.quad) > 0.5
        }) {
            // One item found twice (through two blobs) counts once.
            if held.iter().all(|j| share_inside(&i.quad, &j.quad) < 0.8) {
                held.push(i);
            }
        }
        let apart = held.iter().enumerate().all(|(a, i)| {
            held[a + 1..].iter().all(|j| {
                share_inside(&i.quad, &j.quad) < 0.25 && share_inside(&j.quad, &i.quad) < 0.25
            })
        });
        let filled: f64 = held
            .iter()
            .map(|i| polygon_area(&i.quad) * share_inside(&i.quad, &outer.quad))
            .sum::<f64>()
            / polygon_area(&outer.quad).max(1.0);
        // One poorly walled (`HALF_OUTLINED`) is no item: less will do.
        let enough = if outer.confidence < HALF_OUTLINED {
            0.6
        } else {
            0.8
        };
        held.len() >= 2 && apart && filled >= enough
    };
    let unions: Vec<bool> = items.iter().map(holds_many).collect();
    let mut flags = unions.into_iter();
    items.retain(|_| !flags.next().unwrap_or(false));
    items.sort_by(|a, b| polygon_area(&b.quad).total_cmp(&polygon_area(&a.quad)));
    let mut kept: Vec<FoundItem> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.iter().any(|k| share_inside(&item.quad, &k.quad) > 0.5) {
            kept.push(item);
        }
    }
    *items = kept;
}

/// Split one blob between its cores (nearest core quad wins); a part that
/// is not item-shaped is `None`. The split as a whole is `None` when the
/// lines between the parts do not run along walls: separate items meet at a
/// visible seam, while two cores of one item (its print area cut in two by
/// the art) are parted by a line through unbroken print.
#[allow(clippy::too_many_arguments)]
fn split_blob(
    blob_labels: &[u32],
    blob: &crate::primitives::Component,
    cores: &[&Shape],
    near_wall: &[bool],
    w: usize,
    h: usize,
    min_area: f64,
    opts: &ItemCropOptions,
) -> Option<Vec<Option<Shape>>> {
    let mut group = vec![usize::MAX; w * h];
    for y in blob.top..blob.top + blob.height {
        for x in blob.left..blob.left + blob.width {
            if blob_labels[y * w + x] != blob.label {
                continue;
            }
            let p = [x as f64, y as f64];
            let nearest = (0..cores.len()).min_by(|&a, &b| {
                quad_distance(&cores[a].quad, p).total_cmp(&quad_distance(&cores[b].quad, p))
            });
            group[y * w + x] = nearest.unwrap_or(0);
        }
    }
    // Pixels on a line between two parts, and how many of them are wall
    // (within a pixel: the Voronoi line need not sit exactly on the seam).
    let (mut seam, mut on_wall) = (0usize, 0usize);
    for y in blob.top.max(1)..(blob.top + blob.height).min(h - 1) {
        for x in blob.left.max(1)..(blob.left + blob.width).min(w - 1) {
            let (g, right, down) = (
                group[y * w + x],
                group[y * w + x + 1],
                group[(y + 1) * w + x],
            );
            if g == usize::MAX
                || !((right != g && right != usize::MAX) || (down != g && down != usize::MAX))
            {
                continue;
            }
            seam += 1;
            on_wall += near_wall[y * w + x] as usize;
        }
    }
    if seam == 0 || (on_wall as f64) < 0.5 * seam as f64 {
        return None;
    }
    Some(
        boundaries(&group, cores.len(), w, h)
            .iter()
            .map(|b| fit_shape(b, BLOB_OFFSET, min_area, opts))
            .collect(),
    )
}

/// Four lines fitted to the boundary points that lie along each side of the
/// minimum-area rectangle (corners left out: real cards have rounded ones),
/// moved out by `offset`, intersected into corners. A side with too
/// few points (hidden under another item) keeps the rectangle's side.
fn fit_quad(rect: &MinRect, boundary: &[[f64; 2]], offset: f64) -> [[f64; 2]; 4] {
    let [a, b] = rect.half;
    // Sides in order: v = -b, u = +a, v = +b, u = -a; each as (outward normal in
    // local coordinates, half extent across, half length along).
    let sides: [([f64; 2], f64, f64); 4] = [
        ([0.0, -1.0], b, a),
        ([1.0, 0.0], a, b),
        ([0.0, 1.0], b, a),
        ([-1.0, 0.0], a, b),
    ];
    let tol = 2.0 + 0.04 * (2.0 * a.min(b));
    let mut buckets: [Vec<[f64; 2]>; 4] = Default::default();
    for &p in boundary {
        let l = rect.local(p);
        for (k, &(n, across, along)) in sides.iter().enumerate() {
            let depth = across - dot(l, n); // distance inside the side
            let along_pos = if n[0] != 0.0 { l[1] } else { l[0] };
            if depth < tol && along_pos.abs() < 0.8 * along {
                buckets[k].push(p);
            }
        }
    }
    let lines: Vec<Line> = sides
        .iter()
        .zip(&buckets)
        .map(|(&(n, across, along), pts)| {
            let world_n = [
                n[0] * rect.axes[0][0] + n[1] * rect.axes[1][0],
                n[0] * rect.axes[0][1] + n[1] * rect.axes[1][1],
            ];
            let line = if pts.len() as f64 >= 0.4 * along {
                fit_line_trimmed(pts)
            } else {
                Line {
                    point: rect.point(n[0] * across, n[1] * across),
                    direction: [-world_n[1], world_n[0]],
                }
            };
            Line {
                point: [
                    line.point[0] + offset * world_n[0],
                    line.point[1] + offset * world_n[1],
                ],
                direction: line.direction,
            }
        })
        .collect();
    // Corner k joins side k-1 and side k.
    let rect_corners = rect.corners();
    let limit = 0.25 * 2.0 * a.min(b) + 3.0;
    let mut quad = [[0.0; 2]; 4];
    for k in 0..4 {
        let fallback = {
            let c = rect_corners[k];
            let d = [c[0] - rect.centre[0], c[1] - rect.centre[1]];
            let len = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-9);
            // Out by the offset along both sides' normals (√2 along the diagonal).
            [
                c[0] + d[0] / len * offset * 2f64.sqrt(),
                c[1] + d[1] / len * offset * 2f64.sqrt(),
            ]
        };
        quad[k] = match intersect(lines[(k + 3) % 4], lines[k]) {
            Some(p)
                if ((p[0] - fallback[0]).powi(2) + (p[1] - fallback[1]).powi(2)).sqrt() < limit =>
            {
                p
            }
            _ => fallback,
        };
    }
    quad
}

/// A side with less wall than this along it is not the item's edge.
const WEAK_SIDE: f64 = 0.5;
/// Narrowest border band (pixels at detection size) between an item's edge
/// and its print area.
const BAND_MIN: f64 = 4.0;

/// Clutter stuck to an item (a word of text, the end of a stick) pulls the
/// side it touches out past the item's edge, so that little wall runs
/// along that side while the item's edge runs inside it: parallel, or
/// (clutter near one end tilts the fitted side) meeting it near the other
/// end. Each such side (unless another item covers it, which hides a side
/// as well) moves in to the nearest line that is mostly wall
/// (≥ `HALF_OUTLINED`: the edge may be broken where art runs into it),
/// parallel lines first, each end at most a quarter of the way across and
/// the line staying `BAND_MIN` clear of the item's cores: where a side is
/// weak because the item's edge is faint, the first walled line inside is
/// its print area's edge, which is no place to stop. Parallel lines go
/// first because a line of text beside an item can be a tilted wall. The
/// ends stay on the neighbouring sides.
fn snap_in_weak_sides(
    quad: [[f64; 2]; 4],
    others: &[[[f64; 2]; 4]],
    cores: &[[[f64; 2]; 4]],
    walls: &[bool],
    w: usize,
    h: usize,
) -> [[f64; 2]; 4] {
    let mut quad = quad;
    for k in 0..4 {
        let (p, q) = (quad[k], quad[(k + 1) % 4]);
        let mid = [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0];
        if side_support(p, q, walls, w, h) >= WEAK_SIDE
            || others.iter().any(|o| point_in_convex(o, mid))
        {
            continue;
        }
        let centre = quad_centre(&quad);
        let inward = normal_facing(towards(p, q).0, [centre[0] - mid[0], centre[1] - mid[1]]);
        let depth = |v: [f64; 2]| dot(inward, [v[0] - p[0], v[1] - p[1]]);
        let reach = (0.5 * depth(centre)).max(0.0) as usize;
        // Parallel moves first; then both ends in by nearly the same amount
        // (perspective); then moves that tilt the side about one end.
        // (dp, dq): how far each end moves in, nearest first within each kind.
        let parallel = (1..=reach).map(|d| (d, d));
        let skewed = (1..=reach)
            .flat_map(|d| (1..=3.min(d - 1)).flat_map(move |e| [(d - e, d), (d, d - e)]));
        let tilted = (4..=reach).flat_map(|d| (0..=3).flat_map(move |e| [(e, d), (d, e)]));
        // The side moved onto the line through its ends moved in by (dp, dq),
        // with that line's wall support, if it is walled and clear of the cores.
        let move_in = |(dp, dq): (usize, usize)| {
            let (a, b) = (step(p, inward, dp as f64), step(q, inward, dq as f64));
            let (along, _) = towards(a, b);
            let normal = normal_facing(along, inward);
            if !cores
                .iter()
                .flatten()
                .all(|&v| dot(normal, [v[0] - a[0], v[1] - a[1]]) >= BAND_MIN)
            {
                return None;
            }
            let (a, b) = walled_side_on(
                &quad,
                k,
                Line {
                    point: a,
                    direction: along,
                },
                walls,
                w,
                h,
            )?;
            Some((side_support(a, b, walls, w, h), a, b))
        };
        // A line within a pixel of the wall already counts as walled; the
        // best-supported line near the first one found lies on it (ties:
        // the nearest to the first).
        let first = parallel
            .chain(skewed)
            .chain(tilted)
            .find(|&m| move_in(m).is_some());
        let moved = first.and_then(|(dp, dq)| {
            let near = (dp.saturating_sub(2)..=(dp + 2).min(reach))
                .flat_map(|i| (dq.saturating_sub(2)..=(dq + 2).min(reach)).map(move |j| (i, j)));
            let off = |(i, j): (usize, usize)| i.abs_diff(dp) + j.abs_diff(dq);
            let best = near
                .filter_map(|m| move_in(m).map(|found| (found, off(m))))
                .min_by(|(x, ox), (y, oy)| y.0.total_cmp(&x.0).then(ox.cmp(oy)));
            best.map(|((_, a, b), _)| (a, b))
        });
        if let Some((a, b)) = moved {
            quad[k] = a;
            quad[(k + 1) % 4] = b;
        }
    }
    quad
}

/// Where art cuts across an item's print area, a piece of the item can come
/// out whole-looking: three sides on the item's edges and the fourth on the
/// art. Then the two sides beside the fourth run on as walls past its ends,
/// up to the item's real edge. The fourth side moves out along them to the
/// end of that run when a mostly walled (≥ `HALF_OUTLINED`) parallel line
/// closes it there, and the grown outline takes in no other item.
fn grow_along_walled_sides(
    quad: [[f64; 2]; 4],
    others: &[[[f64; 2]; 4]],
    walls: &[bool],
    w: usize,
    h: usize,
) -> [[f64; 2]; 4] {
    let mut quad = quad;
    for k in 0..4 {
        let (p, q) = (quad[k], quad[(k + 1) % 4]);
        let (along, _) = towards(p, q);
        // A wall within two pixels across the neighbouring side's line (an
        // outline lies up to a pixel or two off its wall's centre line).
        let wall_at = |c: [f64; 2]| {
            (-1..=1).any(|t| {
                let [x, y] = step(c, along, t as f64);
                wall_within_a_pixel(walls, w, h, x.round() as isize, y.round() as isize)
            })
        };
        let (before, after) = neighbour_lines(&quad, k);
        let (out_p, out_q) = (before.direction, after.direction);
        let longest = 1.2 * dist(quad[(k + 3) % 4], p).max(dist(quad[(k + 2) % 4], q));
        let (mut run, mut missed) = (0usize, 0usize);
        for d in 1..=longest as usize {
            if wall_at(step(p, out_p, d as f64)) && wall_at(step(q, out_q, d as f64)) {
                run = d;
                missed = 0;
            } else {
                missed += 1;
                if missed > 2 {
                    break;
                }
            }
        }
        if run < 2 * STRIP {
            continue;
        }
        let closed = (run.saturating_sub(4)..=run + 2).rev().find_map(|d| {
            walled_side_on(
                &quad,
                k,
                Line {
                    point: step(p, out_p, d as f64),
                    direction: along,
                },
                walls,
                w,
                h,
            )
        });
        if let Some((a, b)) = closed {
            let mut grown = quad;
            grown[k] = a;
            grown[(k + 1) % 4] = b;
            if others.iter().all(|o| share_inside(o, &grown) < 0.1) {
                quad = grown;
            }
        }
    }
    quad
}

/// The lines of the two sides beside side `k` (from `quad[k]` to
/// `quad[k + 1]`), each through that side's end and pointing out past it.
fn neighbour_lines(quad: &[[f64; 2]; 4], k: usize) -> (Line, Line) {
    let (p, q) = (quad[k], quad[(k + 1) % 4]);
    (
        Line {
            point: p,
            direction: towards(quad[(k + 3) % 4], p).0,
        },
        Line {
            point: q,
            direction: towards(quad[(k + 2) % 4], q).0,
        },
    )
}

/// Side `k` moved onto `line`, its ends on the neighbouring sides' lines,
/// if that line is mostly wall (≥ `HALF_OUTLINED`).
fn walled_side_on(
    quad: &[[f64; 2]; 4],
    k: usize,
    line: Line,
    walls: &[bool],
    w: usize,
    h: usize,
) -> Option<([f64; 2], [f64; 2])> {
    let (before, after) = neighbour_lines(quad, k);
    let (a, b) = (intersect(before, line)?, intersect(line, after)?);
    (side_support(a, b, walls, w, h) >= HALF_OUTLINED).then_some((a, b))
}

/// Share of the middle 80 % of side `p`–`q` with a wall pixel within one
/// pixel (corners left out: real cards have rounded ones).
fn side_support(p: [f64; 2], q: [f64; 2], walls: &[bool], w: usize, h: usize) -> f64 {
    let (hits, samples) = wall_hits(p, q, 0.1, 0.8, walls, w, h);
    hits as f64 / samples as f64
}

/// Share of the outline's length that has a wall pixel within one pixel.
fn edge_support(quad: &[[f64; 2]; 4], walls: &[bool], w: usize, h: usize) -> f64 {
    let (hit, total) = (0..4)
        .map(|k| wall_hits(quad[k], quad[(k + 1) % 4], 0.0, 1.0, walls, w, h))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    hit as f64 / total.max(1) as f64
}

/// Samples one pixel apart along the stretch of segment `p`–`q` that starts
/// `from` of the way along and spans `span` of it: how many have a wall
/// pixel within one pixel, and how many there are (at least one).
fn wall_hits(
    p: [f64; 2],
    q: [f64; 2],
    from: f64,
    span: f64,
    walls: &[bool],
    w: usize,
    h: usize,
) -> (usize, usize) {
    wall_hits_within(p, q, from, span, 1, walls, w, h)
}

/// [`wall_hits`] with a wall pixel within `reach` pixels (0: on it).
#[allow(clippy::too_many_arguments)]
fn wall_hits_within(
    p: [f64; 2],
    q: [f64; 2],
    from: f64,
    span: f64,
    reach: isize,
    walls: &[bool],
    w: usize,
    h: usize,
) -> (usize, usize) {
    let samples = (span * (q[0] - p[0]).hypot(q[1] - p[1])).ceil().max(1.0) as usize;
    let hits = (0..samples)
        .filter(|&s| {
            let t = from + span * (s as f64 + 0.5) / samples as f64;
            let (x, y) = (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]));
            wall_within(walls, w, h, x.round() as isize, y.round() as isize, reach)
        })
        .count();
    (hits, samples)
}

/// Every pixel with a set pixel of `mask` within one pixel (a 3×3 dilation).
/// Done as a row pass then a column pass (the window is separable).
fn within_a_pixel(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut across = vec![false; w * h];
    for (row_in, row_out) in mask.chunks_exact(w).zip(across.chunks_exact_mut(w)) {
        for x in 0..w {
            row_out[x] = row_in[x.saturating_sub(1)..(x + 2).min(w)]
                .iter()
                .any(|&v| v);
        }
    }
    (0..w * h)
        .map(|i| {
            let y = i / w;
            across[i] || (y > 0 && across[i - w]) || (y + 1 < h && across[i + w])
        })
        .collect()
}

/// Whether a wall pixel lies within one pixel (8-neighbourhood) of `(x, y)`,
/// which may itself be just outside the image.
fn wall_within_a_pixel(walls: &[bool], w: usize, h: usize, x: isize, y: isize) -> bool {
    wall_within(walls, w, h, x, y, 1)
}

/// Whether a wall pixel lies within `reach` pixels (a square) of `(x, y)`.
fn wall_within(walls: &[bool], w: usize, h: usize, x: isize, y: isize, reach: isize) -> bool {
    (-reach..=reach).any(|dy| {
        (-reach..=reach).any(|dx| {
            let (xx, yy) = (x + dx, y + dy);
            xx >= 0
                && yy >= 0
                && (xx as usize) < w
                && (yy as usize) < h
                && walls[yy as usize * w + xx as usize]
        })
    })
}

fn describe(
    index: usize,
    quad: [[f64; 2]; 4],
    confidence: f64,
    crop_size: [usize; 2],
) -> CroppedItem {
    let width = (dist(quad[0], quad[1]) + dist(quad[3], quad[2])) / 2.0;
    let height = (dist(quad[0], quad[3]) + dist(quad[1], quad[2])) / 2.0;
    // Angle of the mean TL→TR / BL→BR direction.
    let (dx, dy) = (
        quad[1][0] - quad[0][0] + quad[2][0] - quad[3][0],
        quad[1][1] - quad[0][1] + quad[2][1] - quad[3][1],
    );
    CroppedItem {
        index,
        bbox: quad_bbox(&quad),
        quad,
        rotated_rect: RotatedRect {
            center: quad_centre(&quad),
            size: [width, height],
            angle_deg: dy.atan2(dx).to_degrees(),
        },
        confidence,
        crop_size,
    }
}

/// Stage 5: the perspective-corrected crop of `quad` (working pixels) as a
/// `[1, 3, ch, cw]` BGR tensor, with its size.
fn rectify<B: ScanBackend>(
    bgr: Tensor<B, 4>,
    quad: &[[f64; 2]; 4],
) -> Result<(Tensor<B, 4>, usize, usize), VisionError> {
    let cw = ((dist(quad[0], quad[1]) + dist(quad[3], quad[2])) / 2.0)
        .round()
        .max(1.0) as usize;
    let ch = ((dist(quad[0], quad[3]) + dist(quad[1], quad[2])) / 2.0)
        .round()
        .max(1.0) as usize;
    let hm = homography(quad, cw as f64, ch as f64)?;
    let map: Vec<(f32, f32)> = (0..ch)
        .flat_map(|y| (0..cw).map(move |x| (x as f64 + 0.5, y as f64 + 0.5)))
        .map(|(u, v)| apply_homography(&hm, u, v))
        .collect();
    Ok((remap_bilinear(bgr, &map, cw, ch), cw, ch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use geometry::fit_line;

    #[test]
    fn a_speck_touching_a_side_does_not_tilt_its_line() {
        // A side along y = 10 and, touching it near one end, a speck whose
        // boundary runs 3 px out.
        let mut points: Vec<[f64; 2]> = (0..=100).map(|x| [x as f64, 10.0]).collect();
        points.extend((80..=92).map(|x| [x as f64, 13.0]));
        let slope = |l: Line| l.direction[1] / l.direction[0];
        assert!(slope(fit_line(&points)).abs() > 0.005, "a plain fit tilts");
        let trimmed = fit_line_trimmed(&points);
        assert!(
            slope(trimmed).abs() < 1e-9 && (trimmed.point[1] - 10.0).abs() < 1e-9,
            "{trimmed:?}"
        );
    }

    #[test]
    fn hull_and_min_rect_of_a_rotated_rectangle() {
        // A 40×20 rectangle rotated by 30°, sampled densely on its outline.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let mut pts = Vec::new();
        for i in 0..=40 {
            for j in [0, 20] {
                pts.push([i as f64, j as f64]);
            }
        }
        for j in 0..=20 {
            for i in [0, 40] {
                pts.push([i as f64, j as f64]);
            }
        }
        pts.push([20.0, 10.0]);
        let rotated: Vec<[f64; 2]> = pts
            .iter()
            .map(|p| [100.0 + p[0] * c - p[1] * s, 50.0 + p[0] * s + p[1] * c])
            .collect();
        let hull = convex_hull(&rotated);
        assert!((polygon_area(&hull) - 800.0).abs() < 1e-6);
        let rect = min_area_rect(&hull);
        assert!((rect.area() - 800.0).abs() < 1e-6, "area {}", rect.area());
        let mut half = rect.half;
        half.sort_by(f64::total_cmp);
        assert!((half[0] - 10.0).abs() < 1e-9 && (half[1] - 20.0).abs() < 1e-9);
    }

    #[test]
    fn orient_starts_top_left_clockwise() {
        let q = orient([[10.0, 60.0], [50.0, 0.0], [0.0, 0.0], [50.0, 60.0]]);
        assert_eq!(q, [[0.0, 0.0], [50.0, 0.0], [50.0, 60.0], [10.0, 60.0]]);
    }

    #[test]
    fn enclosed_regions_become_items_and_nested_ones_do_not() {
        // Two framed rectangles (walls one pixel wide would leak; these are
        // drawn two wide like the dilated Canny lines) with a nested frame in
        // the first, and a wall that runs to the image border.
        let (w, h) = (120, 80);
        let mut walls = vec![false; w * h];
        let mut frame = |x0: usize, y0: usize, x1: usize, y1: usize| {
            for y in y0..=y1 {
                for x in x0..=x1 {
                    if x <= x0 + 1 || x + 1 >= x1 || y <= y0 + 1 || y + 1 >= y1 {
                        walls[y * w + x] = true;
                    }
                }
            }
        };
        frame(10, 10, 50, 70);
        frame(18, 18, 42, 62);
        frame(60, 20, 110, 60);
        for y in 0..h {
            walls[y * w + 55] = true;
        }
        let items = find_items(&walls, w, h, &ItemCropOptions::default());
        assert_eq!(items.len(), 2, "{items:?}");
        let sizes: Vec<[f64; 2]> = items
            .iter()
            .map(|i| [dist(i.quad[0], i.quad[1]), dist(i.quad[0], i.quad[3])])
            .collect();
        // The enclosed regions span 37×57 and 47×37 pixel centres; the outline
        // lies REGION_OFFSET beyond them on every side.
        assert!(
            (sizes[0][0] - 39.0).abs() < 0.5 && (sizes[0][1] - 59.0).abs() < 0.5,
            "{sizes:?}"
        );
        assert!(
            (sizes[1][0] - 49.0).abs() < 0.5 && (sizes[1][1] - 39.0).abs() < 0.5,
            "{sizes:?}"
        );
        assert!(items.iter().all(|i| i.confidence > 0.9), "{items:?}");
    }

    #[test]
    fn a_side_pulled_out_by_clutter_snaps_back_to_the_edge_inside_it() {
        // The frame's left edge is x = 20; the quad's left side is 12 px out
        // in the open, as if a word of text were stuck to the item.
        let (walls, w, h) = frame_with_gap(0);
        let pulled = [[8.0, 10.0], [80.0, 10.0], [80.0, 50.0], [8.0, 50.0]];
        let snapped = snap_in_weak_sides(pulled, &[], &[], &walls, w, h);
        assert!(
            snapped[0][0] >= 18.0 && snapped[3][0] <= 21.0,
            "{snapped:?}"
        );
        assert_eq!(snapped[1], pulled[1], "walled sides stay");
        // A side under another item is hidden, not pulled out.
        let over = [[0.0, 0.0], [14.0, 0.0], [14.0, 60.0], [0.0, 60.0]];
        assert_eq!(
            snap_in_weak_sides(pulled, &[over], &[], &walls, w, h),
            pulled
        );
        // The walled line inside is the core's (print area's) edge: the
        // item's own edge is only faint, so the side stays.
        let core = [[21.0, 11.0], [79.0, 11.0], [79.0, 49.0], [21.0, 49.0]];
        assert_eq!(
            snap_in_weak_sides(pulled, &[], &[core], &walls, w, h),
            pulled
        );
    }

    #[test]
    fn a_side_tilted_by_clutter_at_one_end_snaps_back_to_the_edge() {
        // A stick stuck at the frame's bottom right tilted the right side:
        // it leaves the frame's corner (80, 10) and ends 14 px out.
        let (walls, w, h) = frame_with_gap(0);
        let tilted = [[20.0, 10.0], [80.0, 10.0], [94.0, 50.0], [20.0, 50.0]];
        let snapped = snap_in_weak_sides(tilted, &[], &[], &walls, w, h);
        assert!(
            (snapped[2][0] - 80.0).abs() <= 1.5 && (snapped[1][0] - 80.0).abs() <= 1.5,
            "{snapped:?}"
        );
        assert_eq!(
            (snapped[0], snapped[3]),
            (tilted[0], tilted[3]),
            "walled sides stay"
        );
    }

    #[test]
    fn a_piece_cut_off_by_art_grows_along_its_walled_sides_to_the_edge() {
        // Art runs down the frame at x = 50; the piece right of it has three
        // sides on the frame, whose top and bottom run on to x = 20.
        let (mut walls, w, h) = frame_with_gap(0);
        for y in 10..=50 {
            walls[y * w + 50] = true;
        }
        let piece = [[50.0, 10.0], [80.0, 10.0], [80.0, 50.0], [50.0, 50.0]];
        let grown = grow_along_walled_sides(piece, &[], &walls, w, h);
        assert!(
            (grown[0][0] - 20.0).abs() <= 2.0 && (grown[3][0] - 20.0).abs() <= 2.0,
            "{grown:?}"
        );
        assert_eq!(
            (grown[1], grown[2]),
            (piece[1], piece[2]),
            "the other sides stay"
        );
        // Not over another item.
        let left = [[21.0, 11.0], [49.0, 11.0], [49.0, 49.0], [21.0, 49.0]];
        assert_eq!(grow_along_walled_sides(piece, &[left], &walls, w, h), piece);
    }

    /// A one-pixel frame, 60×40, with a gap of `gap` pixels in its top side.
    fn frame_with_gap(gap: usize) -> (Vec<bool>, usize, usize) {
        let (w, h) = (100, 60);
        let mut walls = vec![false; w * h];
        for x in 20..=80 {
            walls[10 * w + x] = !(40..40 + gap).contains(&x);
            walls[50 * w + x] = true;
        }
        for y in 10..=50 {
            walls[y * w + 20] = true;
            walls[y * w + 80] = true;
        }
        (walls, w, h)
    }

    #[test]
    fn a_gap_of_two_pixels_seals_and_a_wider_one_does_not() {
        for (gap, sealed) in [(1, true), (2, true), (4, false)] {
            let (walls, w, h) = frame_with_gap(gap);
            let near_wall = within_a_pixel(&walls, w, h);
            let solid = sealed_solid(&near_wall, w, h);
            assert_eq!(
                solid[30 * w + 50],
                sealed,
                "gap {gap}: the middle of the frame"
            );
            assert!(!solid[5 * w + 5], "gap {gap}: the outside");
            // Walls are solid whatever the gap, and the outside is grown back
            // to the wall: the pixel just outside the frame is background.
            assert!(solid[50 * w + 50] && !solid[51 * w + 50], "gap {gap}");
        }
    }

    #[test]
    fn a_corner_hidden_under_another_item_still_makes_a_rectangle() {
        // A 60×40 rectangle of pixels whose top-right 20×20 corner is cut off
        // by a triangle: alone it is not rectangular enough; with that corner
        // under an item on top, it is.
        let mut region = Region::default();
        let inside = |x: i32, y: i32| (0..60).contains(&x) && (0..40).contains(&y) && x - 40 <= y;
        for y in 0..40 {
            for x in 0..60 {
                if inside(x, y) {
                    region.pixels += 1;
                    let edge = [(-1, 0), (1, 0), (0, -1), (0, 1)]
                        .iter()
                        .any(|(dx, dy)| !inside(x + dx, y + dy));
                    if edge {
                        region.boundary.push([x as f64, y as f64]);
                    }
                }
            }
        }
        let opts = ItemCropOptions {
            min_rectangularity: 0.95,
            ..Default::default()
        };
        assert!(fit_shape(&region, 0.0, 100.0, &opts).is_none());
        let on_top = [[35.0, -10.0], [70.0, -10.0], [70.0, 25.0], [35.0, 25.0]];
        let shape = fit_shape_under(&region, 0.0, 100.0, &opts, &[on_top])
            .expect("a rectangle with a hidden corner");
        let mut half = shape.rect.half;
        half.sort_by(f64::total_cmp);
        assert!(
            (half[0] - 19.5).abs() < 0.01 && (half[1] - 29.5).abs() < 0.01,
            "{half:?}"
        );
        assert!(shape.solidity > 0.97, "{}", shape.solidity);
    }
}
