//! What the worker produces for an inspection, and the job queue it runs on:
//! the types the `Store` persists for the Central processing issue.
//!
//! An inspection's result is written whole, in one transaction
//! ([`crate::store::Store::record_result`]); processing the same
//! inspection again replaces it. Boxes are kept twice: in the pixels of the
//! frame they were found in, and relative to the vehicle's box in that frame
//! (`0..1` on both axes), which is what lets a return frame be compared with
//! a pickup frame taken with the car a little further forward.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an inspection is in its life. Stored as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectionStatus {
    /// Events are still arriving (not every announced frame is stored yet).
    Receiving,
    /// Complete; a processing job is queued.
    Queued,
    /// A worker found images missing from the object store and is waiting
    /// for the upload (bounded by the worker's `image_wait`).
    WaitingForImages,
    /// A worker holds the job.
    Processing,
    /// Findings, plate and comparison are stored.
    Processed,
    /// Images were still missing when the wait ran out; nothing was
    /// processed. `status_detail` names them.
    ImagesMissing,
    /// Processing failed on every attempt; the job is dead-lettered.
    Failed,
}

impl InspectionStatus {
    pub const ALL: [InspectionStatus; 7] = [
        InspectionStatus::Receiving,
        InspectionStatus::Queued,
        InspectionStatus::WaitingForImages,
        InspectionStatus::Processing,
        InspectionStatus::Processed,
        InspectionStatus::ImagesMissing,
        InspectionStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InspectionStatus::Receiving => "receiving",
            InspectionStatus::Queued => "queued",
            InspectionStatus::WaitingForImages => "waiting_for_images",
            InspectionStatus::Processing => "processing",
            InspectionStatus::Processed => "processed",
            InspectionStatus::ImagesMissing => "images_missing",
            InspectionStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<InspectionStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The result of processing one inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionResult {
    pub inspection_id: Uuid,
    pub processed_at: DateTime<Utc>,
    /// The worker instance that produced it (its id, e.g. the pod name).
    pub worker: String,
    /// The damage model used, or why none was.
    pub damage_model: DamageModel,
    /// `file@sha256-prefix` of the plate detector and OCR models used.
    pub plate_models: Vec<String>,
    /// One per image the inspection named, in camera then rank order.
    pub frames: Vec<FrameRecord>,
    pub findings: Vec<Finding>,
    /// One per frame that was searched for a plate.
    pub plate_reads: Vec<PlateReadRecord>,
    /// The vehicle's plate, voted across frames; `None` when no frame gave a
    /// valid read.
    pub plate: Option<VehiclePlate>,
    pub comparison: Comparison,
    pub summary: Summary,
}

/// Which damage model ran. No damage model ships with the project, so
/// `NotConfigured` is an ordinary state: change detection still runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DamageModel {
    NotConfigured,
    Used { model: String, classes: Vec<String> },
}

/// What became of one image of the inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub camera: CameraId,
    /// The camera's position (`front`, `left`, ...), the key the comparison
    /// pairs frames on.
    pub position: String,
    pub sha256: String,
    /// 1 for the camera's best frame.
    pub rank: u32,
    pub state: FrameState,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Variance of the Laplacian, as the edge gate computes it.
    pub sharpness: Option<f32>,
    /// Mean luma, 0..255.
    pub brightness: Option<f32>,
    /// The vehicle's box in this frame, when one was found (the frame is the
    /// vehicle otherwise).
    pub vehicle_box: Option<BBox>,
}

/// Whether a frame could be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FrameState {
    Ok,
    /// Could not be decoded; skipped.
    Corrupt {
        reason: String,
    },
    /// Failed central's quality re-check; skipped for findings.
    Rejected {
        reasons: Vec<String>,
    },
    /// Not in the object store.
    Missing,
}

impl FrameState {
    /// The state's name: the column frames are filtered on, and a metric
    /// label.
    pub fn name(&self) -> &'static str {
        match self {
            FrameState::Ok => "ok",
            FrameState::Corrupt { .. } => "corrupt",
            FrameState::Rejected { .. } => "rejected",
            FrameState::Missing => "missing",
        }
    }
}

/// Where a finding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingSource {
    /// The damage model.
    Model,
    /// Model-free change detection between the pickup and return frames.
    Change,
}

impl FindingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingSource::Model => "model",
            FindingSource::Change => "change",
        }
    }
}

/// A finding's standing. The worker sets the first four; staff review sets
/// the last two (Staff API issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    /// Found at a pickup: the baseline later returns are compared with.
    Baseline,
    /// A return finding with no match at the pickup.
    New,
    /// A return finding matched at the pickup.
    PreExisting,
    /// A changed region without a model finding: for staff to look at.
    PossibleNewDamage,
    Confirmed,
    Rejected,
}

