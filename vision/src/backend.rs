//! Backend selection at the edge (DESIGN.md "Conventions": the backend is
//! chosen once at worker start-up, never deep in the pipeline).
//!
//! `auto` probes the CUDA driver with a plain `dlopen` + `cuInit` +
//! `cuDeviceGetCount` *before* any CUDA device is created: creating a
//! burn-cuda device without a driver panics on a background thread, which
//! cannot be caught reliably.

use std::{fmt, path::Path, str::FromStr};

use burn_tensor::{
    backend::{Backend, DTypeUsage},
    ops::ConvOptions,
    DType, Int, Tensor, TensorData,
};
use opencv::core::Mat;
use serde::{Deserialize, Serialize};

use crate::{
    cancel::CancelFlag,
    canny,
    error::VisionError,
    flow, frames,
    item_crop::{crop_items, ItemCropOptions, ItemCropOutput},
    pipeline::{analyze_video_with_progress, Progress, ScanOptions, VideoScanOutput},
    primitives::{self, Border, Interpolation, MorphOp, MorphShape},
};

/// What a backend must offer the pipeline beyond burn's `Backend`: a name
/// for reports, and the hot ops with a portable tensor default (what CUDA
/// and Wgpu run) that a backend may override with a faster native
/// implementation (the NdArray backend runs plain Rust on the host, see
/// [`crate::host`]). The public functions in [`primitives`], [`canny`] and
/// [`flow`] dispatch here; each op's semantics are documented there.
pub trait ScanBackend: Backend {
    /// Short name used in reports and metrics.
    const NAME: &'static str;

    /// [`primitives::bgr_to_gray`].
    fn bgr_to_gray(bgr: Tensor<Self, 4>) -> Tensor<Self, 4> {
        primitives::bgr_to_gray_tensor(bgr)
    }

    /// Decoded BGR frames to gray frames ([`frames::stack_gray_from_bgr`]).
    ///
    /// The frames are converted to gray on the host as they are copied out
    /// of the decoder's `Mat`s (the formula is integer, so this is exact),
    /// and go to the device as one byte a pixel where it stores `u8` (CUDA
    /// does), cast to `f32` there: a twelfth of the bytes that planar `f32`
    /// BGR for [`primitives::bgr_to_gray`] on the device would move. On the
    /// H100 that upload was the slowest stage, 10-15 ms a frame.
    fn gray_frames(mats: &[Mat], device: &Self::Device) -> Result<Tensor<Self, 4>, VisionError> {
        let (gray, dims) = frames::gray_from_bgr_host::<u8>(mats)?;
        let data = TensorData::new(gray, dims);
        crate::transfers::note_upload();
        Ok(
            if Self::dtype_usage(device, DType::U8).contains(DTypeUsage::Storage) {
                Tensor::<Self, 4, Int>::from_data(data, (device, DType::U8)).float()
            } else {
                Tensor::from_data(data, device)
            },
        )
    }

    /// [`primitives::resize`] (only called when the size changes).
    fn resize(
        x: Tensor<Self, 4>,
        out_w: usize,
        out_h: usize,
        interp: Interpolation,
    ) -> Tensor<Self, 4> {
        primitives::resize_tensor(x, out_w, out_h, interp)
    }

    /// The 2-D convolution (no bias) the portable filters are built from:
    /// [`primitives::sep_filter`], [`primitives::laplacian`] and
    /// [`flow::poly_expand_tensor`].
    fn filter_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        burn_tensor::module::conv2d(x, weight, None, options)
    }

    /// [`primitives::sep_filter`] (Gaussian, box and Sobel use it).
    fn sep_filter(x: Tensor<Self, 4>, kx: &[f32], ky: &[f32], border: Border) -> Tensor<Self, 4> {
        primitives::sep_filter_tensor(x, kx, ky, border)
    }

    /// [`primitives::laplacian`].
    fn laplacian(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        primitives::laplacian_tensor(x)
    }

    /// [`primitives::laplacian_variance`].
    fn laplacian_variance(x: Tensor<Self, 4>) -> Tensor<Self, 1> {
        primitives::laplacian_variance_tensor(x)
    }

    /// Dilations and erosions applied in order, all with the same
    /// structuring element ([`primitives::dilate`], [`primitives::close`], ...):
    /// one op per sequence, so that a backend can fuse it.
    fn morph(
        x: Tensor<Self, 4>,
        ops: &[MorphOp],
        shape: MorphShape,
        kw: usize,
        kh: usize,
    ) -> Tensor<Self, 4> {
        ops.iter()
            .fold(x, |x, &op| primitives::morph_tensor(x, op, shape, kw, kh))
    }

    /// [`primitives::remap_bilinear`].
    fn remap_bilinear(
        img: Tensor<Self, 4>,
        map: &[(f32, f32)],
        out_w: usize,
        out_h: usize,
    ) -> Tensor<Self, 4> {
        primitives::remap_bilinear_tensor(img, map, out_w, out_h)
    }

    /// Canny edges, `low <= high` ([`canny::canny`]).
    fn canny(gray: Tensor<Self, 4>, low: f32, high: f32) -> Tensor<Self, 4> {
        canny::canny_tensor(gray, low, high)
    }

    /// Farneback polynomial expansion ([`flow::poly_expand_tensor`]).
    fn poly_expand(img: Tensor<Self, 4>, poly_n: usize, poly_sigma: f64) -> Tensor<Self, 4> {
        flow::poly_expand_tensor(img, poly_n, poly_sigma)
    }

    /// One Farneback iteration: the per-pixel systems from the current flow
    /// ([`flow::update_matrices_tensor`]), then blur-and-solve
    /// ([`flow::update_flow_tensor`]).
    fn flow_iteration(
        r0: Tensor<Self, 4>,
        r1: Tensor<Self, 4>,
        flow: Tensor<Self, 4>,
        winsize: usize,
    ) -> Tensor<Self, 4> {
        flow::update_flow_tensor(flow::update_matrices_tensor(r0, r1, flow), winsize)
    }
}

