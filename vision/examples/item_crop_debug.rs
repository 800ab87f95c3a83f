//! Renders synthetic photo(s) and draws truth (green) and found items (red),
//! plus the wall mask, into DIR: `cargo run -p scanfleet-vision --example item_crop_debug -- DIR SEED...`.

use opencv::{core::{Mat, Point, Scalar, Vector}, imgcodecs, imgproc, prelude::*};
use vision::{crop_items, frames::stack_bgr, item_crop::{edge_walls, ItemCropOptions}, synth_photo::{self, PhotoSpec}, Cpu};

fn poly(img: &mut Mat, q: &[[f64; 2]; 4], c: Scalar) {
    let pts: Vector<Point> = q.iter().map(|p| Point::new(p[0].round() as i32, p[1].round() as i32)).collect();
    let mut v = Vector::<Vector<Point>>::new();
    v.push(pts);
    imgproc::polylines(img, &v, true, c, 1, imgproc::LINE_8, 0).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    std::fs::create_dir_all(&dir).unwrap();
    let opts = ItemCropOptions::default();
    for seed in args[2..].iter().map(|s| s.parse::<u64>().unwrap()) {
        let (jpeg, truth) = synth_photo::render(&PhotoSpec { seed, ..Default::default() }).unwrap();
        let out = crop_items::<Cpu>(&jpeg, &opts, &Default::default()).unwrap();
        let mut img = imgcodecs::imdecode(&Vector::<u8>::from_slice(&jpeg), imgcodecs::IMREAD_COLOR).unwrap();
        let bgr = stack_bgr::<Cpu>(std::slice::from_ref(&img), &Default::default()).unwrap();
        let (w, h) = (img.cols() as usize, img.rows() as usize);
        let walls = edge_walls(bgr, w, h, &opts);
        let bytes: Vec<u8> = walls.iter().map(|&b| if b { 255 } else { 0 }).collect();
        let m = Mat::from_slice(&bytes).unwrap().reshape(1, h as i32).unwrap().try_clone().unwrap();
        imgcodecs::imwrite(dir.join(format!("walls_{seed}.png")).to_str().unwrap(), &m, &Vector::new()).unwrap();
        for g in &truth.items {
            poly(&mut img, &g.quad, Scalar::new(0.0, 255.0, 0.0, 0.0));
        }
        for d in &out.report.items {
            poly(&mut img, &d.quad, Scalar::new(0.0, 0.0, 255.0, 0.0));
        }
        imgcodecs::imwrite(dir.join(format!("photo_{seed}.png")).to_str().unwrap(), &img, &Vector::new()).unwrap();
        println!("seed {seed}: {} true, {} found; bg {:?}", truth.items.len(), out.report.items.len(), truth.background);
        for g in &truth.items {
            println!("  truth bbox {:?} size {:?} visible {:.2} contact {}", g.bbox.map(|v| v.round()), g.size.map(|v| v.round()), g.visible_fraction, g.in_contact);
        }
        for d in &out.report.items {
            println!("  found bbox {:?} crop {:?} conf {:.2}", d.bbox.map(|v| v.round()), d.crop_size, d.confidence);
        }
    }
}
