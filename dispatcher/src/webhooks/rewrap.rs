//! `dispatcher secrets rewrap`: every stored webhook secret sealed again
//! under the first key of `SECRETS_KEYS` (plain ones from before a key was
//! set, and ones sealed under an older key). The last step of a key
//! rotation; see [`crate::sealing`].

use sqlx::PgPool;
use uuid::Uuid;

use crate::sealing::{SealError, Sealer, SecretOwner};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Values sealed again (an endpoint's current and previous secret count apiece).
    pub resealed: u64,
    /// Values already under the first key.
    pub current: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error("SECRETS_KEYS is not set: there is no key to seal with")]
    NoKeys,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{owner:?}: {source}")]
    Sealed {
        owner: SecretOwner,
        #[source]
        source: SealError,
    },
}

/// Seals every value that needs it. Each row is updated only if it still
/// holds the value read (compare-and-set), so a secret rotated meanwhile is
/// left as the rotation wrote it; run again to pick such rows up.
pub async fn rewrap_all(pool: &PgPool, sealer: &Sealer) -> Result<Rewrapped, RewrapError> {
    if sealer.keyring().is_none() {
        return Err(RewrapError::NoKeys);
    }
    let mut done = Rewrapped::default();
    let endpoints: Vec<(Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, secret, previous_secret FROM webhook_endpoints")
            .fetch_all(pool)
            .await?;
    for (id, secret, previous) in endpoints {
        let owner = SecretOwner::Endpoint(id);
        for (column, stored) in [("secret", Some(secret)), ("previous_secret", previous)] {
            let Some(stored) = stored else { continue };
            let Some(resealed) = reseal(sealer, owner, &stored, &mut done)? else {
                continue;
            };
            // The column name comes from the list above, never from input.
            sqlx::query(&format!(
                "UPDATE webhook_endpoints SET {column} = $3 WHERE id = $1 AND {column} = $2"
            ))
            .bind(id)
            .bind(&stored)
            .bind(resealed)
            .execute(pool)
            .await?;
        }
    }
    let tenants: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, callback_secret FROM tenants WHERE callback_secret IS NOT NULL")
            .fetch_all(pool)
            .await?;
    for (id, stored) in tenants {
        let owner = SecretOwner::Tenant(id);
        if let Some(resealed) = reseal(sealer, owner, &stored, &mut done)? {
            sqlx::query(
                "UPDATE tenants SET callback_secret = $3 WHERE id = $1 AND callback_secret = $2",
            )
            .bind(id)
            .bind(&stored)
            .bind(resealed)
            .execute(pool)
            .await?;
        }
    }
    Ok(done)
}

fn reseal(
    sealer: &Sealer,
    owner: SecretOwner,
    stored: &str,
    done: &mut Rewrapped,
) -> Result<Option<String>, RewrapError> {
    if !sealer.needs_rewrap(stored) {
        done.current += 1;
        return Ok(None);
    }
    let plain = sealer
        .open(owner, stored)
        .map_err(|source| RewrapError::Sealed { owner, source })?;
    done.resealed += 1;
    Ok(Some(sealer.seal(owner, &plain)))
}
