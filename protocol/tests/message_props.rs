//! Property tests for the queue message codec: whatever bytes arrive on a
//! queue, decoding returns a value or an error, never panics; every message a
//! dispatcher can build survives the round trip unchanged; a truncated one is
//! always refused.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use protocol::{Route, ScanJob, ScanKind, ScanMessage};
use serde_json::Value;
use uuid::Uuid;

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Finite floats only (JSON has none other), and exactly representable
        // in decimal, so equality after a round trip is not up to the last ULP.
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        ".*".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 .. 2100-01-01, microsecond precision like Postgres.
    (946_684_800_000_000i64..4_102_444_800_000_000)
        .prop_map(|micros| Utc.timestamp_micros(micros).unwrap())
}

fn scan_job() -> impl Strategy<Value = ScanJob> {
    (
        any::<u128>(),
        any::<u128>(),
        prop::sample::select(ScanKind::ALL.to_vec()),
        prop::option::of(".{1,40}"),
        prop::option::of("https://[a-z]{1,10}\\.example/[a-z0-9/]{0,20}"),
        prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..4),
        prop::sample::select(vec![Route::Cpu, Route::Gpu]),
        timestamp(),
        any::<bool>(),
    )
        .prop_map(
            |(
                scan,
                tenant,
                kind,
                upload_path,
                source_url,
                params,
                route,
                submitted_at,
                recompute,
            )| ScanJob {
                scan_id: Uuid::from_u128(scan),
                tenant_id: Uuid::from_u128(tenant),
                kind,
                upload_path,
                source_url,
                params: Value::Object(params.into_iter().collect()),
                route,
                submitted_at,
                recompute,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ScanMessage::decode(&bytes);
    }

    #[test]
    fn every_message_round_trips(job in scan_job()) {
        let message = ScanMessage::V1(job);
        prop_assert_eq!(ScanMessage::decode(&message.encode()).unwrap(), message);
    }

    #[test]
    fn a_truncated_message_is_refused(job in scan_job(), cut in any::<prop::sample::Index>()) {
        let bytes = ScanMessage::V1(job).encode();
        let cut = cut.index(bytes.len());
        prop_assert!(ScanMessage::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn damaged_messages_decode_or_fail_cleanly(
        job in scan_job(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        // Near-valid input reaches deeper into the decoder than random bytes.
        let mut bytes = ScanMessage::V1(job).encode();
        for (at, byte) in damage {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(decoded) = ScanMessage::decode(&bytes) {
            // Whatever decodes is a complete message that encodes again.
            prop_assert_eq!(ScanMessage::decode(&decoded.encode()).unwrap(), decoded);
        }
    }
}
