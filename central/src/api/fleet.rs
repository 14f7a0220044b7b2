//! Vehicles, sites, devices and the audit log.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::DeviceState;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::{Caller, Role, SiteScope};
use super::cache::{Kind as CacheKind, history_key};
use super::dto::{AuditDto, DeviceDto, DevicePage, MeDto, SiteDto, VehicleHistory};
use super::inspections::{canonical_plate, decode_cursor, page, page_limit};
use super::problem::Problem;
use crate::store::{DeviceRecord, InspectionQuery, SortOrder};

/// A device counts as silent when it says it is online but nothing was heard
/// from it for this long (the fleet gauges use the same limit).
const SILENCE: chrono::Duration = chrono::Duration::minutes(5);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/vehicles/{plate}", get(vehicle))
        .route("/sites", get(sites))
        .route("/devices", get(devices))
        .route("/devices/{site}/{device}", get(device))
        .route("/audit", get(audit))
        .route("/me", get(me))
}

/// Who the caller is: the name the audit log records, the role and the
/// sites (the web UI shows only the actions the role allows).
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "session",
    responses(
        (status = 200, description = "The caller", body = MeDto),
    ),
    security(("bearer" = []))
)]
async fn me(Extension(caller): Extension<Caller>) -> Json<MeDto> {
    let (all_sites, sites) = match &caller.sites {
        SiteScope::All => (true, Vec::new()),
        SiteScope::Only(sites) => (false, sites.iter().map(ToString::to_string).collect()),
    };
    Json(MeDto {
        actor: caller.actor.clone(),
        role: caller.role.as_str().to_owned(),
        all_sites,
        sites,
    })
}

/// Paging through a vehicle's history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(pattern = r"^[A-Za-z0-9_-]{1,512}$")]
    pub cursor: Option<String>,
}

/// A vehicle's inspections, newest first, at the sites the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/vehicles/{plate}",
    tag = "vehicles",
    params(
        ("plate" = String, Path, description = "The plate, any spelling", pattern = r"^[A-Za-z0-9]([A-Za-z0-9 .-]{0,14}[A-Za-z0-9])?$"),
        HistoryParams,
    ),
    responses(
        (status = 200, description = "The vehicle and a page of its inspections", body = VehicleHistory),
        (status = 404, description = "No vehicle with that plate", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn vehicle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(plate): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<VehicleHistory>, Problem> {
    caller.require(Role::Viewer)?;
    let plate = canonical_plate(&plate)?;
    // Parameters are checked before the cache is asked: an invalid request
    // is refused even when a valid one's answer is cached.
    let order = SortOrder::NewestFirst;
    let after = params
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, order))
        .transpose()?;
    let limit = page_limit(params.limit)?;
    let key = history_key(&plate);
    // One entry per scope and page: what this caller may see of it.
    let field = format!(
        "v1|{}|{}|{}",
        match caller.sites.narrow(None) {
            None => "*".to_owned(),
            Some(sites) => sites
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
        },
        limit,
        params.cursor.as_deref().unwrap_or("")
    );
    let lookup = state.cache.get(CacheKind::History, &key, &field).await;
    if let Some(bytes) = &lookup.value
        && let Ok(history) = serde_json::from_slice::<VehicleHistory>(bytes)
    {
        return Ok(Json(history));
    }
    let vehicle = state
        .store
        .vehicle(&plate)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no vehicle with plate {plate}")))?;
    let query = InspectionQuery {
        plate: Some(plate),
        sites: caller.sites.narrow(None),
        order,
        after,
        limit,
        ..InspectionQuery::default()
    };
    let page = page(&state, query.clone()).await?;
    // A vehicle seen only at sites the caller may not see does not exist
    // for them, whatever the cursor says.
    if caller.sites.narrow(None).is_some() {
        let seen = if query.after.is_none() {
            !page.items.is_empty()
        } else {
            let first = InspectionQuery {
                after: None,
                limit: 1,
                ..query
            };
            !state.store.search_inspections(&first).await?.is_empty()
        };
        if !seen {
            return Err(Problem::not_found(format!(
                "no vehicle with plate {}",
                vehicle.plate
            )));
        }
    }
    let history = VehicleHistory::new(&vehicle, page);
    if let Ok(bytes) = serde_json::to_vec(&history) {
        state
            .cache
            .put(CacheKind::History, &key, &field, &bytes, lookup.ticket)
            .await;
    }
    Ok(Json(history))
}

