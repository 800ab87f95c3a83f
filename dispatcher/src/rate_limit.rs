//! Per-tenant rate limits on submit and upload (GCRA, from `governor`), by
//! tier. A tenant past its limit is answered `429` with `Retry-After` and the
//! IETF `RateLimit` / `RateLimit-Policy` headers
//! (draft-ietf-httpapi-ratelimit-headers); every answer within the limit
//! carries the same headers, so clients can pace themselves. Limits are per
//! replica: N replicas let a tenant through N times the rate at most.

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use protocol::Tier;
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::PerTier;
use crate::problem::ApiError;
use crate::state::AppState;

/// One tier's limiter, keyed by tenant. Keys are authenticated tenant ids,
/// so the map grows with the number of tenants, not with what clients send.
type TenantLimiter =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

/// What a limit applies to; its name is the policy name in the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Submit,
    Upload,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Upload => "upload",
        }
    }
}

/// Every limit of this replica.
pub struct RateLimits {
    submit: [Option<TenantLimiter>; 3],
    upload: [Option<TenantLimiter>; 3],
    clock: DefaultClock,
}

fn limiters(per_minute: PerTier) -> [Option<TenantLimiter>; 3] {
    [Tier::Free, Tier::Pro, Tier::Premium].map(|tier| {
        NonZeroU32::new(per_minute.get(tier)).map(|n| {
            RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>()
        })
    })
}

/// A request within its limit: the headers that say how much is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    policy: &'static str,
    quota: u32,
    remaining: u32,
    /// Seconds until the full quota is available again.
    reset_s: u64,
}

impl Allowance {
    /// `RateLimit-Policy: "submit";q=120;w=60` and `RateLimit: "submit";r=119;t=1`.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        rate_limit_headers(self.policy, self.quota, self.remaining, self.reset_s)
    }
}

fn rate_limit_headers(
    policy: &str,
    quota: u32,
    remaining: u32,
    reset_s: u64,
) -> [(HeaderName, HeaderValue); 2] {
    let value = |text: String| HeaderValue::from_str(&text).expect("ASCII header value");
    [
        (
            HeaderName::from_static("ratelimit-policy"),
            value(format!("\"{policy}\";q={quota};w=60")),
        ),
        (
            HeaderName::from_static("ratelimit"),
            value(format!("\"{policy}\";r={remaining};t={reset_s}")),
        ),
    ]
}

fn whole_seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl RateLimits {
    pub fn new(submit_per_minute: PerTier, upload_per_minute: PerTier) -> Self {
        RateLimits {
            submit: limiters(submit_per_minute),
            upload: limiters(upload_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one unit of `action` for the caller's tenant, or refuses with a
    /// `429` problem (`rate_limited`). None: the tier has no limit.
    pub fn check(&self, action: Action, caller: &Caller) -> Result<Option<Allowance>, ApiError> {
        let limiters = match action {
            Action::Submit => &self.submit,
            Action::Upload => &self.upload,
        };
        let Some(limiter) = &limiters[caller.tier as usize] else {
            return Ok(None);
        };
        match limiter.check_key(&caller.tenant_id) {
            Ok(snapshot) => {
                let quota = snapshot.quota().burst_size().get();
                let remaining = snapshot.remaining_burst_capacity();
                // Each used unit comes back after one replenish interval.
                let refill = snapshot.quota().replenish_interval() * (quota - remaining);
                Ok(Some(Allowance {
                    policy: action.name(),
                    quota,
                    remaining,
                    reset_s: whole_seconds_up(refill),
                }))
            }
            Err(not_until) => {
                let quota = not_until.quota().burst_size().get();
                let wait = whole_seconds_up(not_until.wait_time_from(self.clock.now())).max(1);
                let mut headers = vec![(RETRY_AFTER, HeaderValue::from(wait))];
                headers.extend(rate_limit_headers(action.name(), quota, 0, wait));
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "this tenant may {} {quota} times a minute; retry in {wait} s",
                        action.name()
                    ),
                )
                .with_headers(headers))
            }
        }
    }
}

