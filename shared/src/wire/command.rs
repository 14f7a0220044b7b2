//! `cmd` topic: central asks a device to do something.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::{InspectionKind, V1};
use crate::ids::CameraId;

/// Central -> edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    pub v: V1,
    /// Unique per command: a device executes each id at most once.
    pub cmd_id: Uuid,
    pub at: DateTime<Utc>,
    /// A device ignores (and reports) a command received after this time,
    /// so a command queued while it was offline does not fire hours later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub command: CommandBody,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandBody {
    /// Staff start an inspection by hand (e.g. the trigger missed the car).
    StartInspection { kind: InspectionKind },
    /// End the running inspection (or the given one).
    StopInspection {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inspection_id: Option<Uuid>,
    },
    /// Ship the next accepted frame of each camera (or of the one named) in
    /// the running inspection, whatever its rank: staff want a picture now.
    /// Refused when no inspection is running.
    CaptureNow {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        camera: Option<CameraId>,
    },
    /// Re-read the configuration file, keeping the old one if the new is invalid.
    ReloadConfig,
}

impl CommandBody {
    /// The `type` tag, for logs, metric labels and [`CommandOutcome`] reports.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::StartInspection { .. } => "start_inspection",
            CommandBody::StopInspection { .. } => "stop_inspection",
            CommandBody::CaptureNow { .. } => "capture_now",
            CommandBody::ReloadConfig => "reload_config",
        }
    }
}

/// What a device did with a command; reported as a `command_result` event
/// so it travels through the outbox and is acked end to end like the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Done.
    Executed,
    /// Could not apply in the device's state (e.g. stop with no inspection
    /// running) or was invalid there (unknown camera, config did not load).
    Refused,
    /// Arrived after its `expires_at`: not executed.
    Expired,
    /// A redelivery of a command already handled: not executed again.
    Duplicate,
}
