//! The settings each background task is handed, derived from the
//! configuration (`DispatcherConfig::watermarks`, `::delivery_settings`).
//!
//! They live here, below both the configuration and the tasks, so that the
//! configuration does not import the tasks that import it back (through
//! `AppState`): imports point one way, from the tasks down to their settings.

use std::time::Duration;

use protocol::netguard::DestinationPolicy;
use rand::Rng;

/// When the backlog monitor escalates to GPU and when it stands down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Escalate when more than this many scans wait on the CPU queue…
    pub high_depth: u64,
    /// …or when a new CPU scan is predicted to wait longer than this.
    pub latency_target: Duration,
    /// Stand down only once the depth stays below this…
    pub low_depth: u64,
    /// …for this long without interruption.
    pub hold: Duration,
}

/// How the webhook deliverer sends.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub poll: Duration,
    pub per_destination: i64,
    pub max_in_flight: usize,
    pub destinations: DestinationPolicy,
}

impl DeliverySettings {
    /// The delay before the attempt after `attempts_made`, with ±10 % jitter
    /// so receivers that recover are not hit by every retry at once; None
    /// when the schedule is used up.
    pub fn next_delay(&self, attempts_made: usize) -> Option<Duration> {
        let base = *self.schedule.get(attempts_made)?;
        let jitter = rand::thread_rng().gen_range(0.9..=1.1);
        Some(base.mul_f64(jitter))
    }

    /// The longest one attempt may take, name resolution and the reply
    /// included (the HTTP timeout alone does not cover the DNS lookup).
    pub fn attempt_limit(&self) -> Duration {
        self.timeout * 2
    }

    /// How long a claimed delivery stays with the replica that claimed it:
    /// longer than an attempt can take, with margin for recording it, so no
    /// other replica sends it meanwhile; a sender that dies frees its rows
    /// after this (and the delivery is sent again: at-least-once).
    pub fn lease(&self) -> Duration {
        self.attempt_limit() + Duration::from_secs(10)
    }
}
