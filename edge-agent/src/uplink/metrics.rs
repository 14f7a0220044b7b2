//! Prometheus metrics of the uplink (`edge_uplink_*`). Labels are stable
//! codes only (message kinds, outcomes, error codes, HTTP statuses).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    pub kind: &'static str,
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BadMessageLabels {
    pub topic: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabel {
    pub what: &'static str,
}

/// The uplink's metrics; clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct UplinkMetrics {
    /// `edge_uplink_connected`: 1 while the MQTT session is up.
    pub connected: Gauge,
    /// `edge_uplink_connects_total`: MQTT sessions opened (CONNACK accepted).
    pub connects: Counter,
    /// `edge_uplink_disconnects_total{reason}`: sessions lost, and connection
    /// attempts that failed, by error code.
    pub disconnects: Family<ReasonLabel, Counter>,
    /// `edge_uplink_publishes_total{kind}`: events, telemetry and status
    /// handed to the MQTT client (first publishes and re-publishes).
    pub publishes: Family<KindLabel, Counter>,
    /// `edge_uplink_republishes_total{reason}`: events published again
    /// (`ack_timeout` or `reconnect`).
    pub republishes: Family<ReasonLabel, Counter>,
    /// `edge_uplink_acks_received_total`: valid `Ack` messages.
    pub acks_received: Counter,
    /// `edge_uplink_acked_entries_total`: outbox events removed by an ack.
    pub acked_entries: Counter,
    /// `edge_uplink_uploads_total{outcome}`: image PUTs by outcome
    /// (`created`, `present`, `retry`, `rejected`).
    pub uploads: Family<OutcomeLabel, Counter>,
    /// `edge_uplink_rejected_total{kind, code}`: outbox entries central
    /// refused for good and that were removed (e.g. `image`, `422`).
    pub rejected: Family<RejectedLabels, Counter>,
    /// `edge_uplink_backoff_seconds_total{what}`: time spent waiting before
    /// a reconnect (`mqtt`) or an upload retry (`upload`).
    pub backoff_seconds: Family<WhatLabel, Counter<f64, AtomicU64>>,
    /// `edge_uplink_in_flight`: events published and not yet acked.
    pub in_flight: Gauge,
    /// `edge_uplink_clock_offset_seconds`: central's clock minus this
    /// board's, from the time on the last ack (positive: the board is
    /// behind). Command expiry is judged on central's clock with it.
    pub clock_offset_seconds: Gauge<f64, AtomicU64>,
    /// `edge_uplink_bad_messages_total{topic, code}`: undecodable payloads on
    /// the ack and cmd topics (ignored).
    pub bad_messages: Family<BadMessageLabels, Counter>,
    /// `edge_uplink_commands_total{command, outcome}`: commands received.
    pub commands: Family<CommandLabels, Counter>,
    /// `edge_uplink_telemetry_errors_total`: telemetry that could not be built.
    pub telemetry_errors: Counter,
}

