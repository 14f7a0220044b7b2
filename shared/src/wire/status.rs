//! `status` topic: retained online/offline state, also the MQTT last will.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::V1;
use crate::ids::{DeviceId, SiteId};

/// Whether a device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Online,
    /// Published by the device on clean shutdown, or by the broker as the
    /// device's last will when the connection is lost.
    Offline,
}

/// Edge -> central, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub v: V1,
    pub site: SiteId,
    pub device: DeviceId,
    pub state: DeviceState,
    /// When the device published it. For the last will this is the time the
    /// connection was opened, since the broker sends the will unchanged.
    pub at: DateTime<Utc>,
    /// Random per process start: lets central tell a reboot from a reconnect.
    pub boot_id: Uuid,
    /// The agent's version, e.g. `0.1.0`.
    #[schemars(length(min = 1, max = 64))]
    pub agent_version: String,
}
