//! Who is calling: the `Authorization: Bearer <api key>` header checked
//! against the stored key hashes (keys themselves: `crate::keys`).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use protocol::Tier;
use uuid::Uuid;

use crate::keys::hash_key;
use crate::problem::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub tier: Tier,
    pub is_admin: bool,
}

/// The token of a `Bearer` credential. The scheme name is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` are the same scheme.
fn bearer_token(credentials: &str) -> Option<&str> {
    let (scheme, token) = credentials.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::unauthorized(
                "send exactly one `Authorization: Bearer <api key>` header",
            ));
        };
        let key =
            value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
                ApiError::unauthorized("expected `Authorization: Bearer <api key>`")
            })?;
        let owner = key_owner(state.pool(), key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
        Ok(owner.caller)
    }
}

/// An API key that is in force, and who holds it.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key_id: Uuid,
    pub caller: Caller,
}

/// Looks a presented API key up by its hash; `None` for an unknown key or
/// one revoked by now (a rotated-out key has a revocation time in the future
/// and works until then).
pub async fn key_owner(pool: &sqlx::PgPool, key: &str) -> Result<Option<KeyOwner>, ApiError> {
    let row: Option<(Uuid, Uuid, String, bool)> = sqlx::query_as(
        r#"SELECT k.id, t.id, t.tier, k.is_admin
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
            WHERE k.key_sha256 = $1 AND (k.revoked_at IS NULL OR k.revoked_at > now())"#,
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?;
    let Some((key_id, tenant_id, tier, is_admin)) = row else {
        return Ok(None);
    };
    Ok(Some(KeyOwner {
        key_id,
        caller: Caller {
            tenant_id,
            tier: Tier::parse(&tier).ok_or_else(|| ApiError::internal("bad tier in database"))?,
            is_admin,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for credentials in [
            "Bearer sf_x",
            "bearer sf_x",
            "BEARER sf_x",
            "bEaReR   sf_x ",
        ] {
            assert_eq!(bearer_token(credentials), Some("sf_x"), "{credentials:?}");
        }
        for credentials in [
            "Bearer",
            "Bearer ",
            "Basic sf_x",
            "Bearersf_x",
            "Token sf_x",
            "",
        ] {
            assert_eq!(bearer_token(credentials), None, "{credentials:?}");
        }
    }
}
