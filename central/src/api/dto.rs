//! What the API sends and accepts: its own types, described in the OpenAPI
//! document, built from the store's. Boxes are `[x1, y1, x2, y2]` in the
//! frame's pixels; times are RFC 3339 UTC; enums are snake_case strings.

use chrono::{DateTime, Utc};
use inspection_core::wire::InspectionKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::report::Report;
use crate::store::{
    Charge, Comparison, DamageModel, Finding, FindingReviewRecord, FindingStatus, FrameRecord,
    FrameState, InspectionListItem, InspectionRecord, InspectionResult, InspectionReview,
    PlateReadRecord, ReviewRecord, SiteRecord, VehicleRecord,
};

fn bbox(b: &inspection_core::geometry::BBox) -> [f32; 4] {
    [b.x1, b.y1, b.x2, b.y2]
}

/// Who marked an inspection reviewed, and when.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewedDto {
    pub by: String,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

impl From<&InspectionReview> for ReviewedDto {
    fn from(r: &InspectionReview) -> Self {
        ReviewedDto {
            by: r.actor.clone(),
            at: r.at,
            note: r.note.clone(),
        }
    }
}

/// Findings of one status, counted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusCount {
    /// `baseline`, `new`, `pre_existing`, `possible_new_damage`,
    /// `confirmed` or `rejected`.
    pub status: String,
    pub count: u32,
}

/// An inspection in a search result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InspectionSummary {
    pub id: Uuid,
    pub site: String,
    pub device: String,
    /// `pickup` or `return`; absent until the start event is stored.
    pub kind: Option<String>,
    /// The sort key: when it started (when its first event arrived, before
    /// the start is stored).
    pub at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// `receiving`, `queued`, `waiting_for_images`, `processing`,
    /// `processed`, `images_missing` or `failed`.
    pub status: String,
    pub status_detail: Option<String>,
    pub plate: Option<String>,
    pub frames_expected: Option<u32>,
    pub frames_received: u32,
    /// Set when it was processed without all its events (its board stopped
    /// mid-inspection, or dropped frames): what was missing. Views may be
    /// missing from the comparison.
    pub incomplete: Option<String>,
    /// Findings by status (statuses with none are left out).
    pub finding_counts: Vec<StatusCount>,
    pub reviewed: Option<ReviewedDto>,
    pub charged: bool,
    /// When its personal data was erased (GDPR).
    pub erased_at: Option<DateTime<Utc>>,
    /// Frames whose image was deleted (retention or erasure).
    pub images_purged: u32,
}

fn kind_name(record: &InspectionRecord) -> Option<String> {
    record.kind.map(|k| match k {
        InspectionKind::Pickup => "pickup".to_owned(),
        InspectionKind::Return => "return".to_owned(),
    })
}

impl From<&InspectionListItem> for InspectionSummary {
    fn from(item: &InspectionListItem) -> Self {
        let r = &item.record;
        InspectionSummary {
            id: r.id,
            site: r.site.to_string(),
            device: r.device.to_string(),
            kind: kind_name(r),
            at: item.at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            status: r.status.as_str().to_owned(),
            status_detail: r.status_detail.clone(),
            plate: r.plate.clone(),
            frames_expected: r.frames_expected,
            frames_received: r.frames_received,
            incomplete: r.incomplete.clone(),
            finding_counts: item
                .findings
                .iter()
                .map(|(status, count)| StatusCount {
                    status: status.as_str().to_owned(),
                    count: *count,
                })
                .collect(),
            reviewed: item.reviewed.as_ref().map(ReviewedDto::from),
            charged: item.charged,
            erased_at: item.erased_at,
            images_purged: item.images_purged,
        }
    }
}

/// A page of inspections.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InspectionPage {
    pub items: Vec<InspectionSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One image of the inspection and its quality.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FrameDto {
    pub camera: String,
    pub position: String,
    pub sha256: String,
    /// 1 for the camera's best frame.
    pub rank: u32,
    /// `ok`, `corrupt`, `rejected` (failed the quality re-check) or
    /// `missing`.
    pub state: String,
    /// Why it was rejected or could not be decoded.
    pub reasons: Vec<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Variance of the Laplacian (higher is sharper).
    pub sharpness: Option<f32>,
    /// Mean luma, 0..255.
    pub brightness: Option<f32>,
    pub vehicle_box: Option<[f32; 4]>,
    /// The frame with its findings drawn (JPEG).
    pub annotated_url: String,
}

