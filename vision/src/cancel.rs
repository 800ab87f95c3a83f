//! Stopping a scan from outside while it runs.
//!
//! A scan runs on a blocking thread that nobody can interrupt: when the
//! worker gives up on it (its time limit passed, or the job was aborted
//! because the broker connection dropped) the thread would otherwise compute
//! to the end for nothing. The worker raises this flag instead, and the
//! pipeline checks it between batches of frames and between golden frames,
//! so a stopped scan frees its core within one batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::VisionError;

/// A flag shared by the caller of a scan and the scan itself.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the scan to stop at its next check.
    pub fn cancel(&self) {
        // Relaxed is enough: the flag orders nothing else, and a check that
        // misses it sees it one batch later.
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(VisionError::Cancelled)` once the flag is raised: the pipeline's
    /// checkpoints are `cancel.check()?`.
    pub fn check(&self) -> Result<(), VisionError> {
        if self.is_cancelled() {
            Err(VisionError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A guard that raises the flag when dropped: held by the future that
    /// waits for the scan, so dropping that future (a timeout, an abort)
    /// stops the scan too.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// See [`CancelFlag::cancel_on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_flag_fails_the_check_for_every_clone() {
        let flag = CancelFlag::new();
        let seen_by_scan = flag.clone();
        assert!(seen_by_scan.check().is_ok());
        flag.cancel();
        assert!(matches!(seen_by_scan.check(), Err(VisionError::Cancelled)));
    }

    #[test]
    fn dropping_the_guard_raises_the_flag() {
        let flag = CancelFlag::new();
        let guard = flag.cancel_on_drop();
        assert!(!flag.is_cancelled());
        drop(guard);
        assert!(flag.is_cancelled());
    }
}
