//! API keys: generated once, shown once, stored as SHA-256, and managed by
//! the `dispatcher keys create | list | revoke | rotate` commands. Keys are
//! 190 bits of randomness, so a fast hash is safe and lets us look keys up
//! directly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::Tier;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::sealing::{SealError, Sealer, SecretOwner};

pub const KEY_PREFIX: &str = "sf_";
const KEY_RANDOM_CHARS: usize = 32;
/// Characters of a key kept in clear to tell keys apart in listings.
const SHOWN_PREFIX_LEN: usize = KEY_PREFIX.len() + 6;

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

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("tenant {tenant:?} is on tier {current}, not {requested}; pass --set-tier to change its tier")]
    TierChange {
        tenant: String,
        current: String,
        requested: &'static str,
    },
    #[error("no API key with id {0}")]
    UnknownKey(Uuid),
    #[error("API key {0} is already revoked")]
    AlreadyRevoked(Uuid),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the tenant's callback secret: {0}")]
    Sealed(#[from] SealError),
}

/// Whether creating a key for an existing tenant may change its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierChange {
    /// A different tier is an error: a typo in `--tier` must not silently
    /// move a paying tenant to another queue.
    Refuse,
    /// `--set-tier`: the tenant moves to the given tier.
    Allow,
}

/// A key as created: the secret is only ever available here.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key_id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
    /// Signs webhooks sent to the tenant's scans' `callback_url`s.
    pub callback_secret: String,
}

/// The key that replaced a rotated one: shown once, like a created key.
#[derive(Debug, Clone)]
pub struct RotatedKey {
    pub key_id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
}

/// A key as listed: never the key itself, only its first characters.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: Uuid,
    pub tenant: String,
    pub tier: String,
    pub prefix: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    /// In the future while a rotated-out key is still honoured.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyInfo {
    pub fn state(&self, now: DateTime<Utc>) -> String {
        match self.revoked_at {
            None => "active".to_string(),
            Some(at) if at > now => format!(
                "active until {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Some(at) => format!(
                "revoked {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// Creates the tenant if needed and a new key for it; an existing tenant
/// keeps its tier unless `tier_change` allows the change.
pub async fn create_key(
    pool: &PgPool,
    sealer: &Sealer,
    tenant_name: &str,
    tier: Tier,
    is_admin: bool,
    tier_change: TierChange,
) -> Result<CreatedKey, KeyError> {
    let mut tx = pool.begin().await?;
    // The no-op update locks an existing row and returns it, so the tier
    // comparison below cannot race another `keys create`.
    let (tenant_id, current_tier, stored_secret): (Uuid, String, Option<String>) = sqlx::query_as(
        r#"INSERT INTO tenants (id, name, tier) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
           RETURNING id, tier, callback_secret"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_name)
    .bind(tier.as_str())
    .fetch_one(&mut *tx)
    .await?;
    // Sealed once the tenant's id is known: the seal is bound to its row.
    let owner = SecretOwner::Tenant(tenant_id);
    let callback_secret = match stored_secret {
        Some(stored) => sealer.open(owner, &stored)?,
        None => {
            let secret = crate::webhooks::signing::generate_secret();
            sqlx::query("UPDATE tenants SET callback_secret = $2 WHERE id = $1")
                .bind(tenant_id)
                .bind(sealer.seal(owner, &secret))
                .execute(&mut *tx)
                .await?;
            secret
        }
    };
    if current_tier != tier.as_str() {
        if tier_change == TierChange::Refuse {
            return Err(KeyError::TierChange {
                tenant: tenant_name.to_string(),
                current: current_tier,
                requested: tier.as_str(),
            });
        }
        sqlx::query("UPDATE tenants SET tier = $2 WHERE id = $1")
            .bind(tenant_id)
            .bind(tier.as_str())
            .execute(&mut *tx)
            .await?;
        tracing::warn!(
            tenant = tenant_name,
            from = current_tier,
            to = tier.as_str(),
            "tenant tier changed"
        );
    }
    let (key_id, key) = insert_key(&mut tx, tenant_id, is_admin).await?;
    tx.commit().await?;
    Ok(CreatedKey {
        key_id,
        tenant_id,
        key,
        callback_secret,
    })
}

async fn insert_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    is_admin: bool,
) -> Result<(Uuid, String), sqlx::Error> {
    let (key_id, key) = (Uuid::now_v7(), generate_key());
    sqlx::query("INSERT INTO api_keys (id, tenant_id, key_sha256, key_prefix, is_admin) VALUES ($1, $2, $3, $4, $5)")
        .bind(key_id)
        .bind(tenant_id)
        .bind(hash_key(&key))
        .bind(&key[..SHOWN_PREFIX_LEN])
        .bind(is_admin)
        .execute(conn)
        .await?;
    Ok((key_id, key))
}

const KEY_INFO: &str =
    "SELECT k.id, t.name AS tenant, t.tier, k.key_prefix AS prefix, k.is_admin, k.created_at, k.revoked_at
                          FROM api_keys k JOIN tenants t ON t.id = k.tenant_id";

/// Every key, or one tenant's, oldest first.
pub async fn list_keys(
    pool: &PgPool,
    tenant_name: Option<&str>,
) -> Result<Vec<KeyInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{KEY_INFO} WHERE $1::text IS NULL OR t.name = $1 ORDER BY t.name, k.created_at, k.id"
    ))
    .bind(tenant_name)
    .fetch_all(pool)
    .await
}

