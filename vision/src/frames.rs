//! Moving frames between host buffers (OpenCV `Mat`, `Vec<u8>`) and device
//! tensors `[N, C, H, W]`.

use burn_tensor::{backend::Backend, Tensor, TensorData};
use opencv::{core::Mat, prelude::*};
use rayon::prelude::*;

use crate::{backend::ScanBackend, error::VisionError, transfers};

/// A host-side 8-bit single-channel image, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl GrayImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width * height,
            "buffer does not match {width}x{height}"
        );
        Self {
            width,
            height,
            data,
        }
    }

    /// Copy out of a continuous or strided CV_8UC1 `Mat`.
    pub fn from_mat(mat: &Mat) -> Result<Self, VisionError> {
        if mat.typ() != opencv::core::CV_8UC1 {
            return Err(VisionError::Internal(format!(
                "expected CV_8UC1, got type {}",
                mat.typ()
            )));
        }
        let (h, w) = (mat.rows() as usize, mat.cols() as usize);
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            let row = mat.at_row::<u8>(y as i32)?;
            data.extend_from_slice(&row[..w]);
        }
        Ok(Self::new(w, h, data))
    }

    /// A CV_8UC1 `Mat` holding a copy of the pixels.
    pub fn to_mat(&self) -> Result<Mat, VisionError> {
        let m = Mat::from_slice(&self.data)?;
        Ok(m.reshape(1, self.height as i32)?.try_clone()?)
    }
}

/// Stack same-sized 8-bit single-channel images into a `[N, 1, H, W]` tensor.
pub fn stack_gray<B: Backend>(frames: &[&GrayImage], device: &B::Device) -> Tensor<B, 4> {
    assert!(!frames.is_empty(), "stack_gray needs at least one frame");
    let (w, h) = (frames[0].width, frames[0].height);
    let mut buf = Vec::with_capacity(frames.len() * w * h);
    for f in frames {
        assert_eq!(
            (f.width, f.height),
            (w, h),
            "frames in a batch must share a size"
        );
        buf.extend(f.data.iter().map(|&v| v as f32));
    }
    transfers::upload(TensorData::new(buf, [frames.len(), 1, h, w]), device)
}

/// Host f32 copy of a tensor, row-major (a move, not a copy, when an
/// NdArray tensor owns its contiguous data): a counted device read.
pub fn to_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    f32_vec(transfers::read(t))
}

/// [`to_vec_f32`] for the NdArray backend's own host implementations of
/// ops ([`crate::host`]), which are not transfers: its "device" is the host.
pub(crate) fn host_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    f32_vec(t.into_data())
}

fn f32_vec(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 tensor data")
}

/// Round-and-saturate a `[N, 1, H, W]` tensor back into 8-bit images
/// (OpenCV's `saturate_cast<uchar>`: round half to even, clamp).
pub fn unstack_gray<B: Backend>(t: Tensor<B, 4>) -> Vec<GrayImage> {
    let [n, c, h, w] = t.dims();
    assert_eq!(c, 1, "unstack_gray expects one channel");
    let v = to_vec_f32(t);
    (0..n)
        .map(|i| {
            let data = v[i * h * w..(i + 1) * h * w]
                .iter()
                .map(|&x| saturate_u8(x))
                .collect();
            GrayImage::new(w, h, data)
        })
        .collect()
}

/// A host-side 8-bit BGR image, row-major and interleaved like OpenCV's.
#[derive(Clone, Debug, PartialEq)]
pub struct BgrImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl BgrImage {
    /// A CV_8UC3 `Mat` holding a copy of the pixels.
    pub fn to_mat(&self) -> Result<Mat, VisionError> {
        let m = Mat::from_slice(&self.data)?;
        Ok(m.reshape(3, self.height as i32)?.try_clone()?)
    }
}

