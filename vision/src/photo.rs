//! Photo decoding for `item_crop`: sniff the format and the dimensions from
//! the header *before* decoding, so that a hostile 20000×20000 image is
//! refused (or, for JPEG, decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
//! scaling) instead of allocating gigabytes; then decode with OpenCV and
//! downscale on the host to the working size.
//!
//! The initial downscale is done by OpenCV on the host on purpose: the
//! decoded image is in host memory anyway, and uploading a full-resolution
//! photo as an f32 tensor (12 bytes a pixel) only to shrink it on the device
//! would make device memory scale with the input instead of `DOWNSCALE_MAX`.

use opencv::{
    core::{Mat, Size, Vector},
    imgcodecs, imgproc,
    prelude::*,
};

use crate::error::VisionError;

/// Formats `item_crop` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoFormat {
    Jpeg,
    Png,
    Webp,
}

/// What the header says, read without decoding any pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhotoHeader {
    pub format: PhotoFormat,
    pub width: usize,
    pub height: usize,
}

/// Limits and sizes for decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Long side of the working image (`DOWNSCALE_MAX`).
    pub downscale_max: usize,
    /// Most pixels ever decoded (JPEGs above it are decoded reduced; other
    /// formats above it are refused).
    pub max_decoded_pixels: usize,
    /// Most bytes accepted at all.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 50 MP covers every phone camera (and 150 MB of BGR at most).
        Self {
            downscale_max: 1280,
            max_decoded_pixels: 50_000_000,
            max_bytes: 64 << 20,
        }
    }
}

/// A decoded photo, already at working size.
#[derive(Debug)]
pub struct DecodedPhoto {
    pub header: PhotoHeader,
    /// 1, 2, 4 or 8: the JPEG DCT reduction used while decoding.
    pub reduction: usize,
    /// BGR, CV_8UC3, long side ≤ `downscale_max`.
    pub working: Mat,
    /// Source pixels per working pixel, along x and y.
    pub scale: (f64, f64),
}

