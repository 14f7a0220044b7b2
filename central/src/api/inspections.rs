//! Inspections: search, detail, pictures, review, charge, report exports.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::InspectionKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, Role};
use super::cache::{Kind as CacheKind, detail_key, history_key};
use super::dto::{
    ChargeDto, ChargeRequest, InspectionDetail, InspectionPage, InspectionSummary,
    MarkReviewedRequest, ReviewActionDto, ReviewRequest,
};
use super::problem::Problem;
use crate::report::export::{self, Format, FrameSource, PictureError};
use crate::report::{Language, Report, ReportInput};
use crate::store::{
    Charge, Comparison, FindingDecision, FindingReview, FrameState, InspectionCursor,
    InspectionListItem, InspectionQuery, InspectionRecord, InspectionResult, InspectionReview,
    InspectionStatus, ReviewState, SortOrder,
};

/// Items per page unless `limit` says otherwise, and the most it may say.
pub(super) const DEFAULT_PAGE: u32 = 50;
pub(super) const MAX_PAGE: u32 = 200;
/// Longest note staff may write.
const MAX_NOTE: usize = 2000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/inspections", get(search))
        .route("/inspections/{id}", get(detail))
        .route(
            "/inspections/{id}/frames/{sha256}/annotated",
            get(annotated),
        )
        .route("/inspections/{id}/findings/{finding_id}/pair", get(pair))
        .route(
            "/inspections/{id}/findings/{finding_id}/review",
            post(review_finding),
        )
        .route("/inspections/{id}/review", post(mark_reviewed))
        .route("/inspections/{id}/charge", post(approve_charge))
        .route("/inspections/{id}/report/{format}", get(report_export))
}

/// `pickup` or `return`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindParam {
    Pickup,
    Return,
}

impl From<KindParam> for InspectionKind {
    fn from(k: KindParam) -> Self {
        match k {
            KindParam::Pickup => InspectionKind::Pickup,
            KindParam::Return => InspectionKind::Return,
        }
    }
}

/// An inspection's processing status.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusParam {
    Receiving,
    Queued,
    WaitingForImages,
    Processing,
    Processed,
    ImagesMissing,
    Failed,
}

impl From<StatusParam> for InspectionStatus {
    fn from(s: StatusParam) -> Self {
        match s {
            StatusParam::Receiving => InspectionStatus::Receiving,
            StatusParam::Queued => InspectionStatus::Queued,
            StatusParam::WaitingForImages => InspectionStatus::WaitingForImages,
            StatusParam::Processing => InspectionStatus::Processing,
            StatusParam::Processed => InspectionStatus::Processed,
            StatusParam::ImagesMissing => InspectionStatus::ImagesMissing,
            StatusParam::Failed => InspectionStatus::Failed,
        }
    }
}

/// `pending`: processed, not yet marked reviewed; `reviewed`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewParam {
    Pending,
    Reviewed,
}

/// A report document's format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatParam {
    Markdown,
    Html,
    Pdf,
}

impl From<FormatParam> for Format {
    fn from(f: FormatParam) -> Self {
        match f {
            FormatParam::Markdown => Format::Markdown,
            FormatParam::Html => Format::Html,
            FormatParam::Pdf => Format::Pdf,
        }
    }
}

/// Order of the results.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SortParam {
    #[default]
    Newest,
    Oldest,
}

/// Inspection search. Every given parameter narrows the result.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The plate, any spelling (`M-AB 1234` finds `MAB1234`).
    #[param(pattern = r"^[A-Za-z0-9]([A-Za-z0-9 .-]{0,14}[A-Za-z0-9])?$")]
    pub plate: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub site: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub device: Option<String>,
    pub kind: Option<KindParam>,
    pub status: Option<StatusParam>,
    pub review: Option<ReviewParam>,
    /// Started at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Started before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub sort: Option<SortParam>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same sort).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,512}$")]
    pub cursor: Option<String>,
}

