//! Stains: compact dark blotches a few percent of the item wide. Printed
//! art is full of dark blobs of every size, and in gray levels a stain
//! looks like one of them, so a stain is only reported where the surround
//! is quiet enough to tell it from print (a plain border, a sky, a flat
//! background): recall is traded for precision on busy art.

use opencv::{
    core::{Mat, Point, Size, BORDER_CONSTANT, CV_32F, CV_32S},
    imgproc,
    prelude::*,
};

use super::{defect, DefectKind, DefectRules, Found, Item, Mark};
use crate::error::VisionError;

pub(super) fn find(item: &Item, rules: &DefectRules) -> Result<Vec<Found>, VisionError> {
    let full = Mat::from_slice(item.px)?
        .reshape(1, item.h as i32)?
        .try_clone()?;
    // A stain spans tens of pixels: look at it on a small copy.
    let s = rules.stain_width_px / item.w as f64;
    let (sw, sh) = (
        ((item.w as f64 * s) as i32).max(8),
        ((item.h as f64 * s) as i32).max(8),
    );
    let mut small = Mat::default();
    imgproc::resize(
        &full,
        &mut small,
        Size::new(sw, sh),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let k = ((rules.stain_kernel * sw as f64).round() as i32) | 1;
    let element = imgproc::get_structuring_element(
        imgproc::MORPH_ELLIPSE,
        Size::new(k, k),
        Point::new(-1, -1),
    )?;
    let mut closed = Mat::default();
    imgproc::morphology_ex(
        &small,
        &mut closed,
        imgproc::MORPH_CLOSE,
        &element,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        imgproc::morphology_default_border_value()?,
    )?;
    let mut blackhat = Mat::default();
    opencv::core::subtract(
        &closed,
        &small,
        &mut blackhat,
        &opencv::core::no_array(),
        CV_32F,
    )?;
    let (sw, sh) = (sw as usize, sh as usize);
    let bh: Vec<f32> = blackhat.data_typed::<f32>()?.to_vec();
    let gray: Vec<f32> = small.data_typed::<f32>()?.to_vec();
    let m = (rules.stain_margin * sw as f64).round() as usize;
    let bits: Vec<u8> = bh
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (x, y) = (i % sw, i / sw);
            let inside = x >= m && y >= m && x + m < sw && y + m < sh;
            u8::from(inside && v > rules.stain_contrast)
        })
        .collect();
    let bits = Mat::from_slice(&bits)?.reshape(1, sh as i32)?.try_clone()?;
    let (mut labels, mut stats, mut centroids) = (Mat::default(), Mat::default(), Mat::default());
    let n = imgproc::connected_components_with_stats(
        &bits,
        &mut labels,
        &mut stats,
        &mut centroids,
        8,
        CV_32S,
    )?;
    let labels: Vec<i32> = labels.data_typed::<i32>()?.to_vec();
    let mut found = Vec::new();
    for label in 1..n {
        let stat = |c: i32| stats.at_2d::<i32>(label, c).copied();
        let (x, y, cw, ch, area) = (
            stat(imgproc::CC_STAT_LEFT)? as usize,
            stat(imgproc::CC_STAT_TOP)? as usize,
            stat(imgproc::CC_STAT_WIDTH)? as usize,
            stat(imgproc::CC_STAT_HEIGHT)? as usize,
            stat(imgproc::CC_STAT_AREA)? as usize,
        );
        let radius = (area as f64 / std::f64::consts::PI).sqrt() / sw as f64;
        let roundness = cw.min(ch) as f64 / cw.max(ch) as f64;
        let fill = area as f64 / (cw * ch) as f64;
        if radius < rules.stain_small_radius
            || radius > rules.stain_radius.1
            || roundness < rules.stain_roundness
            || fill < rules.stain_fill
        {
            continue;
        }
        // The surround: a box as far out again as the stain is big.
        let pad = cw.max(ch);
        let (x0, y0) = (x.saturating_sub(pad), y.saturating_sub(pad));
        let (x1, y1) = ((x + cw + pad).min(sw), (y + ch + pad).min(sh));
        let mut depth = Vec::with_capacity(area);
        let (mut busy, mut ring, mut sum, mut sum2) = (0usize, 0usize, 0f64, 0f64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                let i = yy * sw + xx;
                if labels[i] == label {
                    depth.push(bh[i]);
                    continue;
                }
                ring += 1;
                busy += usize::from(bh[i] > 0.5 * rules.stain_contrast);
                let g = gray[i] as f64;
                sum += g;
                sum2 += g * g;
            }
        }
        depth.sort_by(f32::total_cmp);
        let depth = depth[depth.len() / 2];
        let ring_n = ring.max(1) as f64;
        let texture = (sum2 / ring_n - (sum / ring_n).powi(2)).max(0.0).sqrt() as f32;
        if busy as f64 / ring_n > rules.stain_busy || texture > rules.stain_texture * depth {
            continue;
        }
        if radius < rules.stain_radius.0 && texture > rules.stain_small_texture * depth {
            continue;
        }
        let to_item = item.w as f64 / sw as f64;
        let bbox = item.bbox(
            x as f64 * to_item,
            y as f64 * to_item,
            (x + cw) as f64 * to_item,
            (y + ch) as f64 * to_item,
        );
        let area_px = area as f64 * to_item * to_item;
        found.push(Found {
            // A stain covering 1 % of the item is as bad as a stain gets.
            defect: defect(
                DefectKind::Stain,
                bbox,
                cw.max(ch) as f64 * to_item,
                area_px,
                area_px / (0.01 * (item.w * item.h) as f64),
                None,
            ),
            mark: Mark::Area,
        });
    }
    Ok(found)
}