impl FrameDto {
    fn new(inspection: Uuid, f: &FrameRecord) -> FrameDto {
        let reasons = match &f.state {
            FrameState::Corrupt { reason } => vec![reason.clone()],
            FrameState::Rejected { reasons } => reasons.clone(),
            FrameState::Ok | FrameState::Missing => Vec::new(),
        };
        FrameDto {
            camera: f.camera.to_string(),
            position: f.position.clone(),
            sha256: f.sha256.clone(),
            rank: f.rank,
            state: f.state.name().to_owned(),
            reasons,
            width: f.width,
            height: f.height,
            sharpness: f.sharpness,
            brightness: f.brightness,
            vehicle_box: f.vehicle_box.as_ref().map(bbox),
            annotated_url: format!(
                "/api/v1/inspections/{inspection}/frames/{}/annotated",
                f.sha256
            ),
        }
    }
}

/// One finding and where staff stand on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FindingDto {
    pub id: Uuid,
    /// `F1`, `F2`, ... as in the report.
    pub reference: Option<String>,
    pub camera: String,
    pub position: String,
    /// The frame it is on.
    pub sha256: String,
    /// The model's class, or `change` for change detection.
    pub class: String,
    pub confidence: f32,
    /// `model` or `change`.
    pub source: String,
    /// The current status: the worker's, or staff's decision (`confirmed`,
    /// `rejected`).
    pub status: String,
    /// The worker's status, once staff decided otherwise.
    pub worker_status: Option<String>,
    /// The latest note staff wrote on it.
    pub note: Option<String>,
    pub bbox: [f32; 4],
    /// Relative to the vehicle's box (0..1).
    pub vehicle_bbox: Option<[f32; 4]>,
    /// The pickup finding it matched (`pre_existing`).
    pub matched_finding: Option<Uuid>,
    /// The pickup beside the return for this finding (JPEG; returns
    /// compared with a pickup only).
    pub pair_url: Option<String>,
}

/// One attempt to read the plate on one frame.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlateReadDto {
    pub camera: String,
    pub sha256: String,
    /// `read`, `unreadable` or `not_found`.
    pub outcome: String,
    pub bbox: Option<[f32; 4]>,
    /// `detector` or `text_detection`.
    pub box_source: Option<String>,
    pub raw_text: Option<String>,
    pub plate: Option<String>,
    pub country: Option<String>,
    pub confidence: f32,
}

impl From<&PlateReadRecord> for PlateReadDto {
    fn from(p: &PlateReadRecord) -> Self {
        PlateReadDto {
            camera: p.camera.to_string(),
            sha256: p.sha256.clone(),
            outcome: enum_name(&p.outcome),
            bbox: p.bbox.as_ref().map(bbox),
            box_source: p.box_source.as_ref().map(enum_name),
            raw_text: p.raw_text.clone(),
            plate: p.plate.clone(),
            country: p.country.clone(),
            confidence: p.confidence,
        }
    }
}

/// A serde snake_case unit variant's name.
fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The vehicle's plate, voted across frames.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlateDto {
    pub plate: String,
    pub display: String,
    pub country: String,
    pub confidence: f32,
    pub votes: u32,
    pub readable_frames: u32,
}

/// How the return was compared with its pickup.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComparisonDto {
    /// `not_applicable` (a pickup), `no_pickup` or `compared`.
    pub state: String,
    pub pickup_inspection_id: Option<Uuid>,
    /// Camera positions present in both.
    pub positions: Vec<String>,
    pub new: u32,
    pub pre_existing: u32,
    pub possible_new_damage: u32,
}

/// The latest report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportDto {
    pub id: Uuid,
    /// `llm`, `fallback`, `embedded` or `template`.
    pub writer: String,
    pub model: Option<String>,
    /// ISO 639-1.
    pub language: String,
    pub narrative: String,
    pub created_at: DateTime<Utc>,
    /// The report as Markdown, HTML and PDF.
    pub export_urls: Vec<String>,
}

impl From<&Report> for ReportDto {
    fn from(r: &Report) -> Self {
        ReportDto {
            id: r.id,
            writer: r.writer.clone(),
            model: r.model.clone(),
            language: r.language.code().to_owned(),
            narrative: r.narrative.clone(),
            created_at: r.created_at,
            export_urls: ["markdown", "html", "pdf"]
                .iter()
                .map(|f| format!("/api/v1/inspections/{}/report/{f}", r.inspection_id))
                .collect(),
        }
    }
}

/// One staff action on a finding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewActionDto {
    pub id: i64,
    pub finding_id: Uuid,
    /// `confirm`, `reject` or `annotate`.
    pub decision: String,
    pub note: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
    pub status_before: String,
    pub status_after: String,
}

