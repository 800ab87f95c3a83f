//! The scan detail page's POST actions: retry, compare routes, cancel,
//! redeliver a webhook.
//! Each checks the CSRF token (`CsrfForm`) and that the session may see the
//! scan, then calls the code the public API uses for the same thing.

use axum::extract::{Path, State};
use axum::response::Redirect;
use protocol::{Route, Tier};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::console::csrf::CsrfForm;
use crate::console::error::ConsoleError;
use crate::console::scan_detail::owner_and_row;
use crate::console::session::Session;
use crate::rate_limit::Action;
use crate::state::AppState;
use crate::store::{self, CancelOutcome, ScanRow};

/// A form that creates a scan: its nonce names the click.
#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    nonce: String,
}

impl RetryForm {
    /// The new scan's idempotency key, so a double click creates one scan.
    fn idempotency_key(&self, action: &str, scan_id: Uuid) -> Result<String, ConsoleError> {
        if self.nonce.len() != 32 || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConsoleError::BadRequest(format!(
                "the {action} form is malformed; reload the page"
            )));
        }
        Ok(format!(
            "console-{action}-{}-{}",
            scan_id.simple(),
            self.nonce
        ))
    }
}

/// The scan's owner and row, if the session may see it.
async fn visible(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<(Uuid, ScanRow), ConsoleError> {
    let scan_id = super::scan_id(id)?;
    let (owner, _, row) = owner_and_row(state.pool(), session.tenant_scope(), scan_id)
        .await?
        .ok_or(ConsoleError::NotFound("scan"))?;
    Ok((owner, row))
}

/// The submission that would create this scan again, as a `POST /v1/scans` body.
pub fn resubmission(row: &ScanRow) -> Value {
    let mut body = Map::new();
    body.insert("kind".into(), row.kind.clone().into());
    for field in ["source_url", "upload_id"] {
        if let Some(value) = row.input.get(field).filter(|v| !v.is_null()) {
            body.insert(field.into(), value.clone());
        }
    }
    if let Some(params) = row
        .input
        .get("params")
        .filter(|p| p.as_object().is_some_and(|p| !p.is_empty()))
    {
        body.insert("params".into(), params.clone());
    }
    if let Some(item_type) = &row.item_type {
        body.insert("item_type".into(), item_type.clone().into());
    }
    if let Some(url) = &row.callback_url {
        body.insert("callback_url".into(), url.clone().into());
    }
    if row.metadata.as_object().is_some_and(|m| !m.is_empty()) {
        body.insert("metadata".into(), row.metadata.clone());
    }
    Value::Object(body)
}

/// Submits the scan's input again as a new scan of the same tenant (see
/// [`resubmit`]). The form's nonce makes the idempotency key, so a double
/// click creates one scan.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, form): CsrfForm<RetryForm>,
) -> Result<Redirect, ConsoleError> {
    let (owner, row) = visible(&state, &session, &id).await?;
    let idempotency_key = form.idempotency_key("retry", row.id)?;
    let to = resubmit(&state, owner, &row, &idempotency_key, None).await?;
    record_resubmission(&state, row.id, to, "retried", &session.actor()).await?;
    tracing::info!(from = %row.id, %to, by = %session.actor(), "console: scan retried");
    Ok(Redirect::to(&format!("/ui/scans/{to}?done=retried")))
}

/// Runs the scan's input again on the other route (CPU ↔ GPU) and opens the
/// two side by side (seed 002's "compare results CPU vs GPU" step). The new
/// scan goes to that route whatever the routing policy says, and is computed
/// even where the result cache holds this input's result, so its result and
/// timings are the other route's own. The GPU queue's fallback still
/// applies: a comparison that waited past `GPU_MAX_WAIT` runs on CPU, and
/// the page says so with its route reason.
pub async fn compare(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, form): CsrfForm<RetryForm>,
) -> Result<Redirect, ConsoleError> {
    let (owner, row) = visible(&state, &session, &id).await?;
    let other = match Route::parse(&row.route) {
        Some(Route::Cpu) => Route::Gpu,
        Some(Route::Gpu) => Route::Cpu,
        None => {
            return Err(ConsoleError::internal(format!(
                "bad route {:?} in database",
                row.route
            )))
        }
    };
    let idempotency_key = form.idempotency_key("compare", row.id)?;
    let to = resubmit(&state, owner, &row, &idempotency_key, Some(other)).await?;
    record_resubmission(&state, row.id, to, "compared", &session.actor()).await?;
    tracing::info!(from = %row.id, %to, route = other.as_str(), by = %session.actor(), "console: scan compared on the other route");
    Ok(Redirect::to(&format!("/ui/scans/{}/compare/{to}", row.id)))
}

