//! Moving frames between host buffers (OpenCV `Mat`, `Vec<u8>`) and device
//! tensors `[N, C, H, W]`.

use burn_tensor::{backend::Backend, Tensor, TensorData};
use opencv::{core::Mat, prelude::*};

use crate::error::VisionError;

/// A host-side 8-bit single-channel image, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl GrayImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height, "buffer does not match {width}x{height}");
        Self { width, height, data }
    }

    /// Copy out of a continuous or strided CV_8UC1 `Mat`.
    pub fn from_mat(mat: &Mat) -> Result<Self, VisionError> {
        if mat.typ() != opencv::core::CV_8UC1 {
            return Err(VisionError::Internal(format!("expected CV_8UC1, got type {}", mat.typ())));
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
        assert_eq!((f.width, f.height), (w, h), "frames in a batch must share a size");
        buf.extend(f.data.iter().map(|&v| v as f32));
    }
    Tensor::from_data(TensorData::new(buf, [frames.len(), 1, h, w]), device)
}

/// Host f32 copy of a tensor, row-major.
pub fn to_vec_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 tensor data")
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
                .map(|&x| x.round_ties_even().clamp(0.0, 255.0) as u8)
                .collect();
            GrayImage::new(w, h, data)
        })
        .collect()
}

/// Split a `[N, 3, H, W]` stack of BGR frames (as decoded by OpenCV) from
/// interleaved host `Mat`s.
pub fn stack_bgr<B: Backend>(mats: &[Mat], device: &B::Device) -> Result<Tensor<B, 4>, VisionError> {
    let (h, w) = (mats[0].rows() as usize, mats[0].cols() as usize);
    let plane = h * w;
    let mut buf = vec![0f32; mats.len() * 3 * plane];
    for (i, m) in mats.iter().enumerate() {
        if m.typ() != opencv::core::CV_8UC3 || m.rows() as usize != h || m.cols() as usize != w {
            return Err(VisionError::Internal("BGR frames in a batch must be CV_8UC3 of one size".into()));
        }
        let base = i * 3 * plane;
        for y in 0..h {
            let row = m.at_row::<opencv::core::Vec3b>(y as i32)?;
            for (x, px) in row[..w].iter().enumerate() {
                for c in 0..3 {
                    buf[base + c * plane + y * w + x] = px[c] as f32;
                }
            }
        }
    }
    Ok(Tensor::from_data(TensorData::new(buf, [mats.len(), 3, h, w]), device))
}
