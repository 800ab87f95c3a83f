//! The scan pipeline, generic over burn's `Backend` (see DESIGN.md "Scan kinds").
//!
//! Frames live on the device as `[N, 1, H, W]` f32 tensors holding 0..=255
//! intensities; every primitive keeps OpenCV's semantics (border modes,
//! rounding, thresholds) so that the OpenCV oracle tests can compare
//! pixel for pixel.
//!
//! Modules:
//! - [`primitives`]: grayscale, resize, separable filters, Sobel, Laplacian,
//!   morphology, connected components.
//! - [`canny`]: Canny edge detector (L1 gradient, OpenCV NMS, 8-connected hysteresis).
//! - [`flow`]: Farneback dense optical flow.
//! - [`synth`]: synthetic scan generator with ground truth.
//! - [`pipeline`]: the `video_scan` pipeline.
//! - [`item_crop`]: the `item_crop` scan (items found and cropped in a photo);
//!   [`photo`] decodes its input, [`synth_photo`] renders test photos.
//! - [`backend`]: the [`ScanBackend`] ops and backend selection at the edge (cpu | cuda | auto).
//! - `host`: the CPU backend's plain-Rust implementations of those ops.

pub mod backend;
pub mod cancel;
pub mod canny;
pub mod error;
pub mod flow;
pub mod frames;
mod host;
pub mod item_crop;
pub mod photo;
pub mod pipeline;
pub mod primitives;
mod resident;
pub mod synth;
pub mod synth_photo;
pub mod transfers;

pub use backend::{BackendChoice, BackendReport, ScanBackend};
pub use cancel::CancelFlag;
pub use error::VisionError;
pub use item_crop::{crop_items, ItemCropOptions, ItemCropOutput};
pub use pipeline::{
    analyze_video, analyze_video_with_progress, Progress, ScanOptions, VideoScanOutput,
};

/// The CPU backend used by CPU workers.
pub type Cpu = burn_ndarray::NdArray<f32>;
