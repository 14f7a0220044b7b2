//! The broker role's Prometheus metrics (`central_broker_*`). Labels are
//! stable codes only: never a site, device or topic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A gateway connection's listener and how it ended its handshake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectionLabels {
    /// `tls` or `plain`.
    pub(crate) listener: &'static str,
    /// `authenticated`, `tls_failed`, `timeout`, `bad_connect`,
    /// `refused_auth`, `refused_acl`, `over_limit`, `upstream_unavailable`.
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabels {
    /// `publish`, `subscribe` or `will`.
    pub(crate) action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PacketLabels {
    /// `in` (client to broker, inspected) or `out` (broker to client).
    pub(crate) direction: &'static str,
    /// MQTT packet type: `connect`, `publish`, `puback`, ...
    pub(crate) packet: &'static str,
}

/// Handles to the broker's metrics; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct BrokerMetrics {
    pub(crate) connections: Family<ConnectionLabels, Counter>,
    pub(crate) active: Gauge,
    pub(crate) auth_failures: Family<ReasonLabels, Counter>,
    pub(crate) acl_denied: Family<ActionLabels, Counter>,
    pub(crate) tls_handshake_failures: Counter,
    pub(crate) packets: Family<PacketLabels, Counter>,
    pub(crate) oversize_packets: Counter,
    pub(crate) protocol_errors: Family<ReasonLabels, Counter>,
}

impl BrokerMetrics {
    /// Registers every metric (the registry gets clones of the handles).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_broker_connections",
            "Device-facing connections by listener and handshake outcome",
            self.connections.clone(),
        );
        registry.register(
            "central_broker_connections_active",
            "Authenticated gateway connections open now",
            self.active.clone(),
        );
        registry.register(
            "central_broker_auth_failures",
            "CONNECTs refused because the client could not be authenticated, by reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "central_broker_acl_denied",
            "Publishes, subscriptions and last wills denied by the topic ACL",
            self.acl_denied.clone(),
        );
        registry.register(
            "central_broker_tls_handshake_failures",
            "TLS handshakes that failed (no or bad client certificate, wrong CA, not TLS)",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "central_broker_packets",
            "MQTT packets through the gateway, by direction and type",
            self.packets.clone(),
        );
        registry.register(
            "central_broker_oversize_packets",
            "Packets over max_packet_bytes or payloads over the wire limit (the connection is closed)",
            self.oversize_packets.clone(),
        );
        registry.register(
            "central_broker_protocol_errors",
            "Connections closed for breaking MQTT 3.1.1, by reason",
            self.protocol_errors.clone(),
        );
    }

    pub(crate) fn connection(&self, listener: &'static str, outcome: &'static str) {
        self.connections
            .get_or_create(&ConnectionLabels { listener, outcome })
            .inc();
    }

    pub(crate) fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn denied(&self, action: &'static str, n: u64) {
        self.acl_denied
            .get_or_create(&ActionLabels { action })
            .inc_by(n);
    }

    pub(crate) fn packet(&self, direction: &'static str, packet: &'static str) {
        self.packets
            .get_or_create(&PacketLabels { direction, packet })
            .inc();
    }

    pub(crate) fn protocol_error(&self, reason: &'static str) {
        self.protocol_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The value of `central_broker_acl_denied_total{action}` (for tests
    /// and the health summary).
    pub fn acl_denied(&self, action: &'static str) -> u64 {
        self.acl_denied
            .get_or_create(&ActionLabels { action })
            .get()
    }

    /// `central_broker_auth_failures_total{reason}`.
    pub fn auth_failures(&self, reason: &'static str) -> u64 {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// `central_broker_connections_total{listener, outcome}`.
    pub fn connections(&self, listener: &'static str, outcome: &'static str) -> u64 {
        self.connections
            .get_or_create(&ConnectionLabels { listener, outcome })
            .get()
    }

    /// `central_broker_tls_handshake_failures_total`.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// `central_broker_protocol_errors_total{reason}`.
    pub fn protocol_errors(&self, reason: &'static str) -> u64 {
        self.protocol_errors
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// `central_broker_connections_active`.
    pub fn active_connections(&self) -> i64 {
        self.active.get()
    }

    /// `central_broker_oversize_packets_total`.
    pub fn oversize_packets(&self) -> u64 {
        self.oversize_packets.get()
    }
}