/// The CUDA backend scans run on in a `--features cuda` build.
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda<f32, i32>;

#[cfg(feature = "cuda")]
impl ScanBackend for Cuda {
    const NAME: &'static str = "cuda";

    fn filter_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        direct_conv2d(x, weight, options)
    }
}

#[cfg(feature = "wgpu")]
impl ScanBackend for burn_wgpu::Wgpu<f32, i32> {
    const NAME: &'static str = "wgpu";

    fn filter_conv2d(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        direct_conv2d(x, weight, options)
    }
}

/// burn's `conv2d` on a CubeCL backend, always with the direct kernel. By
/// default burn autotunes among several kernels per shape, some of them
/// tensor-core GEMMs that multiply f32 in TF32 (10-bit mantissa): whichever
/// won on a given GPU and run decided whether a scan matched the CPU's to
/// 1e-4 (on an H100 one run did and the next did not). The direct kernel
/// sums in f32 in a fixed order, and there is no tuning pass on first use.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn direct_conv2d<B, R>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: ConvOptions<2>,
) -> Tensor<B, 4>
where
    B: Backend<FloatTensorPrimitive = burn_cubecl::tensor::CubeTensor<R>>,
    R: burn_cubecl::CubeRuntime,
{
    use burn_cubecl::kernel::conv::{conv_forward, ConvStrategy};
    use burn_tensor::TensorPrimitive;
    let out = conv_forward::<R, 2>(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        None,
        options,
        ConvStrategy::Direct,
    )
    .expect("the direct convolution kernel takes any shape");
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The worker's `--backend` / `BACKEND` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Cpu,
    Cuda,
    /// Vulkan, Metal or DX12 through wgpu: AMD, Intel and Apple GPUs (and
    /// Mesa's lavapipe, which runs the same kernels on the CPU for tests).
    Wgpu,
    Auto,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "wgpu" => Ok(Self::Wgpu),
            "auto" => Ok(Self::Auto),
            o => Err(format!(
                "unknown backend {o:?} (expected cpu, cuda, wgpu or auto)"
            )),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
            Self::Auto => "auto",
        })
    }
}

/// Which backend is in use and why (logged at start-up and shown in `/readyz`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    pub requested: BackendChoice,
    /// `"cpu-ndarray"`, `"cuda"` or `"wgpu"`.
    pub used: String,
    pub reason: String,
    /// CUDA devices the driver reported (0 when not probed or absent).
    pub cuda_devices: i32,
}

/// Probe the CUDA driver without touching burn-cuda: `Ok(device count)` when
/// libcuda loads, `cuInit(0)` succeeds and at least one device answers.
pub fn probe_cuda() -> Result<i32, String> {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which
    // is what any CUDA program does; the symbols have the documented C ABI.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .or_else(|_| libloading::Library::new("libcuda.so"))
            .map_err(|e| format!("libcuda not loadable: {e}"))?;
        let init: libloading::Symbol<CuInit> = lib
            .get(b"cuInit\0")
            .map_err(|e| format!("cuInit missing: {e}"))?;
        let count_fn: libloading::Symbol<CuDeviceGetCount> = lib
            .get(b"cuDeviceGetCount\0")
            .map_err(|e| format!("cuDeviceGetCount missing: {e}"))?;
        let rc = init(0);
        if rc != 0 {
            return Err(format!("cuInit failed with CUresult {rc}"));
        }
        let mut n = 0i32;
        let rc = count_fn(&mut n);
        if rc != 0 {
            return Err(format!("cuDeviceGetCount failed with CUresult {rc}"));
        }
        if n <= 0 {
            return Err("driver loaded but no CUDA device present".into());
        }
        // Keep the library loaded for the life of the process: burn-cuda will
        // load it again and unloading a driver library is never useful.
        std::mem::forget(lib);
        Ok(n)
    }
}

/// The GPU scans run on when the driver answers ([`probe_cuda`]); why not otherwise.
#[cfg(feature = "cuda")]
pub fn cuda_device() -> Result<burn_cuda::CudaDevice, String> {
    probe_cuda().map(|_| first_cuda_device())
}