impl FindingStatus {
    pub const ALL: [FindingStatus; 6] = [
        FindingStatus::Baseline,
        FindingStatus::New,
        FindingStatus::PreExisting,
        FindingStatus::PossibleNewDamage,
        FindingStatus::Confirmed,
        FindingStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Baseline => "baseline",
            FindingStatus::New => "new",
            FindingStatus::PreExisting => "pre_existing",
            FindingStatus::PossibleNewDamage => "possible_new_damage",
            FindingStatus::Confirmed => "confirmed",
            FindingStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<FindingStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One finding on one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: Uuid,
    pub camera: CameraId,
    pub position: String,
    pub sha256: String,
    /// The model's class name, or `change` for change detection.
    pub class: String,
    /// Model score, or the change score in 0..1.
    pub confidence: f32,
    pub source: FindingSource,
    pub status: FindingStatus,
    /// In the frame's pixels.
    pub bbox: BBox,
    /// Relative to the vehicle's box in the frame (0..1 on both axes).
    pub vehicle_bbox: Option<BBox>,
    /// The pickup finding this one matched (`PreExisting`).
    pub matched_finding: Option<Uuid>,
}

/// One attempt to read a plate on one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateReadRecord {
    pub camera: CameraId,
    pub sha256: String,
    pub outcome: PlateOutcome,
    /// The plate box in the frame's pixels (detector or text fallback).
    pub bbox: Option<BBox>,
    pub box_source: Option<PlateBoxSource>,
    /// The OCR's text as read, before normalisation.
    pub raw_text: Option<String>,
    /// Canonical plate (`A-Z0-9`) when it validated for some country.
    pub plate: Option<String>,
    /// ISO code of the matched country format.
    pub country: Option<String>,
    /// 0..1: the OCR's confidence, lowered when normalisation had to guess.
    pub confidence: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateOutcome {
    /// Read and valid for a country's format, above the confidence floor.
    Read,
    /// A plate was found but not read with confidence (too small, blurred).
    Unreadable,
    /// No plate in the frame.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateBoxSource {
    /// The plate detector (platedet).
    Detector,
    /// The text-detection model, when the plate detector found nothing.
    TextDetection,
}

/// The vehicle's plate, voted across frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehiclePlate {
    /// Canonical `A-Z0-9`.
    pub plate: String,
    /// With the country's separators, for people.
    pub display: String,
    pub country: String,
    /// 0..1.
    pub confidence: f32,
    /// Frames that read this plate, and frames with any valid read.
    pub votes: u32,
    pub readable_frames: u32,
}

/// How the inspection was compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Comparison {
    /// A pickup is the baseline; nothing to compare with.
    NotApplicable,
    /// A return, but no processed pickup of the same plate was found (or the
    /// plate was not read).
    NoPickup,
    Compared {
        pickup_inspection_id: Uuid,
        /// Camera positions present in both.
        positions: Vec<String>,
    },
}

/// Counts for a glance: by class then status, and frames by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub findings: BTreeMap<String, BTreeMap<String, u32>>,
    pub new: u32,
    pub pre_existing: u32,
    pub possible_new_damage: u32,
    pub frames_ok: u32,
    pub frames_skipped: u32,
}

// --- job queue ---------------------------------------------------------------

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Detection, plates and comparison for one inspection.
    ProcessInspection,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ProcessInspection => "process_inspection",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "process_inspection" => Some(JobKind::ProcessInspection),
            _ => None,
        }
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for `run_at`.
    Queued,
    /// Leased by a worker until `lease_until`.
    Running,
    Done,
    /// Failed `max_attempts` times; kept for operators.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Dead,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A job a worker has claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub kind: JobKind,
    pub inspection_id: Uuid,
    /// 1 for the first claim; counts claims whose lease ran out as well.
    pub attempt: u32,
    pub max_attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

/// A job as stored, for tests, operators and the API.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: Uuid,
    pub kind: JobKind,
    pub inspection_id: Uuid,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Queue figures for metrics (the worker's autoscaling signal).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobStats {
    /// Queued and due now, plus running with an expired lease.
    pub ready: u64,
    /// Queued for later (backing off, or waiting for images).
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    /// Age of the oldest ready job (since it was enqueued).
    pub oldest_ready_age: Option<Duration>,
}

/// An inspection `close_incomplete` queued without all its events.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedIncomplete {
    pub id: Uuid,
    pub site: SiteId,
    pub device: DeviceId,
    pub frames_received: u32,
    /// `None` when `inspection_completed` never arrived.
    pub frames_expected: Option<u32>,
    /// The status detail it was queued with, for people.
    pub detail: String,
}

impl ClosedIncomplete {
    /// One the store's query found (the rule lives in that query, the
    /// same in both backends): its detail says what was missing, as of the
    /// board's telemetry taken at `telemetry_at` (the board's clock).
    pub(crate) fn new(
        id: Uuid,
        site: SiteId,
        device: DeviceId,
        frames_received: u32,
        frames_expected: Option<u32>,
        telemetry_at: DateTime<Utc>,
    ) -> ClosedIncomplete {
        let at = telemetry_at.format("%Y-%m-%dT%H:%M:%SZ");
        let detail = match frames_expected {
            Some(expected) => format!(
                "incomplete: {frames_received} of {expected} announced frames arrived; the \
                 board's outbox was empty at {at} (its clock), so no more are coming",
            ),
            None => format!(
                "incomplete: the board never ended this inspection (its agent stopped?); \
                 {frames_received} frames arrived and its outbox was empty at {at} (its clock)",
            ),
        };
        ClosedIncomplete {
            id,
            site,
            device,
            frames_received,
            frames_expected,
            detail,
        }
    }
}

/// One audit log entry: who changed what, before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// `worker:<id>`, `user:<subject>`, `service:<name>`.
    pub actor: String,
    /// e.g. `inspection.processed`, `finding.confirm`.
    pub action: String,
    /// e.g. `inspection:<uuid>`.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    pub id: i64,
    pub entry: AuditEntry,
}
