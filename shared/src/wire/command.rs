//! `cmd` topic: central asks a device to do something.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::{InspectionKind, V1};

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
    /// Re-read the configuration file, keeping the old one if the new is invalid.
    ReloadConfig,
}