/// The first GPU the driver lists; a worker process uses one GPU.
#[cfg(feature = "cuda")]
fn first_cuda_device() -> burn_cuda::CudaDevice {
    burn_cuda::CudaDevice::new(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolved {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda,
    #[cfg(feature = "wgpu")]
    Wgpu,
}

#[cfg(feature = "wgpu")]
type Wgpu = burn_wgpu::Wgpu<f32, i32>;

/// A resolved backend, created once per worker process.
#[derive(Clone, Debug)]
pub struct ScanEngine {
    resolved: Resolved,
    report: BackendReport,
}

impl ScanEngine {
    /// Resolve `choice`: `cpu` always works; `cuda` fails with
    /// `backend_unavailable` when built without the `cuda` feature or when
    /// the driver probe fails; `auto` uses CUDA when the probe succeeds and
    /// falls back to the CPU otherwise, saying why.
    pub fn new(choice: BackendChoice) -> Result<Self, VisionError> {
        let cpu = |reason: String, devices: i32| ScanEngine {
            resolved: Resolved::Cpu,
            report: BackendReport {
                requested: choice,
                used: <crate::Cpu as ScanBackend>::NAME.into(),
                reason,
                cuda_devices: devices,
            },
        };
        match choice {
            BackendChoice::Cpu => Ok(cpu("cpu requested".into(), 0)),
            // Never chosen by `auto`: wgpu picks whatever adapter the system
            // offers (lavapipe included), so it is asked for by name.
            #[cfg(feature = "wgpu")]
            BackendChoice::Wgpu => Ok(ScanEngine {
                resolved: Resolved::Wgpu,
                report: BackendReport {
                    requested: choice,
                    used: <Wgpu as ScanBackend>::NAME.into(),
                    reason: "wgpu requested: the system's default adapter".into(),
                    cuda_devices: 0,
                },
            }),
            #[cfg(not(feature = "wgpu"))]
            BackendChoice::Wgpu => Err(VisionError::BackendUnavailable(
                "built without wgpu (build with the `wgpu` feature)".into(),
            )),
            BackendChoice::Cuda | BackendChoice::Auto => {
                #[cfg(not(feature = "cuda"))]
                {
                    if choice == BackendChoice::Cuda {
                        return Err(VisionError::BackendUnavailable("built without cuda".into()));
                    }
                    Ok(cpu("auto: built without cuda; using cpu".into(), 0))
                }
                #[cfg(feature = "cuda")]
                match probe_cuda() {
                    Ok(n) => Ok(ScanEngine {
                        resolved: Resolved::Cuda,
                        report: BackendReport {
                            requested: choice,
                            used: "cuda".into(),
                            reason: format!("{choice}: CUDA driver answered with {n} device(s)"),
                            cuda_devices: n,
                        },
                    }),
                    Err(why) if choice == BackendChoice::Cuda => {
                        Err(VisionError::BackendUnavailable(why))
                    }
                    Err(why) => Ok(cpu(format!("auto: {why}; using cpu"), 0)),
                }
            }
        }
    }

    pub fn report(&self) -> &BackendReport {
        &self.report
    }

    /// Run one `video_scan` on the resolved backend.
    pub fn analyze(&self, path: &Path, opts: &ScanOptions) -> Result<VideoScanOutput, VisionError> {
        self.analyze_with_progress(path, opts, &mut |_| {}, &CancelFlag::new())
    }

    /// [`ScanEngine::analyze`], reporting progress as frames are measured
    /// and stopping early once `cancel` is raised.
    pub fn analyze_with_progress(
        &self,
        path: &Path,
        opts: &ScanOptions,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelFlag,
    ) -> Result<VideoScanOutput, VisionError> {
        match self.resolved {
            Resolved::Cpu => analyze_video_with_progress::<crate::Cpu>(
                path,
                opts,
                &Default::default(),
                progress,
                cancel,
            ),
            #[cfg(feature = "cuda")]
            Resolved::Cuda => analyze_video_with_progress::<Cuda>(
                path,
                opts,
                &first_cuda_device(),
                progress,
                cancel,
            ),
            #[cfg(feature = "wgpu")]
            Resolved::Wgpu => analyze_video_with_progress::<Wgpu>(
                path,
                opts,
                &Default::default(),
                progress,
                cancel,
            ),
        }
    }

    /// Run one `item_crop` on the resolved backend; `photo` is the encoded file.
    pub fn crop_items(
        &self,
        photo: &[u8],
        opts: &ItemCropOptions,
    ) -> Result<ItemCropOutput, VisionError> {
        match self.resolved {
            Resolved::Cpu => crop_items::<crate::Cpu>(photo, opts, &Default::default()),
            #[cfg(feature = "cuda")]
            Resolved::Cuda => crop_items::<Cuda>(photo, opts, &first_cuda_device()),
            #[cfg(feature = "wgpu")]
            Resolved::Wgpu => crop_items::<Wgpu>(photo, opts, &Default::default()),
        }
    }
}
