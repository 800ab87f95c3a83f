//! Property tests for the upload → decode → pipeline path: whatever bytes a
//! tenant uploads (a damaged video, a video cut anywhere, noise behind a
//! valid container header), a scan ends with a result or a bad-input error
//! code, never a panic and never an internal error.

use std::sync::OnceLock;

use proptest::prelude::*;
use vision::backend::ScanEngine;
use vision::BackendChoice;

/// A small rendered scan, made once for all cases.
fn video() -> &'static [u8] {
    static VIDEO: OnceLock<Vec<u8>> = OnceLock::new();
    VIDEO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = vision::synth::SynthSpec {
            frames: 4,
            width: 160,
            height: 120,
            ..Default::default()
        };
        std::fs::read(vision::synth::generate(&spec, dir.path()).unwrap().video).unwrap()
    })
}

/// Runs `worker analyze` on `bytes`; fails the case on an internal error.
fn analyze(bytes: &[u8]) -> Result<(), TestCaseError> {
    let engine = ScanEngine::new(BackendChoice::Cpu).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    match worker::jobs::analyze_file(&engine, file.path(), 1280, &mut |_| {}) {
        Ok(output) => prop_assert!(output.report.frames_decoded > 0),
        Err(error) => prop_assert!(
            error.is_bad_input(),
            "not a bad-input code: {} ({error})",
            error.code()
        ),
    }
    Ok(())
}

proptest! {
    // Each case decodes and may run the whole pipeline: few, but varied.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_video_scans_or_fails_with_a_code(
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..64),
    ) {
        let mut bytes = video().to_vec();
        for (at, byte) in damage {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        analyze(&bytes)?;
    }

    #[test]
    fn a_video_cut_anywhere_scans_or_fails_with_a_code(cut in any::<prop::sample::Index>()) {
        let bytes = video();
        analyze(&bytes[..cut.index(bytes.len())])?;
    }

    #[test]
    fn noise_behind_a_container_header_fails_with_a_code(noise in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut bytes = video()[..64].to_vec();
        bytes.extend(noise);
        analyze(&bytes)?;
    }
}

/// `worker analyze` on a path that does not exist: a bad-input code for
/// either kind, not an internal error.
#[test]
fn a_missing_local_file_is_bad_input_for_both_kinds() {
    let engine = ScanEngine::new(BackendChoice::Cpu).unwrap();
    let missing = std::path::Path::new("/nonexistent/scanfleet/input");
    let video = worker::jobs::analyze_file(&engine, missing, 1280, &mut |_| {}).unwrap_err();
    let photo = worker::jobs::crop_file(&engine, missing, 1280).unwrap_err();
    for error in [video, photo] {
        assert!(error.is_bad_input(), "{}: {error}", error.code());
        assert!(error.to_string().contains("cannot read input"), "{error}");
    }
}
