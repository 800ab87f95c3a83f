//! API keys: generated once, shown once, stored as SHA-256. Keys are 190 bits
//! of randomness, so a fast hash is safe and lets us look keys up directly.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use protocol::Tier;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;

const KEY_PREFIX: &str = "sf_";
const KEY_RANDOM_CHARS: usize = 32;

pub fn generate_key() -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: Uuid,
    pub tier: Tier,
    pub is_admin: bool,
}

/// A key as created: the secret is only ever available here.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub tenant_id: Uuid,
    pub key: String,
    /// Signs webhooks sent to the tenant's scans' `callback_url`s.
    pub callback_secret: String,
}

/// Creates the tenant if needed (updating its tier) and a new key for it.
pub async fn create_key(
    pool: &PgPool,
    tenant_name: &str,
    tier: Tier,
    is_admin: bool,
) -> Result<CreatedKey, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let tenant = sqlx::query!(
        r#"INSERT INTO tenants (id, name, tier, callback_secret) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE
              SET tier = EXCLUDED.tier,
                  callback_secret = coalesce(tenants.callback_secret, EXCLUDED.callback_secret)
           RETURNING id, callback_secret AS "callback_secret!""#,
        Uuid::now_v7(),
        tenant_name,
        tier.as_str(),
        crate::webhooks::signing::generate_secret()
    )
    .fetch_one(&mut *tx)
    .await?;
    let tenant_id = tenant.id;
    let key = generate_key();
    sqlx::query!(
        "INSERT INTO api_keys (id, tenant_id, key_sha256, key_prefix, is_admin) VALUES ($1, $2, $3, $4, $5)",
        Uuid::now_v7(),
        tenant_id,
        hash_key(&key),
        &key[..KEY_PREFIX.len() + 6],
        is_admin
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CreatedKey { tenant_id, key, callback_secret: tenant.callback_secret })
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
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <api key>`"))?;
        let row = sqlx::query!(
            r#"SELECT t.id AS tenant_id, t.tier, k.is_admin
                 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL"#,
            hash_key(key)
        )
        .fetch_optional(state.pool())
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
        Ok(Caller {
            tenant_id: row.tenant_id,
            tier: Tier::parse(&row.tier).ok_or_else(|| ApiError::internal("bad tier in database"))?,
            is_admin: row.is_admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }
}