/// Canonical plate form: `A-Z0-9`, upper case, the key the worker stores
/// (`inspection_core::plate`): separators dropped, lookalikes mapped and
/// diacritics folded (`TÜ-AB 123` is `TUAB123`, not `TAB123`). A character
/// that is none of these is refused rather than dropped, so no spelling
/// names another vehicle.
pub(super) fn canonical_plate(plate: &str) -> Result<String, Problem> {
    use inspection_core::plate::{PlateError, normalize, try_candidates};
    match try_candidates(plate) {
        Ok(_) | Err(PlateError::Empty) => {}
        Err(e) => {
            return Err(Problem::bad_request(format!(
                "plate {:?}: {e}",
                plate.chars().take(40).collect::<String>()
            )));
        }
    }
    let canonical = normalize(plate);
    if canonical.is_empty() || canonical.len() > 16 {
        return Err(Problem::bad_request(format!(
            "plate {:?}: 1 to 16 letters and digits",
            plate.chars().take(40).collect::<String>()
        )));
    }
    Ok(canonical)
}

#[derive(Serialize, Deserialize)]
struct CursorData {
    at: DateTime<Utc>,
    id: Uuid,
    /// `n` newest first, `o` oldest first.
    o: char,
}

fn order_char(order: SortOrder) -> char {
    match order {
        SortOrder::NewestFirst => 'n',
        SortOrder::OldestFirst => 'o',
    }
}

pub(super) fn encode_cursor(c: InspectionCursor, order: SortOrder) -> String {
    let data = CursorData {
        at: c.at,
        id: c.id,
        o: order_char(order),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

pub(super) fn decode_cursor(cursor: &str, order: SortOrder) -> Result<InspectionCursor, Problem> {
    let bad = || Problem::bad_request("cursor: not a cursor this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let data: CursorData = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if data.o != order_char(order) {
        return Err(Problem::bad_request(
            "cursor: it belongs to the other sort order",
        ));
    }
    Ok(InspectionCursor {
        at: data.at,
        id: data.id,
    })
}

/// Runs a query for one page (one more than the page, to know whether
/// there is a next one).
pub(super) async fn page(
    state: &AppState,
    mut query: InspectionQuery,
) -> Result<InspectionPage, Problem> {
    let limit = query.limit;
    query.limit = limit + 1;
    let mut items = state.store.search_inspections(&query).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| encode_cursor(last.cursor(), query.order))
    } else {
        None
    };
    Ok(InspectionPage {
        items: items.iter().map(InspectionSummary::from).collect(),
        next_cursor,
    })
}

pub(super) fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!("limit {n}: 1 to {MAX_PAGE}"))),
    }
}

/// Search inspections.
#[utoipa::path(
    get,
    path = "/api/v1/inspections",
    tag = "inspections",
    params(SearchParams),
    responses(
        (status = 200, description = "A page of inspections", body = InspectionPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<SearchParams>,
) -> Result<Json<InspectionPage>, Problem> {
    caller.require(Role::Viewer)?;
    let site = params
        .site
        .as_deref()
        .map(|s| SiteId::new(s).map_err(|e| Problem::bad_request(format!("site: {e}"))))
        .transpose()?;
    let device = params
        .device
        .as_deref()
        .map(|d| DeviceId::new(d).map_err(|e| Problem::bad_request(format!("device: {e}"))))
        .transpose()?;
    if let (Some(from), Some(to)) = (params.from, params.to)
        && from >= to
    {
        return Err(Problem::bad_request("from must be before to"));
    }
    let order = match params.sort.unwrap_or_default() {
        SortParam::Newest => SortOrder::NewestFirst,
        SortParam::Oldest => SortOrder::OldestFirst,
    };
    let query = InspectionQuery {
        id: None,
        plate: params.plate.as_deref().map(canonical_plate).transpose()?,
        sites: caller.sites.narrow(site.as_ref()),
        device,
        kind: params.kind.map(Into::into),
        status: params.status.map(Into::into),
        review: params.review.map(|r| match r {
            ReviewParam::Pending => ReviewState::Pending,
            ReviewParam::Reviewed => ReviewState::Reviewed,
        }),
        from: params.from,
        to: params.to,
        order,
        after: params
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, order))
            .transpose()?,
        limit: page_limit(params.limit)?,
    };
    Ok(Json(page(&state, query).await?))
}

