//! Helpers shared by the OpenCV-oracle tests.
#![allow(dead_code)]

use std::path::PathBuf;

use burn_tensor::Tensor;
use opencv::{core::Mat, imgcodecs, prelude::*, videoio};
use vision::{frames::GrayImage, Cpu};

pub const DATA: &str = "/usr/share/doc/opencv-doc/examples/data";

/// Path to an opencv-doc sample, decompressing a `.gz` copy into a temp dir if needed.
pub fn sample(name: &str) -> PathBuf {
    let p = PathBuf::from(DATA).join(name);
    if p.exists() {
        return p;
    }
    let gz = PathBuf::from(DATA).join(format!("{name}.gz"));
    assert!(gz.exists(), "missing test data {p:?} (install opencv-doc)");
    let dir = std::env::temp_dir().join("scanfleet-vision-data");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    if !out.exists() {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc '{}' > '{}'", gz.display(), out.display()))
            .status()
            .unwrap();
        assert!(st.success());
    }
    out
}

pub fn read_gray(name: &str) -> Mat {
    let m = imgcodecs::imread(sample(name).to_str().unwrap(), imgcodecs::IMREAD_GRAYSCALE).unwrap();
    assert!(!m.empty(), "could not read {name}");
    m
}

pub fn read_color(name: &str) -> Mat {
    let m = imgcodecs::imread(sample(name).to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!m.empty(), "could not read {name}");
    m
}

/// First `n` frames of vtest.avi, BGR.
pub fn vtest_frames(n: usize) -> Vec<Mat> {
    let mut cap =
        videoio::VideoCapture::from_file(sample("vtest.avi").to_str().unwrap(), videoio::CAP_ANY)
            .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let mut m = Mat::default();
        assert!(cap.read(&mut m).unwrap(), "vtest.avi too short");
        out.push(m);
    }
    out
}

pub fn bgr2gray(m: &Mat) -> Mat {
    let mut g = Mat::default();
    opencv::imgproc::cvt_color_def(m, &mut g, opencv::imgproc::COLOR_BGR2GRAY).unwrap();
    g
}

pub fn to_tensor(m: &Mat) -> Tensor<Cpu, 4> {
    let g = GrayImage::from_mat(m).unwrap();
    vision::frames::stack_gray::<Cpu>(&[&g], &Default::default())
}

/// Any single-channel Mat as f32 values, row-major.
pub fn mat_f32(m: &Mat) -> Vec<f32> {
    let mut f = Mat::default();
    m.convert_to(&mut f, opencv::core::CV_32F, 1.0, 0.0)
        .unwrap();
    let mut out = Vec::with_capacity((f.rows() * f.cols()) as usize);
    for y in 0..f.rows() {
        out.extend_from_slice(f.at_row::<f32>(y).unwrap());
    }
    out
}

pub fn from_f32(v: &[f32], _w: usize, h: usize) -> Mat {
    let m = Mat::from_slice(v).unwrap();
    m.reshape(1, h as i32).unwrap().try_clone().unwrap()
}

pub fn tensor_f32(t: Tensor<Cpu, 4>) -> Vec<f32> {
    vision::frames::to_vec_f32(t)
}