impl From<&FindingReviewRecord> for ReviewActionDto {
    fn from(a: &FindingReviewRecord) -> Self {
        ReviewActionDto {
            id: a.id,
            finding_id: a.finding_id,
            decision: a.decision.as_str().to_owned(),
            note: a.note.clone(),
            by: a.actor.clone(),
            at: a.at,
            status_before: a.status_before.as_str().to_owned(),
            status_after: a.status_after.as_str().to_owned(),
        }
    }
}

/// An approved charge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChargeDto {
    pub id: Uuid,
    pub inspection_id: Uuid,
    pub findings: Vec<Uuid>,
    pub note: Option<String>,
    pub approved_by: String,
    pub approved_at: DateTime<Utc>,
}

impl From<&Charge> for ChargeDto {
    fn from(c: &Charge) -> Self {
        ChargeDto {
            id: c.id,
            inspection_id: c.inspection_id,
            findings: c.findings.clone(),
            note: c.note.clone(),
            approved_by: c.actor.clone(),
            approved_at: c.at,
        }
    }
}

/// Where the review of an inspection stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewDto {
    /// Findings still `new` or `possible_new_damage`: to decide before the
    /// inspection can be marked reviewed.
    pub undecided: Vec<Uuid>,
    pub reviewed: Option<ReviewedDto>,
    /// Oldest first.
    pub actions: Vec<ReviewActionDto>,
    pub charge: Option<ChargeDto>,
}

/// Everything about one inspection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InspectionDetail {
    #[serde(flatten)]
    pub summary: InspectionSummary,
    pub completion_reason: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The damage model used; absent when none is configured (change
    /// detection still runs).
    pub damage_model: Option<String>,
    pub frames: Vec<FrameDto>,
    pub findings: Vec<FindingDto>,
    pub plate_reads: Vec<PlateReadDto>,
    pub vehicle_plate: Option<PlateDto>,
    pub comparison: Option<ComparisonDto>,
    pub report: Option<ReportDto>,
    pub review: ReviewDto,
}

impl InspectionDetail {
    pub fn new(
        item: &InspectionListItem,
        result: Option<&InspectionResult>,
        report: Option<&Report>,
        review: &ReviewRecord,
    ) -> InspectionDetail {
        let id = item.record.id;
        let worker_status = |finding: Uuid| {
            review
                .worker_status
                .iter()
                .find(|(f, _)| *f == finding)
                .map(|(_, s)| s.as_str().to_owned())
        };
        let note = |finding: Uuid| {
            review
                .actions
                .iter()
                .rev()
                .find(|a| a.finding_id == finding && a.note.is_some())
                .and_then(|a| a.note.clone())
        };
        let compared = matches!(
            result.map(|r| &r.comparison),
            Some(Comparison::Compared { .. })
        );
        // References as the report numbers them: every finding but rejected
        // ones, in the result's order.
        let mut next_ref = 0;
        let findings: Vec<FindingDto> = result
            .map(|r| r.findings.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|f: &Finding| {
                let reference = (f.status != FindingStatus::Rejected).then(|| {
                    next_ref += 1;
                    format!("F{next_ref}")
                });
                FindingDto {
                    id: f.id,
                    reference,
                    camera: f.camera.to_string(),
                    position: f.position.clone(),
                    sha256: f.sha256.clone(),
                    class: f.class.clone(),
                    confidence: f.confidence,
                    source: f.source.as_str().to_owned(),
                    status: f.status.as_str().to_owned(),
                    worker_status: worker_status(f.id),
                    note: note(f.id),
                    bbox: bbox(&f.bbox),
                    vehicle_bbox: f.vehicle_bbox.as_ref().map(bbox),
                    matched_finding: f.matched_finding,
                    pair_url: compared
                        .then(|| format!("/api/v1/inspections/{id}/findings/{}/pair", f.id)),
                }
            })
            .collect();
        let undecided = result
            .map(|r| r.findings.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|f| {
                matches!(
                    f.status,
                    FindingStatus::New | FindingStatus::PossibleNewDamage
                )
            })
            .map(|f| f.id)
            .collect();
        InspectionDetail {
            summary: InspectionSummary::from(item),
            completion_reason: item.record.completion_reason.map(|r| enum_name(&r)),
            processed_at: result.map(|r| r.processed_at),
            damage_model: result.and_then(|r| match &r.damage_model {
                DamageModel::Used { model, .. } => Some(model.clone()),
                DamageModel::NotConfigured => None,
            }),
            frames: result
                .map(|r| r.frames.iter().map(|f| FrameDto::new(id, f)).collect())
                .unwrap_or_default(),
            findings,
            plate_reads: result
                .map(|r| r.plate_reads.iter().map(PlateReadDto::from).collect())
                .unwrap_or_default(),
            vehicle_plate: result.and_then(|r| r.plate.as_ref()).map(|p| PlateDto {
                plate: p.plate.clone(),
                display: p.display.clone(),
                country: p.country.clone(),
                confidence: p.confidence,
                votes: p.votes,
                readable_frames: p.readable_frames,
            }),
            comparison: result.map(|r| {
                let (state, pickup, positions) = match &r.comparison {
                    Comparison::NotApplicable => ("not_applicable", None, Vec::new()),
                    Comparison::NoPickup => ("no_pickup", None, Vec::new()),
                    Comparison::Compared {
                        pickup_inspection_id,
                        positions,
                    } => ("compared", Some(*pickup_inspection_id), positions.clone()),
                };
                ComparisonDto {
                    state: state.to_owned(),
                    pickup_inspection_id: pickup,
                    positions,
                    new: r.summary.new,
                    pre_existing: r.summary.pre_existing,
                    possible_new_damage: r.summary.possible_new_damage,
                }
            }),
            report: report.map(ReportDto::from),
            review: ReviewDto {
                undecided,
                reviewed: review.reviewed.as_ref().map(ReviewedDto::from),
                actions: review.actions.iter().map(ReviewActionDto::from).collect(),
                charge: review.charge.as_ref().map(ChargeDto::from),
            },
        }
    }
}

