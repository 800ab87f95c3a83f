//! Which queue a new scan goes to, and why.

use protocol::{Route, RouteReason, Tier};

/// The routing mode: a forced route, or `auto` (decided per scan).
/// Switching to `cpu` is the rollback of a GPU migration (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    Cpu,
    Gpu,
    Auto,
}

/// Decides the route of a new scan. In `auto`, tiers that pay for GPU
/// processing (pro, premium; seed 002 option B) go to the GPU queue.
pub fn decide(mode: RoutingMode, tier: Tier) -> (Route, RouteReason) {
    match mode {
        RoutingMode::Cpu => (Route::Cpu, RouteReason::Mode),
        RoutingMode::Gpu => (Route::Gpu, RouteReason::Mode),
        RoutingMode::Auto => match tier {
            Tier::Pro | Tier::Premium => (Route::Gpu, RouteReason::Tier),
            Tier::Free => (Route::Cpu, RouteReason::Default),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_modes_ignore_tier() {
        for tier in [Tier::Free, Tier::Pro, Tier::Premium] {
            assert_eq!(decide(RoutingMode::Cpu, tier), (Route::Cpu, RouteReason::Mode));
            assert_eq!(decide(RoutingMode::Gpu, tier), (Route::Gpu, RouteReason::Mode));
        }
    }

    #[test]
    fn auto_sends_paying_tiers_to_gpu() {
        assert_eq!(decide(RoutingMode::Auto, Tier::Free), (Route::Cpu, RouteReason::Default));
        assert_eq!(decide(RoutingMode::Auto, Tier::Pro), (Route::Gpu, RouteReason::Tier));
        assert_eq!(decide(RoutingMode::Auto, Tier::Premium), (Route::Gpu, RouteReason::Tier));
    }
}
