//! The contract between dispatcher and workers. Messages are a versioned,
//! tagged enum so a worker fleet can be upgraded while old messages are still
//! queued: a new shape is a new variant, never a silent change to an old one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a scan does. The names are the wire and database spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    /// No vision work: answers with the worker's identity and backend.
    /// For synthetic monitoring and fleet tests.
    Probe,
    /// Grade a collectible from a short video (seeds 001, 002).
    VideoScan,
    /// Find and crop every card or comic in a photo (seed 000).
    ItemCrop,
}

impl ScanKind {
    pub const ALL: [ScanKind; 3] = [ScanKind::Probe, ScanKind::VideoScan, ScanKind::ItemCrop];

    pub fn as_str(self) -> &'static str {
        match self {
            ScanKind::Probe => "probe",
            ScanKind::VideoScan => "video_scan",
            ScanKind::ItemCrop => "item_crop",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether a scan of this kind reads an input video or photo.
    pub fn needs_source(self) -> bool {
        !matches!(self, ScanKind::Probe)
    }

    /// The largest input a scan of this kind takes, one limit per kind
    /// enforced at submit (an upload's size), at download and at decode.
    pub fn max_input_bytes(self) -> Option<u64> {
        match self {
            ScanKind::Probe => None,
            ScanKind::VideoScan => Some(MAX_VIDEO_BYTES),
            ScanKind::ItemCrop => Some(MAX_PHOTO_BYTES),
        }
    }
}

/// Largest `video_scan` input: a 20 s 4K phone clip is ~120 MiB.
pub const MAX_VIDEO_BYTES: u64 = 256 << 20;
/// Largest `item_crop` input: a 50-Mpixel JPEG is ~25 MiB.
pub const MAX_PHOTO_BYTES: u64 = 64 << 20;

/// Which queue (and so which kind of worker) runs a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Cpu,
    Gpu,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Cpu => "cpu",
            Route::Gpu => "gpu",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Route::Cpu),
            "gpu" => Some(Route::Gpu),
            _ => None,
        }
    }
}

/// Why a scan took its route; recorded on every scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// The routing mode forces one route (`cpu` or `gpu`).
    Mode,
    /// The tenant's tier buys GPU processing.
    Tier,
    /// Picked for the GPU canary share.
    Canary,
    /// The CPU queue is backed up.
    Backlog,
    /// Nothing special: the default CPU route.
    Default,
    /// Sent to the GPU queue, waited longer than `GPU_MAX_WAIT`, fell back to CPU.
    GpuTimeoutFallback,
    /// Sent to the GPU queue, failed there up to the delivery limit, fell back to CPU.
    GpuFailureFallback,
    /// Run again on the other route to compare with the scan it repeats
    /// (the console's "compare routes").
    Compare,
}

impl RouteReason {
    pub const ALL: [RouteReason; 8] = [
        RouteReason::Mode,
        RouteReason::Tier,
        RouteReason::Canary,
        RouteReason::Backlog,
        RouteReason::Default,
        RouteReason::GpuTimeoutFallback,
        RouteReason::GpuFailureFallback,
        RouteReason::Compare,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Mode => "mode",
            RouteReason::Tier => "tier",
            RouteReason::Canary => "canary",
            RouteReason::Backlog => "backlog",
            RouteReason::Default => "default",
            RouteReason::GpuTimeoutFallback => "gpu_timeout_fallback",
            RouteReason::GpuFailureFallback => "gpu_failure_fallback",
            RouteReason::Compare => "compare",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Pro,
    Premium,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Premium => "premium",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "free" => Some(Tier::Free),
            "pro" => Some(Tier::Pro),
            "premium" => Some(Tier::Premium),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl ScanStatus {
    pub const ALL: [ScanStatus; 5] = [
        ScanStatus::Queued,
        ScanStatus::Running,
        ScanStatus::Succeeded,
        ScanStatus::Failed,
        ScanStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Queued => "queued",
            ScanStatus::Running => "running",
            ScanStatus::Succeeded => "succeeded",
            ScanStatus::Failed => "failed",
            ScanStatus::Canceled => "canceled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// A finished scan is never worked on again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ScanStatus::Succeeded | ScanStatus::Failed | ScanStatus::Canceled
        )
    }
}

/// A message on the `scans` exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum ScanMessage {
    #[serde(rename = "1")]
    V1(ScanJob),
}

/// Everything a worker needs to run a scan without asking the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanJob {
    pub scan_id: Uuid,
    pub tenant_id: Uuid,
    pub kind: ScanKind,
    /// Object path of the input in the blob store (uploads), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_path: Option<String>,
    /// Remote input the worker downloads, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Kind-specific parameters, as submitted.
    #[serde(default)]
    pub params: serde_json::Value,
    pub route: Route,
    pub submitted_at: DateTime<Utc>,
    /// Compute the result even where an identical scan's result is cached:
    /// a route comparison must measure this route's own work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recompute: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable scan message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl ScanMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ScanMessage always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn job(&self) -> &ScanJob {
        match self {
            ScanMessage::V1(job) => job,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> ScanJob {
        ScanJob {
            scan_id: Uuid::now_v7(),
            tenant_id: Uuid::new_v4(),
            kind: ScanKind::Probe,
            upload_path: None,
            source_url: None,
            params: serde_json::json!({"hold_ms": 5}),
            route: Route::Gpu,
            submitted_at: Utc::now(),
            recompute: false,
        }
    }

    #[test]
    fn message_round_trips_with_version_tag() {
        let message = ScanMessage::V1(job());
        let bytes = message.encode();
        let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(raw["version"], "1");
        assert_eq!(raw["kind"], "probe");
        assert_eq!(raw["route"], "gpu");
        assert_eq!(ScanMessage::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn unknown_version_and_garbage_are_decode_errors() {
        let mut raw = serde_json::to_value(ScanMessage::V1(job())).unwrap();
        raw["version"] = "99".into();
        assert!(ScanMessage::decode(raw.to_string().as_bytes()).is_err());
        assert!(ScanMessage::decode(b"\xff\xfe not json").is_err());
        assert!(ScanMessage::decode(b"{}").is_err());
    }

    #[test]
    fn names_round_trip() {
        for kind in ScanKind::ALL {
            assert_eq!(ScanKind::parse(kind.as_str()), Some(kind));
        }
        for status in ScanStatus::ALL {
            assert_eq!(ScanStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ScanKind::parse("teleport"), None);
        // The serde name is the wire and database name.
        assert_eq!(
            serde_json::to_value(ScanKind::ItemCrop).unwrap(),
            "item_crop"
        );
        assert_eq!(Tier::parse("gold"), None);
    }
}
