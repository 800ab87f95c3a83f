//! Cost per scan on a worker that runs several scans at once (issue 23).
//!
//! A worker costs its hourly price whatever it runs; with N scans in hand at
//! once, each is charged 1/N of that time, so a worker's scans add up to its
//! wall-clock time × price and never more. The meter keeps a processor-sharing
//! clock, ∫ 1/n(t) dt over the time n ≥ 1 scans ran: a scan's share is that
//! clock's advance between its start and its end (old formula: its wall time,
//! over-counting up to N×).

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    last: Instant,
    running: u32,
    /// Seconds of one whole worker handed out since `origin`.
    share_clock: f64,
}

/// Shared by all of a worker's scans.
#[derive(Debug)]
pub struct CostMeter {
    state: Mutex<State>,
}

/// A scan's place on the share clock, from `CostMeter::start`.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    share_clock: f64,
}

impl CostMeter {
    pub fn new(now: Instant) -> Self {
        CostMeter {
            state: Mutex::new(State {
                last: now,
                running: 0,
                share_clock: 0.0,
            }),
        }
    }

    fn advance(state: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        if state.running > 0 {
            state.share_clock += elapsed / state.running as f64;
        }
        state.last = state.last.max(now);
    }

    /// A scan starts at `now`.
    pub fn start(&self, now: Instant) -> Started {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::advance(&mut state, now);
        state.running += 1;
        Started {
            share_clock: state.share_clock,
        }
    }

    /// The scan started at `started` ends at `now`: the worker time it is
    /// charged, its wall time divided among the scans that ran beside it.
    pub fn finish(&self, started: Started, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::advance(&mut state, now);
        state.running = state.running.saturating_sub(1);
        Duration::from_secs_f64((state.share_clock - started.share_clock).max(0.0))
    }
}

/// Dollars for `charged` worker time at `price_per_hour`.
pub fn cost_usd(charged: Duration, price_per_hour: f64) -> f64 {
    charged.as_secs_f64() * price_per_hour / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: f64 = 0.50;

    #[test]
    fn scans_side_by_side_share_the_worker() {
        // Four scans of 10 s each, all at once, on a $0.50/h worker: the
        // worker costs 10 s × $0.50/h, so each scan 2.5 s' worth.
        let t0 = Instant::now();
        let meter = CostMeter::new(t0);
        let started: Vec<_> = (0..4).map(|_| meter.start(t0)).collect();
        let end = t0 + Duration::from_secs(10);
        let costs: Vec<f64> = started
            .into_iter()
            .map(|s| cost_usd(meter.finish(s, end), PRICE))
            .collect();
        let worker = cost_usd(Duration::from_secs(10), PRICE);
        for cost in &costs {
            assert!(
                (cost - worker / 4.0).abs() < 1e-12,
                "{cost} vs {}",
                worker / 4.0
            );
        }
        // The old formula (wall time × price) charges each the whole worker.
        let old_formula = cost_usd(end - t0, PRICE);
        assert!(costs.iter().sum::<f64>() < old_formula * 4.0 / 3.0);
        assert!((costs.iter().sum::<f64>() - worker).abs() < 1e-12);
    }

    #[test]
    fn overlapping_scans_add_up_to_the_worker_time() {
        // A: 0–10 s, B: 5–20 s. 0–5 s A alone, 5–10 s shared, 10–20 s B alone.
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let meter = CostMeter::new(t0);
        let a = meter.start(at(0));
        let b = meter.start(at(5));
        let a_charged = meter.finish(a, at(10)).as_secs_f64();
        let b_charged = meter.finish(b, at(20)).as_secs_f64();
        assert!((a_charged - 7.5).abs() < 1e-9, "{a_charged}");
        assert!((b_charged - 12.5).abs() < 1e-9, "{b_charged}");
        assert!((a_charged + b_charged - 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_scan_alone_pays_its_wall_time() {
        let t0 = Instant::now();
        let meter = CostMeter::new(t0);
        let idle_then = t0 + Duration::from_secs(100);
        let s = meter.start(idle_then);
        let charged = meter.finish(s, idle_then + Duration::from_millis(1500));
        assert!((charged.as_secs_f64() - 1.5).abs() < 1e-9);
    }
}
