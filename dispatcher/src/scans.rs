//! `/v1/scans`: submit, read, list and cancel scans.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use protocol::netguard::Refusal;
use protocol::{Route, RouteReason, ScanJob, ScanKind, ScanMessage, ScanStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::{parse_json_object, JsonBody};
use crate::problem::{ApiError, Problem};
use crate::rate_limit::{check_in_flight, Allowed, Submit};
use crate::routing;
use crate::state::AppState;
use crate::store::{self, CancelOutcome, Inserted, ScanRow};

const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_ITEM_TYPE_LEN: usize = 64;
const MAX_URL_LEN: usize = 2048;
/// A probe may hold its worker for at most this long (synthetic monitoring of
/// slow paths, and the tests that kill a worker mid-scan).
pub const MAX_PROBE_HOLD_MS: u64 = 60_000;

/// A scan submission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitScan {
    /// `probe`, `video_scan` (a video) or `item_crop` (a JPEG, PNG or WebP
    /// photo). A string here (not the enum) so that an unknown kind gets its
    /// own problem code instead of a generic parse error.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// Where the worker downloads the input from (https; http only where
    /// allowed): a public address, checked at submit and again at download.
    /// `video_scan` and `item_crop` take exactly one of `source_url` and
    /// `upload_id`; `probe` takes neither.
    #[schema(format = "uri", max_length = 2048, pattern = r"^[^\u0000]*$")]
    pub source_url: Option<String>,
    /// An upload made with `POST /v1/uploads`.
    pub upload_id: Option<Uuid>,
    /// What is scanned, e.g. `trading_card`, `comic`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\u0000]*$")]
    pub item_type: Option<String>,
    /// Where the completion webhook goes, besides the tenant's endpoints.
    #[schema(format = "uri", max_length = 2048, pattern = r"^[^\u0000]*$")]
    pub callback_url: Option<String>,
    /// Free-form object stored with the scan and returned as is (≤ 16 KiB).
    pub metadata: Option<Map<String, Value>>,
    /// Kind-specific parameters, e.g. `{"hold_ms": 100}` for a probe.
    pub params: Option<Map<String, Value>>,
}

/// `kind` in the OpenAPI document: the protocol's list of kinds, so the
/// document cannot fall behind when a kind is added.
fn kind_schema() -> utoipa::openapi::Object {
    names_schema(
        "What the scan does.",
        ScanKind::ALL.iter().map(|kind| kind.as_str()),
    )
}

fn status_schema() -> utoipa::openapi::Object {
    names_schema(
        "Only scans in this status.",
        ScanStatus::ALL.iter().map(|status| status.as_str()),
    )
}

fn names_schema<'a>(
    description: &str,
    names: impl Iterator<Item = &'a str>,
) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .description(Some(description))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanError {
    pub code: String,
    pub message: String,
}

/// A scan as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanView {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    /// `cpu` or `gpu`.
    pub route: String,
    /// Why it took that route: `mode`, `tier`, `canary`, `backlog`, `default`,
    /// `gpu_timeout_fallback`, `gpu_failure_fallback`, or `compare` (run again
    /// on the other route from the console, to compare).
    pub route_reason: String,
    pub input: Value,
    pub item_type: Option<String>,
    pub callback_url: Option<String>,
    pub metadata: Value,
    pub attempts: i32,
    pub worker: Option<String>,
    pub backend: Option<String>,
    /// The worker's result once the scan succeeded. For `video_scan`:
    /// `report.item` (the item's quad on a golden frame, or null with
    /// `report.no_item_reason`: `no_outline`, `item_too_small` or
    /// `edges_not_measured`), `report.defects` and `report.scores`.
    /// The grade in `report.scores` is an estimate, not a grading service's
    /// grade: each sub-grade is `10 - 9 * penalty` (penalty clamped to 0..1):
    /// centering from the worse of the left/right and top/bottom border
    /// shares (55/45 or better is 10, 90/10 or worse is 1), corners and edges
    /// from the severities of the wear found there, surface from half the
    /// summed severity of scratches, creases and stains; `overall` is
    /// 0.25 centering + 0.25 corners + 0.2 edges + 0.3 surface, capped at the
    /// weakest sub-grade + 1.5 and rounded. It is calibrated against rendered
    /// cards with known defects and centering (`bench/vision/eval/video`),
    /// not against human graders.
    pub result: Option<Value>,
    pub error: Option<ScanError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ScanView {
    /// What the worker says the scan cost (`result.cost_usd`), once it has a result.
    pub fn cost_usd(&self) -> Option<f64> {
        self.result.as_ref()?.get("cost_usd")?.as_f64()
    }
}

