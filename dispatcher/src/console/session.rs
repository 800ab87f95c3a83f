//! Console logins: an API key is exchanged once for a random session token
//! kept in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`. The
//! database keeps only the token's SHA-256 (as for API keys), so a leaked
//! table opens no session. A session ends at its expiry, at logout, or as
//! soon as the key it was opened with is revoked.

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use protocol::Tier;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ConsoleError;
use crate::auth::{Caller, KeyOwner};
use crate::state::AppState;

pub const COOKIE_NAME: &str = "sf_console";
const TOKEN_BYTES: usize = 32;

/// A logged-in operator, for the length of one request.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub caller: Caller,
    pub tenant_name: String,
    /// The first characters of the key the session was opened with.
    pub key_prefix: String,
    pub expires_at: DateTime<Utc>,
    /// The cookie's token, needed to derive the CSRF token; never rendered.
    pub(super) token: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.caller.is_admin
    }

    /// The tenant whose data this session may see; `None` for an admin,
    /// who sees every tenant.
    pub fn tenant_scope(&self) -> Option<Uuid> {
        (!self.caller.is_admin).then_some(self.caller.tenant_id)
    }

    /// The CSRF token every form of this session must send back.
    pub fn csrf_token(&self) -> String {
        super::csrf::token_for(&self.token)
    }

    /// Who did it, for audit fields such as `routing_policy.updated_by`.
    pub fn actor(&self) -> String {
        format!(
            "console: tenant {} (key {}…)",
            self.tenant_name, self.key_prefix
        )
    }
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Opens a session for a key that was just checked; returns the cookie that
/// carries it. Expired sessions of every user are swept on the way (logins
/// are rare, and the expiry index makes the sweep cheap).
pub async fn open(state: &AppState, owner: &KeyOwner) -> Result<HeaderValue, ConsoleError> {
    let ttl = state.config().console_session_ttl;
    let token = new_token();
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
        .execute(state.pool())
        .await?;
    sqlx::query(
        r#"INSERT INTO console_sessions (id, token_sha256, api_key_id, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))"#,
    )
    .bind(Uuid::now_v7())
    .bind(hash_token(&token))
    .bind(owner.key_id)
    .bind(ttl.as_secs_f64())
    .execute(state.pool())
    .await?;
    Ok(cookie(state, &token, ttl.as_secs()))
}

/// Ends the session (logout); returns the cookie that clears it.
pub async fn close(state: &AppState, session: &Session) -> Result<HeaderValue, ConsoleError> {
    sqlx::query("DELETE FROM console_sessions WHERE id = $1")
        .bind(session.id)
        .execute(state.pool())
        .await?;
    Ok(cookie(state, "", 0))
}

/// `Set-Cookie` for `token` with `Max-Age` seconds (0 clears it). `Secure`
/// unless the deployment serves the console over plain http.
fn cookie(state: &AppState, token: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config().console_secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{COOKIE_NAME}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&value).expect("token is URL-safe base64")
}

/// The session token from the request's cookies, if there is exactly one.
fn token_from(parts: &Parts) -> Option<String> {
    let mut found = None;
    for header in parts.headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == COOKIE_NAME {
                    if found.is_some() {
                        // Two session cookies (e.g. one planted for a parent
                        // path): trust neither.
                        return None;
                    }
                    found = Some(value.to_string());
                }
            }
        }
    }
    found.filter(|token| {
        !token.is_empty()
            && token.len() <= 64
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    tenant_id: Uuid,
    tenant_name: String,
    tier: String,
    is_admin: bool,
    key_prefix: String,
    expires_at: DateTime<Utc>,
}

/// The session a token names, if it is valid now.
pub async fn lookup(state: &AppState, token: &str) -> Result<Option<Session>, ConsoleError> {
    let row: Option<SessionRow> = sqlx::query_as(
        r#"SELECT s.id, t.id AS tenant_id, t.name AS tenant_name, t.tier, k.is_admin,
                  k.key_prefix, s.expires_at
             FROM console_sessions s
             JOIN api_keys k ON k.id = s.api_key_id
             JOIN tenants t ON t.id = k.tenant_id
            WHERE s.token_sha256 = $1 AND s.expires_at > now()
              AND (k.revoked_at IS NULL OR k.revoked_at > now())"#,
    )
    .bind(hash_token(token))
    .fetch_optional(state.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tier = Tier::parse(&row.tier)
        .ok_or_else(|| ConsoleError::internal(format!("bad tier {:?} in database", row.tier)))?;
    Ok(Some(Session {
        id: row.id,
        caller: Caller {
            tenant_id: row.tenant_id,
            tier,
            is_admin: row.is_admin,
        },
        tenant_name: row.tenant_name,
        key_prefix: row.key_prefix,
        expires_at: row.expires_at,
        token: token.to_string(),
    }))
}

impl Session {
    /// Whether this session is still valid (for long-lived SSE streams).
    pub async fn still_valid(&self, state: &AppState) -> Result<bool, ConsoleError> {
        Ok(lookup(state, &self.token).await?.is_some())
    }
}

/// Every console route but the login page takes a `Session`; without a valid
/// one the answer is a redirect to the login page.
impl FromRequestParts<AppState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let token = token_from(parts).ok_or(ConsoleError::LoginRequired)?;
        lookup(state, &token)
            .await?
            .ok_or(ConsoleError::LoginRequired)
    }
}

/// The session if the request has a valid one (the login page uses it to
/// skip the form).
pub async fn optional(parts: &Parts, state: &AppState) -> Result<Option<Session>, ConsoleError> {
    match token_from(parts) {
        Some(token) => lookup(state, &token).await,
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cookies: &[&str]) -> Parts {
        let mut request = axum::http::Request::builder();
        for cookie in cookies {
            request = request.header(COOKIE, *cookie);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_token_comes_from_exactly_one_well_formed_cookie() {
        assert_eq!(
            token_from(&parts(&["a=1; sf_console=abc-_9; b=2"])).as_deref(),
            Some("abc-_9")
        );
        assert_eq!(
            token_from(&parts(&["a=1", "sf_console=tok"])).as_deref(),
            Some("tok")
        );
        assert_eq!(token_from(&parts(&[])), None);
        assert_eq!(token_from(&parts(&["sf_console="])), None);
        assert_eq!(token_from(&parts(&["sf_console=a b"])), None);
        assert_eq!(token_from(&parts(&["sf_console=<script>"])), None);
        assert_eq!(token_from(&parts(&["sf_console=a; sf_console=b"])), None);
        assert_eq!(token_from(&parts(&["xsf_console=a"])), None);
    }

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