/// Submits `row`'s input again as a new scan of its tenant `owner`, through
/// `scans::submit_scan` (validation, in-flight cap, routing, outbox) and the
/// tenant's submit rate limit; the same path `POST /v1/scans` takes. The
/// idempotency key makes a repeated click return the same new scan.
/// `comparison` forces the route (see [`compare`]).
pub async fn resubmit(
    state: &AppState,
    owner: Uuid,
    row: &ScanRow,
    idempotency_key: &str,
    comparison: Option<Route>,
) -> Result<Uuid, ConsoleError> {
    let tier: String = sqlx::query_scalar("SELECT tier FROM tenants WHERE id = $1")
        .bind(owner)
        .fetch_one(state.pool())
        .await?;
    let caller = Caller {
        tenant_id: owner,
        tier: Tier::parse(&tier)
            .ok_or_else(|| ConsoleError::internal(format!("bad tier {tier:?} in database")))?,
        is_admin: false,
    };
    state.rate_limits().check(Action::Submit, &caller)?;
    let accepted = crate::scans::submit_scan(
        state,
        &caller,
        Some(idempotency_key),
        resubmission(row),
        comparison,
    )
    .await?;
    Ok(accepted.id)
}

/// Links the two scans in their event logs, with who did it (once, also for
/// a replayed click): `from_event` (`retried`, `requeued`) on the old scan,
/// `resubmitted` on the new one; each event row has its time.
pub async fn record_resubmission(
    state: &AppState,
    from: Uuid,
    to: Uuid,
    from_event: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = state.pool().begin().await?;
    let first: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM scan_events WHERE scan_id = $1 AND event = 'resubmitted')",
    )
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    if first {
        protocol::db::record_event(
            &mut tx,
            to,
            "resubmitted",
            serde_json::json!({ "from": from, "by": actor, "via": from_event }),
        )
        .await?;
        protocol::db::record_event(
            &mut tx,
            from,
            from_event,
            serde_json::json!({ "as": to, "by": actor }),
        )
        .await?;
    }
    tx.commit().await
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(session, NoFields {}): CsrfForm<NoFields>,
) -> Result<Redirect, ConsoleError> {
    let (owner, row) = visible(&state, &session, &id).await?;
    match store::cancel_scan(state.pool(), owner, row.id).await? {
        CancelOutcome::Canceled => {
            tracing::info!(scan_id = %row.id, by = %session.actor(), "console: scan canceled");
            Ok(Redirect::to(&format!("/ui/scans/{}?done=canceled", row.id)))
        }
        CancelOutcome::NotFound => Err(ConsoleError::NotFound("scan")),
        CancelOutcome::NotCancelable(status) => Err(ConsoleError::Refused(
            axum::http::StatusCode::CONFLICT,
            format!("the scan is {status}; only queued scans can be canceled"),
        )),
    }
}

pub async fn redeliver(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
    CsrfForm(session, NoFields {}): CsrfForm<NoFields>,
) -> Result<Redirect, ConsoleError> {
    let (_, row) = visible(&state, &session, &id).await?;
    let delivery_id =
        Uuid::parse_str(&delivery_id).map_err(|_| ConsoleError::NotFound("delivery"))?;
    crate::webhooks::api::requeue_delivery(state.pool(), row.id, delivery_id).await?;
    tracing::info!(scan_id = %row.id, %delivery_id, by = %session.actor(), "console: webhook redelivery");
    Ok(Redirect::to(&format!(
        "/ui/scans/{}?done=redelivered",
        row.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resubmission_carries_the_input_not_the_outcome() {
        let row = ScanRow {
            id: Uuid::now_v7(),
            kind: "video_scan".into(),
            input: serde_json::json!({"source_url": "https://x.test/v.mp4", "upload_id": null, "params": {"downscale_max": 640}}),
            item_type: Some("comic".into()),
            callback_url: None,
            metadata: serde_json::json!({"order": 7}),
            status: "failed".into(),
            route: "gpu".into(),
            route_reason: "tier".into(),
            attempts: 3,
            worker: Some("w1".into()),
            backend: Some("cuda".into()),
            result: None,
            error_code: Some("x".into()),
            error_message: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
        };
        assert_eq!(
            resubmission(&row),
            serde_json::json!({
                "kind": "video_scan",
                "source_url": "https://x.test/v.mp4",
                "params": {"downscale_max": 640},
                "item_type": "comic",
                "metadata": {"order": 7},
            })
        );
        let probe = ScanRow {
            kind: "probe".into(),
            input: serde_json::json!({"source_url": null, "upload_id": null, "params": {}}),
            item_type: None,
            metadata: serde_json::json!({}),
            ..row
        };
        assert_eq!(resubmission(&probe), serde_json::json!({"kind": "probe"}));
    }
}