/// `POST .../findings/{finding_id}/review`: one decision on one finding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ReviewRequest {
    /// The damage is real and new: it may be charged.
    Confirm {
        #[schema(max_length = 2000)]
        note: Option<String>,
    },
    /// Not damage, or not new.
    Reject {
        #[schema(max_length = 2000)]
        note: Option<String>,
    },
    /// A note only; the status stays.
    Annotate {
        #[schema(min_length = 1, max_length = 2000)]
        note: String,
    },
}

/// `POST .../review`: mark the inspection reviewed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReviewedRequest {
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// `POST .../charge`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Confirmed findings of this inspection.
    #[schema(min_items = 1, max_items = 100)]
    pub findings: Vec<Uuid>,
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// A vehicle and its inspections.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VehicleHistory {
    pub plate: String,
    pub display: String,
    pub country: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Newest first, the sites the caller may see only.
    pub inspections: Vec<InspectionSummary>,
    pub next_cursor: Option<String>,
}

impl VehicleHistory {
    pub fn new(v: &VehicleRecord, page: InspectionPage) -> VehicleHistory {
        VehicleHistory {
            plate: v.plate.clone(),
            display: v.display.clone(),
            country: v.country.clone(),
            first_seen_at: v.first_seen_at,
            last_seen_at: v.last_seen_at,
            inspections: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// A site.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SiteDto {
    pub site: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub devices: u32,
}

impl From<&SiteRecord> for SiteDto {
    fn from(s: &SiteRecord) -> Self {
        SiteDto {
            site: s.site.to_string(),
            first_seen_at: s.first_seen_at,
            last_seen_at: s.last_seen_at,
            devices: s.devices,
        }
    }
}

/// A board, from its last status and telemetry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceDto {
    pub site: String,
    pub device: String,
    /// `online`, `offline` (its last status said so, or its last will
    /// did), `silent` (online, but nothing heard for longer than the
    /// fleet's silence limit) or `unknown` (no status yet).
    pub state: String,
    /// When central last heard from it (status or telemetry).
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The agent's version, from its status.
    pub version: Option<String>,
    /// Entries and bytes waiting in its outbox, from its last telemetry.
    pub outbox_events: Option<u64>,
    pub outbox_bytes: Option<u64>,
    pub outbox_oldest_age_seconds: Option<u64>,
    /// Central's clock minus the board's, from its last telemetry: as the
    /// board measured it from central's acks, else when the telemetry
    /// arrived here less the time on it (positive: the board is behind).
    /// The same convention as the board's `edge_uplink_clock_offset_seconds`.
    /// Far from zero, the board's NTP is broken: its inspection times are
    /// off by as much.
    pub clock_offset_seconds: Option<f64>,
    /// The highest event sequence number stored.
    pub last_seq: Option<u64>,
}

/// A page of devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceDto>,
    pub next_cursor: Option<String>,
}

/// An audit log entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditDto {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// `GET /api/v1/me`: who the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeDto {
    /// As the audit log records it: `user:<sub>` or `token:<name>`.
    pub actor: String,
    /// `viewer`, `reviewer` or `admin`.
    pub role: String,
    /// Every site, now and later.
    pub all_sites: bool,
    /// The sites, when not all.
    pub sites: Vec<String>,
}