impl From<ScanRow> for ScanView {
    fn from(row: ScanRow) -> Self {
        let error = row.error_code.map(|code| ScanError {
            code,
            message: row.error_message.unwrap_or_default(),
        });
        ScanView {
            id: row.id,
            kind: row.kind,
            status: row.status,
            route: row.route,
            route_reason: row.route_reason,
            input: row.input,
            item_type: row.item_type,
            callback_url: row.callback_url,
            metadata: row.metadata,
            attempts: row.attempts,
            worker: row.worker,
            backend: row.backend,
            result: row.result,
            error,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}

/// The answer to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub status: String,
    pub route: String,
    pub route_reason: String,
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(|_| {
            ApiError::bad_request("invalid_header", format!("{name} must be visible ASCII"))
        }),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "duplicate_header",
            format!("send at most one {name} header"),
        )),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(key) = single_header(headers, "idempotency-key")? else {
        return Ok(None);
    };
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(Some(key))
}

/// Refuses a `source_url` the worker would refuse to fetch, so the client
/// hears at once instead of from a failed scan: plain http unless allowed,
/// private or metadata addresses in any spelling, and names that resolve to
/// them are 422 `source_url_refused`; malformed or non-http(s) URLs are 422
/// `invalid_url`. The worker checks again, pinned, when it downloads.
async fn check_source_url(state: &AppState, raw: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::unprocessable("invalid_url", format!("source_url: {why}"));
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("too long"));
    }
    // Not an http(s) URL at all: malformed input. Refused by the policy: a
    // well-formed URL that names where scans may not fetch from.
    let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("must be an http(s) URL with a host"));
    }
    match state
        .config()
        .source_policy()
        .check_at_submit(raw, crate::webhooks::api::URL_LOOKUP_PATIENCE)
        .await
    {
        Ok(_) => Ok(()),
        Err(Refusal::Invalid(why)) => Err(invalid(&why)),
        Err(refusal) => Err(ApiError::unprocessable(
            "source_url_refused",
            format!("source_url: {refusal}"),
        )),
    }
}

/// Validates the kind-specific parameters; returns them as stored.
fn check_params(kind: ScanKind, params: Option<Map<String, Value>>) -> Result<Value, ApiError> {
    let params = params.unwrap_or_default();
    match kind {
        ScanKind::Probe => {
            for (name, value) in &params {
                match (name.as_str(), value.as_u64()) {
                    ("hold_ms", Some(ms)) if ms <= MAX_PROBE_HOLD_MS => {}
                    ("hold_ms", _) => {
                        return Err(ApiError::unprocessable(
                            "invalid_params",
                            format!("params.hold_ms must be an integer 0–{MAX_PROBE_HOLD_MS}"),
                        ))
                    }
                    (other, _) => {
                        return Err(ApiError::unprocessable(
                            "invalid_params",
                            format!("probe scans take no parameter {other:?}"),
                        ))
                    }
                }
            }
        }
        ScanKind::VideoScan | ScanKind::ItemCrop => {
            for (name, value) in &params {
                match (name.as_str(), value.as_u64()) {
                    ("downscale_max", Some(px)) if (64..=4096).contains(&px) => {}
                    _ => {
                        return Err(ApiError::unprocessable(
                            "invalid_params",
                            format!(
                                "{} takes only downscale_max (64–4096); got {name:?}",
                                kind.as_str()
                            ),
                        ))
                    }
                }
            }
        }
    }
    Ok(Value::Object(params))
}

#[utoipa::path(
    post, path = "/v1/scans", tag = "scans",
    request_body = SubmitScan,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body return the same scan; a different body is a 409")),
    responses(
        (status = 202, description = "Accepted; poll the Location or wait for the webhook", body = Accepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's submit rate or in-flight cap; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    allowed: Allowed<Submit>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let raw = parse_json_object(&body)?;
    let accepted = submit_scan(&state, &allowed.caller, idempotency_key, raw, None).await?;
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/scans/{}", accepted.id))],
        Json(accepted),
    )
        .into_response();
    response.headers_mut().extend(allowed.headers());
    Ok(response)
}

