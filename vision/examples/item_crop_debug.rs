//! Accuracy of `item_crop` on synthetic photos, with pictures of the misses:
//! `cargo run -p scanfleet-vision --example item_crop_debug -- DIR FIRST_SEED LAST_SEED`.
//! Prints one line per photo whose item count is wrong or with an IoU under
//! 0.9 (and for the count misses and IoUs under `DRAW_BELOW`, default 0.8,
//! draws truth in green, found items in red, plus the wall mask, into DIR),
//! then the count-exact rate and the box IoU figures over all photos.
//! `PHOTO_ITEMS=N` fixes the number of items per photo.

use opencv::{
    core::{Mat, Point, Scalar, Vector},
    imgcodecs, imgproc,
    prelude::*,
};
use vision::{
    crop_items,
    frames::stack_bgr,
    item_crop::{edge_walls, ItemCropOptions},
    pipeline::Timer,
    synth_photo::{self, match_items, PhotoSpec},
    Cpu,
};

fn poly(img: &mut Mat, q: &[[f64; 2]; 4], c: Scalar) {
    let pts: Vector<Point> = q
        .iter()
        .map(|p| Point::new(p[0].round() as i32, p[1].round() as i32))
        .collect();
    let mut v = Vector::<Vector<Point>>::new();
    v.push(pts);
    imgproc::polylines(img, &v, true, c, 1, imgproc::LINE_8, 0).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let (first, last): (u64, u64) = (args[2].parse().unwrap(), args[3].parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let opts = ItemCropOptions::default();
    // Photos with an item under this IoU are drawn (env DRAW_BELOW, default 0.8).
    let draw_below: f64 =
        std::env::var("DRAW_BELOW").map_or(0.8, |v| v.parse().expect("DRAW_BELOW: a number"));
    let (mut photos, mut exact, mut ious) = (0usize, 0usize, Vec::new());
    let mut stage_ms = Timer::default();
    for seed in first..=last {
        let items = std::env::var("PHOTO_ITEMS")
            .ok()
            .map(|v| v.parse().expect("PHOTO_ITEMS: a number"));
        let (jpeg, truth) = synth_photo::render(&PhotoSpec {
            seed,
            items,
            ..Default::default()
        })
        .unwrap();
        let out = crop_items::<Cpu>(&jpeg, &opts, &Default::default()).unwrap();
        for t in &out.report.timings_ms {
            stage_ms.add_ms(&t.stage, t.ms);
        }
        let matched = match_items(&truth.items, &out.report.items);
        ious.extend(matched.iter().map(|m| m.2));
        photos += 1;
        let contact = truth.items.iter().any(|i| i.in_contact);
        let low: Vec<String> = matched
            .iter()
            .filter(|m| m.2 < 0.9)
            .map(|m| format!("{:.2}", m.2))
            .collect();
        if out.report.items.len() == truth.items.len() {
            exact += 1;
            if !low.is_empty() {
                println!("seed {seed}: IoU under 0.9: {low:?} (contact {contact})");
            }
            if matched.iter().all(|m| m.2 >= draw_below) {
                continue;
            }
        }
        if out.report.items.len() != truth.items.len() {
            println!(
                "seed {seed}: {} true, {} found, contact {contact}, IoU under 0.9: {low:?}",
                truth.items.len(),
                out.report.items.len()
            );
        }
        let mut img =
            imgcodecs::imdecode(&Vector::<u8>::from_slice(&jpeg), imgcodecs::IMREAD_COLOR).unwrap();
        let bgr = stack_bgr::<Cpu>(std::slice::from_ref(&img), &Default::default()).unwrap();
        let (w, h) = (img.cols() as usize, img.rows() as usize);
        let walls = edge_walls(bgr, w, h, &opts);
        let bytes: Vec<u8> = walls.iter().map(|&b| if b { 255 } else { 0 }).collect();
        let m = Mat::from_slice(&bytes)
            .unwrap()
            .reshape(1, h as i32)
            .unwrap()
            .try_clone()
            .unwrap();
        imgcodecs::imwrite(
            dir.join(format!("walls_{seed}.png")).to_str().unwrap(),
            &m,
            &Vector::new(),
        )
        .unwrap();
        for g in &truth.items {
            poly(&mut img, &g.quad, Scalar::new(0.0, 255.0, 0.0, 0.0));
        }
        for d in &out.report.items {
            poly(&mut img, &d.quad, Scalar::new(0.0, 0.0, 255.0, 0.0));
        }
        imgcodecs::imwrite(
            dir.join(format!("photo_{seed}.png")).to_str().unwrap(),
            &img,
            &Vector::new(),
        )
        .unwrap();
    }
    let mean = ious.iter().sum::<f64>() / ious.len().max(1) as f64;
    let good = ious.iter().filter(|&&v| v >= 0.9).count();
    println!(
        "{photos} photos: count exact {exact} ({:.1} %); {} items matched, IoU mean {mean:.4}, IoU >= 0.9 for {good} ({:.1} %)",
        100.0 * exact as f64 / photos as f64,
        ious.len(),
        100.0 * good as f64 / ious.len().max(1) as f64
    );
    let per_photo: Vec<String> = stage_ms
        .stages
        .iter()
        .map(|t| format!("{} {:.1}", t.stage, t.ms / photos as f64))
        .collect();
    println!("ms per photo: {}", per_photo.join(", "));
}
