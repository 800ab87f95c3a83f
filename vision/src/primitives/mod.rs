//! Image primitives as burn tensor code with OpenCV's semantics.
//!
//! All functions take and return `[N, C, H, W]` f32 tensors (intensities in
//! 0..=255 for images) and stay on the tensor's device.
//!
//! Hot ops dispatch through [`crate::ScanBackend`]: `op_tensor` is the
//! portable version (CUDA, Wgpu), `op_host` the plain-Rust one over
//! row-major planes that the NdArray backend runs.

mod color;
mod components;
mod filter;
mod morph;
mod resize;
mod warp;

pub use color::{bgr_to_gray, bgr_to_gray_host, bgr_to_gray_tensor};
pub use components::{connected_components_with_stats, label_mask, Component};
pub(crate) use filter::pad2d;
pub use filter::{
    box_filter, gaussian_blur, gaussian_kernel, laplacian, laplacian_host, laplacian_tensor,
    laplacian_variance, laplacian_variance_host, laplacian_variance_tensor, sep_filter,
    sep_filter_host, sep_filter_tensor, sobel, Border,
};
pub use morph::{close, dilate, erode, morph_host, morph_tensor, open, MorphOp, MorphShape};
pub use resize::{resize, resize_host, resize_tensor, round_levels, Interpolation};
pub use warp::{
    apply_homography, homography, remap_bilinear, remap_bilinear_host, remap_bilinear_tensor,
};