fn not_image(why: impl Into<String>) -> VisionError {
    VisionError::InputNotImage(why.into())
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

fn be32(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

fn le_bytes(b: &[u8], at: usize, n: usize) -> Option<usize> {
    let s = b.get(at..at + n)?;
    Some(
        s.iter()
            .rev()
            .fold(0usize, |acc, &v| (acc << 8) | v as usize),
    )
}

/// Walk the JPEG marker segments up to the first start-of-frame.
fn jpeg_size(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if *b.get(i)? != 0xFF {
            return None;
        }
        while *b.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *b.get(i)?;
        i += 1;
        match marker {
            // Stand-alone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8..=0xDA => return None,
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let height = be16(b, i + 3)?;
                let width = be16(b, i + 5)?;
                return Some((width, height));
            }
            _ => {
                let len = be16(b, i)?;
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
}

fn webp_size(b: &[u8]) -> Option<(usize, usize)> {
    match b.get(12..16)? {
        b"VP8 " => {
            // Key frame header: 3-byte frame tag, start code 9d 01 2a, then 14-bit sizes.
            if b.get(23..26)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            Some((le_bytes(b, 26, 2)? & 0x3fff, le_bytes(b, 28, 2)? & 0x3fff))
        }
        b"VP8L" => {
            if *b.get(20)? != 0x2f {
                return None;
            }
            let bits = le_bytes(b, 21, 4)?;
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8X" => Some((le_bytes(b, 24, 3)? + 1, le_bytes(b, 27, 3)? + 1)),
        _ => None,
    }
}

/// Format and dimensions from the first bytes; `input_not_image` for
/// anything that is not a well-formed JPEG, PNG or WebP header.
pub fn read_header(bytes: &[u8]) -> Result<PhotoHeader, VisionError> {
    let (format, size) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.get(12..16) != Some(b"IHDR") {
            return Err(not_image("PNG without an IHDR chunk"));
        }
        (PhotoFormat::Png, be32(bytes, 16).zip(be32(bytes, 20)))
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        (PhotoFormat::Jpeg, jpeg_size(bytes))
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        (PhotoFormat::Webp, webp_size(bytes))
    } else if bytes.is_empty() {
        return Err(not_image("empty input"));
    } else {
        return Err(not_image("not a JPEG, PNG or WebP image"));
    };
    match size {
        Some((width, height)) if width > 0 && height > 0 => Ok(PhotoHeader {
            format,
            width,
            height,
        }),
        _ => Err(not_image(format!(
            "{format:?} header is truncated or corrupt"
        ))),
    }
}

/// Working size for a `w × h` image: long side at most `max_side`.
pub fn working_size(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    )
}

/// The JPEG DCT reduction to decode with: the largest of 1, 2, 4, 8 that
/// keeps the long side at or above the working size (no detail lost), made
/// larger if needed to stay under the decoded-pixel limit.
fn jpeg_reduction(header: &PhotoHeader, limits: &DecodeLimits) -> Option<usize> {
    let long = header.width.max(header.height);
    let pixels = header.width * header.height;
    let mut best = None;
    for r in [1usize, 2, 4, 8] {
        if pixels / (r * r) > limits.max_decoded_pixels {
            continue;
        }
        if best.is_none() || long / r >= limits.downscale_max {
            best = Some(r);
        }
    }
    best
}

/// Decode a JPEG, PNG or WebP photo to a BGR working image.
pub fn decode_photo(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedPhoto, VisionError> {
    if bytes.len() > limits.max_bytes {
        return Err(VisionError::InputTooLarge(format!(
            "{} bytes > {} allowed",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let header = read_header(bytes)?;
    let too_large = || {
        VisionError::InputTooLarge(format!(
            "{}x{} {:?} is over the {} decoded-pixel limit",
            header.width, header.height, header.format, limits.max_decoded_pixels
        ))
    };
    let reduction = match header.format {
        PhotoFormat::Jpeg => jpeg_reduction(&header, limits).ok_or_else(too_large)?,
        _ if header.width * header.height > limits.max_decoded_pixels => return Err(too_large()),
        _ => 1,
    };
    let flags = match reduction {
        1 => imgcodecs::IMREAD_COLOR,
        2 => imgcodecs::IMREAD_REDUCED_COLOR_2,
        4 => imgcodecs::IMREAD_REDUCED_COLOR_4,
        _ => imgcodecs::IMREAD_REDUCED_COLOR_8,
    };
    let buf = Vector::<u8>::from_slice(bytes);
    let decoded =
        imgcodecs::imdecode(&buf, flags).map_err(|e| not_image(format!("decode failed: {e}")))?;
    if decoded.empty() || decoded.typ() != opencv::core::CV_8UC3 {
        return Err(not_image(format!(
            "{:?} data could not be decoded",
            header.format
        )));
    }
    let (dw, dh) = (decoded.cols() as usize, decoded.rows() as usize);
    let (ww, wh) = working_size(dw, dh, limits.downscale_max);
    let working = if (ww, wh) == (dw, dh) {
        decoded
    } else {
        let mut small = Mat::default();
        imgproc::resize(
            &decoded,
            &mut small,
            Size::new(ww as i32, wh as i32),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        small
    };
    // EXIF orientation may have swapped the axes relative to the header.
    let (sw, sh) = if (dw > dh) == (header.width > header.height) || header.width == header.height {
        (header.width, header.height)
    } else {
        (header.height, header.width)
    };
    Ok(DecodedPhoto {
        header,
        reduction,
        working,
        scale: (sw as f64 / ww as f64, sh as f64 / wh as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_of_the_three_formats() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&20000u32.to_be_bytes());
        png.extend_from_slice(&300u32.to_be_bytes());
        assert_eq!(
            read_header(&png).unwrap(),
            PhotoHeader {
                format: PhotoFormat::Png,
                width: 20000,
                height: 300
            }
        );

        // SOI, an APP0 segment of length 4, then SOF0 with height 480, width 640.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01,
            0xE0, 0x02, 0x80,
        ];
        assert_eq!(
            read_header(&jpeg).unwrap(),
            PhotoHeader {
                format: PhotoFormat::Jpeg,
                width: 640,
                height: 480
            }
        );

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0x1F, 0x4E, 0x00, 0xFF, 0x00, 0x00]); // 19999+1, 255+1
        assert_eq!(
            read_header(&webp).unwrap(),
            PhotoHeader {
                format: PhotoFormat::Webp,
                width: 20000,
                height: 256
            }
        );
    }

    #[test]
    fn non_images_and_truncated_headers_are_refused() {
        for bad in [
            &b""[..],
            b"hello world",
            b"\x89PNG\r\n\x1a\n",
            b"\xFF\xD8\xFF\xE0\x00\x10JFIF",
            b"GIF89a....",
            b"RIFF\0\0\0\0AVI LIST",
        ] {
            let err = read_header(bad).unwrap_err();
            assert_eq!(err.code(), "input_not_image", "{bad:?}");
        }
    }

    #[test]
    fn jpeg_reduction_keeps_working_resolution_and_respects_the_limit() {
        let limits = DecodeLimits {
            downscale_max: 1280,
            max_decoded_pixels: 50_000_000,
            max_bytes: 1 << 30,
        };
        let h = |w, h| PhotoHeader {
            format: PhotoFormat::Jpeg,
            width: w,
            height: h,
        };
        assert_eq!(jpeg_reduction(&h(1000, 800), &limits), Some(1));
        assert_eq!(jpeg_reduction(&h(4000, 3000), &limits), Some(2));
        assert_eq!(jpeg_reduction(&h(20000, 20000), &limits), Some(8));
        assert_eq!(jpeg_reduction(&h(60000, 60000), &limits), None);
    }
}
