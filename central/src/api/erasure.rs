//! GDPR erasure: by plate or by inspection, the images and the personal
//! data go; the erasure itself is recorded in the audit log.
//!
//! Order matters for a failure halfway: the store says what the erasure
//! covers, the images are deleted from the object store (deleting one that
//! is already gone is fine), and only then does one store transaction
//! redact the rest and record the erasure. If the object store or the
//! database fails, the answer is 503 and the same request can simply be
//! sent again.

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, Role, SiteScope};
use super::cache::{detail_key, history_key};
use super::inspections::{canonical_plate, now};
use super::problem::Problem;
use crate::store::{Erasure, ErasureSelector};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/erasures", post(erase))
}

/// `POST /erasures`: one of `plate` and `inspection_id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Every inspection of this plate, any spelling.
    #[schema(pattern = r"^[A-Za-z0-9]([A-Za-z0-9 .-]{0,14}[A-Za-z0-9])?$")]
    pub plate: Option<String>,
    pub inspection_id: Option<Uuid>,
    /// Why (the request's reference, e.g. a ticket): kept in the audit log.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// A completed erasure.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErasureDto {
    pub id: Uuid,
    /// `plate` or `inspection`.
    pub selector: String,
    pub inspections: Vec<Uuid>,
    pub images_deleted: u32,
    pub erased_by: String,
    pub erased_at: DateTime<Utc>,
}

/// Erase the images and personal data of a plate's inspections, or of one
/// inspection (admins only).
#[utoipa::path(
    post,
    path = "/api/v1/erasures",
    tag = "privacy",
    request_body = ErasureRequest,
    responses(
        (status = 200, description = "Erased and recorded", body = ErasureDto),
        (status = 404, description = "Nothing matches (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn erase(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ErasureRequest>,
) -> Result<Json<ErasureDto>, Problem> {
    caller.require(Role::Admin)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Problem::bad_request("reason: 1 to 500 characters"));
    }
    let (selector, kind) = match (body.plate.as_deref(), body.inspection_id) {
        (Some(plate), None) => (ErasureSelector::Plate(canonical_plate(plate)?), "plate"),
        (None, Some(id)) => (ErasureSelector::Inspection(id), "inspection"),
        _ => {
            return Err(Problem::bad_request(
                "name either plate or inspection_id, not both",
            ));
        }
    };
    // A plate may have been seen at any site: only an admin of every site
    // may erase by plate. One inspection: its site must be the caller's.
    if let ErasureSelector::Inspection(id) = selector {
        let record = state.store.inspection(id).await?;
        if !record.is_some_and(|r| caller.sites.allows(&r.site)) {
            return Err(Problem::not_found(format!("no inspection {id}")));
        }
    } else if caller.sites != SiteScope::All {
        return Err(Problem::forbidden(
            "erasure by plate needs an admin of every site (a plate may have been seen anywhere)",
        ));
    }
    let plan = state.store.erasure_plan(&selector).await?;
    let (deleted, error) =
        crate::retention::delete_images(state.images.as_ref(), plan.images.clone()).await;
    if let Some(e) = error {
        tracing::error!(error = %e, "erasure: image delete failed; nothing recorded, the request can be repeated");
        return Err(Problem::unavailable(
            "the image store is unavailable; nothing was erased yet, send the request again",
        ));
    }
    let erasure = Erasure {
        id: Uuid::now_v7(),
        selector: kind.to_owned(),
        inspections: plan.inspections.clone(),
        images_deleted: deleted.len() as u32,
        reason,
        actor: caller.actor.clone(),
        at: now(),
    };
    state.store.erase(&plan, &erasure).await?;
    state.metrics.wrote("gdpr.erasure");
    let mut keys: Vec<String> = plan.inspections.iter().map(|id| detail_key(*id)).collect();
    keys.extend(plan.plates.iter().map(|p| history_key(p)));
    state.cache.invalidate(&keys).await;
    tracing::info!(erasure = %erasure.id, inspections = plan.inspections.len(), images = erasure.images_deleted, "erasure done");
    Ok(Json(ErasureDto {
        id: erasure.id,
        selector: erasure.selector,
        inspections: erasure.inspections,
        images_deleted: erasure.images_deleted,
        erased_by: erasure.actor,
        erased_at: erasure.at,
    }))
}
