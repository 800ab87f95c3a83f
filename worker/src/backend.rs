//! The compute backend, chosen once at worker start-up (never deep in the
//! pipeline) and reported with every scan.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Cpu,
    Cuda,
    Auto,
}

/// The backend a worker actually runs on, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveBackend {
    /// `cpu` or `cuda`.
    pub name: &'static str,
    /// Why this backend: asked for, or why `auto` fell back.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend cuda requested, but this worker was built without the `cuda` feature")]
    CudaNotBuilt,
}

/// Resolves the configured choice to the backend this process will use.
pub fn select(choice: BackendChoice) -> Result<ActiveBackend, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(ActiveBackend {
            name: "cpu",
            reason: "requested".into(),
        }),
        BackendChoice::Cuda => Err(BackendError::CudaNotBuilt),
        BackendChoice::Auto => Ok(ActiveBackend {
            name: "cpu",
            reason: "auto: this worker was built without the `cuda` feature".into(),
        }),
    }
}
