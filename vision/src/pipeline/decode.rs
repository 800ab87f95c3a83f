//! Input checks and the streaming decoder of `video_scan`.

use std::path::Path;

use opencv::{core::Mat, imgproc, prelude::*, videoio};

use super::ScanOptions;
use crate::error::VisionError;

/// Sniff the first bytes: images and unknown formats are rejected before
/// OpenCV sees them (its image-sequence backend happily "plays" a PNG).
pub(super) fn sniff(path: &Path, opts: &ScanOptions) -> Result<(bool, u64), VisionError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| VisionError::InputNotVideo(format!("cannot read input: {e}")))?;
    let len = meta.len();
    if len > opts.max_bytes {
        return Err(VisionError::InputTooLarge(format!(
            "{len} bytes > {} allowed",
            opts.max_bytes
        )));
    }
    if len == 0 {
        return Err(VisionError::InputNotVideo("empty file".into()));
    }
    let mut head = [0u8; 16];
    use std::io::Read;
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| VisionError::InputNotVideo(format!("cannot read input: {e}")))?;
    let head = &head[..n];
    let image_magic: [&[u8]; 6] = [
        b"\x89PNG",
        b"\xFF\xD8\xFF",
        b"GIF8",
        b"BM",
        b"II*\0",
        b"MM\0*",
    ];
    if image_magic.iter().any(|m| head.starts_with(m))
        || (head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP"))
    {
        return Err(VisionError::InputNotVideo(
            "an image file where a video is expected".into(),
        ));
    }
    let is_avi = head.starts_with(b"RIFF") && head.get(8..12) == Some(b"AVI ");
    let is_container = is_avi
        || head.get(4..8) == Some(b"ftyp")
        || head.starts_with(b"\x1A\x45\xDF\xA3")
        || head.starts_with(b"OggS")
        || head.starts_with(b"\x00\x00\x01\xBA")
        || head.first() == Some(&0x47);
    if !is_container {
        return Err(VisionError::InputNotVideo(
            "not a known video container".into(),
        ));
    }
    if is_avi && n >= 8 {
        // The RIFF chunk size says how long the file must be.
        let riff = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64 + 8;
        if riff > len {
            return Err(VisionError::InputTruncated(format!(
                "AVI declares {riff} bytes, file has {len}"
            )));
        }
    }
    Ok((is_avi, len))
}

/// Streaming decoder: frames are read batch by batch so that memory stays
/// O(batch) whatever the video length.
pub(super) struct Decoder {
    cap: videoio::VideoCapture,
    pub(super) declared: f64,
    pub(super) fps: f64,
    pub(super) read: usize,
    size: Option<(i32, i32)>,
}

impl Decoder {
    pub(super) fn open(path: &Path) -> Result<Self, VisionError> {
        let name = path
            .to_str()
            .ok_or_else(|| VisionError::InputNotVideo("path is not UTF-8".into()))?;
        let cap = videoio::VideoCapture::from_file(name, videoio::CAP_ANY).map_err(|e| {
            VisionError::InputTruncated(format!("container could not be opened: {e}"))
        })?;
        if !cap.is_opened()? {
            return Err(VisionError::InputTruncated(
                "container header present but no stream could be opened".into(),
            ));
        }
        let declared = cap.get(videoio::CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
        let fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
        Ok(Self {
            cap,
            declared,
            fps,
            read: 0,
            size: None,
        })
    }

    /// Up to `n` more BGR frames; empty at the end of the stream.
    pub(super) fn next_batch(
        &mut self,
        n: usize,
        opts: &ScanOptions,
    ) -> Result<Vec<Mat>, VisionError> {
        if self.read == 0 {
            self.refuse_oversized_frames(opts)?;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut m = Mat::default();
            if !self.cap.read(&mut m).unwrap_or(false) || m.empty() {
                break;
            }
            self.read += 1;
            if self.read > opts.max_frames {
                return Err(VisionError::InputTooLarge(format!(
                    "more than {} frames",
                    opts.max_frames
                )));
            }
            if (m.rows() as usize) * (m.cols() as usize) > opts.max_pixels {
                return Err(VisionError::InputTooLarge(format!(
                    "{}x{} frames",
                    m.cols(),
                    m.rows()
                )));
            }
            match self.size {
                None => self.size = Some((m.cols(), m.rows())),
                Some(s) if s != (m.cols(), m.rows()) => {
                    return Err(VisionError::InputNotVideo(
                        "frame size changes mid-stream".into(),
                    ));
                }
                _ => {}
            }
            let m = match m.channels() {
                3 => m,
                1 => {
                    let mut c = Mat::default();
                    imgproc::cvt_color_def(&m, &mut c, imgproc::COLOR_GRAY2BGR)?;
                    c
                }
                4 => {
                    let mut c = Mat::default();
                    imgproc::cvt_color_def(&m, &mut c, imgproc::COLOR_BGRA2BGR)?;
                    c
                }
                ch => return Err(VisionError::InputNotVideo(format!("{ch}-channel frames"))),
            };
            out.push(m);
        }
        Ok(out)
    }

    /// A decompression bomb (a small file whose frames decode to gigabytes)
    /// is refused from the container's declared frame size, before the first
    /// frame is decoded; the per-frame check in `next_batch` still catches a
    /// container that lies.
    fn refuse_oversized_frames(&self, opts: &ScanOptions) -> Result<(), VisionError> {
        let width = self.cap.get(videoio::CAP_PROP_FRAME_WIDTH).unwrap_or(0.0);
        let height = self.cap.get(videoio::CAP_PROP_FRAME_HEIGHT).unwrap_or(0.0);
        if width * height > opts.max_pixels as f64 {
            return Err(VisionError::InputTooLarge(format!(
                "frames of {width}x{height} declared; at most {} pixels per frame",
                opts.max_pixels
            )));
        }
        Ok(())
    }

    /// At the end of the stream: empty and truncated containers are bad input.
    pub(super) fn finish(&self) -> Result<(), VisionError> {
        if self.read == 0 {
            return Err(VisionError::InputEmpty);
        }
        // A container that declares more frames than decode was cut short.
        if self.declared >= 2.0 && (self.read as f64) < self.declared * 0.9 - 1.0 {
            return Err(VisionError::InputTruncated(format!(
                "decoded {} of {} declared frames",
                self.read, self.declared
            )));
        }
        Ok(())
    }
}
