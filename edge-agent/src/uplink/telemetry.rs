//! Telemetry: what the fleet dashboards need from a board, read from the
//! agent's own metrics (the same numbers `/metrics` shows) and the outbox.

use std::time::Instant;

use chrono::Utc;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{
    CameraState, CameraStatus, CompletionReason, MAX_CLOCK_OFFSET_MS, OutboxStats, Telemetry, V1,
};

use prometheus_client::registry::Registry;

use crate::capture::CaptureMetrics;
use crate::pipeline::PipelineMetrics;
use crate::prescreen::PrescreenMetrics;
use crate::session::{ReasonLabels, SessionMetrics, reason_label};

/// The metric handles telemetry is read from.
#[derive(Debug, Clone)]
pub struct TelemetrySource {
    pub cameras: Vec<CameraId>,
    pub capture: CaptureMetrics,
    pub pipeline: PipelineMetrics,
    pub prescreen: PrescreenMetrics,
    pub session: SessionMetrics,
}

/// Counter values at the previous message, for per-interval figures.
pub(super) struct TelemetryState {
    /// The pre-screen histogram alone, to read its sum and count (the
    /// histogram exposes them only through its encoding).
    prescreen: Registry,
    started: Instant,
    at: Instant,
    frames: Vec<u64>,
    prescreen_sum: f64,
    prescreen_count: u64,
}

impl TelemetrySource {
    pub(super) fn start(&self) -> TelemetryState {
        let now = Instant::now();
        let mut prescreen = Registry::default();
        prescreen.register(
            "prescreen",
            "pre-screen inference time",
            self.prescreen.inference_duration.clone(),
        );
        let (prescreen_sum, prescreen_count) = histogram_sum_count(&prescreen);
        TelemetryState {
            prescreen,
            started: now,
            at: now,
            frames: self.frame_counts(),
            prescreen_sum,
            prescreen_count,
        }
    }

    fn frame_counts(&self) -> Vec<u64> {
        self.cameras
            .iter()
            .map(|c| self.capture.frames_of(c.as_str()))
            .collect()
    }

    /// The next message; advances `state` to now.
    pub(super) fn snapshot(
        &self,
        state: &mut TelemetryState,
        site: &SiteId,
        device: &DeviceId,
        outbox: OutboxStats,
        disk_free_bytes: Option<u64>,
        central_clock_offset: Option<chrono::TimeDelta>,
    ) -> Telemetry {
        let now = Instant::now();
        let seconds = now.duration_since(state.at).as_secs_f64();
        let frames = self.frame_counts();
        let cameras = self
            .cameras
            .iter()
            .zip(frames.iter().zip(&state.frames))
            .map(|(id, (now, before))| {
                let fps = if seconds > 0.0 {
                    (now.saturating_sub(*before) as f64 / seconds) as f32
                } else {
                    0.0
                };
                let state = if self.capture.up_of(id.as_str()) > 0 {
                    CameraState::Ok
                } else {
                    CameraState::Unavailable
                };
                CameraStatus {
                    id: id.clone(),
                    state,
                    fps,
                }
            })
            .collect();
        let (sum, count) = histogram_sum_count(&state.prescreen);
        let screened = count.saturating_sub(state.prescreen_count);
        let prescreen_latency_ms = (screened > 0)
            .then(|| ((sum - state.prescreen_sum).max(0.0) / screened as f64 * 1000.0) as f32);
        let inspections_total = [
            CompletionReason::VehicleLeft,
            CompletionReason::Command,
            CompletionReason::Timeout,
            CompletionReason::Shutdown,
        ]
        .into_iter()
        .map(|r| {
            self.session
                .completed
                .get_or_create(&ReasonLabels {
                    reason: reason_label(r),
                })
                .get()
        })
        .sum();
        let names = || self.cameras.iter().map(CameraId::as_str);
        let telemetry = Telemetry {
            v: V1,
            site: site.clone(),
            device: device.clone(),
            at: Utc::now(),
            agent_version: crate::agent::AGENT_VERSION.to_owned(),
            uptime_seconds: now.duration_since(state.started).as_secs(),
            frames_captured_total: frames.iter().sum(),
            frames_rejected_total: names().map(|c| self.pipeline.rejected_frames(c)).sum(),
            frames_dropped_total: names().map(|c| self.pipeline.dropped(c)).sum(),
            inspections_total,
            prescreen_latency_ms,
            outbox,
            cameras,
            disk_free_bytes,
            cpu_temperature_celsius: None,
            central_clock_offset_ms: reported_offset(central_clock_offset),
        };
        state.at = now;
        state.frames = frames;
        state.prescreen_sum = sum;
        state.prescreen_count = count;
        telemetry
    }
}

/// The `_sum` and `_count` of the only histogram in `registry`.
fn histogram_sum_count(registry: &Registry) -> (f64, u64) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return (0.0, 0);
    }
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(suffix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = value("prescreen_seconds_count ").max(value("prescreen_count "));
    let sum = value("prescreen_seconds_sum ").max(value("prescreen_sum "));
    (sum, count as u64)
}

/// The offset as telemetry reports it. Past a year the figure is wrong, not
/// the clock (a board that booted at 1970 before NTP): left out, or the
/// whole message would be refused.
fn reported_offset(offset: Option<chrono::TimeDelta>) -> Option<i64> {
    offset
        .map(|o| o.num_milliseconds())
        .filter(|ms| ms.unsigned_abs() <= MAX_CLOCK_OFFSET_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_past_a_year_is_left_out() {
        use chrono::TimeDelta;
        assert_eq!(reported_offset(None), None);
        assert_eq!(
            reported_offset(Some(TimeDelta::hours(-2))),
            Some(-7_200_000)
        );
        // A board that booted at 1970: central is 56 years ahead.
        assert_eq!(reported_offset(Some(TimeDelta::days(56 * 365))), None);
        assert_eq!(reported_offset(Some(TimeDelta::days(-400))), None);
    }

    #[test]
    fn the_histogram_sum_and_count_are_read_back() {
        let metrics = PrescreenMetrics::new();
        let mut registry = Registry::default();
        registry.register("prescreen", "h", metrics.inference_duration.clone());
        assert_eq!(histogram_sum_count(&registry), (0.0, 0));
        metrics.inference_duration.observe(0.25);
        metrics.inference_duration.observe(0.5);
        assert_eq!(histogram_sum_count(&registry), (0.75, 2));
    }
}