/// Check that `mats` are CV_8UC3 frames of one size and run `f` on their
/// interleaved bytes (strided Mats, e.g. ROIs, are copied first) and size `(h, w)`.
fn with_bgr_bytes<R>(
    mats: &[Mat],
    f: impl FnOnce(&[&[u8]], usize, usize) -> R,
) -> Result<R, VisionError> {
    let (h, w) = (mats[0].rows() as usize, mats[0].cols() as usize);
    let copies: Vec<Mat> = mats
        .iter()
        .filter(|m| !m.is_continuous())
        .map(|m| m.try_clone())
        .collect::<Result<_, _>>()?;
    let mut copies = copies.iter();
    let mut bytes: Vec<&[u8]> = Vec::with_capacity(mats.len());
    for m in mats {
        if m.typ() != opencv::core::CV_8UC3 || m.rows() as usize != h || m.cols() as usize != w {
            return Err(VisionError::Internal(
                "BGR frames in a batch must be CV_8UC3 of one size".into(),
            ));
        }
        let m = if m.is_continuous() {
            m
        } else {
            copies.next().expect("one copy per strided Mat")
        };
        bytes.push(m.data_bytes()?);
    }
    Ok(f(&bytes, h, w))
}

/// Split a `[N, 3, H, W]` stack of BGR frames (as decoded by OpenCV) from
/// interleaved host `Mat`s.
pub fn stack_bgr<B: Backend>(
    mats: &[Mat],
    device: &B::Device,
) -> Result<Tensor<B, 4>, VisionError> {
    with_bgr_bytes(mats, |bytes, h, w| {
        let plane = h * w;
        let mut buf = vec![0f32; mats.len() * 3 * plane];
        buf.par_chunks_mut(3 * plane)
            .zip(bytes)
            .for_each(|(planes, px)| {
                let (b, rest) = planes.split_at_mut(plane);
                let (g, r) = rest.split_at_mut(plane);
                for (i, p) in px.chunks_exact(3).enumerate() {
                    b[i] = p[0] as f32;
                    g[i] = p[1] as f32;
                    r[i] = p[2] as f32;
                }
            });
        transfers::upload(TensorData::new(buf, [mats.len(), 3, h, w]), device)
    })
}

/// Gray `[N, 1, H, W]` frames from decoded BGR `Mat`s: the values of
/// `bgr_to_gray(stack_bgr(mats))`, computed on the host as the bytes are
/// copied out and uploaded as gray ([`ScanBackend::gray_frames`]).
pub fn stack_gray_from_bgr<B: ScanBackend>(
    mats: &[Mat],
    device: &B::Device,
) -> Result<Tensor<B, 4>, VisionError> {
    B::gray_frames(mats, device)
}

/// Host [`stack_gray_from_bgr`]: OpenCV's fixed-point formula (see
/// [`crate::primitives::bgr_to_gray`]) straight from the interleaved bytes,
/// with no planar BGR copy; `[N, 1, H, W]` data as `T` (bytes to upload,
/// `f32` to use in place).
pub fn gray_from_bgr_host<T: From<u8> + Copy + Default + Send>(
    mats: &[Mat],
) -> Result<(Vec<T>, [usize; 4]), VisionError> {
    with_bgr_bytes(mats, |bytes, h, w| {
        let mut out = vec![T::default(); mats.len() * h * w];
        out.par_chunks_mut(w).enumerate().for_each(|(k, o)| {
            let (frame, y) = (k / h, k % h);
            let row = &bytes[frame][y * w * 3..(y + 1) * w * 3];
            for (o, p) in o.iter_mut().zip(row.chunks_exact(3)) {
                let (b, g, r) = (p[0] as u32, p[1] as u32, p[2] as u32);
                *o = T::from(((b * 3735 + g * 19235 + r * 9798 + 16384) >> 15) as u8);
            }
        });
        (out, [mats.len(), 1, h, w])
    })
}

/// Round-and-saturate a `[N, 3, H, W]` tensor back into interleaved BGR images.
pub fn unstack_bgr<B: Backend>(t: Tensor<B, 4>) -> Vec<BgrImage> {
    let [n, c, h, w] = t.dims();
    assert_eq!(c, 3, "unstack_bgr expects three channels");
    let v = to_vec_f32(t);
    let plane = h * w;
    (0..n)
        .map(|i| {
            let f = &v[i * 3 * plane..(i + 1) * 3 * plane];
            let data = (0..plane)
                .flat_map(|p| (0..3).map(move |ch| saturate_u8(f[ch * plane + p])))
                .collect();
            BgrImage {
                width: w,
                height: h,
                data,
            }
        })
        .collect()
}

/// OpenCV's `saturate_cast<uchar>`: round half to even, clamp.
fn saturate_u8(x: f32) -> u8 {
    x.round_ties_even().clamp(0.0, 255.0) as u8
}
