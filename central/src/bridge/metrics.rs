//! Prometheus metrics of the bridge (`central_bridge_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label of `central_bridge_messages_received_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `status`, `events`, `telemetry`, or `unknown` (not a device topic).
    pub kind: &'static str,
}

/// Label of `central_bridge_events_stored_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `inserted` or `duplicate`.
    pub result: &'static str,
}

/// Label of `central_bridge_rejected_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `WireError::code()`, `unknown_topic`, or `store_rejected`.
    pub reason: &'static str,
}

/// Label of `central_bridge_store_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// `StoreError::code()`.
    pub code: &'static str,
}

/// The bridge's metrics. Clones share the same values.
#[derive(Debug, Clone)]
pub struct BridgeMetrics {
    /// `central_bridge_messages_received_total{kind}`.
    pub received: Family<KindLabels, Counter>,
    /// `central_bridge_events_stored_total{result}`: events committed
    /// (`inserted`) or found already there (`duplicate`, acked again).
    pub events_stored: Family<ResultLabels, Counter>,
    /// `central_bridge_acks_published_total`: ack messages to devices.
    pub acks_published: Counter,
    /// `central_bridge_acked_ids_total`: message ids in those acks.
    pub acked_ids: Counter,
    /// `central_bridge_rejected_total{reason}`: payloads dead-lettered.
    pub rejected: Family<ReasonLabels, Counter>,
    /// `central_bridge_store_errors_total{code}`: failed store calls (each
    /// retry counts).
    pub store_errors: Family<CodeLabels, Counter>,
    /// `central_bridge_connections_total`: successful connections
    /// (the first and every reconnection).
    pub connections: Counter,
    /// `central_bridge_connection_errors_total`: lost or refused connections.
    pub connection_errors: Counter,
    /// `central_bridge_subscribe_failures_total`: filters the broker refused.
    pub subscribe_failures: Counter,
    /// `central_bridge_connected`: 1 while connected to the broker.
    pub connected: Gauge,
    /// `central_bridge_ready`: 1 while connected and the store accepts writes.
    pub ready: Gauge,
    /// `central_bridge_batch_size`: events per store transaction.
    pub batch_size: Histogram,
    /// `central_bridge_commit_latency_seconds`: from receipt by the bridge to
    /// the commit of the batch holding it.
    pub commit_latency: Histogram,
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        Self {
            received: Family::default(),
            events_stored: Family::default(),
            acks_published: Counter::default(),
            acked_ids: Counter::default(),
            rejected: Family::default(),
            store_errors: Family::default(),
            connections: Counter::default(),
            connection_errors: Counter::default(),
            subscribe_failures: Counter::default(),
            connected: Gauge::default(),
            ready: Gauge::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}

impl BridgeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("central_bridge");
        r.register(
            "messages_received",
            "Messages received from device topics, by kind",
            self.received.clone(),
        );
        r.register(
            "events_stored",
            "Events committed (inserted) or already stored (duplicate)",
            self.events_stored.clone(),
        );
        r.register(
            "acks_published",
            "Ack messages published to devices",
            self.acks_published.clone(),
        );
        r.register(
            "acked_ids",
            "Message ids acked to devices",
            self.acked_ids.clone(),
        );
        r.register(
            "rejected",
            "Payloads refused and dead-lettered, by reason",
            self.rejected.clone(),
        );
        r.register(
            "store_errors",
            "Failed store calls, by error code",
            self.store_errors.clone(),
        );
        r.register(
            "connections",
            "Successful connections to the broker",
            self.connections.clone(),
        );
        r.register(
            "connection_errors",
            "Lost or refused broker connections",
            self.connection_errors.clone(),
        );
        r.register(
            "subscribe_failures",
            "Subscriptions the broker refused",
            self.subscribe_failures.clone(),
        );
        r.register(
            "connected",
            "1 while connected to the broker",
            self.connected.clone(),
        );
        r.register(
            "ready",
            "1 while connected and the store accepts writes",
            self.ready.clone(),
        );
        r.register(
            "batch_size",
            "Events per store transaction",
            self.batch_size.clone(),
        );
        r.register_with_unit(
            "commit_latency",
            "From receipt by the bridge to the commit of its batch",
            Unit::Seconds,
            self.commit_latency.clone(),
        );
    }

    /// `central_bridge_rejected_total{reason}` now (for tests and health).
    pub fn rejected_count(&self, reason: &'static str) -> u64 {
        self.rejected.get_or_create(&ReasonLabels { reason }).get()
    }

    /// `central_bridge_store_errors_total{code}` now.
    pub fn store_error_count(&self, code: &'static str) -> u64 {
        self.store_errors.get_or_create(&CodeLabels { code }).get()
    }

    /// `central_bridge_messages_received_total{kind}` now.
    pub fn received_count(&self, kind: &'static str) -> u64 {
        self.received.get_or_create(&KindLabels { kind }).get()
    }

    /// `central_bridge_events_stored_total{result}` now.
    pub fn stored_count(&self, result: &'static str) -> u64 {
        self.events_stored
            .get_or_create(&ResultLabels { result })
            .get()
    }
}
