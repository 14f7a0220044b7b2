//! `events` topic: an inspection's life, as a sequence of messages.
//!
//! An inspection is `inspection_started`, then one `frame_selected` per
//! shipped frame, then `inspection_completed`. Every message has its own
//! `msg_id` (UUIDv7, the idempotency key central deduplicates on and acks)
//! and a per-device `seq` that increases by one per message across restarts,
//! so central can spot gaps and order what arrived out of order.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::CommandOutcome;
use super::common::{FrameQuality, ImageRef, InspectionKind, Sha256Hex, V1, WireDetection};
use crate::ids::{CameraId, DeviceId, SiteId};

/// Edge -> central: one step of an inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub v: V1,
    /// Unique per message; what central acks.
    pub msg_id: Uuid,
    /// Per-device sequence number, strictly increasing.
    pub seq: u64,
    pub site: SiteId,
    pub device: DeviceId,
    /// Stable for the whole inspection (UUIDv7, so ids sort by start time).
    /// Required for the inspection bodies; a `command_result` carries the
    /// inspection the command acted on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection_id: Option<Uuid>,
    /// When the edge created the message (its clock; central records its own).
    pub at: DateTime<Utc>,
    pub event: EventBody,
}

/// How a frame was anonymised on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Anonymised {
    /// Faces blurred or pixelated (0: searched, none found; the camera's
    /// own bytes were kept).
    #[schemars(range(max = 1000))]
    pub faces: u32,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    InspectionStarted {
        kind: InspectionKind,
        trigger: Trigger,
        /// The cameras that will contribute frames.
        #[schemars(length(min = 1, max = 32))]
        cameras: Vec<CameraInfo>,
        /// The agent's version, e.g. `0.1.0`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 64))]
        agent_version: Option<String>,
        /// The pre-screen model(s), as `file-name@sha256-prefix`, so central
        /// can tell which edge model proposed the detections.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 8))]
        models: Vec<String>,
    },
    FrameSelected {
        camera: CameraInfo,
        captured_at: DateTime<Utc>,
        image: ImageRef,
        quality: FrameQuality,
        /// Pre-screen detections on this frame (vehicle, plate, damage candidates).
        detections: Vec<WireDetection>,
        /// 1 for the camera's best frame, 2 for the next, ...
        #[schemars(range(min = 1))]
        rank: u32,
        /// Faces were searched for on the board and redacted before the
        /// frame was stored. Absent: the camera has anonymisation turned
        /// off (or the agent predates it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anonymised: Option<Anonymised>,
    },
    InspectionCompleted {
        reason: CompletionReason,
        /// How many `frame_selected` messages this inspection has, so central
        /// knows when it has them all.
        #[schemars(range(max = 10_000))]
        frames: u32,
        /// The selected images per camera, best first: what central must
        /// have received before it processes the inspection.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<CameraImages>,
    },
    /// The device handled a command from the `cmd` topic.
    CommandResult {
        cmd_id: Uuid,
        /// The command's `type`, e.g. `start_inspection`.
        #[schemars(length(min = 1, max = 64))]
        command: String,
        outcome: CommandOutcome,
        /// Why it was refused, in words for staff.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        detail: Option<String>,
    },
}

impl EventBody {
    /// The `type` tag, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::InspectionStarted { .. } => "inspection_started",
            EventBody::FrameSelected { .. } => "frame_selected",
            EventBody::InspectionCompleted { .. } => "inspection_completed",
            EventBody::CommandResult { .. } => "command_result",
        }
    }

    /// Whether the body belongs to an inspection (and so needs its id).
    pub fn is_inspection_step(&self) -> bool {
        !matches!(self, EventBody::CommandResult { .. })
    }
}

/// What started an inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// The pre-screen saw a trigger class (e.g. `plate`) for enough frames.
    Detection {
        #[schemars(length(min = 1, max = 64))]
        label: String,
        #[schemars(range(min = 0.0, max = 1.0))]
        score: f32,
    },
    /// A `start_inspection` command from central.
    Command { cmd_id: Uuid },
}

/// Why an inspection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionReason {
    VehicleLeft,
    Command,
    Timeout,
    Shutdown,
}

/// One camera's selected images, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CameraImages {
    pub camera: CameraId,
    pub sha256: Vec<Sha256Hex>,
}

/// A camera and where it looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CameraInfo {
    pub id: CameraId,
    /// Where the camera looks from, e.g. `front`, `rear`, `left`, `right`
    /// (the same alphabet as ids).
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    )]
    pub position: String,
}