/// The inspection as the caller may see it: "not found" when it does not
/// exist or belongs to a site outside the caller's scope.
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<InspectionListItem, Problem> {
    let query = InspectionQuery {
        id: Some(id),
        sites: caller.sites.narrow(None),
        limit: 1,
        ..InspectionQuery::default()
    };
    state
        .store
        .search_inspections(&query)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Problem::not_found(format!("no inspection {id}")))
}

/// The full record and result of an inspection the caller may see.
async fn processed(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<(InspectionRecord, InspectionResult), Problem> {
    let item = visible(state, caller, id).await?;
    let result = state.store.inspection_result(id).await?.ok_or_else(|| {
        Problem::not_found(format!(
            "inspection {id} is not processed yet (status {})",
            item.record.status.as_str()
        ))
    })?;
    Ok((item.record, result))
}

/// One inspection: frames, findings, plate, comparison, report, review.
#[utoipa::path(
    get,
    path = "/api/v1/inspections/{id}",
    tag = "inspections",
    params(("id" = Uuid, Path, description = "Inspection id")),
    responses(
        (status = 200, description = "The inspection", body = InspectionDetail),
        (status = 404, description = "No such inspection (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> Result<Json<InspectionDetail>, Problem> {
    caller.require(Role::Viewer)?;
    let key = detail_key(id);
    let lookup = state.cache.get(CacheKind::Detail, &key, DETAIL_FIELD).await;
    if let Some(bytes) = lookup.value {
        match serde_json::from_slice::<InspectionDetail>(&bytes) {
            Ok(detail) => {
                let allowed =
                    SiteId::new(&detail.summary.site).is_ok_and(|site| caller.sites.allows(&site));
                return if allowed {
                    Ok(Json(detail))
                } else {
                    Err(Problem::not_found(format!("no inspection {id}")))
                };
            }
            Err(e) => tracing::warn!(error = %e, %key, "unreadable cache entry; reading the store"),
        }
    }
    let item = visible(&state, &caller, id).await?;
    let result = state.store.inspection_result(id).await?;
    let report = state.store.reports(id).await?.into_iter().next();
    let review = state.store.review_record(id).await?;
    let detail = InspectionDetail::new(&item, result.as_ref(), report.as_ref(), &review);
    // Only once processing has finished: before that the worker changes
    // it, and only staff writes (which invalidate) change it after.
    if matches!(
        item.record.status,
        InspectionStatus::Processed | InspectionStatus::ImagesMissing | InspectionStatus::Failed
    ) && let Ok(bytes) = serde_json::to_vec(&detail)
    {
        state
            .cache
            .put(CacheKind::Detail, &key, DETAIL_FIELD, &bytes, lookup.ticket)
            .await;
    }
    Ok(Json(detail))
}

/// The field of a detail entry (a new layout of the DTO gets a new one).
const DETAIL_FIELD: &str = "v1";

/// After a committed write: the inspection's detail and its vehicle's
/// history are stale.
pub(super) async fn invalidate(state: &AppState, item: &InspectionListItem) {
    let mut keys = vec![detail_key(item.record.id)];
    if let Some(plate) = &item.record.plate {
        keys.push(history_key(plate));
    }
    state.cache.invalidate(&keys).await;
}

/// The language pictures are labelled in: the latest report's.
async fn language(state: &AppState, id: Uuid) -> Result<(Language, Option<Report>), Problem> {
    let report = state.store.reports(id).await?.into_iter().next();
    Ok((report.as_ref().map_or(Language::En, |r| r.language), report))
}

async fn fetch_frame(state: &AppState, sha256: &str) -> Result<Vec<u8>, Problem> {
    match state.images.frame(sha256).await {
        Ok(bytes) => Ok(bytes),
        Err(export::ExportError::FrameNotFound(_)) => Err(Problem::not_found(format!(
            "frame {sha256} is not in the object store (never uploaded, or erased)"
        ))),
        Err(export::ExportError::BadFrameId(_)) => {
            Err(Problem::bad_request("not a SHA-256 frame id"))
        }
        Err(e) => {
            tracing::error!(error = %e, "object store read failed");
            Err(Problem::unavailable("the image store is unavailable"))
        }
    }
}

fn jpeg_response(jpeg: export::Jpeg) -> Response {
    let mut response = jpeg.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    // Decisions recolour the boxes: short, private caching only.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    response
}

fn picture_problem(e: PictureError) -> Problem {
    match e {
        PictureError::Unreadable(reason) => Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "frame-unreadable",
            "Stored frame cannot be decoded",
            reason,
        ),
        PictureError::Encode(reason) => Problem::internal(format!("encoding failed: {reason}")),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PictureError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Problem::internal(format!("picture task failed: {e}")))?
        .map_err(picture_problem)
}

/// A frame with its findings drawn (boxes in their status colour, tags such
/// as "F1 dent 87%" in the report's language).
#[utoipa::path(
    get,
    path = "/api/v1/inspections/{id}/frames/{sha256}/annotated",
    tag = "inspections",
    params(
        ("id" = Uuid, Path, description = "Inspection id"),
        ("sha256" = String, Path, description = "The frame's SHA-256 (lowercase hex)", pattern = r"^[0-9a-f]{64}$"),
    ),
    responses(
        (status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>),
        (status = 404, description = "No such inspection, frame, or the frame is not stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The stored frame does not decode", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn annotated(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, sha256)): Path<(Uuid, String)>,
) -> Result<Response, Problem> {
    caller.require(Role::Viewer)?;
    let (record, result) = processed(&state, &caller, id).await?;
    if !result.frames.iter().any(|f| f.sha256 == sha256) {
        return Err(Problem::not_found(format!(
            "inspection {id} has no frame {}",
            sha256.chars().take(64).collect::<String>()
        )));
    }
    let (language, _) = language(&state, id).await?;
    let bytes = fetch_frame(&state, &sha256).await?;
    let input = ReportInput::new(&record, &result, None, language);
    let options = state.export.clone();
    let jpeg = blocking(move || {
        let on_frame: Vec<_> = input
            .findings
            .iter()
            .filter(|f| f.sha256 == sha256)
            .collect();
        export::annotated_jpeg(&bytes, &on_frame, language, &options)
    })
    .await?;
    Ok(jpeg_response(jpeg))
}

/// The pickup beside the return for one finding: the return frame with the
/// finding drawn, the pickup frame of the same position (the one with the
/// matched pickup finding, when it has one) with that finding drawn.
#[utoipa::path(
    get,
    path = "/api/v1/inspections/{id}/findings/{finding_id}/pair",
    tag = "inspections",
    params(
        ("id" = Uuid, Path, description = "Inspection id"),
        ("finding_id" = Uuid, Path, description = "Finding id"),
    ),
    responses(
        (status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>),
        (status = 404, description = "No such inspection or finding, the return was not compared with a pickup, or a frame is not stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A stored frame does not decode", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn pair(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, finding_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, Problem> {
    caller.require(Role::Viewer)?;
    let (record, result) = processed(&state, &caller, id).await?;
    let finding = result
        .findings
        .iter()
        .find(|f| f.id == finding_id)
        .ok_or_else(|| Problem::not_found(format!("inspection {id} has no finding {finding_id}")))?
        .clone();
    let Comparison::Compared {
        pickup_inspection_id,
        ..
    } = result.comparison
    else {
        return Err(Problem::not_found(format!(
            "inspection {id} was not compared with a pickup"
        )));
    };
    // The pickup may be at another site than the caller's: the pair shows
    // only this vehicle's frames, which the return already shows.
    let pickup_record = state.store.inspection(pickup_inspection_id).await?;
    let pickup_result = state.store.inspection_result(pickup_inspection_id).await?;
    let (Some(pickup_record), Some(pickup_result)) = (pickup_record, pickup_result) else {
        return Err(Problem::not_found(format!(
            "the pickup {pickup_inspection_id} is no longer stored"
        )));
    };
    let matched = finding
        .matched_finding
        .and_then(|m| pickup_result.findings.iter().find(|f| f.id == m));
    let pickup_sha = match matched {
        Some(m) => m.sha256.clone(),
        None => pickup_result
            .frames
            .iter()
            .filter(|f| f.position == finding.position && f.state == FrameState::Ok)
            .min_by_key(|f| f.rank)
            .map(|f| f.sha256.clone())
            .ok_or_else(|| {
                Problem::not_found(format!(
                    "the pickup has no usable {} frame",
                    finding.position
                ))
            })?,
    };
    let (language, _) = language(&state, id).await?;
    let ret_bytes = fetch_frame(&state, &finding.sha256).await?;
    let pickup_bytes = fetch_frame(&state, &pickup_sha).await?;
    let ret_input = ReportInput::new(&record, &result, None, language);
    let pickup_input = ReportInput::new(&pickup_record, &pickup_result, None, language);
    let matched_id = matched.map(|m| m.id);
    let times = (pickup_record.started_at, record.started_at);
    let options = state.export.clone();
    let jpeg = blocking(move || {
        let ret: Vec<_> = ret_input
            .findings
            .iter()
            .filter(|f| f.id == finding_id)
            .collect();
        let pickup: Vec<_> = pickup_input
            .findings
            .iter()
            .filter(|f| Some(f.id) == matched_id)
            .collect();
        export::pair_jpeg(
            (&pickup_bytes, &pickup, times.0),
            (&ret_bytes, &ret, times.1),
            language,
            &options,
        )
    })
    .await?;
    Ok(jpeg_response(jpeg))
}

fn note(note: Option<String>) -> Result<Option<String>, Problem> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE => Err(Problem::bad_request(format!(
            "note: at most {MAX_NOTE} characters"
        ))),
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Now, to the microsecond: what the store keeps (every API write's time).
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Confirm, reject or annotate one finding.
#[utoipa::path(
    post,
    path = "/api/v1/inspections/{id}/findings/{finding_id}/review",
    tag = "review",
    params(
        ("id" = Uuid, Path, description = "Inspection id"),
        ("finding_id" = Uuid, Path, description = "Finding id"),
    ),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "The decision as stored", body = ReviewActionDto),
        (status = 400, description = "Unknown decision, or a note too long or missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such inspection or finding", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not processed yet, a pickup's baseline finding, or a charge is approved", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn review_finding(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, finding_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<ReviewRequest>,
) -> Result<Json<ReviewActionDto>, Problem> {
    caller.require(Role::Reviewer)?;
    let (decision, note) = match body {
        ReviewRequest::Confirm { note: n } => (FindingDecision::Confirm, note(n)?),
        ReviewRequest::Reject { note: n } => (FindingDecision::Reject, note(n)?),
        ReviewRequest::Annotate { note: n } => (FindingDecision::Annotate, note(Some(n))?),
    };
    if decision == FindingDecision::Annotate && note.is_none() {
        return Err(Problem::bad_request("annotate needs a note"));
    }
    let item = visible(&state, &caller, id).await?;
    let stored = state
        .store
        .review_finding(&FindingReview {
            inspection_id: id,
            finding_id,
            decision,
            note,
            actor: caller.actor.clone(),
            at: now(),
        })
        .await?;
    invalidate(&state, &item).await;
    state.metrics.wrote(match decision {
        FindingDecision::Confirm => "finding.confirm",
        FindingDecision::Reject => "finding.reject",
        FindingDecision::Annotate => "finding.annotate",
    });
    Ok(Json(ReviewActionDto::from(&stored)))
}

/// Mark the inspection reviewed: every new finding has been decided.
#[utoipa::path(
    post,
    path = "/api/v1/inspections/{id}/review",
    tag = "review",
    params(("id" = Uuid, Path, description = "Inspection id")),
    request_body = MarkReviewedRequest,
    responses(
        (status = 200, description = "The inspection, reviewed", body = InspectionSummary),
        (status = 403, description = "Needs the reviewer role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such inspection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not processed, or findings still undecided", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn mark_reviewed(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<MarkReviewedRequest>,
) -> Result<Json<InspectionSummary>, Problem> {
    caller.require(Role::Reviewer)?;
    let note = note(body.note)?;
    let item = visible(&state, &caller, id).await?;
    state
        .store
        .mark_reviewed(
            id,
            &InspectionReview {
                actor: caller.actor.clone(),
                at: now(),
                note,
            },
        )
        .await?;
    invalidate(&state, &item).await;
    state.metrics.wrote("inspection.reviewed");
    let item = visible(&state, &caller, id).await?;
    Ok(Json(InspectionSummary::from(&item)))
}

/// Approve a charge on confirmed findings of a reviewed return.
#[utoipa::path(
    post,
    path = "/api/v1/inspections/{id}/charge",
    tag = "review",
    params(("id" = Uuid, Path, description = "Inspection id")),
    request_body = ChargeRequest,
    responses(
        (status = 201, description = "The charge as approved", body = ChargeDto),
        (status = 400, description = "No findings listed, or too many", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such inspection, or a finding is not one of its findings", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a reviewed return, a finding not confirmed, or already charged", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn approve_charge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<ChargeRequest>,
) -> Result<(axum::http::StatusCode, Json<ChargeDto>), Problem> {
    caller.require(Role::Reviewer)?;
    let mut findings = body.findings;
    findings.sort();
    findings.dedup();
    if findings.is_empty() || findings.len() > 100 {
        return Err(Problem::bad_request(
            "findings: 1 to 100 confirmed findings",
        ));
    }
    let note = note(body.note)?;
    let item = visible(&state, &caller, id).await?;
    let charge = Charge {
        id: Uuid::now_v7(),
        inspection_id: id,
        findings,
        note,
        actor: caller.actor.clone(),
        at: now(),
    };
    state.store.approve_charge(&charge).await?;
    invalidate(&state, &item).await;
    state.metrics.wrote("charge.approved");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(ChargeDto::from(&charge)),
    ))
}

/// The report as a document: `markdown` (the text; its pictures are the
/// annotated endpoints), `html` (self-contained) or `pdf`.
#[utoipa::path(
    get,
    path = "/api/v1/inspections/{id}/report/{format}",
    tag = "inspections",
    params(
        ("id" = Uuid, Path, description = "Inspection id"),
        ("format" = FormatParam, Path, description = "The document's format"),
    ),
    responses(
        (status = 200, description = "The document", content((Vec<u8> = "application/pdf"), (String = "text/html"), (String = "text/markdown"))),
        (status = 400, description = "Unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such inspection, or no report yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn report_export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, format)): Path<(Uuid, FormatParam)>,
) -> Result<Response, Problem> {
    caller.require(Role::Viewer)?;
    let format = Format::from(format);
    let (record, result) = processed(&state, &caller, id).await?;
    let (_, report) = language(&state, id).await?;
    let report =
        report.ok_or_else(|| Problem::not_found(format!("inspection {id} has no report yet")))?;
    let pickup = match &result.comparison {
        Comparison::Compared {
            pickup_inspection_id,
            ..
        } => {
            let r = state.store.inspection(*pickup_inspection_id).await?;
            let res = state.store.inspection_result(*pickup_inspection_id).await?;
            r.zip(res)
        }
        _ => None,
    };
    let input = ReportInput::new(
        &record,
        &result,
        pickup.as_ref().map(|(r, res)| (r, res)),
        report.language,
    );
    let exported = export::export(&input, &report, &state.images, format, &state.export)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, inspection = %id, "report export failed");
            match e {
                export::ExportError::Storage(_) => {
                    Problem::unavailable("the image store is unavailable")
                }
                e => Problem::internal(format!("export failed ({})", e.code())),
            }
        })?;
    let mut response = exported.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(exported.content_type),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", exported.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_are_made_canonical() {
        assert_eq!(canonical_plate("m-ab 1234").unwrap(), "MAB1234");
        assert!(canonical_plate("--").is_err());
        assert!(canonical_plate(&"A".repeat(17)).is_err());
        // The worker's key: diacritics fold, they are not dropped.
        assert_eq!(canonical_plate("TÜ-AB 123").unwrap(), "TUAB123");
        assert!(canonical_plate("' OR 1=1 --").is_err());
        assert!(canonical_plate("MAB1234%").is_err());
    }

    #[test]
    fn cursors_round_trip_and_keep_their_order() {
        let c = InspectionCursor {
            at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let s = encode_cursor(c, SortOrder::NewestFirst);
        assert_eq!(decode_cursor(&s, SortOrder::NewestFirst).unwrap(), c);
        assert!(decode_cursor(&s, SortOrder::OldestFirst).is_err());
        assert!(decode_cursor("not a cursor", SortOrder::NewestFirst).is_err());
    }
}
