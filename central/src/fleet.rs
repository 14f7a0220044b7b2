//! Fleet gauges from what devices last reported: how many boards are
//! online, and how much their outboxes hold. The alerts for offline devices
//! and outbox backlog read these (`k8s/`), so they are computed centrally
//! from the stored status and telemetry rather than scraped from 5,000
//! boards.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inspection_core::wire::DeviceState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::store::{DeviceRecord, Store, StoreError};

/// Devices read per store call.
const PAGE: u32 = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Handles to the fleet gauges; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct FleetMetrics {
    devices: Family<StateLabels, Gauge>,
    outbox_events: Gauge,
    outbox_bytes: Gauge,
    outbox_oldest_age: Gauge,
    silent: Gauge,
}

impl FleetMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_fleet_devices",
            "Devices by their last status (online, offline; unknown: no status yet)",
            self.devices.clone(),
        );
        registry.register(
            "central_fleet_outbox_backlog_events",
            "Entries waiting in the edge outboxes, summed over devices, from their last telemetry",
            self.outbox_events.clone(),
        );
        registry.register(
            "central_fleet_outbox_backlog_bytes",
            "Bytes waiting in the edge outboxes, summed over devices",
            self.outbox_bytes.clone(),
        );
        registry.register(
            "central_fleet_outbox_oldest_age_seconds",
            "Age of the oldest entry in any edge outbox, from the last telemetry",
            self.outbox_oldest_age.clone(),
        );
        registry.register(
            "central_fleet_devices_silent",
            "Devices that say they are online but sent no telemetry for the silence window",
            self.silent.clone(),
        );
    }
}

/// What the fleet looks like now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub online: u64,
    pub offline: u64,
    pub unknown: u64,
    /// Online by status, but no telemetry within the silence window.
    pub silent: u64,
    pub outbox_events: u64,
    pub outbox_bytes: u64,
    pub outbox_oldest_age_s: u64,
}

impl FleetSummary {
    fn add(&mut self, device: &DeviceRecord, now: DateTime<Utc>, silence: chrono::Duration) {
        match device.status.as_ref().map(|s| s.state) {
            Some(DeviceState::Online) => {
                self.online += 1;
                let heard = device.telemetry_received_at.max(device.status_received_at);
                if heard.is_none_or(|at| now - at > silence) {
                    self.silent += 1;
                }
            }
            Some(DeviceState::Offline) => self.offline += 1,
            None => self.unknown += 1,
        }
        if let Some(t) = &device.telemetry {
            self.outbox_events += t.outbox.entries;
            self.outbox_bytes += t.outbox.bytes;
            self.outbox_oldest_age_s = self.outbox_oldest_age_s.max(t.outbox.oldest_age_seconds);
        }
    }
}

/// Reads every device once and sums them up.
pub async fn summarise(
    store: &dyn Store,
    now: DateTime<Utc>,
    silence: Duration,
) -> Result<FleetSummary, StoreError> {
    let silence = chrono::Duration::from_std(silence).unwrap_or(chrono::Duration::MAX);
    let mut summary = FleetSummary::default();
    let mut after = None;
    loop {
        let page = store
            .devices(after.as_ref().map(|(s, d)| (s, d)), PAGE)
            .await?;
        for device in &page {
            summary.add(device, now, silence);
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => {
                after = Some((last.site.clone(), last.device.clone()));
            }
            _ => return Ok(summary),
        }
    }
}

/// Updates the gauges every `every` until `stop`.
pub async fn run(
    store: Arc<dyn Store>,
    metrics: FleetMetrics,
    every: Duration,
    silence: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match summarise(store.as_ref(), Utc::now(), silence).await {
            Ok(s) => {
                let set = |state, n: u64| {
                    metrics
                        .devices
                        .get_or_create(&StateLabels { state })
                        .set(clamp(n));
                };
                set("online", s.online);
                set("offline", s.offline);
                set("unknown", s.unknown);
                metrics.silent.set(clamp(s.silent));
                metrics.outbox_events.set(clamp(s.outbox_events));
                metrics.outbox_bytes.set(clamp(s.outbox_bytes));
                metrics.outbox_oldest_age.set(clamp(s.outbox_oldest_age_s));
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the fleet for its gauges"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A count as a gauge value (gauges are `i64`).
pub(crate) fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}
