//! Which queue a new scan goes to, and why (DESIGN.md "Route").
//!
//! The policy (mode and canary share) and the backlog-escalation flag live in
//! Postgres, so every dispatcher replica decides the same way and a restart
//! keeps what an operator set at run time.

use protocol::{Route, RouteReason, Tier};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// The routing mode: a forced route, or `auto` (decided per scan).
/// Switching to `cpu` is the rollback of a GPU migration (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    Cpu,
    Gpu,
    Auto,
}

impl RoutingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingMode::Cpu => "cpu",
            RoutingMode::Gpu => "gpu",
            RoutingMode::Auto => "auto",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [RoutingMode::Cpu, RoutingMode::Gpu, RoutingMode::Auto]
            .into_iter()
            .find(|mode| mode.as_str() == name)
    }
}

/// Basis points (1/100 of a percent) in a whole.
pub const FULL_SHARE_BP: u16 = 10_000;

/// What an operator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingPolicy {
    pub mode: RoutingMode,
    /// Share of the scans `auto` would send to CPU that go to GPU instead,
    /// in basis points (seed 002 option C).
    pub canary_bp: u16,
}

/// Whether a scan falls in the canary share. Decided from the scan id's
/// random bits, so every replica (and a replay) decides the same.
pub fn in_canary(scan_id: Uuid, canary_bp: u16) -> bool {
    let bytes = scan_id.as_bytes();
    // The low 62 bits of a UUIDv7 (or v4) are random.
    let random =
        u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) & 0x3fff_ffff_ffff_ffff;
    random % FULL_SHARE_BP as u64 >= (FULL_SHARE_BP - canary_bp) as u64
}

/// Decides the route of a new scan.
/// In `auto`: paying tiers go to GPU (seed 002 option B); while the CPU queue
/// is backed up everything goes to GPU (seed 001 option 3); otherwise a canary
/// share goes to GPU (seed 002 option C) and the rest to CPU.
pub fn decide(
    policy: RoutingPolicy,
    tier: Tier,
    scan_id: Uuid,
    backlog_escalated: bool,
) -> (Route, RouteReason) {
    match policy.mode {
        RoutingMode::Cpu => (Route::Cpu, RouteReason::Mode),
        RoutingMode::Gpu => (Route::Gpu, RouteReason::Mode),
        RoutingMode::Auto => {
            if matches!(tier, Tier::Pro | Tier::Premium) {
                (Route::Gpu, RouteReason::Tier)
            } else if backlog_escalated {
                (Route::Gpu, RouteReason::Backlog)
            } else if in_canary(scan_id, policy.canary_bp) {
                (Route::Gpu, RouteReason::Canary)
            } else {
                (Route::Cpu, RouteReason::Default)
            }
        }
    }
}

/// Stores the configured policy unless one is stored already (a restart keeps
/// what an operator set at run time).
pub async fn seed_policy(pool: &PgPool, policy: RoutingPolicy) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO routing_policy (mode, canary_bp) VALUES ($1, $2) ON CONFLICT (singleton) DO NOTHING",
        policy.mode.as_str(),
        policy.canary_bp as i32
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_policy<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    policy: RoutingPolicy,
    updated_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO routing_policy (mode, canary_bp, updated_by) VALUES ($1, $2, $3)
           ON CONFLICT (singleton) DO UPDATE
              SET mode = EXCLUDED.mode, canary_bp = EXCLUDED.canary_bp,
                  updated_by = EXCLUDED.updated_by, updated_at = now()"#,
        policy.mode.as_str(),
        policy.canary_bp as i32,
        updated_by
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The policy and the escalation flag, read for each submission (one small
/// query) so a change on any replica applies to the next scan everywhere.
pub async fn current(pool: &PgPool) -> Result<(RoutingPolicy, bool), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT p.mode, p.canary_bp, b.escalated
             FROM routing_policy p CROSS JOIN backlog_state b"#
    )
    .fetch_one(pool)
    .await?;
    let policy = RoutingPolicy {
        mode: RoutingMode::parse(&row.mode).unwrap_or(RoutingMode::Auto),
        canary_bp: row.canary_bp.clamp(0, FULL_SHARE_BP as i32) as u16,
    };
    Ok((policy, row.escalated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RoutingMode, canary_bp: u16) -> RoutingPolicy {
        RoutingPolicy { mode, canary_bp }
    }

    #[test]
    fn forced_modes_ignore_tier_backlog_and_canary() {
        for tier in [Tier::Free, Tier::Pro, Tier::Premium] {
            let id = Uuid::now_v7();
            assert_eq!(
                decide(policy(RoutingMode::Cpu, 10_000), tier, id, true),
                (Route::Cpu, RouteReason::Mode)
            );
            assert_eq!(
                decide(policy(RoutingMode::Gpu, 0), tier, id, false),
                (Route::Gpu, RouteReason::Mode)
            );
        }
    }

    #[test]
    fn auto_prefers_tier_then_backlog_then_canary() {
        let auto = policy(RoutingMode::Auto, 0);
        let id = Uuid::now_v7();
        assert_eq!(
            decide(auto, Tier::Free, id, false),
            (Route::Cpu, RouteReason::Default)
        );
        assert_eq!(
            decide(auto, Tier::Pro, id, false),
            (Route::Gpu, RouteReason::Tier)
        );
        assert_eq!(
            decide(auto, Tier::Premium, id, true),
            (Route::Gpu, RouteReason::Tier)
        );
        assert_eq!(
            decide(auto, Tier::Free, id, true),
            (Route::Gpu, RouteReason::Backlog)
        );
        assert_eq!(
            decide(policy(RoutingMode::Auto, 10_000), Tier::Free, id, false),
            (Route::Gpu, RouteReason::Canary)
        );
    }

    #[test]
    fn canary_share_is_deterministic_and_proportional() {
        let ids: Vec<Uuid> = (0..20_000).map(|_| Uuid::now_v7()).collect();
        for canary_bp in [0u16, 500, 2_500, 10_000] {
            let chosen = ids.iter().filter(|id| in_canary(**id, canary_bp)).count() as f64;
            let expected = ids.len() as f64 * canary_bp as f64 / 10_000.0;
            let sd = (ids.len() as f64 * (canary_bp as f64 / 1e4) * (1.0 - canary_bp as f64 / 1e4))
                .sqrt();
            assert!(
                (chosen - expected).abs() <= 5.0 * sd + 0.5,
                "{canary_bp} bp: {chosen} vs {expected}"
            );
        }
        // Growing the share only adds scans to the canary, never moves them out.
        for id in &ids[..1000] {
            if in_canary(*id, 500) {
                assert!(in_canary(*id, 2_500));
            }
            assert_eq!(in_canary(*id, 2_500), in_canary(*id, 2_500));
        }
    }
}