impl UplinkMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_uplink_connected",
            "1 while the MQTT session to central is up",
            self.connected.clone(),
        );
        registry.register(
            "edge_uplink_connects",
            "MQTT sessions opened",
            self.connects.clone(),
        );
        registry.register(
            "edge_uplink_disconnects",
            "MQTT sessions lost and connection attempts failed, by error code",
            self.disconnects.clone(),
        );
        registry.register(
            "edge_uplink_publishes",
            "Messages handed to the MQTT client, by kind",
            self.publishes.clone(),
        );
        registry.register(
            "edge_uplink_republishes",
            "Events published again, by reason (ack_timeout, reconnect)",
            self.republishes.clone(),
        );
        registry.register(
            "edge_uplink_acks_received",
            "Ack messages received from central",
            self.acks_received.clone(),
        );
        registry.register(
            "edge_uplink_acked_entries",
            "Outbox events removed by central's ack",
            self.acked_entries.clone(),
        );
        registry.register(
            "edge_uplink_uploads",
            "Image uploads, by outcome",
            self.uploads.clone(),
        );
        registry.register(
            "edge_uplink_rejected",
            "Outbox entries central refused for good (removed), by kind and HTTP status",
            self.rejected.clone(),
        );
        registry.register(
            "edge_uplink_backoff_seconds",
            "Seconds waited before reconnecting or retrying an upload",
            self.backoff_seconds.clone(),
        );
        registry.register(
            "edge_uplink_in_flight",
            "Events published and not yet acknowledged",
            self.in_flight.clone(),
        );
        registry.register(
            "edge_uplink_clock_offset_seconds",
            "Central's clock minus this board's, from the last ack (positive: the board is behind)",
            self.clock_offset_seconds.clone(),
        );
        registry.register(
            "edge_uplink_bad_messages",
            "Undecodable messages on the ack and cmd topics, by topic and error code",
            self.bad_messages.clone(),
        );
        registry.register(
            "edge_uplink_commands",
            "Commands received from central, by command and outcome",
            self.commands.clone(),
        );
        registry.register(
            "edge_uplink_telemetry_errors",
            "Telemetry messages that could not be built",
            self.telemetry_errors.clone(),
        );
    }

    pub fn publish(&self, kind: &'static str) {
        self.publishes.get_or_create(&KindLabel { kind }).inc();
    }
    pub fn republished(&self, reason: &'static str) {
        self.republishes
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
    pub fn disconnect(&self, reason: &'static str) {
        self.disconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
    pub fn upload(&self, outcome: &'static str) {
        self.uploads.get_or_create(&OutcomeLabel { outcome }).inc();
    }
    pub fn reject(&self, kind: &'static str, code: impl Into<String>) {
        self.rejected
            .get_or_create(&RejectedLabels {
                kind,
                code: code.into(),
            })
            .inc();
    }
    pub fn backoff(&self, what: &'static str, delay: std::time::Duration) {
        self.backoff_seconds
            .get_or_create(&WhatLabel { what })
            .inc_by(delay.as_secs_f64());
    }
    pub fn bad_message(&self, topic: &'static str, code: &'static str) {
        self.bad_messages
            .get_or_create(&BadMessageLabels { topic, code })
            .inc();
    }
    pub fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
    }

    /// Read-outs for tests and telemetry.
    pub fn publishes_of(&self, kind: &'static str) -> u64 {
        self.publishes.get_or_create(&KindLabel { kind }).get()
    }
    pub fn republishes_of(&self, reason: &'static str) -> u64 {
        self.republishes
            .get_or_create(&ReasonLabel { reason })
            .get()
    }
    pub fn uploads_of(&self, outcome: &'static str) -> u64 {
        self.uploads.get_or_create(&OutcomeLabel { outcome }).get()
    }
    pub fn rejected_of(&self, kind: &'static str, code: &str) -> u64 {
        self.rejected
            .get_or_create(&RejectedLabels {
                kind,
                code: code.to_owned(),
            })
            .get()
    }
    pub fn bad_messages_of(&self, topic: &'static str, code: &'static str) -> u64 {
        self.bad_messages
            .get_or_create(&BadMessageLabels { topic, code })
            .get()
    }
    pub fn commands_of(&self, command: &'static str, outcome: &'static str) -> u64 {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .get()
    }
    pub fn backoff_seconds_of(&self, what: &'static str) -> f64 {
        self.backoff_seconds
            .get_or_create(&WhatLabel { what })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_uses_prometheus_names() {
        let m = UplinkMetrics::default();
        m.connected.set(1);
        m.publish("event");
        m.reject("image", "422");
        m.backoff("mqtt", std::time::Duration::from_millis(1500));
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "edge_uplink_connected 1",
            "edge_uplink_publishes_total{kind=\"event\"} 1",
            "edge_uplink_rejected_total{kind=\"image\",code=\"422\"} 1",
            "edge_uplink_backoff_seconds_total{what=\"mqtt\"} 1.5",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