/// Refuses a submission while the tenant has `max_in_flight_scans` of its
/// tier queued or running, so one tenant cannot fill the queues (and push
/// escalation to GPU) for everyone. A retry of a submission already accepted
/// (same `Idempotency-Key`) is let through to get its original answer. The
/// count is not locked: concurrent submissions may overshoot the cap by as
/// many as arrive at the same moment.
pub async fn check_in_flight(
    pool: &sqlx::PgPool,
    caller: &Caller,
    cap: PerTier,
    idempotency_key: Option<&str>,
) -> Result<(), ApiError> {
    let cap = cap.get(caller.tier);
    if cap == 0 {
        return Ok(());
    }
    // Counting stops at the cap: the index scan is bounded by it.
    let (in_flight, replay): (i64, bool) = sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM (SELECT 1 FROM scans
                     WHERE tenant_id = $1 AND status IN ('queued', 'running') LIMIT $2) capped),
                  EXISTS (SELECT 1 FROM scans WHERE tenant_id = $1 AND idempotency_key = $3)"#,
    )
    .bind(caller.tenant_id)
    .bind(i64::from(cap))
    .bind(idempotency_key)
    .fetch_one(pool)
    .await?;
    if in_flight < i64::from(cap) || replay {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_in_flight",
        format!(
            "the {} tier may have {cap} scans queued or running; retry when some have finished",
            caller.tier.as_str()
        ),
    )
    .with_headers([(RETRY_AFTER, HeaderValue::from_static("5"))]))
}

/// Which limit an [`Allowed`] extractor applies.
pub trait Limited {
    const ACTION: Action;
}

pub struct Submit;
pub struct Upload;

impl Limited for Submit {
    const ACTION: Action = Action::Submit;
}

impl Limited for Upload {
    const ACTION: Action = Action::Upload;
}

/// The caller, within its tenant's limit for `A`. An extractor from the
/// request head, so an upload over the limit is refused before its body is
/// read.
pub struct Allowed<A> {
    pub caller: Caller,
    pub allowance: Option<Allowance>,
    action: PhantomData<A>,
}

impl<A> Allowed<A> {
    /// The `RateLimit` headers for the answer (none when the tier is unlimited).
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.allowance.iter().flat_map(Allowance::headers).collect()
    }
}

impl<A: Limited + Send + Sync> FromRequestParts<AppState> for Allowed<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let allowance = state.rate_limits().check(A::ACTION, &caller)?;
        Ok(Allowed {
            caller,
            allowance,
            action: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tier: Tier) -> Caller {
        Caller {
            tenant_id: Uuid::now_v7(),
            tier,
            is_admin: false,
        }
    }

    #[test]
    fn each_tenant_has_its_own_budget_by_tier() {
        let limits = RateLimits::new(
            PerTier {
                free: 3,
                pro: 0,
                premium: 10,
            },
            PerTier::all(1),
        );
        let (noisy, quiet) = (caller(Tier::Free), caller(Tier::Free));
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                limits
                    .check(Action::Submit, &noisy)
                    .unwrap()
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(Action::Submit, &noisy).unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        let header = |name: &str| {
            refused
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap())
        };
        // One of three units a minute comes back every 20 s.
        let retry: u64 = header("retry-after").unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
        assert_eq!(header("ratelimit-policy"), Some("\"submit\";q=3;w=60"));
        assert_eq!(
            header("ratelimit"),
            Some(format!("\"submit\";r=0;t={retry}").as_str())
        );
        // Another tenant of the same tier, and the same tenant's uploads, are untouched.
        assert_eq!(
            limits
                .check(Action::Submit, &quiet)
                .unwrap()
                .unwrap()
                .remaining,
            2
        );
        assert_eq!(
            limits
                .check(Action::Upload, &noisy)
                .unwrap()
                .unwrap()
                .remaining,
            0
        );
        // Pro has no submit limit; premium its own.
        assert_eq!(
            limits.check(Action::Submit, &caller(Tier::Pro)).unwrap(),
            None
        );
        let premium = limits
            .check(Action::Submit, &caller(Tier::Premium))
            .unwrap()
            .unwrap();
        assert_eq!(premium.headers()[0].1, "\"submit\";q=10;w=60");
        assert_eq!(premium.headers()[1].1, "\"submit\";r=9;t=6");
    }
}
