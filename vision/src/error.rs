//! Errors at the crate boundary, each with a stable code the worker stores
//! in the scan row and metrics (`errors by code`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum VisionError {
    /// The file is not a video container OpenCV can decode (or is an image).
    #[error("input is not a video: {0}")]
    InputNotVideo(String),
    /// The file is not a JPEG, PNG or WebP photo (or its header is corrupt).
    #[error("input is not an image: {0}")]
    InputNotImage(String),
    /// The container declares more frames than could be decoded.
    #[error("input video is truncated: {0}")]
    InputTruncated(String),
    /// The container opened but yielded no frames.
    #[error("input video has no frames")]
    InputEmpty,
    /// Over the configured size limits (bytes, frames or pixels).
    #[error("input too large: {0}")]
    InputTooLarge(String),
    /// The requested backend cannot be used in this build or on this machine.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// The caller raised the scan's [`crate::CancelFlag`]; what that means
    /// (a time limit, an aborted job) is the caller's to say.
    #[error("scan cancelled")]
    Cancelled,
    /// Anything else: a bug or an environment problem, worth a retry.
    #[error("internal error: {0}")]
    Internal(String),
}

impl VisionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VisionError::InputNotVideo(_) => "input_not_video",
            VisionError::InputNotImage(_) => "input_not_image",
            VisionError::InputTruncated(_) => "input_truncated",
            VisionError::InputEmpty => "input_empty",
            VisionError::InputTooLarge(_) => "input_too_large",
            VisionError::BackendUnavailable(_) => "backend_unavailable",
            VisionError::Cancelled => "cancelled",
            VisionError::Internal(_) => "internal",
        }
    }

    /// Bad input fails the scan at once; everything else may be retried.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            VisionError::InputNotVideo(_)
                | VisionError::InputNotImage(_)
                | VisionError::InputTruncated(_)
                | VisionError::InputEmpty
                | VisionError::InputTooLarge(_)
        )
    }
}

impl From<opencv::Error> for VisionError {
    fn from(e: opencv::Error) -> Self {
        VisionError::Internal(format!("opencv: {e}"))
    }
}
