//! What the staff API reads and writes: inspection search, the review of
//! findings before anyone is charged, charges, vehicles and sites.
//!
//! ```text
//! REVIEW BEFORE CHARGE
//!
//! The worker sets a return finding `new`, `pre_existing` or
//! `possible_new_damage`. Staff decide each one: `confirm` makes it
//! `confirmed`, `reject` makes it `rejected` (a decision can be changed
//! until a charge is approved); `annotate` only adds a note. The worker's
//! own status is kept (`worker_status`) beside the decision. An inspection
//! can be marked reviewed once no finding is left `new` or
//! `possible_new_damage`; a charge can be approved only on a reviewed
//! return, only on confirmed findings of it, and once. Each of these writes
//! appends its audit entry in the same transaction (target
//! `inspection:<uuid>`, before and after as JSON), so the log never misses a
//! committed decision.
//!
//! SEARCH
//!
//! Inspections are ordered by `at`: `started_at`, or when the first event
//! arrived for an inspection whose start is not stored yet, then by id; the
//! cursor is the last item's (`at`, id), so a page never repeats or skips a
//! row that was there when paging began.
//! ```

use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::InspectionKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FindingStatus, InspectionRecord, InspectionStatus};

/// Search order on (`at`, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Where a page ends: the last item's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectionCursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// Whether staff have reviewed an inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Processed and not marked reviewed yet.
    Pending,
    /// Marked reviewed.
    Reviewed,
}

/// An inspection search. Every `Some` narrows it (all must match).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InspectionQuery {
    /// One inspection by id (the detail view reads its list item this way).
    pub id: Option<Uuid>,
    /// Canonical plate (`A-Z0-9`), exact.
    pub plate: Option<String>,
    /// Only these sites (`Some(vec![])` matches nothing): a site filter and
    /// a user's site scope, intersected by the caller.
    pub sites: Option<Vec<SiteId>>,
    pub device: Option<DeviceId>,
    pub kind: Option<InspectionKind>,
    pub status: Option<InspectionStatus>,
    /// `Pending`: processed and not reviewed; `Reviewed`: marked reviewed.
    pub review: Option<ReviewState>,
    /// `at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `at < to`.
    pub to: Option<DateTime<Utc>>,
    pub order: SortOrder,
    /// Items strictly after this one in `order`.
    pub after: Option<InspectionCursor>,
    /// At most this many items (the caller bounds it).
    pub limit: u32,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionListItem {
    pub record: InspectionRecord,
    /// The sort key: `started_at`, or `first_seen_at` before the start is
    /// stored.
    pub at: DateTime<Utc>,
    /// Findings by status (only statuses with at least one finding).
    pub findings: Vec<(FindingStatus, u32)>,
    pub reviewed: Option<InspectionReview>,
    /// Whether a charge is approved.
    pub charged: bool,
    /// When its personal data was erased (GDPR), if it was.
    pub erased_at: Option<DateTime<Utc>>,
    /// Frames whose image was deleted (retention or erasure).
    pub images_purged: u32,
}

impl InspectionListItem {
    pub fn cursor(&self) -> InspectionCursor {
        InspectionCursor {
            at: self.at,
            id: self.record.id,
        }
    }
}

/// A staff decision on one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingDecision {
    Confirm,
    Reject,
    /// A note only; the status stays.
    Annotate,
}

impl FindingDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingDecision::Confirm => "confirm",
            FindingDecision::Reject => "reject",
            FindingDecision::Annotate => "annotate",
        }
    }

    pub fn parse(s: &str) -> Option<FindingDecision> {
        [
            FindingDecision::Confirm,
            FindingDecision::Reject,
            FindingDecision::Annotate,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A review action as asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingReview {
    pub inspection_id: Uuid,
    pub finding_id: Uuid,
    pub decision: FindingDecision,
    pub note: Option<String>,
    /// `user:<subject>` or `token:<name>`.
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A review action as stored (the history of a finding).
#[derive(Debug, Clone, PartialEq)]
pub struct FindingReviewRecord {
    pub id: i64,
    pub inspection_id: Uuid,
    pub finding_id: Uuid,
    pub decision: FindingDecision,
    pub note: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
    /// The finding's status before and after this action.
    pub status_before: FindingStatus,
    pub status_after: FindingStatus,
}

/// Marked reviewed: by whom and when.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionReview {
    pub actor: String,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// An approved charge.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub id: Uuid,
    pub inspection_id: Uuid,
    /// The confirmed findings charged for (at least one).
    pub findings: Vec<Uuid>,
    pub note: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Everything review-related about one inspection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReviewRecord {
    /// The worker's status of each reviewed finding, before any decision.
    pub worker_status: Vec<(Uuid, FindingStatus)>,
    /// Oldest first.
    pub actions: Vec<FindingReviewRecord>,
    pub reviewed: Option<InspectionReview>,
    pub charge: Option<Charge>,
}

/// A vehicle, identified by its canonical plate.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleRecord {
    pub plate: String,
    pub display: String,
    pub country: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A site, with its devices counted.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRecord {
    pub site: SiteId,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub devices: u32,
}

// ---- Retention and erasure ---------------------------------------------------

/// What a retention rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Frames in the object store (the store hands out what to delete and
    /// records what was).
    Images,
    /// Processed inspections whole: the inspection, its events, frames,
    /// findings, plate reads, reviews, charge, jobs and reports.
    Findings,
    /// Reports only.
    Reports,
    /// Audit log entries.
    Audit,
}

impl DataClass {
    pub const ALL: [DataClass; 4] = [
        DataClass::Images,
        DataClass::Findings,
        DataClass::Reports,
        DataClass::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Images => "images",
            DataClass::Findings => "findings",
            DataClass::Reports => "reports",
            DataClass::Audit => "audit",
        }
    }
}

/// One stored image an inspection refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub inspection_id: Uuid,
    pub sha256: String,
}

/// Which inspections an erasure covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureSelector {
    /// Every inspection of this canonical plate (and the vehicle).
    Plate(String),
    Inspection(Uuid),
}

/// What an erasure will remove: found before the images are deleted, so
/// that a failure halfway can be run again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErasurePlan {
    pub inspections: Vec<Uuid>,
    /// The canonical plates these inspections carry (to redact).
    pub plates: Vec<String>,
    /// Images of these inspections that no inspection outside the plan
    /// refers to (those are kept).
    pub images: Vec<String>,
}

/// A completed erasure, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    pub id: Uuid,
    /// `plate` or `inspection`.
    pub selector: String,
    pub inspections: Vec<Uuid>,
    pub images_deleted: u32,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

// ---- Device commands ---------------------------------------------------------

/// A command sent to a device, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub cmd_id: Uuid,
    pub site: SiteId,
    pub device: DeviceId,
    /// The wire command (`inspection_core::wire::Command`) as JSON.
    pub command: serde_json::Value,
    /// The command's `type` (`start_inspection`, ...).
    pub kind: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the broker accepted it (QoS 1 acknowledged).
    pub published_at: Option<DateTime<Utc>>,
    /// From the device's `command_result` event: `executed`, `refused`,
    /// `expired` or `duplicate`.
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub result_at: Option<DateTime<Utc>>,
}
