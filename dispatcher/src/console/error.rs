//! Errors of console requests, answered as HTML pages (the API's are
//! problem+json). Messages are fixed texts or the API's own problem details,
//! never internals; internal errors are logged and shown generically.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::problem::ApiError;

#[derive(Debug)]
pub enum ConsoleError {
    /// No valid session: go to the login page.
    LoginRequired,
    Forbidden(&'static str),
    NotFound(&'static str),
    BadRequest(String),
    /// The API refused the action (conflict, rate limit, validation…): its
    /// status and problem detail, which are written for clients to read.
    Refused(StatusCode, String),
    Internal,
}

impl ConsoleError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "console: internal error");
        ConsoleError::Internal
    }

    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            ConsoleError::LoginRequired => (StatusCode::UNAUTHORIZED, "log in first".into()),
            ConsoleError::Forbidden(why) => (StatusCode::FORBIDDEN, (*why).into()),
            ConsoleError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ConsoleError::BadRequest(why) => (StatusCode::BAD_REQUEST, why.clone()),
            ConsoleError::Refused(status, why) => (*status, why.clone()),
            ConsoleError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; it has been logged".into(),
            ),
        }
    }
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        // ApiError::internal has logged the cause already.
        if error.status.is_server_error() && error.code == "internal" {
            return ConsoleError::Internal;
        }
        if error.status == StatusCode::NOT_FOUND {
            return ConsoleError::NotFound("page");
        }
        ConsoleError::Refused(error.status, error.detail)
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::LoginRequired = self {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/ui/login"));
            return response;
        }
        let (status, message) = self.status_and_message();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = layout::bare_page(
            title,
            html! {
                main.narrow {
                    h1 { (status.as_u16()) " " (title) }
                    p.error-message { (message) }
                    p { a href="/ui" { "Back to the overview" } }
                }
            },
        );
        (status, body).into_response()
    }
}
