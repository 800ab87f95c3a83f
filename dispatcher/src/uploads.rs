//! `POST /v1/uploads`: a raw body (the scan's video or photo) into the blob store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rate_limit::{Allowed, Upload};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// Pass as `upload_id` when submitting a scan.
    pub id: Uuid,
    pub size_bytes: i64,
    pub sha256: String,
    pub content_type: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/uploads", tag = "uploads",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The raw file; at most MAX_UPLOAD_BYTES"),
    responses(
        (status = 201, body = UploadView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's upload rate; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    allowed: Allowed<Upload>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = &allowed.caller;
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_upload", "the upload body is empty"));
    }
    let upload_id = Uuid::now_v7();
    let sha256 = hex::encode(Sha256::digest(&body));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let object_path = format!("uploads/{}/{upload_id}", caller.tenant_id);
    let size_bytes = body.len() as i64;
    state
        .blobs()
        .put(&object_path, body)
        .await
        .map_err(ApiError::internal)?;
    crate::store::insert_upload(
        state.pool(),
        upload_id,
        caller.tenant_id,
        &object_path,
        size_bytes,
        &sha256,
        content_type.as_deref(),
    )
    .await?;
    tracing::info!(%upload_id, tenant_id = %caller.tenant_id, size_bytes, "upload stored");
    let view = UploadView { id: upload_id, size_bytes, sha256, content_type };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().extend(allowed.headers());
    Ok(response)
}