async fn key_info(conn: &mut PgConnection, key_id: Uuid) -> Result<KeyInfo, KeyError> {
    sqlx::query_as(&format!("{KEY_INFO} WHERE k.id = $1"))
        .bind(key_id)
        .fetch_optional(conn)
        .await?
        .ok_or(KeyError::UnknownKey(key_id))
}

/// Revokes a key at once (also one still honoured after a rotation).
pub async fn revoke_key(pool: &PgPool, key_id: Uuid) -> Result<KeyInfo, KeyError> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND (revoked_at IS NULL OR revoked_at > now())",
    )
    .bind(key_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let info = key_info(&mut tx, key_id).await?;
    if revoked == 0 {
        return Err(KeyError::AlreadyRevoked(key_id));
    }
    tx.commit().await?;
    tracing::warn!(%key_id, tenant = info.tenant, "API key revoked");
    Ok(info)
}

/// Replaces a key with a new one for the same tenant and rights. The old key
/// keeps working for `grace` (zero: stops at once), so clients can switch
/// without an outage.
pub async fn rotate_key(
    pool: &PgPool,
    key_id: Uuid,
    grace: Duration,
) -> Result<RotatedKey, KeyError> {
    let mut tx = pool.begin().await?;
    let old: Option<(Uuid, bool, bool)> = sqlx::query_as(
        "SELECT tenant_id, is_admin, coalesce(revoked_at <= now(), false) FROM api_keys WHERE id = $1 FOR UPDATE",
    )
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (tenant_id, is_admin, revoked) = old.ok_or(KeyError::UnknownKey(key_id))?;
    if revoked {
        return Err(KeyError::AlreadyRevoked(key_id));
    }
    let (new_id, key) = insert_key(&mut tx, tenant_id, is_admin).await?;
    // A key already on its way out does not get a longer life from a rotation.
    sqlx::query(
        "UPDATE api_keys SET revoked_at = least(coalesce(revoked_at, 'infinity'), now() + make_interval(secs => $2))
          WHERE id = $1",
    )
    .bind(key_id)
    .bind(grace.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::warn!(old_key_id = %key_id, new_key_id = %new_id, grace_s = grace.as_secs(), "API key rotated");
    Ok(RotatedKey {
        key_id: new_id,
        tenant_id,
        key,
    })
}

/// `keys list` output: one line per key, aligned columns, no secrets.
pub fn render_table(keys: &[KeyInfo], now: DateTime<Utc>) -> String {
    let header = [
        "ID", "TENANT", "TIER", "PREFIX", "ADMIN", "CREATED", "STATE",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|k| {
            [
                k.id.to_string(),
                k.tenant.clone(),
                k.tier.clone(),
                format!("{}…", k.prefix),
                if k.is_admin { "yes" } else { "no" }.to_string(),
                k.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                k.state(now),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
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
