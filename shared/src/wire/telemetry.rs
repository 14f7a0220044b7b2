//! `telemetry` topic: periodic statistics for fleet monitoring.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::V1;
use crate::ids::{CameraId, DeviceId, SiteId};

/// Edge -> central, every telemetry interval. Counters are totals since the
/// agent started (Prometheus style), so a lost message loses no information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Telemetry {
    pub v: V1,
    pub site: SiteId,
    pub device: DeviceId,
    pub at: DateTime<Utc>,
    #[schemars(length(min = 1, max = 64))]
    pub agent_version: String,
    pub uptime_seconds: u64,
    pub frames_captured_total: u64,
    pub frames_rejected_total: u64,
    /// Frames dropped because inference fell behind.
    pub frames_dropped_total: u64,
    pub inspections_total: u64,
    /// Mean pre-screen inference time per frame over the last interval, in
    /// milliseconds; absent when no frame was pre-screened in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub prescreen_latency_ms: Option<f32>,
    pub outbox: OutboxStats,
    #[schemars(length(max = 32))]
    pub cameras: Vec<CameraStatus>,
    /// Free bytes on the outbox's filesystem, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// SoC temperature, when the board exposes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_temperature_celsius: Option<f32>,
    /// Central's clock minus the board's, in milliseconds, as the board
    /// measured it from central's acks (their `at`); absent until the
    /// first ack. Central dates the board's inspections on its own clock
    /// with it, so a board whose clock is off still finds the right pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -31_536_000_000i64, max = 31_536_000_000i64))]
    pub central_clock_offset_ms: Option<i64>,
}

/// The largest `central_clock_offset_ms` taken at its word: a year.
pub const MAX_CLOCK_OFFSET_MS: u64 = 31_536_000_000;

impl Telemetry {
    /// Central's clock minus the board's, as the board measured it; `None`
    /// when it did not say, or said more than a year (no clock is that far
    /// off: the figure is wrong, not the clock).
    pub fn central_clock_offset(&self) -> Option<chrono::TimeDelta> {
        self.central_clock_offset_ms.and_then(clock_offset_from_ms)
    }
}

/// A reported `central_clock_offset_ms` as a duration, `None` past
/// [`MAX_CLOCK_OFFSET_MS`].
pub fn clock_offset_from_ms(ms: i64) -> Option<chrono::TimeDelta> {
    (ms.unsigned_abs() <= MAX_CLOCK_OFFSET_MS)
        .then(|| chrono::TimeDelta::try_milliseconds(ms))
        .flatten()
}

/// The edge outbox: what is waiting for an end-to-end ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutboxStats {
    pub entries: u64,
    pub bytes: u64,
    /// Age of the oldest unacknowledged entry, 0 when empty.
    pub oldest_age_seconds: u64,
    /// Entries dropped by the when-full policy since start.
    pub dropped_total: u64,
}

/// One camera's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraStatus {
    pub id: CameraId,
    pub state: CameraState,
    /// Frames per second delivered over the last interval.
    #[schemars(range(min = 0.0))]
    pub fps: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Ok,
    /// The device node is absent or busy; the agent retries with backoff.
    Unavailable,
    Error,
}
