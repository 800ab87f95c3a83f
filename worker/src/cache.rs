//! Result cache (seed 003's embedding cache, `EMBED_CACHE_MAX`): a scan whose
//! input bytes, kind, parameters and pipeline version match a scan that
//! already computed its result is answered with that result, marked
//! `cached: true` with the original scan's id, without running the pipeline.
//!
//! Two levels: a bounded LRU in this process (no round trip for repeats that
//! land on the same worker), then Postgres (repeats that land on another
//! worker, or after a restart). Entries are per tenant: one tenant never
//! learns from timing or ids that another scanned the same file.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use protocol::ScanKind;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// Where a cached result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    Memory,
    Database,
}

impl CacheSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSource::Memory => "memory",
            CacheSource::Database => "database",
        }
    }
}

/// A result reusable by identical scans, and the scan that computed it.
#[derive(Debug, Clone)]
pub struct CachedResult {
    pub scan_id: Uuid,
    pub result: Value,
}

impl CachedResult {
    /// The result as a new scan reports it: the original document, plus
    /// `cached: true` and the id of the scan that did the work.
    pub fn served(&self) -> Value {
        let mut result = self.result.clone();
        if let Some(fields) = result.as_object_mut() {
            fields.insert("cached".into(), true.into());
            fields.insert("cached_from".into(), self.scan_id.to_string().into());
        }
        result
    }
}

/// The version of the code that computes a kind's result. Each pipeline
/// bumps its constant whenever its results can change (a golden-output test
/// in `vision/tests/golden.rs` fails otherwise), so a deploy never serves a
/// result an older detector computed.
pub fn pipeline_version(kind: ScanKind) -> u32 {
    match kind {
        ScanKind::Probe => 1,
        ScanKind::VideoScan => vision::pipeline::PIPELINE_VERSION,
        ScanKind::ItemCrop => vision::item_crop::PIPELINE_VERSION,
    }
}

/// The cache key: SHA-256 over the kind, its pipeline version, the
/// parameters as submitted (serde_json's maps are sorted, so this is
/// canonical), the effective options the worker derived from them, and the
/// input bytes.
pub fn cache_key(kind: ScanKind, params: &Value, effective_options: &str, input: &[u8]) -> String {
    let mut hasher = Sha256::new();
    let version = format!("{}-v{}", kind.as_str(), pipeline_version(kind));
    for part in [
        kind.as_str().as_bytes(),
        version.as_bytes(),
        params.to_string().as_bytes(),
        effective_options.as_bytes(),
    ] {
        // Length-prefixed, so that no two different tuples hash the same bytes.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(input);
    hex::encode(hasher.finalize())
}

/// In-memory entries: (tenant, key) → (when stored, result).
type MemoryCache = LruCache<(Uuid, String), (Instant, CachedResult)>;

pub struct ResultCache {
    pool: PgPool,
    /// `None` when the cache is switched off (`RESULT_CACHE_MAX=0`).
    memory: Option<Mutex<MemoryCache>>,
    /// How long a result may be served again (`RESULT_CACHE_TTL`).
    ttl: Duration,
}

impl ResultCache {
    /// `capacity` results kept in memory, each served for at most `ttl`; a
    /// capacity of 0 switches the cache off entirely.
    pub fn new(pool: PgPool, capacity: usize, ttl: Duration) -> Self {
        let memory =
            NonZeroUsize::new(capacity).map(|capacity| Mutex::new(LruCache::new(capacity)));
        ResultCache { pool, memory, ttl }
    }

    /// A finished result for this key, if any. A database error is a miss
    /// (the cache only saves work; it must never fail a scan).
    pub async fn lookup(&self, tenant_id: Uuid, key: &str) -> Option<(CachedResult, CacheSource)> {
        let memory = self.memory.as_ref()?;
        let entry = (tenant_id, key.to_string());
        {
            let mut memory = memory.lock().expect("cache lock");
            match memory.get(&entry) {
                Some((stored, hit)) if stored.elapsed() < self.ttl => {
                    return Some((hit.clone(), CacheSource::Memory))
                }
                Some(_) => {
                    memory.pop(&entry);
                }
                None => {}
            }
        }
        match protocol::db::cached_result(&self.pool, tenant_id, key, self.ttl).await {
            Ok(Some((scan_id, result, age))) => {
                let hit = CachedResult { scan_id, result };
                // Kept in memory only for what is left of its time to live.
                let stored = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                memory
                    .lock()
                    .expect("cache lock")
                    .put(entry, (stored, hit.clone()));
                Some((hit, CacheSource::Database))
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "result cache lookup failed; computing");
                None
            }
        }
    }

    /// Keeps a result this process just committed.
    pub fn remember(&self, tenant_id: Uuid, key: &str, scan_id: Uuid, result: &Value) {
        if let Some(memory) = &self.memory {
            let entry = CachedResult {
                scan_id,
                result: result.clone(),
            };
            memory
                .lock()
                .expect("cache lock")
                .put((tenant_id, key.to_string()), (Instant::now(), entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_every_part_and_only_then() {
        let params = serde_json::json!({"downscale_max": 640, "b": [1, 2]});
        let base = cache_key(ScanKind::VideoScan, &params, "downscale_max=640", b"video");
        assert_eq!(
            base,
            cache_key(ScanKind::VideoScan, &params, "downscale_max=640", b"video")
        );
        // Key order in the submitted JSON does not matter.
        let reordered: Value = serde_json::from_str(r#"{"b":[1,2],"downscale_max":640}"#).unwrap();
        assert_eq!(
            base,
            cache_key(
                ScanKind::VideoScan,
                &reordered,
                "downscale_max=640",
                b"video"
            )
        );
        for other in [
            cache_key(ScanKind::Probe, &params, "downscale_max=640", b"video"),
            cache_key(
                ScanKind::VideoScan,
                &serde_json::json!({}),
                "downscale_max=640",
                b"video",
            ),
            cache_key(ScanKind::VideoScan, &params, "downscale_max=1280", b"video"),
            cache_key(ScanKind::VideoScan, &params, "downscale_max=640", b"videO"),
        ] {
            assert_ne!(base, other);
        }
        // Moving bytes between parts changes the key (length prefixes).
        assert_ne!(
            cache_key(ScanKind::VideoScan, &params, "ab", b"c"),
            cache_key(ScanKind::VideoScan, &params, "a", b"bc")
        );
    }

    #[test]
    fn a_served_result_names_the_scan_that_computed_it() {
        let original = Uuid::now_v7();
        let cached = CachedResult {
            scan_id: original,
            result: serde_json::json!({"kind": "video_scan", "grade": 8.5}),
        };
        let served = cached.served();
        assert_eq!(served["cached"], true);
        assert_eq!(served["cached_from"], original.to_string());
        assert_eq!(served["grade"], 8.5);
    }
}
