//! `GET /ui/scans/{id}/artifacts/{n}`: the n-th image the scan's result
//! lists, from the blob store (local directory or S3 alike), to a session
//! that may see the scan.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::console::artifacts;
use crate::console::error::ConsoleError;
use crate::console::scan_detail::owner_and_row;
use crate::console::session::Session;
use crate::state::AppState;

pub async fn serve(
    State(state): State<AppState>,
    session: Session,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let scan_id = super::scan_id(&id)?;
    let (owner, _, row) = owner_and_row(state.pool(), session.tenant_scope(), scan_id)
        .await?
        .ok_or(ConsoleError::NotFound("scan"))?;
    let index: usize = index
        .parse()
        .map_err(|_| ConsoleError::NotFound("artifact"))?;
    let artifact = row
        .result
        .as_ref()
        .map(|result| artifacts::listed(result, owner))
        .and_then(|listed| listed.into_iter().nth(index))
        .ok_or(ConsoleError::NotFound("artifact"))?;
    let bytes = match state.blobs().get(&artifact.path).await {
        Ok(bytes) => bytes,
        Err(protocol::blob::BlobError::NotFound { .. }) => {
            return Err(ConsoleError::NotFound("artifact"))
        }
        Err(error) => return Err(ConsoleError::internal(error)),
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, artifact.content_type),
            // Artifacts never change once written; private: they are a tenant's.
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}
