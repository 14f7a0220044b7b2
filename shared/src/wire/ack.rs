//! `ack` topic: central tells a device which messages it has persisted.
//!
//! An outbox entry leaves the edge only after its `msg_id` comes back here,
//! never on MQTT PUBACK: the broker may keep nothing on disk.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::V1;

/// Most message ids in one ack, to keep acks well under broker payload caps.
pub const MAX_ACK_IDS: usize = 500;

/// Central -> edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ack {
    pub v: V1,
    /// The persisted messages (1 to 500 ids).
    #[schemars(length(min = 1, max = 500))]
    pub msg_ids: Vec<Uuid>,
    pub at: DateTime<Utc>,
}
