//! `POST /v1/uploads`: a raw body (the scan's video or photo) into the blob store.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use protocol::blob::BlobWriter;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{ApiError, Problem};
use crate::rate_limit::{Allowed, Upload};
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
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &allowed.caller;
    let max = state.config().max_upload_bytes;
    // A declared length over the limit is refused before anything is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large(max));
    }
    let upload_id = Uuid::now_v7();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let object_path = format!("uploads/{}/{upload_id}", caller.tenant_id);
    let mut writer = state
        .blobs()
        .writer(&object_path)
        .await
        .map_err(ApiError::internal)?;
    let (size_bytes, sha256) = match copy_body(body, &mut writer, max).await {
        Ok((size, sha256)) if size > 0 => (size as i64, sha256),
        outcome => {
            if let Err(error) = writer.abort().await {
                tracing::warn!(%error, %upload_id, "cannot abort an unfinished upload");
            }
            return Err(outcome.err().unwrap_or_else(|| {
                ApiError::bad_request("empty_upload", "the upload body is empty")
            }));
        }
    };
    writer.finish().await.map_err(ApiError::internal)?;
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
    let view = UploadView {
        id: upload_id,
        size_bytes,
        sha256,
        content_type,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().extend(allowed.headers());
    Ok(response)
}

/// Streams the request body into `writer`, hashing it on the way: memory per
/// upload is a few parts, not the whole body (MAX_UPLOAD_BYTES × concurrent
/// uploads, as when the body was buffered). Returns its size and SHA-256.
async fn copy_body(
    body: Body,
    writer: &mut BlobWriter,
    max: usize,
) -> Result<(usize, String), ApiError> {
    let mut chunks = body.into_data_stream();
    let (mut size, mut hasher) = (0usize, Sha256::new());
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            if crate::problem::caused_by_body_timeout(&error) {
                crate::problem::body_timeout()
            } else {
                ApiError::bad_request(
                    "unreadable_body",
                    format!("the upload body could not be read: {error}"),
                )
            }
        })?;
        size += chunk.len();
        if size > max {
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        writer.write(chunk).await.map_err(ApiError::internal)?;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("an upload is at most {max} bytes (MAX_UPLOAD_BYTES)"),
    )
}