/// Validates a submission (a JSON object), routes it and stores it with its
/// outbox row: everything `POST /v1/scans` does after authentication and the
/// rate limit. The console's retry submits through here too, so a re-run is
/// checked and routed exactly as a new API submission would be.
/// `comparison` is the console's "compare routes": the scan goes to that
/// route (reason `compare`) whatever the policy says, and is computed even
/// where the result cache holds an identical scan's result.
pub async fn submit_scan(
    state: &AppState,
    caller: &Caller,
    idempotency_key: Option<&str>,
    raw: Value,
    comparison: Option<Route>,
) -> Result<Accepted, ApiError> {
    check_in_flight(
        state.pool(),
        caller,
        state.config().max_in_flight_scans,
        idempotency_key,
    )
    .await?;
    // serde_json's map is sorted, so this is a canonical form of the body:
    // the same submission with keys in another order is the same request.
    // PostgreSQL text and jsonb cannot hold U+0000.
    if contains_nul(&raw) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "strings must not contain U+0000",
        ));
    }
    let request_sha256 = Sha256::digest(raw.to_string().as_bytes()).to_vec();
    let request: SubmitScan = serde_json::from_value(raw)
        .map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))?;

    let kind = ScanKind::parse(&request.kind).ok_or_else(|| {
        let known: Vec<_> = ScanKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::unprocessable(
            "unknown_kind",
            format!(
                "unknown scan kind {:?}; known kinds: {}",
                request.kind,
                known.join(", ")
            ),
        )
    })?;
    let params = check_params(kind, request.params)?;
    let metadata = Value::Object(request.metadata.unwrap_or_default());
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::unprocessable(
            "metadata_too_large",
            format!("metadata must serialise to at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    if let Some(item_type) = &request.item_type {
        if item_type.is_empty() || item_type.chars().count() > MAX_ITEM_TYPE_LEN {
            return Err(ApiError::unprocessable(
                "invalid_item_type",
                format!("item_type must be 1–{MAX_ITEM_TYPE_LEN} characters"),
            ));
        }
    }
    if let Some(callback_url) = &request.callback_url {
        if callback_url.len() > MAX_URL_LEN {
            return Err(ApiError::unprocessable(
                "callback_url_refused",
                "callback_url is too long",
            ));
        }
        crate::webhooks::api::check_callback_url(state, callback_url).await?;
    }
    let upload_path = match (kind.needs_source(), &request.source_url, request.upload_id) {
        (false, None, None) => None,
        (false, _, _) => {
            return Err(ApiError::unprocessable(
                "unexpected_source",
                format!("{} scans take no source_url or upload_id", kind.as_str()),
            ))
        }
        (true, Some(source_url), None) => {
            check_source_url(state, source_url).await?;
            None
        }
        (true, None, Some(upload_id)) => {
            let upload = store::get_upload(state.pool(), caller.tenant_id, upload_id)
                .await?
                .ok_or_else(|| {
                    ApiError::unprocessable("unknown_upload", format!("no upload {upload_id}"))
                })?;
            // Uploads take any kind's largest input; the scan's kind may take less.
            if let Some(limit) = kind.max_input_bytes() {
                if upload.size_bytes as u64 > limit {
                    return Err(ApiError::unprocessable(
                        "input_too_large",
                        format!(
                            "upload {upload_id} is {} bytes; {} scans take at most {limit}",
                            upload.size_bytes,
                            kind.as_str()
                        ),
                    ));
                }
            }
            Some(upload.object_path)
        }
        (true, _, _) => {
            return Err(ApiError::unprocessable(
                "invalid_source",
                format!(
                    "{} scans need exactly one of source_url and upload_id",
                    kind.as_str()
                ),
            ))
        }
    };

    let scan_id = Uuid::now_v7();
    let (route, route_reason) = match comparison {
        Some(route) => (route, RouteReason::Compare),
        None => {
            let (policy, backlog_escalated) = routing::current(state.pool()).await?;
            routing::decide(policy, caller.tier, scan_id, backlog_escalated)
        }
    };
    let input = serde_json::json!({
        "source_url": request.source_url,
        "upload_id": request.upload_id,
        "params": params,
    });
    let message = ScanMessage::V1(ScanJob {
        scan_id,
        tenant_id: caller.tenant_id,
        kind,
        upload_path,
        source_url: request.source_url.clone(),
        params,
        route,
        submitted_at: Utc::now(),
        recompute: comparison.is_some(),
    });
    let inserted = store::insert_scan(
        state.pool(),
        store::NewScan {
            id: scan_id,
            tenant_id: caller.tenant_id,
            kind: kind.as_str(),
            input,
            item_type: request.item_type.as_deref(),
            callback_url: request.callback_url.as_deref(),
            metadata,
            route,
            route_reason,
            idempotency_key,
            request_sha256,
            message,
        },
    )
    .await?;
    let accepted = match inserted {
        Inserted::Created => {
            state.outbox_wakeup().notify_one();
            state
                .metrics()
                .scans_submitted
                .with_label_values(&[caller.tier.as_str(), route.as_str(), route_reason.as_str()])
                .inc();
            tracing::info!(%scan_id, tenant_id = %caller.tenant_id, kind = kind.as_str(), route = route.as_str(), reason = route_reason.as_str(), "scan accepted");
            // Everything the answer says was just written: no read back.
            Accepted {
                id: scan_id,
                status: ScanStatus::Queued.as_str().to_string(),
                route: route.as_str().to_string(),
                route_reason: route_reason.as_str().to_string(),
            }
        }
        Inserted::Replay {
            scan_id,
            same_request: true,
        } => {
            let row = store::get_scan(state.pool(), caller.tenant_id, scan_id)
                .await?
                .ok_or_else(|| ApiError::internal("accepted scan vanished"))?;
            Accepted {
                id: row.id,
                status: row.status,
                route: row.route,
                route_reason: row.route_reason,
            }
        }
        Inserted::Replay {
            scan_id,
            same_request: false,
        } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                format!(
                "Idempotency-Key was already used for scan {scan_id} with a different request body"
            ),
            ))
        }
    };
    Ok(accepted)
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