/// The sites the caller may see, with their device counts.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "fleet",
    responses((status = 200, description = "Sites in name order", body = Vec<SiteDto>)),
    security(("bearer" = []))
)]
async fn sites(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<SiteDto>>, Problem> {
    caller.require(Role::Viewer)?;
    let sites = state.store.sites().await?;
    Ok(Json(
        sites
            .iter()
            .filter(|s| caller.sites.allows(&s.site))
            .map(SiteDto::from)
            .collect(),
    ))
}

fn device_dto(d: &DeviceRecord, now: DateTime<Utc>) -> DeviceDto {
    let heard = d.telemetry_received_at.max(d.status_received_at);
    let state = match d.status.as_ref().map(|s| s.state) {
        Some(DeviceState::Online) if heard.is_none_or(|at| now - at > SILENCE) => "silent",
        Some(DeviceState::Online) => "online",
        Some(DeviceState::Offline) => "offline",
        None => "unknown",
    };
    DeviceDto {
        site: d.site.to_string(),
        device: d.device.to_string(),
        state: state.to_owned(),
        last_seen_at: heard,
        version: d
            .status
            .as_ref()
            .map(|s| s.agent_version.clone())
            .or_else(|| d.telemetry.as_ref().map(|t| t.agent_version.clone())),
        outbox_events: d.telemetry.as_ref().map(|t| t.outbox.entries),
        outbox_bytes: d.telemetry.as_ref().map(|t| t.outbox.bytes),
        outbox_oldest_age_seconds: d.telemetry.as_ref().map(|t| t.outbox.oldest_age_seconds),
        clock_offset_seconds: d.telemetry.as_ref().and_then(|t| {
            t.central_clock_offset()
                .or_else(|| d.telemetry_received_at.map(|received| received - t.at))
                .map(|offset| offset.as_seconds_f64())
        }),
        last_seq: d.last_seq,
    }
}

/// Paging through devices.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceParams {
    /// Only this site's devices.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub site: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(pattern = r"^[A-Za-z0-9_-]{1,512}$")]
    pub cursor: Option<String>,
}

fn device_cursor(site: &SiteId, device: &DeviceId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{site}/{device}"))
}

fn parse_device_cursor(cursor: &str) -> Result<(SiteId, DeviceId), Problem> {
    let bad = || Problem::bad_request("cursor: not a cursor this API returned");
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (site, device) = text.split_once('/').ok_or_else(bad)?;
    Ok((
        SiteId::new(site).map_err(|_| bad())?,
        DeviceId::new(device).map_err(|_| bad())?,
    ))
}

/// Boards with their state, last contact and outbox backlog.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "fleet",
    params(DeviceParams),
    responses(
        (status = 200, description = "A page of devices in (site, device) order", body = DevicePage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<DeviceParams>,
) -> Result<Json<DevicePage>, Problem> {
    caller.require(Role::Viewer)?;
    let limit = page_limit(params.limit)? as usize;
    let site = params
        .site
        .as_deref()
        .map(|s| SiteId::new(s).map_err(|e| Problem::bad_request(format!("site: {e}"))))
        .transpose()?;
    let mut after = params
        .cursor
        .as_deref()
        .map(parse_device_cursor)
        .transpose()?;
    let now = Utc::now();
    let mut items: Vec<DeviceDto> = Vec::new();
    let mut last_seen: Option<(SiteId, DeviceId)> = None;
    // The store pages over every device; the caller's scope and the site
    // filter are applied here, reading on until the page is full.
    'read: loop {
        let batch = state
            .store
            .devices(after.as_ref().map(|(s, d)| (s, d)), 500)
            .await?;
        let done = batch.len() < 500;
        for d in &batch {
            after = Some((d.site.clone(), d.device.clone()));
            let wanted = caller.sites.allows(&d.site) && site.as_ref().is_none_or(|s| *s == d.site);
            if !wanted {
                continue;
            }
            if items.len() == limit {
                break 'read;
            }
            items.push(device_dto(d, now));
            last_seen = Some((d.site.clone(), d.device.clone()));
        }
        if done {
            last_seen = None;
            break;
        }
    }
    Ok(Json(DevicePage {
        items,
        next_cursor: last_seen.map(|(s, d)| device_cursor(&s, &d)),
    }))
}

/// One board.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{site}/{device}",
    tag = "fleet",
    params(
        ("site" = String, Path, description = "Site id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("device" = String, Path, description = "Device id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    ),
    responses(
        (status = 200, description = "The device", body = DeviceDto),
        (status = 404, description = "No such device (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((site, device)): Path<(String, String)>,
) -> Result<Json<DeviceDto>, Problem> {
    caller.require(Role::Viewer)?;
    let not_found = || Problem::not_found(format!("no device {site}/{device}"));
    let site_id = SiteId::new(&site).map_err(|_| not_found())?;
    let device_id = DeviceId::new(&device).map_err(|_| not_found())?;
    if !caller.sites.allows(&site_id) {
        return Err(not_found());
    }
    let record = state
        .store
        .device(&site_id, &device_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(device_dto(&record, Utc::now())))
}

/// Reading the audit log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// e.g. `inspection:<uuid>`; every entry when absent.
    #[param(max_length = 200)]
    pub target: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The audit log, newest first (admins only).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit entries, newest first", body = Vec<AuditDto>),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Vec<AuditDto>>, Problem> {
    caller.require(Role::Admin)?;
    // Entries name inspections, devices and erasures of every site: only
    // for admins of every site.
    if caller.sites != super::auth::SiteScope::All {
        return Err(Problem::forbidden(
            "the audit log spans every site: it needs an admin of every site",
        ));
    }
    let limit = page_limit(params.limit)?;
    if params.target.as_ref().is_some_and(|t| t.len() > 200) {
        return Err(Problem::bad_request("target: at most 200 characters"));
    }
    let entries = state
        .store
        .audit_log(params.target.as_deref(), limit)
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditDto {
                id: e.id,
                at: e.entry.at,
                actor: e.entry.actor,
                action: e.entry.action,
                target: e.entry.target,
                before: e.entry.before,
                after: e.entry.after,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cursors_round_trip() {
        let site = SiteId::new("de-muc-airport").unwrap();
        let device = DeviceId::new("bay-03").unwrap();
        let c = device_cursor(&site, &device);
        assert_eq!(parse_device_cursor(&c).unwrap(), (site, device));
        assert!(parse_device_cursor("%%").is_err());
    }
}
