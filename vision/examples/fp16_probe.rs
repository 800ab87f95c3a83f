//! Would FP16 (seed 003's `SAM_FP16`) keep the pipeline's results? Runs each
//! device primitive, item_crop and video_scan with f32 and with f16 tensors
//! on Wgpu (Mesa's lavapipe offers f16) and prints how far f16 lands.
//!
//! `cargo run -p scanfleet-vision --features wgpu --example fp16_probe`
//!
//! burn fixes a device's float dtype at its first tensor, so the f16 runs
//! use lavapipe as a second burn device (`WgpuDevice::Cpu`).

use burn_tensor::{DType, FloatDType, IntDType, Tensor};
use opencv::prelude::*;
use vision::{
    analyze_video, canny, crop_items, frames, primitives,
    synth::{self, SynthSpec},
    synth_photo::{render, PhotoSpec},
    ItemCropOptions,
};

type Gpu = burn_wgpu::Wgpu<f32, i32>;

fn main() {
    let (full, half) = (burn_wgpu::WgpuDevice::default(), burn_wgpu::WgpuDevice::Cpu);
    burn_tensor::set_default_dtypes::<Gpu>(&half, FloatDType::F16, IntDType::I32)
        .expect("the adapter offers f16");
    assert_eq!(
        Tensor::<Gpu, 1>::from_floats([1.0], &half).dtype(),
        DType::F16,
        "f16 tensors on the f16 device"
    );

    let dir = tempfile::tempdir().unwrap();
    let truth = synth::generate(&SynthSpec::small(), dir.path()).unwrap();
    let mut capture = opencv::videoio::VideoCapture::from_file(
        truth.video.to_str().unwrap(),
        opencv::videoio::CAP_ANY,
    )
    .unwrap();
    let mut frame = opencv::core::Mat::default();
    capture.read(&mut frame).unwrap();
    // Each primitive gets the f32 gray frame (whole numbers up to 255, exact
    // in f16), so a failure further up does not hide the ones below it.
    let bgr_on = |device: &burn_wgpu::WgpuDevice| {
        frames::stack_bgr::<Gpu>(std::slice::from_ref(&frame), device).unwrap()
    };
    let gray = primitives::bgr_to_gray(bgr_on(&full));
    let (gray_dims, gray_values) = (gray.dims(), frames::to_vec_f32(gray));
    let primitives_on = |device: &burn_wgpu::WgpuDevice| {
        let gray = Tensor::<Gpu, 4>::from_data(
            burn_tensor::TensorData::new(gray_values.clone(), gray_dims),
            device,
        );
        vec![
            (
                "bgr_to_gray",
                frames::to_vec_f32(primitives::bgr_to_gray(bgr_on(device))),
            ),
            (
                "gaussian_blur",
                frames::to_vec_f32(primitives::gaussian_blur(
                    gray.clone(),
                    0,
                    1.0,
                    primitives::Border::Reflect101,
                )),
            ),
            (
                "laplacian_variance",
                frames::to_vec_f32(primitives::laplacian_variance(gray.clone())),
            ),
            (
                "canny",
                frames::to_vec_f32(canny::canny(gray.clone(), canny::LOW, canny::HIGH)),
            ),
            (
                "close 3x3",
                frames::to_vec_f32(primitives::close(gray, primitives::MorphShape::Rect, 3, 3)),
            ),
        ]
    };
    for ((name, a), (_, b)) in primitives_on(&full).iter().zip(primitives_on(&half)) {
        let max = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        let non_finite = b.iter().filter(|v| !v.is_finite()).count();
        let differing = a.iter().zip(&b).filter(|(p, q)| p != q).count();
        println!("{name}: {differing} of {} values differ, max |f32 - f16| {max}, {non_finite} f16 values not finite", b.len());
    }

    let opts = ItemCropOptions::default();
    for seed in [3, 13, 27] {
        let (photo, _) = render(&PhotoSpec {
            seed,
            ..PhotoSpec::default()
        })
        .unwrap();
        let a = crop_items::<Gpu>(&photo, &opts, &full).unwrap();
        let b = crop_items::<Gpu>(&photo, &opts, &half).unwrap();
        println!(
            "item_crop seed {seed}: {} items with f32, {} with f16",
            a.report.items.len(),
            b.report.items.len()
        );
    }
    let scan = vision::ScanOptions::default();
    let a = analyze_video::<Gpu>(&truth.video, &scan, &full).unwrap();
    let b = analyze_video::<Gpu>(&truth.video, &scan, &half).unwrap();
    for (x, y) in a.report.frame_stats.iter().zip(&b.report.frame_stats) {
        println!(
            "video_scan frame {}: sharpness {:.3} / {:.3}, edge density {:.4} / {:.4}",
            x.index, x.sharpness, y.sharpness, x.edge_density, y.edge_density
        );
    }
    println!(
        "video_scan: {} defects with f32, {} with f16; item found {} / {}",
        a.report.defects.len(),
        b.report.defects.len(),
        a.report.item.is_some(),
        b.report.item.is_some()
    );
}