fn parse_scan_id(raw: &str) -> Result<Uuid, ApiError> {
    // A malformed id names no scan: answer as for any unknown scan.
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("scan"))
}

#[utoipa::path(
    get, path = "/v1/scans/{id}", tag = "scans",
    params(("id" = String, Path, description = "Scan id")),
    responses(
        (status = 200, body = ScanView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScanView>, ApiError> {
    let scan_id = parse_scan_id(&id)?;
    let row = store::get_scan(state.pool(), caller.tenant_id, scan_id)
        .await?
        .ok_or_else(|| ApiError::not_found("scan"))?;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only scans in this status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanPage {
    pub items: Vec<ScanView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/scans", tag = "scans",
    params(ListQuery),
    responses(
        (status = 200, body = ScanPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ScanPage>, ApiError> {
    let Query(query) = query?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(ScanStatus::parse(name).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown status {name:?}"))
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1–200",
        ));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(Uuid::parse_str(cursor).map_err(|_| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
        })?),
    };
    // One extra row tells whether another page follows.
    let mut rows = store::list_scans(
        state.pool(),
        caller.tenant_id,
        status.map(ScanStatus::as_str),
        before,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|row| row.id.to_string()))
        .flatten();
    Ok(Json(ScanPage {
        items: rows.into_iter().map(ScanView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    delete, path = "/v1/scans/{id}", tag = "scans",
    params(("id" = String, Path, description = "Scan id")),
    responses(
        (status = 200, description = "Canceled", body = ScanView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already running or finished", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScanView>, ApiError> {
    let scan_id = parse_scan_id(&id)?;
    match store::cancel_scan(state.pool(), caller.tenant_id, scan_id).await? {
        CancelOutcome::Canceled => {
            tracing::info!(%scan_id, tenant_id = %caller.tenant_id, "scan canceled");
            let row = store::get_scan(state.pool(), caller.tenant_id, scan_id)
                .await?
                .ok_or_else(|| ApiError::not_found("scan"))?;
            Ok(Json(row.into()))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found("scan")),
        CancelOutcome::NotCancelable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancelable",
            format!("scan is {status}; only queued scans can be canceled"),
        )),
    }
}
