//! JSON request bodies: declared as JSON, within the route's size limit, and
//! a JSON object, each refused with its own problem code.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};

use crate::problem::ApiError;

/// A request body declared as JSON (`application/json` or `application/…+json`).
/// Any other declared type is refused with 415 `unsupported_media_type`
/// before the body is read, so a JSON-looking body sent as `text/plain` (which
/// a browser may send cross-origin without a CORS preflight) is never acted
/// on. A body with no declared type is refused too unless it is empty, which
/// is how a request without a body arrives.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declared = declared_type(request.headers())?;
        let body = Bytes::from_request(request, state).await?;
        if declared.is_none() && !body.is_empty() {
            return Err(unsupported(
                "send the body with `Content-Type: application/json`",
            ));
        }
        Ok(JsonBody(body))
    }
}

fn unsupported(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        detail,
    )
}

/// The declared media type if it is JSON, None if none is declared.
fn declared_type(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(unsupported("send one Content-Type header")),
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(Some(essence))
    } else {
        Err(unsupported(format!(
            "the body must be application/json, not {essence:?}"
        )))
    }
}

/// Parses a JSON request body, which must be an object: not JSON → 400
/// `malformed_json`, any other JSON value → 422 `invalid_body`. (serde's
/// derived structs would also take an array, fields by position; the API
/// documents objects only, so that is refused here.)
pub fn parse_json_object(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("request body is not JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// [`parse_json_object`] into `T`: an object of the wrong shape → 422 `invalid_body`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_value(parse_json_object(body)?)
        .map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))
}

/// An optional JSON object body: empty or `null` (which the OpenAPI document
/// declares valid for an optional body) give `T::default()`.
pub fn parse_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Null) => Ok(T::default()),
        _ => parse_json(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(value: &str) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        declared_type(&headers)
    }

    #[test]
    fn only_json_media_types_are_taken() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(declared(ok).unwrap().is_some(), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; b=x",
            "",
        ] {
            let error = declared(refused).unwrap_err();
            assert_eq!(
                (error.status, error.code),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            );
        }
        assert!(declared_type(&HeaderMap::new()).unwrap().is_none());
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Options {
        n: Option<u32>,
    }

    #[test]
    fn an_optional_body_may_be_empty_or_null() {
        assert_eq!(
            parse_optional_json::<Options>(b"").unwrap(),
            Options::default()
        );
        assert_eq!(
            parse_optional_json::<Options>(b" null ").unwrap(),
            Options::default()
        );
        assert_eq!(
            parse_optional_json::<Options>(br#"{"n": 2}"#).unwrap(),
            Options { n: Some(2) }
        );
        assert_eq!(
            parse_optional_json::<Options>(b"[1]").unwrap_err().code,
            "invalid_body"
        );
        assert_eq!(
            parse_optional_json::<Options>(b"nul").unwrap_err().code,
            "malformed_json"
        );
    }
}
