//! `/ui/login` and `/ui/logout`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::key_owner;
use crate::console::csrf::{refuse_cross_site, CsrfForm};
use crate::console::error::ConsoleError;
use crate::console::layout::bare_page;
use crate::console::session;
use crate::state::AppState;

/// Longest key accepted (real keys are 35 characters).
const MAX_KEY_LEN: usize = 256;

fn login_page(error: Option<&str>) -> Markup {
    bare_page(
        "Log in",
        html! {
            main.narrow {
                div.login-box {
                    h1 { "ScanFleet console" }
                    p.muted { "Log in with an API key. A tenant key shows that tenant's scans; an admin key shows every tenant and may change routing." }
                    @if let Some(error) = error {
                        p.error-message #login-error { (error) }
                    }
                    form method="post" action="/ui/login" {
                        label for="key" { "API key" }
                        input #key type="password" name="key" autocomplete="off" required placeholder="sf_…";
                        button type="submit" { "Log in" }
                    }
                }
            }
        },
    )
}

/// Wraps the request head so a handler can ask for an optional session.
pub struct Head(Parts);

impl<S: Send + Sync> FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Head(parts.clone()))
    }
}

pub async fn form(
    State(state): State<AppState>,
    Head(parts): Head,
) -> Result<Response, ConsoleError> {
    if session::optional(&parts, &state).await?.is_some() {
        return Ok(Redirect::to("/ui").into_response());
    }
    Ok(login_page(None).into_response())
}

#[derive(Deserialize)]
pub struct Login {
    #[serde(default)]
    key: String,
}

/// There is no session to hold a CSRF token yet; a login posted from
/// another site is refused by the browser's fetch metadata, and the
/// `SameSite=Strict` cookie it would set is never sent cross-site anyway.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Result<Response, ConsoleError> {
    refuse_cross_site(&headers)?;
    let key = login.key.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(Some("Enter an API key.")),
        )
            .into_response());
    }
    let Some(owner) = key_owner(state.pool(), key).await? else {
        tracing::info!("console: login refused (unknown or revoked key)");
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(Some("Unknown or revoked API key.")),
        )
            .into_response());
    };
    let cookie = session::open(&state, &owner).await?;
    tracing::info!(tenant_id = %owner.caller.tenant_id, admin = owner.caller.is_admin, "console: login");
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    CsrfForm(session, Empty {}): CsrfForm<Empty>,
) -> Result<Response, ConsoleError> {
    let cookie = session::close(&state, &session).await?;
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
