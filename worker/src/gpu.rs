//! GPU device facts for `/readyz` and metrics, from NVML (seed 004's health
//! with GPU stats). Only GPU builds have it; without a GPU the metrics are
//! absent rather than zero.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub utilization_ratio: f64,
    pub driver_version: String,
    pub cuda_driver_version: String,
}

#[cfg(feature = "cuda")]
mod nvml {
    use std::sync::OnceLock;

    use nvml_wrapper::Nvml;

    use super::GpuInfo;

    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();

    /// Device 0's current state, or None without a driver or device.
    pub fn read() -> Option<GpuInfo> {
        let nvml = NVML
            .get_or_init(|| match Nvml::init() {
                Ok(nvml) => Some(nvml),
                Err(error) => {
                    tracing::info!(%error, "NVML unavailable; no GPU metrics");
                    None
                }
            })
            .as_ref()?;
        let device = nvml.device_by_index(0).ok()?;
        let memory = device.memory_info().ok()?;
        let utilization = device.utilization_rates().ok()?;
        let cuda = nvml.sys_cuda_driver_version().ok()?;
        Some(GpuInfo {
            name: device.name().ok()?,
            memory_total_bytes: memory.total,
            memory_used_bytes: memory.used,
            utilization_ratio: utilization.gpu as f64 / 100.0,
            driver_version: nvml.sys_driver_version().ok()?,
            cuda_driver_version: format!("{}.{}", cuda / 1000, (cuda % 1000) / 10),
        })
    }
}

/// The GPU's state now; None on CPU-only builds or hosts.
pub fn read() -> Option<GpuInfo> {
    #[cfg(feature = "cuda")]
    {
        nvml::read()
    }
    #[cfg(not(feature = "cuda"))]
    {
        None
    }
}

/// Gauges registered only when a GPU is present.
pub struct GpuGauges {
    memory_used: prometheus::IntGauge,
    memory_total: prometheus::IntGauge,
    utilization: prometheus::Gauge,
}

impl GpuGauges {
    pub fn register(registry: &prometheus::Registry) -> Option<Self> {
        read()?;
        let gauges = GpuGauges {
            memory_used: prometheus::IntGauge::new(
                "scanfleet_gpu_memory_used_bytes",
                "GPU memory in use",
            )
            .ok()?,
            memory_total: prometheus::IntGauge::new(
                "scanfleet_gpu_memory_total_bytes",
                "GPU memory in all",
            )
            .ok()?,
            utilization: prometheus::Gauge::new(
                "scanfleet_gpu_utilization_ratio",
                "GPU busy share over the last sample (0–1)",
            )
            .ok()?,
        };
        registry
            .register(Box::new(gauges.memory_used.clone()))
            .ok()?;
        registry
            .register(Box::new(gauges.memory_total.clone()))
            .ok()?;
        registry
            .register(Box::new(gauges.utilization.clone()))
            .ok()?;
        gauges.refresh();
        Some(gauges)
    }

    pub fn refresh(&self) {
        if let Some(info) = read() {
            self.memory_used.set(info.memory_used_bytes as i64);
            self.memory_total.set(info.memory_total_bytes as i64);
            self.utilization.set(info.utilization_ratio);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVML sees the GPU exactly when the CUDA driver does, and the gauges
    /// carry its numbers; on a host with no GPU there are no gauges at all.
    #[test]
    fn gpu_gauges_follow_the_driver() {
        let registry = prometheus::Registry::new();
        let gauges = GpuGauges::register(&registry);
        match vision::backend::probe_cuda() {
            Ok(_) if cfg!(feature = "cuda") => {
                let info = read().expect("NVML reads the GPU the driver reports");
                println!("{info:?}");
                assert!(
                    info.memory_total_bytes > 0
                        && info.memory_used_bytes <= info.memory_total_bytes
                );
                assert!((0.0..=1.0).contains(&info.utilization_ratio));
                assert!(gauges.is_some());
                let text = prometheus::TextEncoder::new()
                    .encode_to_string(&registry.gather())
                    .unwrap();
                assert!(
                    text.contains(&format!(
                        "scanfleet_gpu_memory_total_bytes {}",
                        info.memory_total_bytes
                    )),
                    "{text}"
                );
            }
            _ => {
                assert!(read().is_none());
                assert!(gauges.is_none());
                assert!(registry.gather().is_empty());
            }
        }
    }
}
