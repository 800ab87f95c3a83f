//! Image primitives as burn tensor code with OpenCV's semantics.
//!
//! All functions take and return `[N, C, H, W]` f32 tensors (intensities in
//! 0..=255 for images) and stay on the tensor's device.

mod color;
mod components;
mod filter;
mod morph;
mod resize;
mod warp;

pub use color::bgr_to_gray;
pub use components::{connected_components_with_stats, label_mask, Component};
pub(crate) use filter::pad2d;
pub use filter::{
    box_filter, gaussian_blur, gaussian_kernel, laplacian, laplacian_variance, sep_filter, sobel,
    Border,
};
pub use morph::{close, dilate, erode, open, MorphShape};
pub use resize::{resize, round_levels, Interpolation};
pub use warp::remap_bilinear;
