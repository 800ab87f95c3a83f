//! CSRF protection for the console's forms.
//!
//! The session cookie is `SameSite=Strict`, which already keeps other sites'
//! forms from riding on it in current browsers; the token is the defence
//! that does not depend on the browser. It is derived from the session token
//! (HMAC-SHA256 keyed by it), so it is per session, needs no storage, and
//! cannot be computed without the `HttpOnly` cookie. Every POST form carries
//! it in the field `csrf`; a POST without it, or with another session's, is
//! refused with `403` before anything else about the request is looked at.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;

use super::error::ConsoleError;
use super::session::Session;
use crate::state::AppState;

pub const FIELD: &str = "csrf";
const PURPOSE: &[u8] = b"scanfleet console csrf v1";
/// Console forms are a few short fields.
const MAX_FORM_BYTES: usize = 16 * 1024;

fn mac(session_token: &str) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(session_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(PURPOSE);
    mac
}

/// The CSRF token of the session whose cookie holds `session_token`.
pub fn token_for(session_token: &str) -> String {
    hex::encode(mac(session_token).finalize().into_bytes())
}

/// Whether `submitted` is the session's token (compared in constant time).
fn matches(session_token: &str, submitted: &str) -> bool {
    match hex::decode(submitted) {
        Ok(bytes) => mac(session_token).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

impl Session {
    pub fn verify_csrf(&self, submitted: Option<&str>) -> Result<(), ConsoleError> {
        match submitted {
            Some(submitted) if matches(&self.token, submitted) => Ok(()),
            Some(_) => Err(ConsoleError::Forbidden(
                "the form's CSRF token does not belong to this session; reload the page and try again",
            )),
            None => Err(ConsoleError::Forbidden(
                "the form has no CSRF token; reload the page and try again",
            )),
        }
    }
}

/// Refuses a request a browser says came from another site. Browsers send
/// `Sec-Fetch-Site` on every request; a missing header (old browser, a
/// script) is left to the token check.
pub fn refuse_cross_site(headers: &HeaderMap) -> Result<(), ConsoleError> {
    match headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        Some("cross-site") | Some("same-site") => Err(ConsoleError::Forbidden(
            "this form was posted from another site",
        )),
        _ => Ok(()),
    }
}

/// A POSTed console form: the session, checked CSRF token, then the fields.
pub struct CsrfForm<T>(pub Session, pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        refuse_cross_site(&parts.headers)?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| ConsoleError::BadRequest("the form is too large or was cut off".into()))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| ConsoleError::Forbidden("the form is not URL-encoded"))?;
        let mut tokens = pairs.iter().filter(|(name, _)| name == FIELD);
        let token = match (tokens.next(), tokens.next()) {
            (Some((_, token)), None) => Some(token.as_str()),
            (None, _) => None,
            (Some(_), Some(_)) => {
                return Err(ConsoleError::Forbidden("the form has two CSRF tokens"))
            }
        };
        session.verify_csrf(token)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|error| ConsoleError::BadRequest(format!("invalid form: {error}")))?;
        Ok(CsrfForm(session, form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_session_and_checked_exactly() {
        let a = token_for("session-a");
        let b = token_for("session-b");
        assert_ne!(a, b);
        assert_eq!(a, token_for("session-a"));
        assert_eq!(a.len(), 64);
        assert!(matches("session-a", &a));
        assert!(!matches("session-a", &b));
        assert!(!matches("session-a", ""));
        assert!(!matches("session-a", &a[..62]));
        assert!(!matches("session-a", "not hex"));
        let mut flipped = a.clone();
        let last = if flipped.ends_with('0') { "1" } else { "0" };
        flipped.replace_range(63.., last);
        assert!(!matches("session-a", &flipped));
    }

    #[test]
    fn cross_site_posts_are_refused_by_fetch_metadata() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("sec-fetch-site", value.parse().unwrap());
            headers
        };
        assert!(refuse_cross_site(&headers("same-origin")).is_ok());
        assert!(refuse_cross_site(&headers("none")).is_ok());
        assert!(refuse_cross_site(&HeaderMap::new()).is_ok());
        assert!(refuse_cross_site(&headers("cross-site")).is_err());
        assert!(refuse_cross_site(&headers("same-site")).is_err());
    }
}
